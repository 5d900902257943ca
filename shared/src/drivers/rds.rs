//! The `aws-rds-postgres` action: an RDS for PostgreSQL instance with its
//! DB subnet group and DB parameter group, made through `aws-sdk-rds`.
//!
//! The master password is generated and kept by RDS in Secrets Manager
//! (`ManageMasterUserPassword`): it never passes through PAO, which only
//! hands on the secret's ARN. Every name comes from the request and the
//! action (`Step::name`), so a start that died halfway finds what it made
//! and finishes it; each resource is in the ledger before the call that
//! creates it. Compensation deletes exactly the ledger's resources: the
//! instance first (with a final snapshot, which PAO keeps), then its
//! parameter group and subnet group once the instance is gone.
//!
//! This module owns the RDS calls and nothing else: no other service, no
//! resource found by tag alone.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_rds::config::http::HttpResponse;
use aws_sdk_rds::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_rds::types::{ApplyMethod, DbInstance, Parameter, Tag};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::action::ActionError;
use crate::actions::driver::{Driver, Level, Outputs, Progress, Step, Undone, REQUEST_TAG};
use crate::aws::sdk;
use crate::catalog::item::ActionType;
use crate::catalog::validate::rendered_config_problems;
use crate::requests::fulfillment::Resource;

/// Ledger kinds of what this action makes.
pub const INSTANCE: &str = "rds:db-instance";
pub const SUBNET_GROUP: &str = "rds:db-subnet-group";
pub const PARAMETER_GROUP: &str = "rds:db-parameter-group";
/// A final snapshot taken on compensation: recorded, never deleted by PAO.
pub const SNAPSHOT: &str = "rds:snapshot";

/// An instance takes minutes to create or delete: checking every minute
/// costs little and reports soon enough.
const INSTANCE_POLL_SECONDS: u32 = 60;
/// A group still in use by an instance that is going away.
const GROUP_RETRY_SECONDS: u32 = 30;
/// RDS accepts at most 20 parameters per ModifyDBParameterGroup.
const PARAMETERS_PER_CALL: usize = 20;
/// Longest DB instance identifier RDS accepts.
const MAX_INSTANCE_ID: usize = 63;
/// Longest subnet group, parameter group and snapshot name RDS accepts.
const MAX_NAME: usize = 255;

/// States an instance does not leave by itself while being created: the
/// action fails, naming the state.
const STUCK: &[&str] = &[
    "failed",
    "incompatible-create",
    "incompatible-credentials",
    "incompatible-network",
    "incompatible-option-group",
    "incompatible-parameters",
    "incompatible-restore",
    "insufficient-capacity",
    "inaccessible-encryption-credentials",
    "inaccessible-encryption-credentials-recoverable",
    "restore-error",
    "storage-full",
    // Someone else is stopping or deleting it.
    "stopping",
    "stopped",
    "delete-precheck",
    "deleting",
];

/// States in which RDS cannot take a snapshot: the instance has no usable
/// storage, or never had.
const NO_SNAPSHOT: &[&str] = &[
    "creating",
    "failed",
    "incompatible-create",
    "incompatible-credentials",
    "incompatible-network",
    "incompatible-option-group",
    "incompatible-parameters",
    "incompatible-restore",
    "insufficient-capacity",
    "inaccessible-encryption-credentials",
    "inaccessible-encryption-credentials-recoverable",
    "restore-error",
];

/// The config of an `aws-rds-postgres` action once rendered, after the
/// type's JSON Schema accepted it (`catalog/schema/actions`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "Config::default_engine_version")]
    engine_version: String,
    instance_class: String,
    allocated_storage_gb: i32,
    max_allocated_storage_gb: Option<i32>,
    #[serde(default = "Config::default_storage_type")]
    storage_type: String,
    iops: Option<i32>,
    #[serde(default)]
    multi_az: bool,
    db_name: String,
    #[serde(default = "Config::default_master_username")]
    master_username: String,
    #[serde(default = "Config::default_backup_retention_days")]
    backup_retention_days: i32,
    backup_window: Option<String>,
    maintenance_window: Option<String>,
    #[serde(default = "Config::yes")]
    storage_encrypted: bool,
    kms_key_id: Option<String>,
    #[serde(default = "Config::yes")]
    deletion_protection: bool,
    #[serde(default)]
    performance_insights: bool,
    subnet_ids: Vec<String>,
    vpc_security_group_ids: Option<Vec<String>>,
    /// Accepted for the item's readability; RDS takes the VPC from the
    /// subnets, and PAO makes no security group of its own.
    #[allow(dead_code)]
    vpc_id: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, String>,
    #[serde(default)]
    tags: Map<String, Value>,
}

