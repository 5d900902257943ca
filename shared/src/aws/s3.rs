//! The S3 adapter: the catalog bucket seen through the domain's traits.

use async_trait::async_trait;
use aws_sdk_s3::Client;

use crate::health::{Probe, ProbeFailure};

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
