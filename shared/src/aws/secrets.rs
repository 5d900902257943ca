//! The Secrets Manager adapter: where password fields go.

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_secretsmanager::Client;
use sha2::{Digest, Sha256};

use crate::catalog::index::StoreError;
use crate::requests::SecretStore;

pub struct Secrets {
    client: Client,
}

impl Secrets {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl SecretStore for Secrets {
    async fn put(&self, name: &str, value: &str) -> Result<String, StoreError> {
        // The same name gives the same client token, so a retried submission
        // is the same secret version rather than an error or a new version.
        let digest = Sha256::digest(name.as_bytes());
        let token: String = digest.iter().take(24).map(|b| format!("{b:02x}")).collect();
        let created = self
            .client
            .create_secret()
            .name(name)
            .secret_string(value)
            .client_request_token(token)
            .description("A password field of a PAO request")
            .send()
            .await;
        match created {
            Ok(output) => Ok(output.arn().unwrap_or_default().to_string()),
            Err(err)
                if err.as_service_error().and_then(|e| e.code())
                    == Some("ResourceExistsException") =>
            {
                let described = self
                    .client
                    .describe_secret()
                    .secret_id(name)
                    .send()
                    .await
                    .map_err(|err| {
                        tracing::warn!(error = %DisplayErrorContext(&err), "DescribeSecret failed");
                        StoreError::Unavailable("Secrets Manager DescribeSecret failed".to_string())
                    })?;
                Ok(described.arn().unwrap_or_default().to_string())
            }
            // The error is logged without the request, which holds the value.
            Err(err) => {
                tracing::warn!(error = %DisplayErrorContext(&err), "CreateSecret failed");
                Err(StoreError::Unavailable(
                    "Secrets Manager CreateSecret failed".to_string(),
                ))
            }
        }
    }
}