impl Config {
    fn default_engine_version() -> String {
        "16.4".to_string()
    }
    fn default_storage_type() -> String {
        "gp3".to_string()
    }
    fn default_master_username() -> String {
        "postgres".to_string()
    }
    fn default_backup_retention_days() -> i32 {
        7
    }
    fn yes() -> bool {
        true
    }

    /// The step's config rendered, checked against the type's schema (a
    /// templated value is only checkable now) and read. Nothing that fails
    /// here succeeds on a retry: every error is fatal.
    fn read(step: &Step<'_>) -> Result<Self, ActionError> {
        let rendered = Value::Object(step.rendered()?);
        let problems = rendered_config_problems(ActionType::AwsRdsPostgres, &rendered);
        if !problems.is_empty() {
            return Err(ActionError::Fatal(format!(
                "config, once rendered: {}",
                problems.join("; ")
            )));
        }
        let config: Self = serde_json::from_value(rendered)
            .map_err(|err| ActionError::Fatal(format!("config, once rendered: {err}")))?;
        config.check()?;
        Ok(config)
    }

    /// What the schema cannot say.
    fn check(&self) -> Result<(), ActionError> {
        let fatal = |message: String| Err(ActionError::Fatal(message));
        if let Some(max) = self.max_allocated_storage_gb {
            if max <= self.allocated_storage_gb {
                return fatal(format!(
                    "config.max_allocated_storage_gb: {max} must exceed allocated_storage_gb ({})",
                    self.allocated_storage_gb
                ));
            }
        }
        if matches!(self.storage_type.as_str(), "io1" | "io2") && self.iops.is_none() {
            return fatal(format!(
                "config.iops: storage type {} needs provisioned IOPS",
                self.storage_type
            ));
        }
        Ok(())
    }

    /// The parameter group family of the engine version: `postgres16`.
    fn family(&self) -> String {
        let major = self
            .engine_version
            .split('.')
            .next()
            .unwrap_or(&self.engine_version);
        format!("postgres{major}")
    }
}

/// The names of what one action makes, the same on every attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Names {
    instance: String,
    subnet_group: String,
    parameter_group: String,
}

impl Names {
    fn of(step: &Step<'_>) -> Self {
        Self {
            instance: identifier(&step.name(""), MAX_INSTANCE_ID),
            subnet_group: identifier(&step.name("subnets"), MAX_NAME),
            parameter_group: identifier(&step.name("params"), MAX_NAME),
        }
    }
}

