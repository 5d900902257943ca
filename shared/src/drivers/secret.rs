//! The aws-secret action: a Secrets Manager secret whose value is made by
//! Secrets Manager (`generate`) or copied from one of the request's own
//! password fields (`value`), tagged, optionally under a KMS key, and
//! optionally rotated by PAO's rotation function (`rotation`).
//!
//! The value never passes through the execution, the outputs, the logs or
//! an error: it goes from Secrets Manager's answer straight into
//! `CreateSecret`, and only the ARN and the name come back. Compensation
//! schedules exactly the ledger's secret for deletion, restorable for
//! [`RECOVERY_WINDOW_DAYS`] days; it never deletes without recovery.

pub mod generate;
pub mod rotation;

use std::ops::RangeInclusive;

use async_trait::async_trait;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
use aws_sdk_secretsmanager::types::{RotationRulesType, Tag};
use aws_sdk_secretsmanager::Client;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::action::ActionError;
use crate::actions::driver::{
    Driver, Level, Outputs, Progress, Step, Undone, ACTION_TAG, REQUEST_TAG,
};
use crate::aws::sdk;
use crate::requests::fulfillment::Resource;
use generate::{Generate, SecretValue};

/// The ledger's kind of a secret; its id is the ARN, its `name` detail the name.
pub const KIND: &str = "secretsmanager:secret";

/// The setting naming PAO's rotation function (the `SecretRotationFunction`).
pub const ROTATION_FUNCTION: &str = "PAO_ROTATION_FUNCTION_ARN";

/// How long a secret that compensation deleted can still be restored.
pub const RECOVERY_WINDOW_DAYS: i64 = 7;

const DEFAULT_ROTATION_DAYS: i64 = 30;
const ROTATION_DAYS: RangeInclusive<i64> = 1..=365;

pub struct SecretDriver {
    client: Client,
    /// The ARN of PAO's rotation function, which Secrets Manager invokes.
    rotation_function: String,
}

impl SecretDriver {
    pub fn new(client: Client, rotation_function: String) -> Self {
        Self {
            client,
            rotation_function,
        }
    }
}

/// The config as the catalog schema spells it, once rendered.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    generate: Option<Value>,
    #[serde(default)]
    rotation: Option<Value>,
    #[serde(default)]
    kms_key_id: Option<String>,
    #[serde(default)]
    tags: Option<Value>,
}

/// What the action makes, checked before anything is called.
#[derive(Debug)]
struct Plan {
    name: String,
    description: Option<String>,
    source: Source,
    /// Days between rotations, when rotation is enabled.
    rotation_days: Option<i64>,
    kms_key_id: Option<String>,
    tags: Vec<(String, String)>,
}

/// Where the value comes from.
#[derive(Debug)]
enum Source {
    Generate(Generate),
    /// A password field of the request, held in Secrets Manager since the
    /// request was submitted: `arn` is that secret's.
    Field {
        field: String,
        arn: String,
    },
}

impl Plan {
    fn read(step: &Step<'_>) -> Result<Self, ActionError> {
        let config: Config = step.config()?;
        let fatal = |message: String| ActionError::Fatal(format!("config.{message}"));
        check_name(&config.name).map_err(fatal)?;
        if let Some(description) = &config.description {
            if description.chars().count() > 2048 {
                return Err(fatal(
                    "description: longer than 2048 characters".to_string(),
                ));
            }
        }
        let generate = match &config.generate {
            Some(generate) => Generate::from_config(generate).map_err(fatal)?,
            None => None,
        };
        let value = match &config.value {
            None | Some(Value::Null) => None,
            Some(Value::String(arn)) => Some(arn.trim().to_string()),
            Some(_) => return Err(fatal("value: must be a password field".to_string())),
        };
        let source = match (generate, value) {
            (Some(_), Some(_)) => {
                return Err(fatal(
                    "value, config.generate: give one of them, not both".to_string(),
                ))
            }
            (None, None) => {
                return Err(fatal(
                    "value, config.generate: give one of them (value: a password field)"
                        .to_string(),
                ))
            }
            (Some(generate), None) => Source::Generate(generate),
            (None, Some(arn)) => Source::Field {
                field: password_field(step, &arn)?,
                arn,
            },
        };
        let rotation_days = rotation(config.rotation.as_ref()).map_err(fatal)?;
        let item_tags = match config.tags {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(tags)) => tags,
            Some(_) => return Err(fatal("tags: must be a mapping".to_string())),
        };
        let mut tags = step.tags(&item_tags);
        if rotation_days.is_some() {
            // The rotation function makes each new value as the first was
            // made; a copied password field rotates with the defaults.
            let settings = match &source {
                Source::Generate(generate) => generate.clone(),
                Source::Field { .. } => Generate::default(),
            };
            tags.push((generate::TAG.to_string(), settings.to_tag().map_err(fatal)?));
        }
        let kms_key_id = config
            .kms_key_id
            .map(|key| key.trim().to_string())
            .filter(|key| !key.is_empty());
        Ok(Self {
            name: config.name,
            description: config.description,
            source,
            rotation_days,
            kms_key_id,
            tags,
        })
    }
}

