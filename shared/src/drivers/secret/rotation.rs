//! PAO's rotation function for the secrets of aws-secret actions, on
//! Secrets Manager's contract: it is invoked with `{Step, SecretId,
//! ClientRequestToken}` for each of four steps, and Secrets Manager retries
//! a step that fails, so each is idempotent.
//!
//! - createSecret: a new value from `GetRandomPassword`, stored as the
//!   version named by the token, staged AWSPENDING (nothing new when that
//!   version holds a value already);
//! - setSecret: nothing to set (see [`Rotation::handle`]);
//! - testSecret: the pending version reads back, not empty;
//! - finishSecret: AWSCURRENT moves to the token's version (Secrets
//!   Manager moves AWSPREVIOUS to the old one) and AWSPENDING is removed.
//!
//! Before any step: rotation must be enabled on the secret, and the token's
//! version staged AWSPENDING (a version already AWSCURRENT is done).
//! The value is made with the settings of the secret's `pao:generate` tag,
//! written by the driver; the defaults when the secret has none. It is never
//! logged, and never part of an error.

use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
use aws_sdk_secretsmanager::types::Tag;
use aws_sdk_secretsmanager::Client;
use serde::{Deserialize, Serialize};

use super::generate::{self, Generate};
use crate::action::ActionError;
use crate::aws::sdk;

const CURRENT: &str = "AWSCURRENT";
const PENDING: &str = "AWSPENDING";

/// What Secrets Manager sends the function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotationEvent {
    pub step: RotationStep,
    /// The secret's ARN (or name).
    pub secret_id: String,
    /// The id of the version being made.
    pub client_request_token: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RotationStep {
    CreateSecret,
    SetSecret,
    TestSecret,
    FinishSecret,
}

pub struct Rotation {
    client: Client,
}

impl Rotation {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// One step of one rotation. Errors carry the action errors' names
    /// (Retryable, Throttled, Fatal); Secrets Manager records any error as
    /// a failed rotation and tries again later.
    #[tracing::instrument(skip(self, event), fields(secret = %event.secret_id, step = ?event.step))]
    pub async fn handle(&self, event: RotationEvent) -> Result<(), ActionError> {
        let token = event.client_request_token.as_str();
        let described = self
            .client
            .describe_secret()
            .secret_id(&event.secret_id)
            .send()
            .await
            .map_err(|err| sdk::failed("Secrets Manager", "DescribeSecret", &err))?;
        let secret = described.arn().unwrap_or(&event.secret_id).to_string();
        if described.rotation_enabled() != Some(true) {
            return Err(ActionError::Fatal(format!(
                "secret {secret} is not enabled for rotation"
            )));
        }
        let stages = stages(&described, token).ok_or_else(|| {
            ActionError::Fatal(format!(
                "version {token} of secret {secret} has no stage for rotation"
            ))
        })?;
        if stages.iter().any(|stage| stage == CURRENT) {
            // Done already: a step retried after finishSecret succeeded.
            if event.step == RotationStep::FinishSecret && stages.iter().any(|s| s == PENDING) {
                self.unstage_pending(&secret, token).await?;
            }
            tracing::info!("the version is AWSCURRENT already");
            return Ok(());
        }
        if !stages.iter().any(|stage| stage == PENDING) {
            return Err(ActionError::Fatal(format!(
                "version {token} of secret {secret} is not staged AWSPENDING"
            )));
        }
        match event.step {
            RotationStep::CreateSecret => self.create(&described, &secret, token).await,
            // An application key has no other copy to update: the
            // application reads it from Secrets Manager. (A database
            // password's rotation would set it in the database here.)
            RotationStep::SetSecret => Ok(()),
            RotationStep::TestSecret => self.test(&secret, token).await,
            RotationStep::FinishSecret => self.finish(&described, &secret, token).await,
        }?;
        tracing::info!("done");
        Ok(())
    }

    async fn create(
        &self,
        described: &DescribeSecretOutput,
        secret: &str,
        token: &str,
    ) -> Result<(), ActionError> {
        let pending = self
            .client
            .get_secret_value()
            .secret_id(secret)
            .version_id(token)
            .version_stage(PENDING)
            .send()
            .await;
        match pending {
            // Made by an earlier try of this step.
            Ok(_) => return Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) => {}
            Err(err) => return Err(sdk::failed("Secrets Manager", "GetSecretValue", &err)),
        }
        let settings = match tag(described, generate::TAG) {
            Some(tag) => Generate::from_tag(tag)
                .map_err(|reason| ActionError::Fatal(format!("secret {secret}: {reason}")))?,
            None => Generate::default(),
        };
        let value = settings.password(&self.client).await?;
        self.client
            .put_secret_value()
            .secret_id(secret)
            .client_request_token(token)
            .secret_string(value.expose())
            .version_stages(PENDING)
            .send()
            .await
            .map_err(|err| sdk::failed("Secrets Manager", "PutSecretValue", &err))?;
        Ok(())
    }

    async fn test(&self, secret: &str, token: &str) -> Result<(), ActionError> {
        let pending = self
            .client
            .get_secret_value()
            .secret_id(secret)
            .version_id(token)
            .version_stage(PENDING)
            .send()
            .await
            .map_err(|err| sdk::failed("Secrets Manager", "GetSecretValue", &err))?;
        if pending.secret_string().is_none_or(str::is_empty) {
            return Err(ActionError::Fatal(format!(
                "version {token} of secret {secret} holds no value"
            )));
        }
        Ok(())
    }

    async fn finish(
        &self,
        described: &DescribeSecretOutput,
        secret: &str,
        token: &str,
    ) -> Result<(), ActionError> {
        let current = described
            .version_ids_to_stages()
            .into_iter()
            .flatten()
            .find(|(_, stages)| stages.iter().any(|stage| stage == CURRENT))
            .map(|(version, _)| version.clone());
        self.client
            .update_secret_version_stage()
            .secret_id(secret)
            .version_stage(CURRENT)
            .move_to_version_id(token)
            .set_remove_from_version_id(current)
            .send()
            .await
            .map_err(|err| sdk::failed("Secrets Manager", "UpdateSecretVersionStage", &err))?;
        self.unstage_pending(secret, token).await
    }

    /// Ends the rotation with no version AWSPENDING. AWS also accepts
    /// AWSPENDING left on the current version; moto takes that for a
    /// rotation still under way, and refuses the next one.
    async fn unstage_pending(&self, secret: &str, token: &str) -> Result<(), ActionError> {
        self.client
            .update_secret_version_stage()
            .secret_id(secret)
            .version_stage(PENDING)
            .remove_from_version_id(token)
            .send()
            .await
            .map_err(|err| sdk::failed("Secrets Manager", "UpdateSecretVersionStage", &err))?;
        Ok(())
    }
}

fn stages<'a>(described: &'a DescribeSecretOutput, token: &str) -> Option<&'a Vec<String>> {
    described.version_ids_to_stages()?.get(token)
}

fn tag<'a>(described: &'a DescribeSecretOutput, key: &str) -> Option<&'a str> {
    described
        .tags()
        .iter()
        .find(|tag| tag.key() == Some(key))
        .and_then(Tag::value)
}

#[cfg(test)]
#[path = "rotation_tests.rs"]
mod tests;
