//! [`ServiceError`]: a failed call to the service behind a port, one shape for every service
//! (Secrets Manager for [`SecretStore`](crate::SecretStore), RDS for
//! [`DbTopology`](crate::DbTopology)); the service is a type parameter so that the error kinds
//! stay distinct.

use std::fmt::Debug;
use std::marker::PhantomData;

/// A service a port talks to; its name prefixes the error message.
pub trait Service: Debug + Clone + Copy + PartialEq + Eq + Send + Sync + 'static {
    /// The service's name in messages, e.g. `Secrets Manager`.
    const NAME: &'static str;
}

/// AWS Secrets Manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretsManager;

impl Service for SecretsManager {
    const NAME: &'static str = "Secrets Manager";
}

/// Amazon RDS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rds;

impl Service for Rds {
    const NAME: &'static str = "RDS";
}

/// A failed call to service `S`. The message comes from the service (or describes the transport
/// failure) and carries no secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {operation} failed: {message}", S::NAME)]
pub struct ServiceError<S: Service> {
    /// The API operation, e.g. `PutSecretValue`.
    pub operation: &'static str,
    /// The service's error code, e.g. `ResourceNotFoundException`, when known.
    pub code: Option<String>,
    /// The service's message.
    pub message: String,
    service: PhantomData<S>,
}

impl<S: Service> ServiceError<S> {
    /// A failure of `operation`, with the service's error code when there is one.
    pub fn new(operation: &'static str, code: Option<String>, message: impl Into<String>) -> Self {
        ServiceError {
            operation,
            code,
            message: message.into(),
            service: PhantomData,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_service_and_the_operation() {
        let e = ServiceError::<SecretsManager>::new("PutSecretValue", None, "denied");
        assert_eq!(
            e.to_string(),
            "Secrets Manager PutSecretValue failed: denied"
        );
        let e = ServiceError::<Rds>::new("DescribeDBInstances", Some("X".into()), "gone");
        assert_eq!(e.to_string(), "RDS DescribeDBInstances failed: gone");
        assert_eq!(e.code.as_deref(), Some("X"));
    }
}
