//! A byte buffer for plaintext that is zeroed on drop and, unlike `Zeroizing<Vec<u8>>`, never
//! leaves an unzeroed copy behind when it grows.

use std::io;

use zeroize::{Zeroize, Zeroizing};

/// A growable byte buffer zeroed on drop.
#[derive(Default)]
pub struct ZeroBuf {
    inner: Zeroizing<Vec<u8>>,
}

impl ZeroBuf {
    /// An empty buffer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        ZeroBuf {
            inner: Zeroizing::new(Vec::with_capacity(n)),
        }
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// No bytes held.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.inner
    }

    /// The bytes, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.inner
    }

    /// Zero and empty the buffer.
    pub fn clear(&mut self) {
        self.inner.zeroize();
    }

    /// Append `data`, growing without leaving a copy behind.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.reserve(data.len());
        self.inner.extend_from_slice(data);
    }

    /// Grow by moving into a fresh allocation and zeroing the old one.
    fn reserve(&mut self, additional: usize) {
        let needed = self.inner.len() + additional;
        if needed <= self.inner.capacity() {
            return;
        }
        let new_cap = needed.max(self.inner.capacity() * 2).max(256);
        let mut bigger = Zeroizing::new(Vec::with_capacity(new_cap));
        bigger.extend_from_slice(&self.inner);
        // The old allocation is zeroed (whole capacity) when the `Zeroizing` is dropped here.
        self.inner = bigger;
    }
}

impl std::fmt::Debug for ZeroBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ZeroBuf(<redacted {} bytes>)", self.len())
    }
}

impl io::Write for ZeroBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn grows_and_keeps_content() {
        let mut b = ZeroBuf::with_capacity(4);
        for i in 0..1000u32 {
            write!(b, "{i},").unwrap();
        }
        let s = String::from_utf8(b.as_slice().to_vec()).unwrap();
        assert!(s.starts_with("0,1,2,"));
        assert!(s.ends_with("998,999,"));
        b.clear();
        assert!(b.is_empty());
    }
}