/// A secret name once rendered: letters, digits and `/_+=.@-`, 1 to 512.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > 512 {
        return Err("name: must be 1 to 512 characters".to_string());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/_+=.@-".contains(*c)))
    {
        return Err(format!(
            "name: `{name}` holds `{bad}`; a secret name has letters, digits and /_+=.@- only"
        ));
    }
    Ok(())
}

/// The password field whose secret `arn` is. PAO never copies a literal
/// value: a `value` that is not the ARN of one of the request's own
/// password fields is refused, and not quoted (it might be a secret).
fn password_field(step: &Step<'_>, arn: &str) -> Result<String, ActionError> {
    let request = step.request;
    request
        .secret_fields
        .iter()
        .find(|field| request.fields.get(*field).and_then(Value::as_str) == Some(arn))
        .cloned()
        .ok_or_else(|| {
            ActionError::Fatal(
                "config.value: not one of the request's password fields; PAO copies a secret only from a password field ({{fields.<password field>}}), never a literal value"
                    .to_string(),
            )
        })
}

/// The days between rotations, or `None` when rotation is off.
fn rotation(value: Option<&Value>) -> Result<Option<i64>, String> {
    let settings = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(settings)) => settings,
        Some(_) => return Err("rotation: must be a mapping".to_string()),
    };
    if let Some(key) = settings
        .keys()
        .find(|key| !matches!(key.as_str(), "enabled" | "schedule_days"))
    {
        return Err(format!(
            "rotation.{key}: not a setting (enabled, schedule_days)"
        ));
    }
    let enabled = match settings.get("enabled") {
        Some(enabled) => boolean(enabled, "rotation.enabled")?,
        None => false,
    };
    if !enabled {
        return Ok(None);
    }
    let days = match settings.get("schedule_days") {
        None | Some(Value::Null) => DEFAULT_ROTATION_DAYS,
        Some(days) => integer(days, "rotation.schedule_days")?,
    };
    if !ROTATION_DAYS.contains(&days) {
        return Err(format!(
            "rotation.schedule_days: {days} is not between {} and {}",
            ROTATION_DAYS.start(),
            ROTATION_DAYS.end()
        ));
    }
    Ok(Some(days))
}

/// A whole number, or a text holding one (what a template with a filter
/// renders to).
fn integer(value: &Value, at: &str) -> Result<i64, String> {
    match value {
        Value::Number(number) => number
            .as_i64()
            .ok_or_else(|| format!("{at}: {number} is not a whole number")),
        Value::String(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("{at}: `{text}` is not a whole number")),
        _ => Err(format!("{at}: must be a whole number")),
    }
}

/// A boolean, or the text `true` or `false`.
fn boolean(value: &Value, at: &str) -> Result<bool, String> {
    match value {
        Value::Bool(flag) => Ok(*flag),
        Value::String(text) => match text.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("{at}: `{text}` is not true or false")),
        },
        _ => Err(format!("{at}: must be true or false")),
    }
}

