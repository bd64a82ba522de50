//! The snapshot bucket in memory, with `If-None-Match: *`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::{ApiError, Body, ErrorKind, ObjectStore, VersionedObject};

/// An object as the fake bucket keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredObject {
    /// The content.
    pub data: Vec<u8>,
    /// The user metadata.
    pub metadata: HashMap<String, String>,
    /// Its version id (a new one at every write, as on a versioned bucket).
    pub version_id: String,
}

/// S3 with `If-None-Match: *`.
#[derive(Default)]
pub struct FakeStore {
    /// The objects by key: content and user metadata.
    pub objects: Mutex<BTreeMap<String, StoredObject>>,
}

fn new_version() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl FakeStore {
    /// Every key.
    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }

    /// An object's content (panics when missing).
    pub fn read(&self, key: &str) -> Vec<u8> {
        self.objects.lock().unwrap()[key].data.clone()
    }

    /// Overwrite an object (what an attacker or a bug would do; the real bucket forbids it).
    pub fn overwrite(&self, key: &str, data: Vec<u8>) {
        let mut o = self.objects.lock().unwrap();
        let metadata = o.get(key).map(|x| x.metadata.clone()).unwrap_or_default();
        o.insert(
            key.into(),
            StoredObject {
                data,
                metadata,
                version_id: new_version(),
            },
        );
    }

    /// Remove an object (a delete marker on a versioned bucket hides it the same way).
    pub fn remove(&self, key: &str) {
        self.objects.lock().unwrap().remove(key);
    }

    /// Copy an object to another key (what someone with write access to the bucket can do).
    pub fn copy(&self, from: &str, to: &str) {
        let mut o = self.objects.lock().unwrap();
        let mut copied = o[from].clone();
        copied.version_id = new_version();
        o.insert(to.into(), copied);
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
    ) -> Result<Option<String>, ApiError> {
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
        let metadata = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let version_id = new_version();
        o.insert(
            key.into(),
            StoredObject {
                data,
                metadata,
                version_id: version_id.clone(),
            },
        );
        Ok(Some(version_id))
    }

    async fn get_versioned(
        &self,
        key: &str,
        max_len: u64,
    ) -> Result<Option<VersionedObject>, ApiError> {
        match self.objects.lock().unwrap().get(key) {
            None => Ok(None),
            Some(o) if o.data.len() as u64 > max_len => Err(ApiError::other(format!(
                "object is {} bytes, more than {max_len}",
                o.data.len()
            ))),
            Some(o) => Ok(Some(VersionedObject {
                data: o.data.clone(),
                version_id: Some(o.version_id.clone()),
            })),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<HashMap<String, String>>, ApiError> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .map(|x| x.metadata.clone()))
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
