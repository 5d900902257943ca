//! The Secrets Manager adapter: where password fields and secret action
//! outputs go.

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::Client;
use sha2::{Digest, Sha256};

use super::unavailable;
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
        let token = hex::encode(&digest[..24]);
        let description = "A password field of a PAO request";
        if let Some(arn) = self.create(name, value, Some(token), description).await? {
            return Ok(arn);
        }
        let described = self
            .client
            .describe_secret()
            .secret_id(name)
            .send()
            .await
            .map_err(|err| unavailable("Secrets Manager", "DescribeSecret", &err))?;
        Ok(described.arn().unwrap_or_default().to_string())
    }

    async fn replace(&self, name: &str, value: &str) -> Result<String, StoreError> {
        let description = "A secret output of a PAO request's action";
        if let Some(arn) = self.create(name, value, None, description).await? {
            return Ok(arn);
        }
        // A compensated action's secret is scheduled for deletion; its
        // re-run takes it back. Restoring a live secret changes nothing.
        self.client
            .restore_secret()
            .secret_id(name)
            .send()
            .await
            .map_err(|err| unavailable("Secrets Manager", "RestoreSecret", &err))?;
        let put = self
            .client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .map_err(|err| unavailable("Secrets Manager", "PutSecretValue", &err))?;
        Ok(put.arn().unwrap_or_default().to_string())
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let deleted = self
            .client
            .delete_secret()
            .secret_id(name)
            .recovery_window_in_days(RECOVERY_WINDOW_DAYS)
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(err)
                if matches!(
                    err.as_service_error().and_then(|e| e.code()),
                    Some("ResourceNotFoundException" | "InvalidRequestException")
                ) =>
            {
                Ok(()) // gone, or scheduled for deletion already
            }
            Err(err) => Err(unavailable("Secrets Manager", "DeleteSecret", &err)),
        }
    }
}

/// How long a deleted secret can still be restored.
const RECOVERY_WINDOW_DAYS: i64 = 7;

impl Secrets {
    /// Creates the secret and answers its ARN, or `None` when a secret of
    /// that name exists already. Errors are logged without the value.
    async fn create(
        &self,
        name: &str,
        value: &str,
        token: Option<String>,
        description: &str,
    ) -> Result<Option<String>, StoreError> {
        let created = self
            .client
            .create_secret()
            .name(name)
            .secret_string(value)
            .set_client_request_token(token)
            .description(description)
            .send()
            .await;
        match created {
            Ok(output) => Ok(Some(output.arn().unwrap_or_default().to_string())),
            // Exists, or is scheduled for deletion (which AWS reports as an
            // invalid request).
            Err(err)
                if matches!(
                    err.as_service_error().and_then(|e| e.code()),
                    Some("ResourceExistsException" | "InvalidRequestException")
                ) =>
            {
                Ok(None)
            }
            Err(err) => Err(unavailable("Secrets Manager", "CreateSecret", &err)),
        }
    }
}