/// The `ClientRequestToken` of the action's `CreateSecret`, the same on
/// every attempt: a UUID (version 8) of a hash of the request and action
/// ids, 36 characters, as Secrets Manager wants 32 to 64.
pub fn client_token(request_id: &str, action_id: &str) -> String {
    let digest = Sha256::digest(format!("pao-secret\n{request_id}\n{action_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::new_v8(bytes).to_string()
}

/// A secret as PAO knows it: never its value.
#[derive(Debug, Clone, PartialEq)]
struct Secret {
    arn: String,
    name: String,
    /// The rotation function and days, when rotation is enabled.
    rotation: Option<(String, i64)>,
}

impl Secret {
    fn described(described: &DescribeSecretOutput, or_name: &str) -> Result<Self, ActionError> {
        let arn = described.arn().ok_or_else(|| {
            ActionError::Retryable("Secrets Manager DescribeSecret answered without an ARN".into())
        })?;
        let rotation = (described.rotation_enabled() == Some(true)).then(|| {
            (
                described
                    .rotation_lambda_arn()
                    .unwrap_or_default()
                    .to_string(),
                described
                    .rotation_rules()
                    .and_then(RotationRulesType::automatically_after_days)
                    .unwrap_or_default(),
            )
        });
        Ok(Self {
            arn: arn.to_string(),
            name: described.name().unwrap_or(or_name).to_string(),
            rotation,
        })
    }

    fn outputs(&self) -> Map<String, Value> {
        let mut outputs = Map::new();
        outputs.insert("secret_arn".to_string(), Value::String(self.arn.clone()));
        outputs.insert("secret_name".to_string(), Value::String(self.name.clone()));
        outputs
    }
}

/// Whether the secret carries this request's and this action's tags.
fn made_by(described: &DescribeSecretOutput, step: &Step<'_>) -> bool {
    let tag = |key: &str| {
        described
            .tags()
            .iter()
            .find(|tag| tag.key() == Some(key))
            .and_then(Tag::value)
    };
    tag(REQUEST_TAG) == Some(step.request.id.as_str())
        && tag(ACTION_TAG) == Some(step.action.id.as_str())
}

fn not_ours(name: &str) -> ActionError {
    ActionError::Fatal(format!(
        "a secret named {name} exists and was not made by this request"
    ))
}

#[async_trait]
impl Driver for SecretDriver {
    /// Creates the secret, or takes up the one an earlier attempt made (by
    /// the ledger, or by its name and tags), then sets up its rotation.
    /// Every call of it is done when it returns: nothing to poll.
    async fn start(&self, step: &Step<'_>) -> Result<Progress, ActionError> {
        let plan = Plan::read(step)?;
        let recorded = match step.recorded(KIND).last() {
            Some(resource) => self.take_back(step, resource).await?,
            None => None,
        };
        let secret = match recorded {
            Some(secret) => secret,
            None => self.create(step, &plan).await?,
        };
        if let Some(days) = plan.rotation_days {
            self.rotate(step, &secret, days).await?;
        }
        Ok(Progress::Done(Outputs::new(secret.outputs())))
    }

    async fn compensate(&self, step: &Step<'_>) -> Result<Undone, ActionError> {
        let secrets: Vec<&Resource> = step.recorded(KIND).collect();
        if secrets.is_empty() {
            return Ok(Undone::Kept("the action created no secret".to_string()));
        }
        let names = secrets
            .iter()
            .map(|secret| secret.detail("name").unwrap_or(&secret.id))
            .collect::<Vec<_>>()
            .join(", ");
        if step.retain() {
            return Ok(Undone::Kept(format!(
                "secret {names} kept, as the item's rollback retains it"
            )));
        }
        // A rolled-back request's secret was in use: it stays restorable.
        // A failed fulfillment's never reached anyone, and a recovery window
        // would only keep its name from being used again.
        let recoverable = step.rolling_back_completed();
        for secret in secrets.iter().rev() {
            self.delete(&secret.id, recoverable).await?;
        }
        Ok(Undone::Done(if recoverable {
            format!(
                "secret {names} scheduled for deletion (restorable for {RECOVERY_WINDOW_DAYS} days)"
            )
        } else {
            format!("secret {names} deleted (the request never completed)")
        }))
    }
}

impl SecretDriver {
    /// The secret in the ledger, restored if an earlier rollback deleted
    /// it; `None` when it is gone for good, to be created again.
    async fn take_back(
        &self,
        step: &Step<'_>,
        resource: &Resource,
    ) -> Result<Option<Secret>, ActionError> {
        let name = resource.detail("name").unwrap_or(&resource.id);
        let described = match self.describe(&resource.id).await {
            Ok(described) => described,
            Err(err) if is_not_found(&err) => {
                let message = format!(
                    "secret {name}, made by an earlier attempt, is gone: creating it again"
                );
                step.journal.log(Level::Warn, &message).await?;
                return Ok(None);
            }
            Err(err) => return Err(sdk::failed("Secrets Manager", "DescribeSecret", &err)),
        };
        self.restore_if_deleted(step, &described, name).await?;
        Secret::described(&described, name).map(Some)
    }

    /// Creates the secret with its value; when a secret of that name
    /// exists, takes it up if this request's action made it.
    async fn create(&self, step: &Step<'_>, plan: &Plan) -> Result<Secret, ActionError> {
        let tags = plan
            .tags
            .iter()
            .map(|(key, text)| Tag::builder().key(key).value(text).build())
            .collect();
        let value = self.value(&plan.source).await?;
        let created = self
            .client
            .create_secret()
            .name(&plan.name)
            .client_request_token(client_token(&step.request.id, &step.action.id))
            .secret_string(value.expose())
            .set_description(plan.description.clone())
            .set_kms_key_id(plan.kms_key_id.clone())
            .set_tags(Some(tags))
            .send()
            .await;
        // Not held a moment longer than the call that stores it.
        drop(value);
        match created {
            Ok(created) => {
                let arn = created.arn().ok_or_else(|| {
                    ActionError::Retryable(
                        "Secrets Manager CreateSecret answered without an ARN".to_string(),
                    )
                })?;
                step.journal
                    .record(Resource::new(KIND, arn).with("name", &plan.name))
                    .await?;
                let how = match &plan.source {
                    Source::Generate(_) => "a generated value".to_string(),
                    Source::Field { field, .. } => format!("the password field {field}"),
                };
                let message = format!("created secret {} with {how}", plan.name);
                step.journal.log(Level::Info, &message).await?;
                Ok(Secret {
                    arn: arn.to_string(),
                    name: plan.name.clone(),
                    rotation: None,
                })
            }
            // Exists; or is scheduled for deletion, which AWS answers as
            // an invalid request.
            Err(err)
                if err.as_service_error().is_some_and(|e| {
                    e.is_resource_exists_exception() || e.is_invalid_request_exception()
                }) =>
            {
                match self.adopt(step, &plan.name).await? {
                    Some(secret) => Ok(secret),
                    None => Err(sdk::failed("Secrets Manager", "CreateSecret", &err)),
                }
            }
            Err(err) => Err(sdk::failed("Secrets Manager", "CreateSecret", &err)),
        }
    }

    /// The secret named `name`, when this request's action made it (a
    /// start that died before it recorded the secret); `None` when there
    /// is no such secret after all.
    async fn adopt(&self, step: &Step<'_>, name: &str) -> Result<Option<Secret>, ActionError> {
        let described = match self.describe(name).await {
            Ok(described) => described,
            Err(err) if is_not_found(&err) => return Ok(None),
            // The policy lets PAO describe only the secrets PAO tagged.
            Err(err) if err.code() == Some("AccessDeniedException") => return Err(not_ours(name)),
            Err(err) => return Err(sdk::failed("Secrets Manager", "DescribeSecret", &err)),
        };
        if !made_by(&described, step) {
            return Err(not_ours(name));
        }
        let secret = Secret::described(&described, name)?;
        step.journal
            .record(Resource::new(KIND, &secret.arn).with("name", name))
            .await?;
        let message = format!("secret {name} was made by an earlier attempt: taken up");
        step.journal.log(Level::Info, &message).await?;
        self.restore_if_deleted(step, &described, name).await?;
        Ok(Some(secret))
    }

    /// Restores a secret of ours that an earlier rollback scheduled for
    /// deletion; its value and settings come back with it.
    async fn restore_if_deleted(
        &self,
        step: &Step<'_>,
        described: &DescribeSecretOutput,
        name: &str,
    ) -> Result<(), ActionError> {
        if described.deleted_date().is_none() {
            return Ok(());
        }
        self.client
            .restore_secret()
            .secret_id(described.arn().unwrap_or(name))
            .send()
            .await
            .map_err(|err| sdk::failed("Secrets Manager", "RestoreSecret", &err))?;
        let message =
            format!("restored secret {name}, which an earlier rollback had scheduled for deletion");
        step.journal.log(Level::Info, &message).await
    }

    /// The value to store: made by Secrets Manager, or read from the
    /// password field's own secret.
    async fn value(&self, source: &Source) -> Result<SecretValue, ActionError> {
        match source {
            Source::Generate(generate) => generate.password(&self.client).await,
            Source::Field { field, arn } => {
                let answer = self
                    .client
                    .get_secret_value()
                    .secret_id(arn)
                    .send()
                    .await
                    .map_err(|err| {
                        sdk::failed("Secrets Manager", "GetSecretValue", &err)
                            .map_message(|message| format!("password field {field}: {message}"))
                    })?;
                match answer.secret_string() {
                    Some(value) if !value.is_empty() => Ok(SecretValue::new(value.to_string())),
                    _ => Err(ActionError::Fatal(format!(
                        "password field {field}: its secret holds no text"
                    ))),
                }
            }
        }
    }

    /// Turns rotation on with PAO's rotation function, unless it is on as
    /// asked already. Not rotated now: Secrets Manager tests the function
    /// (its testSecret step) and rotates after `days`.
    async fn rotate(&self, step: &Step<'_>, secret: &Secret, days: i64) -> Result<(), ActionError> {
        if secret
            .rotation
            .as_ref()
            .is_some_and(|(function, every)| *function == self.rotation_function && *every == days)
        {
            return Ok(());
        }
        self.client
            .rotate_secret()
            .secret_id(&secret.arn)
            .rotation_lambda_arn(&self.rotation_function)
            .rotation_rules(
                RotationRulesType::builder()
                    .automatically_after_days(days)
                    .build(),
            )
            .rotate_immediately(false)
            .send()
            .await
            .map_err(|err| sdk::failed("Secrets Manager", "RotateSecret", &err))?;
        let message = format!("secret {} rotates every {days} days", secret.name);
        step.journal.log(Level::Info, &message).await
    }

    async fn describe(
        &self,
        id: &str,
    ) -> Result<
        DescribeSecretOutput,
        SdkError<
            aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretError,
            HttpResponse,
        >,
    > {
        self.client.describe_secret().secret_id(id).send().await
    }

    /// Deletes the secret, `recoverable` within a recovery window or at
    /// once; one gone or scheduled already is done.
    async fn delete(&self, arn: &str, recoverable: bool) -> Result<(), ActionError> {
        let delete = self.client.delete_secret().secret_id(arn);
        let deleted = if recoverable {
            delete.recovery_window_in_days(RECOVERY_WINDOW_DAYS)
        } else {
            delete.force_delete_without_recovery(true)
        }
        .send()
        .await;
        let err = match deleted {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        match err.as_service_error() {
            Some(e) if e.is_resource_not_found_exception() => Ok(()),
            // Scheduled already (AWS refuses to schedule twice), or refused
            // for a reason the operator must read.
            Some(e) if e.is_invalid_request_exception() => match self.describe(arn).await {
                Ok(described) if described.deleted_date().is_some() => Ok(()),
                Err(gone) if is_not_found(&gone) => Ok(()),
                _ => Err(sdk::failed("Secrets Manager", "DeleteSecret", &err)),
            },
            _ => Err(sdk::failed("Secrets Manager", "DeleteSecret", &err)),
        }
    }
}

fn is_not_found(
    err: &SdkError<
        aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretError,
        HttpResponse,
    >,
) -> bool {
    err.as_service_error()
        .is_some_and(|e| e.is_resource_not_found_exception())
}

#[cfg(test)]
#[path = "secret_tests.rs"]
mod tests;
