//! In-memory fakes of the ports for unit tests. The real adapters are tested against moto in
//! the end-to-end tests.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use zeroize::Zeroizing;

use crate::model::{
    Described, SecretMeta, SecretValue, Tag, VersionLabels, AWSCURRENT, AWSPREVIOUS,
};
use crate::ports::*;

#[derive(Clone, Debug)]
pub struct FakeVersion {
    pub id: String,
    pub labels: Vec<String>,
    pub value: SecretValue,
}

#[derive(Clone, Debug)]
pub struct FakeSecret {
    pub meta: SecretMeta,
    pub versions: Vec<FakeVersion>,
    pub deleted: Option<DateTime<Utc>>,
}

/// Secrets Manager with its staging-label rules.
#[derive(Default)]
pub struct FakeSecrets {
    pub secrets: Mutex<BTreeMap<String, FakeSecret>>,
    /// Names whose GetSecretValue fails.
    pub unreadable: Mutex<HashSet<String>>,
    counter: AtomicUsize,
    pub writes: AtomicUsize,
}

impl FakeSecrets {
    pub fn arn_for(name: &str) -> String {
        format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf")
    }

    fn next_id(&self) -> String {
        format!(
            "{:08}-0000-4000-8000-000000000000",
            self.counter.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// Add a secret with one AWSCURRENT version.
    pub fn add(&self, name: &str, value: SecretValue) -> String {
        let meta = SecretMeta {
            name: name.into(),
            arn: Self::arn_for(name),
            ..Default::default()
        };
        self.secrets.lock().unwrap().insert(
            name.into(),
            FakeSecret {
                meta,
                versions: vec![],
                deleted: None,
            },
        );
        self.put(name, value, &[AWSCURRENT])
    }

    /// PutSecretValue with the given labels (AWSPREVIOUS follows AWSCURRENT as in AWS).
    pub fn put(&self, name: &str, value: SecretValue, labels: &[&str]) -> String {
        let id = self.next_id();
        let mut all = self.secrets.lock().unwrap();
        let s = all.get_mut(name).expect("secret exists");
        apply_put(
            s,
            &id,
            value,
            labels.iter().map(|l| l.to_string()).collect(),
        );
        id
    }

    pub fn with_secret<R>(&self, name: &str, f: impl FnOnce(&mut FakeSecret) -> R) -> R {
        f(self
            .secrets
            .lock()
            .unwrap()
            .get_mut(name)
            .expect("secret exists"))
    }

    pub fn remove(&self, name: &str) {
        self.secrets.lock().unwrap().remove(name);
    }

    fn find<'a>(all: &'a mut BTreeMap<String, FakeSecret>, id: &str) -> Option<&'a mut FakeSecret> {
        all.values_mut()
            .find(|s| s.meta.name == id || s.meta.arn == id)
    }

    fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        format!("ResourceNotFoundException: {id}"),
    )
}

fn apply_put(s: &mut FakeSecret, id: &str, value: SecretValue, mut labels: Vec<String>) {
    if s.versions.is_empty() && !labels.iter().any(|l| l == AWSCURRENT) {
        labels.push(AWSCURRENT.into());
    }
    let old_current = s
        .versions
        .iter()
        .find(|v| v.labels.iter().any(|l| l == AWSCURRENT))
        .map(|v| v.id.clone());
    for v in &mut s.versions {
        v.labels.retain(|l| !labels.contains(l));
    }
    if labels.iter().any(|l| l == AWSCURRENT) {
        if let Some(old) = old_current {
            for v in &mut s.versions {
                v.labels.retain(|l| l != AWSPREVIOUS);
            }
            let v = s.versions.iter_mut().find(|v| v.id == old).unwrap();
            v.labels.push(AWSPREVIOUS.into());
        }
    }
    s.versions.push(FakeVersion {
        id: id.into(),
        labels,
        value,
    });
}

