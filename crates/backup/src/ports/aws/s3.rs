//! The snapshot bucket over the SDK.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;

use super::api_err;
use crate::ports::{ApiError, Body, ObjectStore, VersionedObject};

/// The snapshot bucket over the SDK. Every object is written with SSE-KMS and
/// `If-None-Match: *`.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    sse_kms_key_id: Option<String>,
}

impl S3Store {
    /// The bucket, written with SSE-KMS under `sse_kms_key_id` (`None`: the bucket's default).
    pub fn new(client: aws_sdk_s3::Client, bucket: String, sse_kms_key_id: Option<String>) -> Self {
        S3Store {
            client,
            bucket,
            sse_kms_key_id,
        }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put_new(
        &self,
        key: &str,
        body: Body,
        content_type: &str,
        metadata: &[(&str, String)],
    ) -> Result<Option<String>, ApiError> {
        let body = match body {
            Body::Bytes(b) => ByteStream::from(b),
            Body::File(path) => ByteStream::from_path(&path)
                .await
                .map_err(|e| ApiError::other(format!("reading {}: {e}", path.display())))?,
        };
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body)
            .content_type(content_type)
            .if_none_match("*")
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .set_ssekms_key_id(self.sse_kms_key_id.clone())
            .bucket_key_enabled(true);
        for (k, v) in metadata {
            req = req.metadata(*k, v);
        }
        let out = req.send().await.map_err(|e| api_err("PutObject", e))?;
        Ok(out.version_id)
    }

    async fn get_versioned(
        &self,
        key: &str,
        max_len: u64,
    ) -> Result<Option<VersionedObject>, ApiError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) => {
                let e = api_err("GetObject", e);
                return if e.is_not_found() { Ok(None) } else { Err(e) };
            }
        };
        let len = out.content_length().unwrap_or(0).max(0) as u64;
        let version_id = out.version_id.clone();
        if len > max_len {
            return Err(ApiError::other(format!(
                "GetObject: {key} is {len} bytes, more than the {max_len} expected"
            )));
        }
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| ApiError::other(format!("GetObject {key}: reading the body: {e}")))?;
        Ok(Some(VersionedObject {
            data: bytes.to_vec(),
            version_id,
        }))
    }

    async fn head(&self, key: &str) -> Result<Option<HashMap<String, String>>, ApiError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => Ok(Some(o.metadata().cloned().unwrap_or_default())),
            Err(e) => {
                let e = api_err("HeadObject", e);
                if e.is_not_found() {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, ApiError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        let mut out = vec![];
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api_err("ListObjectsV2", e))?;
            out.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(String::from)),
            );
        }
        out.sort();
        Ok(out)
    }
}
