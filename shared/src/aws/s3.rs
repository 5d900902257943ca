//! The S3 adapter: the catalog bucket seen through the domain's traits.

use async_trait::async_trait;
use aws_sdk_s3::Client;

use crate::catalog::index::{CatalogSource, SourceObject, StoreError};
use crate::health::{Probe, ProbeFailure};

const SERVICE: &str = "S3";

/// Checks that a bucket exists and that we may read it.
pub struct BucketProbe {
    client: Client,
    bucket: String,
}

impl BucketProbe {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }
}

#[async_trait]
impl Probe for BucketProbe {
    fn dependency(&self) -> &'static str {
        "s3"
    }

    async fn check(&self) -> Result<(), ProbeFailure> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|err| super::probe_failure(self.dependency(), &err))
    }
}

/// The catalog bucket as the catalog's source of files.
pub struct CatalogBucket {
    client: Client,
    bucket: String,
}

impl CatalogBucket {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }
}

#[async_trait]
impl CatalogSource for CatalogBucket {
    async fn fetch(&self, key: &str, max_bytes: usize) -> Result<Option<SourceObject>, StoreError> {
        let response = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(response) => response,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None)
            }
            Err(err) => return Err(super::unavailable(SERVICE, "GetObject", &err)),
        };
        let modified = response
            .last_modified()
            .and_then(|time| time.to_millis().ok())
            .unwrap_or_default();
        // Read no more than one byte past the limit: the validator only needs
        // to know the file is too large, and a huge object must not fill memory.
        let mut body = response.body;
        let mut bytes = Vec::new();
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|err| StoreError::Unavailable(format!("S3 GetObject body: {err}")))?
        {
            let room = (max_bytes + 1).saturating_sub(bytes.len());
            bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if bytes.len() > max_bytes {
                break;
            }
        }
        Ok(Some(SourceObject { bytes, modified }))
    }

    async fn keys(&self) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| super::unavailable(SERVICE, "ListObjectsV2", &err))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        Ok(keys)
    }
}