#[async_trait]
impl SecretsApi for FakeSecrets {
    fn list<'a>(&'a self, prefixes: &'a [String]) -> BoxStream<'a, Result<ListedSecret, ApiError>> {
        let items: Vec<_> = self
            .secrets
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.deleted.is_none())
            .filter(|s| {
                prefixes.is_empty()
                    || prefixes
                        .iter()
                        .any(|p| s.meta.name.to_lowercase().starts_with(&p.to_lowercase()))
            })
            .map(|s| {
                Ok(ListedSecret {
                    name: s.meta.name.clone(),
                    arn: s.meta.arn.clone(),
                    tags: s.meta.tags.clone(),
                })
            })
            .collect();
        stream::iter(items).boxed()
    }

    async fn describe(&self, id: &str) -> Result<Option<Described>, ApiError> {
        let mut all = self.secrets.lock().unwrap();
        Ok(Self::find(&mut all, id).map(|s| {
            let mut meta = s.meta.clone();
            meta.resource_policy = None;
            Described {
                meta,
                versions: s
                    .versions
                    .iter()
                    .filter(|v| !v.labels.is_empty())
                    .map(|v| VersionLabels {
                        version_id: v.id.clone(),
                        labels: v.labels.clone(),
                    })
                    .collect(),
                deleted: s.deleted,
            }
        }))
    }

    async fn resource_policy(&self, id: &str) -> Result<Option<String>, ApiError> {
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        Ok(s.meta.resource_policy.clone())
    }

    async fn get_value(&self, id: &str, version_id: &str) -> Result<SecretValue, ApiError> {
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        if self.unreadable.lock().unwrap().contains(&s.meta.name) {
            return Err(ApiError::other(
                "AccessDeniedException: not authorized to perform secretsmanager:GetSecretValue",
            ));
        }
        if s.deleted.is_some() {
            return Err(ApiError::other("InvalidRequestException: marked deleted"));
        }
        s.versions
            .iter()
            .find(|v| v.id == version_id)
            .map(|v| v.value.clone())
            .ok_or_else(|| not_found(version_id))
    }

    async fn create(&self, new: NewSecret<'_>) -> Result<String, ApiError> {
        self.wrote();
        let mut all = self.secrets.lock().unwrap();
        if all.contains_key(new.name) {
            return Err(ApiError::other("ResourceExistsException"));
        }
        let arn = format!("{}-new", Self::arn_for(new.name));
        let mut s = FakeSecret {
            meta: SecretMeta {
                name: new.name.into(),
                arn: arn.clone(),
                description: new.description.map(String::from),
                kms_key_id: new.kms_key_id.map(String::from),
                tags: new.tags.clone(),
                ..Default::default()
            },
            versions: vec![],
            deleted: None,
        };
        apply_put(&mut s, new.client_request_token, new.value.clone(), vec![]);
        all.insert(new.name.into(), s);
        Ok(arn)
    }

    async fn put_value(
        &self,
        id: &str,
        value: &SecretValue,
        labels: &[String],
        token: Option<&str>,
    ) -> Result<String, ApiError> {
        self.wrote();
        let vid = token.map(String::from).unwrap_or_else(|| self.next_id());
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        if let Some(v) = s.versions.iter().find(|v| v.id == vid) {
            if v.value == *value {
                return Ok(vid);
            }
            return Err(ApiError::other("ResourceExistsException: token reused"));
        }
        apply_put(s, &vid, value.clone(), labels.to_vec());
        Ok(vid)
    }

    async fn move_label(
        &self,
        id: &str,
        label: &str,
        to: &str,
        from: Option<&str>,
    ) -> Result<(), ApiError> {
        self.wrote();
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        let holder = s
            .versions
            .iter()
            .find(|v| v.labels.iter().any(|l| l == label))
            .map(|v| v.id.clone());
        if holder.is_some() && holder.as_deref() != from {
            return Err(ApiError::other(
                "InvalidParameterException: RemoveFromVersionId",
            ));
        }
        for v in &mut s.versions {
            v.labels.retain(|l| l != label);
        }
        s.versions
            .iter_mut()
            .find(|v| v.id == to)
            .ok_or_else(|| not_found(to))?
            .labels
            .push(label.into());
        if label == AWSCURRENT {
            if let Some(old) = holder {
                for v in &mut s.versions {
                    v.labels.retain(|l| l != AWSPREVIOUS);
                }
                s.versions
                    .iter_mut()
                    .find(|v| v.id == old)
                    .unwrap()
                    .labels
                    .push(AWSPREVIOUS.into());
            }
        }
        Ok(())
    }

    async fn update_metadata(
        &self,
        id: &str,
        description: Option<&str>,
        kms_key_id: Option<&str>,
    ) -> Result<(), ApiError> {
        self.wrote();
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        if let Some(d) = description {
            s.meta.description = (!d.is_empty()).then(|| d.to_string());
        }
        if let Some(k) = kms_key_id {
            s.meta.kms_key_id = Some(k.into());
        }
        Ok(())
    }

    async fn tag(&self, id: &str, tags: &[Tag]) -> Result<(), ApiError> {
        self.wrote();
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        for t in tags {
            s.meta.tags.retain(|x| x.key != t.key);
            s.meta.tags.push(t.clone());
        }
        Ok(())
    }

    async fn untag(&self, id: &str, keys: &[String]) -> Result<(), ApiError> {
        self.wrote();
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        s.meta.tags.retain(|t| !keys.contains(&t.key));
        Ok(())
    }

    async fn put_resource_policy(&self, id: &str, policy: &str) -> Result<(), ApiError> {
        self.wrote();
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        s.meta.resource_policy = Some(policy.into());
        Ok(())
    }

    async fn delete_resource_policy(&self, id: &str) -> Result<(), ApiError> {
        self.wrote();
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        s.meta.resource_policy = None;
        Ok(())
    }

    async fn cancel_deletion(&self, id: &str) -> Result<(), ApiError> {
        self.wrote();
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        s.deleted = None;
        Ok(())
    }
}