/// `raw` as an RDS identifier: lower-case letters, digits and single
/// hyphens, starting with a letter, not ending with a hyphen, at most `max`
/// characters. A longer name keeps its start and ends with a short hash of
/// the whole, so two long names never meet.
pub fn identifier(raw: &str, max: usize) -> String {
    let mut name = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            name.push(c);
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    while name.ends_with('-') {
        name.pop();
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name.insert_str(0, "pao-");
    }
    if name.len() <= max {
        return name;
    }
    let digest = Sha256::digest(name.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    // The name is ASCII, so any byte index is a character boundary.
    let mut head = name[..max.saturating_sub(hash.len() + 1)].to_string();
    while head.ends_with('-') {
        head.pop();
    }
    format!("{head}-{hash}")
}

/// The final snapshot of `instance`: named after the request, the action
/// and the instance's creation time, so a request retried after a
/// compensation, whose new instance is undone again, never meets the
/// snapshot of the first.
fn final_snapshot(step: &Step<'_>, instance: &DbInstance) -> String {
    let suffix = match instance.instance_create_time() {
        Some(created) => format!("final-{}", created.secs()),
        None => "final".to_string(),
    };
    identifier(&step.name(&suffix), MAX_NAME)
}

/// Whether the resource holds `request_id`'s tag: an instance this request made.
fn tagged_for(instance: &DbInstance, request_id: &str) -> bool {
    instance
        .tag_list()
        .iter()
        .any(|tag| tag.key() == Some(REQUEST_TAG) && tag.value() == Some(request_id))
}

/// The description PAO gives the groups it makes: it names the request,
/// which tells them apart without a further call for their tags.
fn description(step: &Step<'_>) -> String {
    format!("PAO request {}, action {}", step.request.id, step.action.id)
}

fn made_here(description: Option<&str>, step: &Step<'_>) -> bool {
    description.is_some_and(|text| text.contains(&step.request.id))
}

fn status(instance: &DbInstance) -> &str {
    instance.db_instance_status().unwrap_or("unknown")
}

/// The aws-rds-postgres driver.
pub struct RdsDriver {
    rds: aws_sdk_rds::Client,
}

impl RdsDriver {
    pub fn new(rds: aws_sdk_rds::Client) -> Self {
        Self { rds }
    }

    /// Records `resource` unless the ledger has it already.
    async fn record(&self, step: &Step<'_>, resource: Resource) -> Result<(), ActionError> {
        if step
            .resources
            .iter()
            .any(|known| known.kind == resource.kind && known.id == resource.id)
        {
            return Ok(());
        }
        step.journal.record(resource).await
    }

    fn tags(step: &Step<'_>, config: &Config) -> Vec<Tag> {
        step.tags(&config.tags)
            .into_iter()
            .map(|(key, value)| Tag::builder().key(key).value(value).build())
            .collect()
    }

    async fn subnet_group_description(
        &self,
        name: &str,
    ) -> Result<Option<Option<String>>, ActionError> {
        match self
            .rds
            .describe_db_subnet_groups()
            .db_subnet_group_name(name)
            .send()
            .await
        {
            Ok(found) => Ok(found
                .db_subnet_groups()
                .first()
                .map(|group| group.db_subnet_group_description().map(str::to_string))),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_db_subnet_group_not_found_fault()) =>
            {
                Ok(None)
            }
            Err(err) => Err(sdk::failed("RDS", "DescribeDBSubnetGroups", &err)),
        }
    }

    async fn parameter_group_description(
        &self,
        name: &str,
    ) -> Result<Option<Option<String>>, ActionError> {
        match self
            .rds
            .describe_db_parameter_groups()
            .db_parameter_group_name(name)
            .send()
            .await
        {
            Ok(found) => Ok(found
                .db_parameter_groups()
                .first()
                .map(|group| group.description().map(str::to_string))),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_db_parameter_group_not_found_fault()) =>
            {
                Ok(None)
            }
            Err(err) => Err(sdk::failed("RDS", "DescribeDBParameterGroups", &err)),
        }
    }

    async fn instance(&self, id: &str) -> Result<Option<DbInstance>, ActionError> {
        match self
            .rds
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
        {
            Ok(found) => Ok(found.db_instances().first().cloned()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_db_instance_not_found_fault()) =>
            {
                Ok(None)
            }
            Err(err) => Err(sdk::failed("RDS", "DescribeDBInstances", &err)),
        }
    }

    /// The subnet group, made unless an earlier attempt made it.
    async fn ensure_subnet_group(
        &self,
        step: &Step<'_>,
        config: &Config,
        name: &str,
    ) -> Result<(), ActionError> {
        if let Some(found) = self.subnet_group_description(name).await? {
            return self
                .adopt(
                    step,
                    SUBNET_GROUP,
                    "DB subnet group",
                    name,
                    found.as_deref(),
                )
                .await;
        }
        self.record(step, Resource::new(SUBNET_GROUP, name)).await?;
        let created = self
            .rds
            .create_db_subnet_group()
            .db_subnet_group_name(name)
            .db_subnet_group_description(description(step))
            .set_subnet_ids(Some(config.subnet_ids.clone()))
            .set_tags(Some(Self::tags(step, config)))
            .send()
            .await;
        match created {
            Ok(_) => {
                let message = format!("created DB subnet group {name}");
                step.journal.log(Level::Info, &message).await
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_db_subnet_group_already_exists_fault()) =>
            {
                let found = self.subnet_group_description(name).await?.flatten();
                self.adopt(
                    step,
                    SUBNET_GROUP,
                    "DB subnet group",
                    name,
                    found.as_deref(),
                )
                .await
            }
            Err(err) => Err(sdk::failed("RDS", "CreateDBSubnetGroup", &err)),
        }
    }

    /// The parameter group, made unless an earlier attempt made it, with
    /// the config's parameters set (again: setting them is idempotent).
    async fn ensure_parameter_group(
        &self,
        step: &Step<'_>,
        config: &Config,
        name: &str,
    ) -> Result<(), ActionError> {
        let family = config.family();
        if let Some(found) = self.parameter_group_description(name).await? {
            self.adopt(
                step,
                PARAMETER_GROUP,
                "DB parameter group",
                name,
                found.as_deref(),
            )
            .await?;
        } else {
            self.record(
                step,
                Resource::new(PARAMETER_GROUP, name).with("family", &family),
            )
            .await?;
            let created = self
                .rds
                .create_db_parameter_group()
                .db_parameter_group_name(name)
                .db_parameter_group_family(&family)
                .description(description(step))
                .set_tags(Some(Self::tags(step, config)))
                .send()
                .await;
            match created {
                Ok(_) => {
                    let message = format!("created DB parameter group {name} ({family})");
                    step.journal.log(Level::Info, &message).await?;
                }
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_db_parameter_group_already_exists_fault()) =>
                {
                    let found = self.parameter_group_description(name).await?.flatten();
                    self.adopt(
                        step,
                        PARAMETER_GROUP,
                        "DB parameter group",
                        name,
                        found.as_deref(),
                    )
                    .await?;
                }
                Err(err) => return Err(sdk::failed("RDS", "CreateDBParameterGroup", &err)),
            }
        }
        // The group is set before the instance exists, so every parameter
        // takes effect when the instance starts: pending-reboot suits
        // static and dynamic parameters alike.
        let parameters: Vec<Parameter> = config
            .parameters
            .iter()
            .map(|(key, value)| {
                Parameter::builder()
                    .parameter_name(key)
                    .parameter_value(value)
                    .apply_method(ApplyMethod::PendingReboot)
                    .build()
            })
            .collect();
        for chunk in parameters.chunks(PARAMETERS_PER_CALL) {
            self.rds
                .modify_db_parameter_group()
                .db_parameter_group_name(name)
                .set_parameters(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|err| sdk::failed("RDS", "ModifyDBParameterGroup", &err))?;
        }
        Ok(())
    }

    /// A group found under this action's name: this request's (its
    /// description names the request) is recorded and used; anything else
    /// is left alone and fails the action.
    async fn adopt(
        &self,
        step: &Step<'_>,
        kind: &str,
        what: &str,
        name: &str,
        found_description: Option<&str>,
    ) -> Result<(), ActionError> {
        if !made_here(found_description, step) {
            return Err(ActionError::Fatal(format!(
                "{what} {name} exists but was not made by request {}: PAO leaves it alone",
                step.request.id
            )));
        }
        self.record(step, Resource::new(kind, name)).await
    }

    /// The instance, made unless an earlier attempt made it.
    async fn ensure_instance(
        &self,
        step: &Step<'_>,
        config: &Config,
        names: &Names,
    ) -> Result<DbInstance, ActionError> {
        let id = names.instance.as_str();
        if let Some(found) = self.instance(id).await? {
            return self.adopt_instance(step, found, id).await;
        }
        self.record(step, Resource::new(INSTANCE, id)).await?;
        let created = self
            .rds
            .create_db_instance()
            .db_instance_identifier(id)
            .engine("postgres")
            .engine_version(&config.engine_version)
            .db_instance_class(&config.instance_class)
            .allocated_storage(config.allocated_storage_gb)
            .set_max_allocated_storage(config.max_allocated_storage_gb)
            .storage_type(&config.storage_type)
            .set_iops(config.iops)
            .multi_az(config.multi_az)
            .db_name(&config.db_name)
            .master_username(&config.master_username)
            // RDS generates the password and keeps it in Secrets Manager.
            .manage_master_user_password(true)
            .storage_encrypted(config.storage_encrypted)
            .set_kms_key_id(config.kms_key_id.clone())
            .backup_retention_period(config.backup_retention_days)
            .set_preferred_backup_window(config.backup_window.clone())
            .set_preferred_maintenance_window(config.maintenance_window.clone())
            .enable_performance_insights(config.performance_insights)
            .set_performance_insights_retention_period(config.performance_insights.then_some(7))
            .deletion_protection(config.deletion_protection)
            .db_subnet_group_name(&names.subnet_group)
            .db_parameter_group_name(&names.parameter_group)
            .set_vpc_security_group_ids(config.vpc_security_group_ids.clone())
            .publicly_accessible(false)
            .copy_tags_to_snapshot(true)
            .set_tags(Some(Self::tags(step, config)))
            .send()
            .await;
        match created {
            Ok(output) => {
                let message = format!("creating DB instance {id}");
                step.journal.log(Level::Info, &message).await?;
                match output.db_instance() {
                    Some(instance) => Ok(instance.clone()),
                    None => Ok(DbInstance::builder()
                        .db_instance_identifier(id)
                        .db_instance_status("creating")
                        .build()),
                }
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_db_instance_already_exists_fault()) =>
            {
                let found = self.instance(id).await?.ok_or_else(|| {
                    ActionError::Retryable(format!(
                        "DB instance {id} exists, RDS says, but cannot be described yet"
                    ))
                })?;
                self.adopt_instance(step, found, id).await
            }
            Err(err) => Err(sdk::failed("RDS", "CreateDBInstance", &err)),
        }
    }

    async fn adopt_instance(
        &self,
        step: &Step<'_>,
        found: DbInstance,
        id: &str,
    ) -> Result<DbInstance, ActionError> {
        if !tagged_for(&found, &step.request.id) {
            return Err(ActionError::Fatal(format!(
                "DB instance {id} exists but is not tagged {REQUEST_TAG}={}: PAO leaves it alone",
                step.request.id
            )));
        }
        self.record(step, Resource::new(INSTANCE, id)).await?;
        Ok(found)
    }

    /// Deletes the instance `id` of the ledger, or says what it waits for.
    async fn remove_instance(&self, step: &Step<'_>, id: &str) -> Result<Removal, ActionError> {
        let Some(instance) = self.instance(id).await? else {
            return Ok(Removal::Gone);
        };
        if !tagged_for(&instance, &step.request.id) {
            // Recorded before a create that found someone else's instance
            // under this name: never ours to delete.
            let message = format!(
                "DB instance {id} is in the ledger but not tagged {REQUEST_TAG}={}: left alone",
                step.request.id
            );
            step.journal.log(Level::Warn, &message).await?;
            return Ok(Removal::Gone);
        }
        let state = status(&instance);
        if matches!(state, "deleting" | "delete-precheck") {
            return Ok(Removal::Wait(format!("DB instance {id} to be deleted")));
        }
        // A completed request's database may hold data: it is always kept
        // as a snapshot. A failed fulfillment's was never handed to anyone
        // (the request never completed), so it leaves nothing behind.
        let snapshot = step.rolling_back_completed();
        if snapshot && NO_SNAPSHOT.contains(&state) {
            return Err(ActionError::Fatal(format!(
                "DB instance {id} is {state}: RDS cannot take its final snapshot, and PAO does not \
                 delete a database that held data without one; delete it by hand (or restore it), \
                 then retry the rollback"
            )));
        }
        if instance.deletion_protection() == Some(true) {
            // Only ever an instance of this request's ledger.
            match self
                .rds
                .modify_db_instance()
                .db_instance_identifier(id)
                .deletion_protection(false)
                .apply_immediately(true)
                .send()
                .await
            {
                Ok(_) => {
                    let message = format!("lifted deletion protection of DB instance {id}");
                    step.journal.log(Level::Info, &message).await?;
                }
                Err(err) => return self.deletion_refused("ModifyDBInstance", id, state, &err),
            }
        }
        let mut delete = self
            .rds
            .delete_db_instance()
            .db_instance_identifier(id)
            // The final snapshot is what is kept; automated backups would
            // be one more thing left behind.
            .delete_automated_backups(true);
        let message = if snapshot {
            let name = final_snapshot(step, &instance);
            let kept = Resource::new(SNAPSHOT, &name)
                .with("instance", id)
                .with("retention", "kept: PAO never deletes it");
            self.record(step, kept).await?;
            delete = delete
                .skip_final_snapshot(false)
                .final_db_snapshot_identifier(&name);
            format!("deleting DB instance {id}; its final snapshot {name} is kept")
        } else {
            delete = delete.skip_final_snapshot(true);
            format!(
                "deleting DB instance {id} without a final snapshot: the request never completed"
            )
        };
        match delete.send().await {
            Ok(_) => {
                step.journal.log(Level::Info, &message).await?;
                Ok(Removal::Wait(format!("DB instance {id} to be deleted")))
            }
            Err(err) => self.deletion_refused("DeleteDBInstance", id, state, &err),
        }
    }

    /// A refused modification or deletion: gone is done, busy is waited for.
    fn deletion_refused<E>(
        &self,
        call: &str,
        id: &str,
        state: &str,
        err: &SdkError<E, HttpResponse>,
    ) -> Result<Removal, ActionError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let code = err.as_service_error().and_then(ProvideErrorMetadata::code);
        match code {
            Some("DBInstanceNotFound") => Ok(Removal::Gone),
            Some("InvalidDBInstanceState") => Ok(Removal::Wait(format!(
                "DB instance {id} to accept deletion (it is {state})"
            ))),
            // Lifting deletion protection has not reached the instance yet.
            Some("InvalidParameterCombination")
                if err
                    .as_service_error()
                    .and_then(ProvideErrorMetadata::message)
                    .is_some_and(|m| m.contains("deletion protection")) =>
            {
                Ok(Removal::Wait(format!(
                    "deletion protection of DB instance {id} to be lifted"
                )))
            }
            _ => Err(sdk::failed("RDS", call, err)),
        }
    }

    /// Deletes a group of the ledger; `Some(wait)` while an instance still uses it.
    async fn remove_parameter_group(&self, name: &str) -> Result<Option<String>, ActionError> {
        match self
            .rds
            .delete_db_parameter_group()
            .db_parameter_group_name(name)
            .send()
            .await
        {
            Ok(_) => Ok(None),
            Err(err) => match err.as_service_error() {
                Some(e) if e.is_db_parameter_group_not_found_fault() => Ok(None),
                Some(e) if e.is_invalid_db_parameter_group_state_fault() => Ok(Some(format!(
                    "DB parameter group {name} to be released by its instance"
                ))),
                _ => Err(sdk::failed("RDS", "DeleteDBParameterGroup", &err)),
            },
        }
    }

    async fn remove_subnet_group(&self, name: &str) -> Result<Option<String>, ActionError> {
        match self
            .rds
            .delete_db_subnet_group()
            .db_subnet_group_name(name)
            .send()
            .await
        {
            Ok(_) => Ok(None),
            Err(err) => match err.as_service_error() {
                Some(e) if e.is_db_subnet_group_not_found_fault() => Ok(None),
                Some(e)
                    if e.is_invalid_db_subnet_group_state_fault()
                        || e.is_invalid_db_subnet_state_fault() =>
                {
                    Ok(Some(format!(
                        "DB subnet group {name} to be released by its instance"
                    )))
                }
                _ => Err(sdk::failed("RDS", "DeleteDBSubnetGroup", &err)),
            },
        }
    }
}

