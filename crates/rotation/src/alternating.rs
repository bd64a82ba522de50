//! The alternating-users strategy's pieces, as functions over the traits: the user pair, the
//! master secret and its resolution (through RDS for a managed master secret), and the check
//! that the master's server is the user's or its primary. setSecret
//! (`src/steps/set.rs`) and the preflight (`crates/preflight`) both use them.

use crate::error::ErrorKind;
use crate::profile::EngineProfile;
use crate::secret::{DbCredentials, FieldError, SecretJson};
use crate::store::{SecretStore, AWSCURRENT};
use crate::topology::{DbTopology, MasterLocation, RdsResource, Relation};

/// Suffix that marks the alternate user of the alternating-users strategy.
pub const CLONE_SUFFIX: &str = "_clone";

/// The two users of the alternating-users strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPair {
    /// The user without the suffix.
    pub original: String,
    /// The user with the `_clone` suffix.
    pub clone: String,
}

impl UserPair {
    /// The pair `username` belongs to (it may be either of the two).
    pub fn of(username: &str, profile: &EngineProfile) -> Result<UserPair, ErrorKind> {
        match original_of(username) {
            Some(original) => Ok(UserPair {
                original: original.to_string(),
                clone: username.to_string(),
            }),
            None => Ok(UserPair {
                clone: alternate_username(username, profile)?,
                original: username.to_string(),
            }),
        }
    }
}

/// The alternate of `username`: `_clone` stripped if present, else appended (within the
/// engine's identifier limit).
pub fn alternate_username(username: &str, profile: &EngineProfile) -> Result<String, ErrorKind> {
    if let Some(original) = original_of(username) {
        return Ok(original.to_string());
    }
    let clone = format!("{username}{CLONE_SUFFIX}");
    if clone.len() > profile.max_identifier_bytes {
        return Err(ErrorKind::NameTooLong {
            username: username.to_string(),
            len: clone.len(),
            engine: profile.name,
            limit: profile.max_identifier_bytes,
        });
    }
    Ok(clone)
}

/// The original user's name when `username` is a clone (`name_clone` with a non-empty `name`).
fn original_of(username: &str) -> Option<&str> {
    username
        .strip_suffix(CLONE_SUFFIX)
        .filter(|original| !original.is_empty())
}

/// The master secret of the alternating-users strategy, ready to log in.
#[derive(Debug, Clone)]
pub struct MasterSecret {
    /// `masterarn` as given in the user's secret.
    pub arn: String,
    /// The master's credentials (host, port and engine from RDS for a managed master secret).
    pub credentials: DbCredentials,
    /// The RDS resource named by the secret's `aws:rds:primary…Arn` tag, when host, port and
    /// engine came from RDS (an RDS-managed master secret).
    pub resource: Option<RdsResource>,
}

impl MasterSecret {
    /// Where the master's host came from, for messages.
    pub fn origin(&self) -> String {
        match &self.resource {
            Some(resource) => format!(", from its {} tag {}", resource.tag(), resource.arn()),
            None => String::new(),
        }
    }
}

/// Whether two credentials point at the same server (host names compare case-insensitively).
pub fn same_server(a: &DbCredentials, b: &DbCredentials) -> bool {
    a.host.eq_ignore_ascii_case(&b.host) && a.port == b.port
}

/// Reads the master secret named by `masterarn` in `user_secret` (AWSCURRENT). An RDS-managed
/// master secret (only `username` and `password`) gets host, port and engine from RDS through
/// its `aws:rds:primary…Arn` tag. The user's `dbname` is used when it has one.
pub async fn load_master(
    store: &dyn SecretStore,
    topology: &dyn DbTopology,
    profile: &EngineProfile,
    user_secret: &SecretJson,
) -> Result<MasterSecret, ErrorKind> {
    let arn = user_secret
        .master_arn()
        .map_err(ErrorKind::field(AWSCURRENT))?
        .filter(|arn| !arn.is_empty())
        .ok_or(ErrorKind::Field {
            stage: AWSCURRENT,
            source: FieldError::Missing("masterarn"),
        })?
        .to_string();
    let master_error = |detail: String| ErrorKind::MasterSecret {
        master: arn.clone(),
        detail,
    };
    let text = store
        .get_stage_value(&arn, AWSCURRENT)
        .await
        .map_err(|e| master_error(e.to_string()))?
        .ok_or_else(|| master_error("it has no AWSCURRENT value".into()))?;
    let field_error = |hint: &'static str| {
        let master = arn.clone();
        move |source| ErrorKind::MasterField {
            master,
            source,
            hint,
        }
    };
    let mut json = SecretJson::parse(&text).map_err(field_error(""))?;
    let mut resource = None;
    if json.is_username_password_only() {
        let meta = store
            .describe(&arn)
            .await
            .map_err(|e| master_error(e.to_string()))?;
        let Some(found) = RdsResource::from_tags(&meta.tags) else {
            return Err(ErrorKind::MasterField {
                master: arn.clone(),
                source: FieldError::Missing("host"),
                hint: " (it holds only username and password and has no \
                       aws:rds:primaryDBInstanceArn or aws:rds:primaryDBClusterArn tag to \
                       look the database up with; add engine, host and port)",
            });
        };
        let endpoint = topology.endpoint_of(&found).await?;
        json = json
            .with_str("engine", &endpoint.engine)
            .with_str("host", &endpoint.host)
            .with_value("port", endpoint.port.into());
        resource = Some(found);
    }
    if let Some(dbname) = user_secret
        .optional_str("dbname")
        .map_err(ErrorKind::field(AWSCURRENT))?
    {
        json = json.with_str("dbname", dbname);
    }
    let credentials = json.credentials(profile).map_err(field_error(""))?;
    Ok(MasterSecret {
        arn,
        credentials,
        resource,
    })
}

/// `None` when the master is on the user's server; else how RDS relates the two.
pub async fn master_relation(
    topology: &dyn DbTopology,
    user: &DbCredentials,
    master: &MasterSecret,
) -> Result<Option<Relation>, ErrorKind> {
    if same_server(user, &master.credentials) {
        return Ok(None);
    }
    let relation = topology
        .relation(
            &user.host,
            MasterLocation {
                host: &master.credentials.host,
                resource: master.resource.as_ref(),
            },
        )
        .await?;
    Ok(Some(relation))
}