type Objects = BTreeMap<String, (Vec<u8>, HashMap<String, String>)>;

/// S3 with `If-None-Match: *`.
#[derive(Default)]
pub struct FakeStore {
    pub objects: Mutex<Objects>,
}

impl FakeStore {
    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }

    pub fn read(&self, key: &str) -> Vec<u8> {
        self.objects.lock().unwrap()[key].0.clone()
    }

    /// Overwrite an object (what an attacker or a bug would do; the real bucket forbids it).
    pub fn overwrite(&self, key: &str, data: Vec<u8>) {
        let mut o = self.objects.lock().unwrap();
        let meta = o.get(key).map(|x| x.1.clone()).unwrap_or_default();
        o.insert(key.into(), (data, meta));
    }
}

#[async_trait]
impl ObjectStore for FakeStore {
    async fn put_new(
        &self,
        key: &str,
        body: Body,
        _content_type: &str,
        metadata: &[(&str, String)],
    ) -> Result<(), ApiError> {
        let data = match body {
            Body::Bytes(b) => b,
            Body::File(p) => std::fs::read(p).map_err(|e| ApiError::other(e.to_string()))?,
        };
        let mut o = self.objects.lock().unwrap();
        if o.contains_key(key) {
            return Err(ApiError::new(
                ErrorKind::AlreadyExists,
                "PreconditionFailed",
            ));
        }
        let meta = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        o.insert(key.into(), (data, meta));
        Ok(())
    }

    async fn get(&self, key: &str, max_len: u64) -> Result<Option<Vec<u8>>, ApiError> {
        match self.objects.lock().unwrap().get(key) {
            None => Ok(None),
            Some((d, _)) if d.len() as u64 > max_len => Err(ApiError::other(format!(
                "object is {} bytes, more than {max_len}",
                d.len()
            ))),
            Some((d, _)) => Ok(Some(d.clone())),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<HashMap<String, String>>, ApiError> {
        Ok(self.objects.lock().unwrap().get(key).map(|x| x.1.clone()))
    }

    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, ApiError> {
        let mut out: Vec<String> = self
            .objects
            .lock()
            .unwrap()
            .keys()
            .filter_map(|k| k.strip_prefix(prefix))
            .filter_map(|rest| {
                rest.split_once('/')
                    .map(|(dir, _)| format!("{prefix}{dir}/"))
            })
            .collect();
        out.dedup();
        Ok(out)
    }
}

/// KMS: data keys wrapped under one master key with the encryption context as AAD, so a wrong
/// context fails as it does in KMS.
pub struct FakeKms {
    master: Aes256Gcm,
    generated: AtomicUsize,
}

impl Default for FakeKms {
    fn default() -> Self {
        FakeKms {
            master: Aes256Gcm::new(&Aes256Gcm::generate_key(&mut OsRng)),
            generated: AtomicUsize::new(0),
        }
    }
}

impl FakeKms {
    pub fn generated(&self) -> usize {
        self.generated.load(Ordering::SeqCst)
    }

    fn ctx_aad(context: &[(&str, &str)]) -> Vec<u8> {
        let mut c: Vec<_> = context.to_vec();
        c.sort();
        format!("{c:?}").into_bytes()
    }

    /// Wrap an arbitrary key under an arbitrary context (to forge parts in tests).
    pub fn wrap(&self, key: &[u8], context: &[(&str, &str)]) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = Self::ctx_aad(context);
        let mut out = nonce.to_vec();
        out.extend(
            self.master
                .encrypt(
                    &nonce,
                    Payload {
                        msg: key,
                        aad: &aad,
                    },
                )
                .unwrap(),
        );
        out
    }
}

pub const FAKE_KEY_ARN: &str = "arn:aws:kms:us-east-1:123456789012:key/fake";

#[async_trait]
impl KeyService for FakeKms {
    async fn generate_data_key(&self, context: &[(&str, &str)]) -> Result<DataKey, ApiError> {
        self.generated.fetch_add(1, Ordering::SeqCst);
        let key = Aes256Gcm::generate_key(&mut OsRng);
        Ok(DataKey {
            wrapped: self.wrap(&key, context),
            plaintext: Zeroizing::new(key.to_vec()),
            key_id: FAKE_KEY_ARN.into(),
        })
    }

    async fn decrypt(
        &self,
        wrapped: &[u8],
        context: &[(&str, &str)],
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        if wrapped.len() < 12 {
            return Err(ApiError::new(
                ErrorKind::InvalidCiphertext,
                "InvalidCiphertextException",
            ));
        }
        let (nonce, ct) = wrapped.split_at(12);
        let aad = Self::ctx_aad(context);
        self.master
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| ApiError::new(ErrorKind::InvalidCiphertext, "InvalidCiphertextException"))
    }
}

pub struct FakeIdentity(pub &'static str);

#[async_trait]
impl Identity for FakeIdentity {
    async fn account_id(&self) -> Result<String, ApiError> {
        Ok(self.0.to_string())
    }
}
