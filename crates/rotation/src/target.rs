//! `CredentialTarget`: the database whose password rotation changes.

use crate::secret::{DbCredentials, Password};
use async_trait::async_trait;

/// Why a login attempt failed. Never carries a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("authentication failed for user {user:?}")]
    Authentication { user: String },
    #[error("TLS failed: {0}")]
    Tls(String),
    #[error("cannot reach {host}:{port}: {reason}")]
    Unreachable {
        host: String,
        port: u16,
        reason: String,
    },
    #[error("{0}")]
    Other(String),
}

/// A failed database operation after login. Never carries a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("database {operation} failed: {message}")]
pub struct TargetError {
    pub operation: &'static str,
    pub message: String,
}

/// Opens sessions on the database named by a secret.
#[async_trait]
pub trait CredentialTarget: Send + Sync {
    /// Logs in with `credentials` (TLS as they say, no fallback).
    async fn connect(
        &self,
        credentials: &DbCredentials,
    ) -> Result<Box<dyn TargetSession>, ConnectError>;
}

/// An open, authenticated database session.
#[async_trait]
pub trait TargetSession: Send {
    /// `SELECT current_user`.
    async fn current_user(&mut self) -> Result<String, TargetError>;

    /// Sets `username`'s password (as a SCRAM verifier, identifier escaped).
    async fn set_password(
        &mut self,
        username: &str,
        password: &Password,
    ) -> Result<(), TargetError>;
}