/// Where deleting an instance stands.
enum Removal {
    Gone,
    Wait(String),
}

/// How far an instance got: available is done, a state it does not leave
/// by itself is fatal, anything else is waited for.
fn progress(instance: &DbInstance, id: &str, config: &Config) -> Result<Progress, ActionError> {
    let state = status(instance);
    if STUCK.contains(&state) {
        return Err(ActionError::Fatal(format!(
            "DB instance {id} is {state}; see its events in the RDS console"
        )));
    }
    let waiting = |what: String| {
        Ok(Progress::Wait {
            seconds: INSTANCE_POLL_SECONDS,
            waiting_for: what,
        })
    };
    if state != "available" {
        return waiting(format!(
            "DB instance {id} to become available (it is {state})"
        ));
    }
    let endpoint = instance.endpoint();
    let (Some(address), Some(port)) = (
        endpoint.and_then(|e| e.address()),
        endpoint.and_then(|e| e.port()),
    ) else {
        return waiting(format!("DB instance {id} to publish its endpoint"));
    };
    let secret = instance
        .master_user_secret()
        .and_then(|secret| secret.secret_arn())
        .ok_or_else(|| {
            ActionError::Fatal(format!(
                "DB instance {id} has no RDS-managed master user secret"
            ))
        })?;
    let mut values = Map::new();
    values.insert("endpoint".into(), Value::from(address));
    values.insert("port".into(), Value::from(port));
    values.insert("db_instance_id".into(), Value::from(id));
    values.insert(
        "db_name".into(),
        Value::from(instance.db_name().unwrap_or(&config.db_name)),
    );
    values.insert("master_secret_arn".into(), Value::from(secret));
    Ok(Progress::Done(Outputs::new(values)))
}

