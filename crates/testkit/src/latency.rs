//! A TCP proxy that adds a fixed delay to each request, to measure what a number of sequential
//! round trips costs at AWS-like latency (`make bench`'s cold rotation): a client talks to the
//! proxy instead of the server; every burst of bytes the client sends after a pause is held back
//! `delay` before it is forwarded (the rest of the same burst follows at once), responses flow
//! back untouched. Concurrent requests on separate connections are delayed in parallel, as on a
//! real network. Reproduces: per-request latency. Not: bandwidth limits, loss, reordering.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Bytes arriving within this long of the previous ones belong to the same request.
const SAME_BURST: Duration = Duration::from_millis(2);

/// The running proxy; stops when dropped.
pub struct LatencyProxy {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl LatencyProxy {
    /// Listens on a free loopback port and forwards to `upstream`, each request `delay` late.
    pub async fn start(upstream: SocketAddr, delay: Duration) -> LatencyProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the latency proxy");
        let addr = listener.local_addr().expect("proxy address");
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, delay));
            }
        });
        LatencyProxy { addr, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, delay: Duration) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut last: Option<Instant> = None;
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let now = Instant::now();
            if last.is_none_or(|t| now.duration_since(t) > SAME_BURST) {
                tokio::time::sleep(delay).await;
            }
            last = Some(Instant::now());
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let responses = async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::join!(requests, responses);
}