#[async_trait]
impl Driver for RdsDriver {
    async fn start(&self, step: &Step<'_>) -> Result<Progress, ActionError> {
        let config = Config::read(step)?;
        let names = Names::of(step);
        self.ensure_subnet_group(step, &config, &names.subnet_group)
            .await?;
        self.ensure_parameter_group(step, &config, &names.parameter_group)
            .await?;
        let instance = self.ensure_instance(step, &config, &names).await?;
        progress(&instance, &names.instance, &config)
    }

    async fn poll(&self, step: &Step<'_>) -> Result<Progress, ActionError> {
        let config = Config::read(step)?;
        let id = Names::of(step).instance;
        match self.instance(&id).await? {
            Some(instance) => progress(&instance, &id, &config),
            None => Err(ActionError::Fatal(format!(
                "DB instance {id} no longer exists: it was deleted while being created"
            ))),
        }
    }

    async fn compensate(&self, step: &Step<'_>) -> Result<Undone, ActionError> {
        let made: Vec<&Resource> = step
            .resources
            .iter()
            .filter(|r| matches!(r.kind.as_str(), INSTANCE | PARAMETER_GROUP | SUBNET_GROUP))
            .collect();
        if made.is_empty() {
            return Ok(Undone::Kept("the action made nothing to undo".to_string()));
        }
        let listed = made
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if step.retain() {
            return Ok(Undone::Kept(format!("rollback.retain keeps {listed}")));
        }
        let wait = |waiting_for: String, seconds: u32| {
            Ok(Undone::Wait {
                seconds,
                waiting_for,
            })
        };
        // The instance first: its groups cannot go while it uses them.
        for instance in step.recorded(INSTANCE) {
            if let Removal::Wait(what) = self.remove_instance(step, &instance.id).await? {
                return wait(what, INSTANCE_POLL_SECONDS);
            }
        }
        for group in step.recorded(PARAMETER_GROUP) {
            if let Some(what) = self.remove_parameter_group(&group.id).await? {
                return wait(what, GROUP_RETRY_SECONDS);
            }
        }
        for group in step.recorded(SUBNET_GROUP) {
            if let Some(what) = self.remove_subnet_group(&group.id).await? {
                return wait(what, GROUP_RETRY_SECONDS);
            }
        }
        let snapshots: Vec<&str> = step.recorded(SNAPSHOT).map(|r| r.id.as_str()).collect();
        let kept = if snapshots.is_empty() {
            String::new()
        } else {
            format!("; final snapshot {} kept", snapshots.join(", "))
        };
        Ok(Undone::Done(format!("deleted {listed}{kept}")))
    }
}

#[cfg(test)]
#[path = "rds_tests.rs"]
mod tests;
