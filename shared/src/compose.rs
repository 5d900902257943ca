//! The composition root of every function: each reads its settings once
//! (failing fast, naming a missing or invalid variable), builds its
//! adapters and hands them to the domain, which takes its ports as
//! arguments and never reads the environment. The function mains call one
//! builder here each.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use crate::actions::http::{HttpDriver, Kind};
use crate::actions::jira::{Jira, TicketDriver};
use crate::actions::lifecycle::Lifecycle;
use crate::api::catalog::CatalogApi;
use crate::api::health::HealthApi;
use crate::api::requests::RequestsApi;
use crate::auth::AuthMode;
use crate::aws::dynamodb::{CatalogTable, TableProbe};
use crate::aws::requests_table::RequestTable;
use crate::aws::s3::{BucketProbe, CatalogBucket};
use crate::aws::secrets::Secrets;
use crate::aws::sfn::{Fulfillment, StateMachineProbe};
use crate::aws::shared_table::SharedTable;
use crate::aws::submission_limit::SubmissionWindows;
use crate::catalog::index::Ingest;
use crate::catalog::item::ActionType;
use crate::config::{CatalogConfig, ConfigError, Env, Resources};
use crate::drivers::eks::{EksDriver, Roles};
use crate::drivers::github::client::{GitHub, Settings as GithubSettings};
use crate::drivers::github::GithubDriver;
use crate::drivers::kubernetes::{KubernetesDriver, SecretStore};
use crate::drivers::network::{FlowLogSettings, NetworkDriver};
use crate::drivers::rds::RdsDriver;
use crate::drivers::secret::rotation::Rotation;
use crate::drivers::secret::{SecretDriver, ROTATION_FUNCTION};
use crate::drivers::terraform::client::{Settings as TerraformSettings, Terraform};
use crate::drivers::terraform::TerraformDriver;
use crate::health::Health;
use crate::k8s::Clusters;
use crate::outbound::{AllowList, Egress};
use crate::protect::breaker::{self, Breakers};
use crate::protect::slots::{self, Slots};
use crate::protect::system_clock;
use crate::requests::engine::{ActionFunctions, Engine};
use crate::requests::service::Requests;
use crate::template::render::TemplateEnv;

/// The catalog API.
pub async fn catalog_api() -> Result<CatalogApi, ConfigError> {
    let env = Env::process();
    let config = CatalogConfig::from(&env)?;
    let auth = AuthMode::parse(env.0(AuthMode::VARIABLE).as_deref())?;
    let sdk = crate::aws::sdk_config().await;
    let store = CatalogTable::new(aws_sdk_dynamodb::Client::new(&sdk), &config.catalog_table);
    let source = CatalogBucket::new(aws_sdk_s3::Client::new(&sdk), &config.catalog_bucket);
    Ok(CatalogApi::new(
        Arc::new(store),
        Arc::new(source),
        auth,
        &config,
    ))
}

/// The ingest function, on the catalog bucket's notifications.
pub async fn catalog_ingest() -> Result<Ingest, ConfigError> {
    let config = CatalogConfig::from(&Env::process())?;
    let sdk = crate::aws::sdk_config().await;
    Ok(Ingest::new(
        Arc::new(CatalogBucket::new(
            aws_sdk_s3::Client::new(&sdk),
            &config.catalog_bucket,
        )),
        Arc::new(CatalogTable::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &config.catalog_table,
        )),
    ))
}

/// The requests API's settings.
pub struct RequestsSettings {
    pub requests_table: String,
    pub catalog_table: String,
    pub state_machine_arn: String,
    pub admin_group: String,
    pub service_group: String,
    pub auth: AuthMode,
    /// Signs JIRA's webhook deliveries; `None` turns the webhook off.
    pub jira_webhook_secret: Option<SecretString>,
    /// `PAO_SUBMISSIONS_PER_MINUTE`: the new requests one caller may make
    /// per minute (default 30); 0 turns the limit off.
    pub submissions_per_minute: u32,
}

/// A webhook secret shorter than this would be guessable.
const MIN_WEBHOOK_SECRET: usize = 16;

/// The most new requests per caller and minute the limit can count: a
/// caller's minute is one item of the requests table, which holds at most
/// 400 KB (a request's digest takes 16 bytes of it).
const MAX_SUBMISSIONS_PER_MINUTE: u64 = 10_000;

impl RequestsSettings {
    pub const SUBMISSIONS_PER_MINUTE: &'static str = "PAO_SUBMISSIONS_PER_MINUTE";

    pub fn read<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let secret = SecretString::from(env.or("PAO_JIRA_WEBHOOK_SECRET", ""));
        let length = secret.expose_secret().len();
        // Empty turns the webhook off; a short secret would be guessable.
        if (1..MIN_WEBHOOK_SECRET).contains(&length) {
            return Err(ConfigError::Invalid {
                name: "PAO_JIRA_WEBHOOK_SECRET",
                reason: format!(
                    "at least {MIN_WEBHOOK_SECRET} characters, or empty to turn the webhook off"
                ),
            });
        }
        let per_minute = env.number(Self::SUBMISSIONS_PER_MINUTE, 30)?;
        let submissions_per_minute = u32::try_from(per_minute)
            .ok()
            .filter(|_| per_minute <= MAX_SUBMISSIONS_PER_MINUTE)
            .ok_or_else(|| ConfigError::Invalid {
                name: Self::SUBMISSIONS_PER_MINUTE,
                reason: format!(
                    "at most {MAX_SUBMISSIONS_PER_MINUTE} new requests per minute, or 0 for no limit"
                ),
            })?;
        Ok(Self {
            requests_table: env.required("PAO_REQUESTS_TABLE")?,
            catalog_table: env.required("PAO_CATALOG_TABLE")?,
            state_machine_arn: env.required("PAO_FULFILLMENT_STATE_MACHINE_ARN")?,
            admin_group: env.or("PAO_ADMIN_GROUP", "pao-admins"),
            service_group: env.or("PAO_SERVICE_GROUP", "services"),
            auth: AuthMode::parse(env.0(AuthMode::VARIABLE).as_deref())?,
            jira_webhook_secret: (length > 0).then_some(secret),
            submissions_per_minute,
        })
    }
}

/// The requests API.
pub async fn requests_api() -> Result<RequestsApi, ConfigError> {
    let settings = RequestsSettings::read(&Env::process())?;
    let sdk = crate::aws::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let limit = SubmissionWindows::new(
        dynamodb.clone(),
        settings.requests_table.clone(),
        settings.submissions_per_minute,
    );
    let mut requests = Requests::new(
        Arc::new(RequestTable::new(dynamodb.clone(), settings.requests_table)),
        Arc::new(CatalogTable::new(dynamodb, settings.catalog_table)),
        Arc::new(Secrets::new(aws_sdk_secretsmanager::Client::new(&sdk))),
        Arc::new(Fulfillment::new(
            aws_sdk_sfn::Client::new(&sdk),
            settings.state_machine_arn,
        )),
        settings.admin_group,
    );
    if settings.submissions_per_minute > 0 {
        requests = requests.with_limit(Arc::new(limit));
    }
    Ok(
        RequestsApi::new(requests, settings.auth, settings.service_group)
            .with_jira_secret(settings.jira_webhook_secret),
    )
}

/// The fulfillment engine's steps.
pub async fn fulfillment_engine() -> Result<Engine, ConfigError> {
    let env = Env::process();
    let table = env.required("PAO_REQUESTS_TABLE")?;
    let functions = ActionFunctions::from_env(&env)?;
    let sdk = crate::aws::sdk_config().await;
    let store = RequestTable::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    Ok(Engine::new(Arc::new(store), functions))
}

/// The health API, probing what every function depends on.
pub async fn health_api() -> Result<HealthApi, ConfigError> {
    let resources = Resources::from_lookup(Env::process().0)?;
    let sdk = crate::aws::sdk_config().await;
    let health = Health::new(
        vec![
            Arc::new(TableProbe::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                resources.requests_table,
            )),
            Arc::new(BucketProbe::new(
                aws_sdk_s3::Client::new(&sdk),
                resources.catalog_bucket,
            )),
            Arc::new(StateMachineProbe::new(
                aws_sdk_sfn::Client::new(&sdk),
                resources.selftest_state_machine_arn,
            )),
        ],
        crate::api::health::PROBE_TIMEOUT,
    );
    Ok(HealthApi::new(health))
}

/// What every action function reads.
pub struct ActionSettings {
    pub requests_table: String,
    pub template_env: TemplateEnv,
    /// `PAO_MAX_WAIT_SECONDS`: the longest wait between polls (default
    /// 300); the local stack sets a few seconds.
    pub max_wait_seconds: u32,
    /// The concurrency caps per action type.
    pub slots: slots::Settings,
}

impl ActionSettings {
    pub const MAX_WAIT: &'static str = "PAO_MAX_WAIT_SECONDS";

    pub fn read<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let max_wait = env.number(Self::MAX_WAIT, 300)?.clamp(1, 3600);
        let slots = slots::Settings::read(env)?;
        // Every call renews a slot's lease: it must outlast the longest
        // wait between two calls, or a capped action loses its slot.
        if !slots.caps.is_empty() && slots.lease <= 2 * max_wait {
            return Err(ConfigError::Invalid {
                name: "PAO_SLOT_LEASE_SECONDS",
                reason: format!(
                    "{} s must be more than twice {} ({max_wait} s)",
                    slots.lease,
                    Self::MAX_WAIT
                ),
            });
        }
        Ok(Self {
            requests_table: env.required("PAO_REQUESTS_TABLE")?,
            template_env: TemplateEnv::from_env(&env.0)?,
            max_wait_seconds: u32::try_from(max_wait).unwrap_or(300),
            slots,
        })
    }
}

/// What every action function builds from its settings: the SDK
/// configuration its clients share, the requests table, and the shared
/// records of breakers and slots in it.
pub struct Base {
    pub sdk: aws_config::SdkConfig,
    pub store: Arc<RequestTable>,
    shared: Arc<SharedTable>,
    settings: ActionSettings,
}

impl Base {
    /// Reads the settings and builds the shared parts, once per process.
    pub async fn build<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let settings = ActionSettings::read(env)?;
        let sdk = crate::aws::sdk_config().await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let store = Arc::new(RequestTable::new(
            dynamodb.clone(),
            settings.requests_table.clone(),
        ));
        let shared = Arc::new(SharedTable::new(dynamodb, settings.requests_table.clone()));
        Ok(Self {
            sdk,
            store,
            shared,
            settings,
        })
    }

    /// The lifecycle, with no driver yet.
    pub fn lifecycle(&self) -> Lifecycle {
        let secrets = Secrets::new(aws_sdk_secretsmanager::Client::new(&self.sdk));
        let lifecycle = Lifecycle::new(
            self.store.clone(),
            Arc::new(secrets),
            self.settings.template_env.clone(),
            self.settings.max_wait_seconds,
        );
        if self.settings.slots.caps.is_empty() {
            return lifecycle;
        }
        lifecycle.with_slots(Arc::new(Slots::new(
            self.shared.clone(),
            self.settings.slots.clone(),
            system_clock(),
        )))
    }

    /// The guarded HTTP client of the functions that call outside services,
    /// with the deployment's allow-list of internal networks and a circuit
    /// breaker per target, shared through the requests table.
    fn egress<F: Fn(&str) -> Option<String>>(&self, env: &Env<F>) -> Result<Egress, ConfigError> {
        let allow = AllowList::parse(&env.or(AllowList::VARIABLE, ""))?;
        let breakers = Breakers::new(
            self.shared.clone(),
            breaker::Settings::read(env)?,
            system_clock(),
        );
        let egress = Egress::new(allow).map_err(|err| ConfigError::Invalid {
            name: AllowList::VARIABLE,
            reason: format!("the guarded HTTP client cannot be built: {err}"),
        })?;
        Ok(egress.with_breakers(Arc::new(breakers)))
    }
}

/// The HTTP action function: rest-api, webhook and the manual ticket.
pub async fn http_action() -> Result<Lifecycle, ConfigError> {
    let env = Env::process();
    let base = Base::build(&env).await?;
    let egress = base.egress(&env)?;
    let jira = Jira::from_env(&env, egress.clone())?;
    let redact: Vec<String> = base
        .settings
        .template_env
        .secret_values()
        .map(str::to_string)
        .collect();
    let http = |kind| Arc::new(HttpDriver::new(kind, egress.clone(), redact.clone()));
    let ticket = TicketDriver::new(jira, base.store.clone());
    Ok(base
        .lifecycle()
        .with(ActionType::RestApi, http(Kind::RestApi))
        .with(ActionType::Webhook, http(Kind::Webhook))
        .with(ActionType::JiraTicket, Arc::new(ticket)))
}

/// The github-workflow action function: GitHub's API, as a GitHub App or
/// with a token, through the egress guard.
pub async fn github_action() -> Result<Lifecycle, ConfigError> {
    let env = Env::process();
    let base = Base::build(&env).await?;
    let github = GitHub::new(GithubSettings::read(&env)?, base.egress(&env)?);
    Ok(base.lifecycle().with(
        ActionType::GithubWorkflow,
        Arc::new(GithubDriver::new(github)),
    ))
}

/// The terraform action function: HCP Terraform's API with the team
/// token, through the egress guard.
pub async fn terraform_action() -> Result<Lifecycle, ConfigError> {
    let env = Env::process();
    let base = Base::build(&env).await?;
    let terraform = Terraform::new(TerraformSettings::read(&env)?, base.egress(&env)?);
    Ok(base.lifecycle().with(
        ActionType::Terraform,
        Arc::new(TerraformDriver::new(terraform)),
    ))
}

/// The aws-network action function: EC2, and CloudWatch Logs for the flow
/// logs' groups.
pub async fn network_action() -> Result<Lifecycle, ConfigError> {
    let env = Env::process();
    let base = Base::build(&env).await?;
    let flow_logs = FlowLogSettings::read(&env)?;
    let driver = NetworkDriver::new(
        aws_sdk_ec2::Client::new(&base.sdk),
        aws_sdk_cloudwatchlogs::Client::new(&base.sdk),
        flow_logs,
    );
    Ok(base
        .lifecycle()
        .with(ActionType::AwsNetwork, Arc::new(driver)))
}

/// The aws-rds-postgres action function.
pub async fn rds_action() -> Result<Lifecycle, ConfigError> {
    let base = Base::build(&Env::process()).await?;
    let driver = RdsDriver::new(aws_sdk_rds::Client::new(&base.sdk));
    Ok(base
        .lifecycle()
        .with(ActionType::AwsRdsPostgres, Arc::new(driver)))
}

/// The aws-secret action function, with the ARN of PAO's rotation function.
pub async fn secret_action() -> Result<Lifecycle, ConfigError> {
    let env = Env::process();
    let rotation_function = env.required(ROTATION_FUNCTION)?;
    let base = Base::build(&env).await?;
    let driver = SecretDriver::new(
        aws_sdk_secretsmanager::Client::new(&base.sdk),
        rotation_function,
    );
    Ok(base
        .lifecycle()
        .with(ActionType::AwsSecret, Arc::new(driver)))
}

/// The aws-eks-cluster action function, with the roles it passes and grants.
pub async fn eks_action() -> Result<Lifecycle, ConfigError> {
    let env = Env::process();
    let base = Base::build(&env).await?;
    let roles = Roles::read(&env)?;
    let driver = EksDriver::new(aws_sdk_eks::Client::new(&base.sdk), roles);
    Ok(base
        .lifecycle()
        .with(ActionType::AwsEksCluster, Arc::new(driver)))
}

/// The rotation function of aws-secret's secrets. It reads no setting.
pub async fn secret_rotation() -> Rotation {
    let sdk = crate::aws::sdk_config().await;
    Rotation::new(aws_sdk_secretsmanager::Client::new(&sdk))
}

/// The kubernetes-deploy action function: EKS for the clusters' endpoints
/// (its tokens signed with the function's own credentials), CloudWatch for
/// the alarms, and where the clusters' External Secrets Operator reads
/// Secrets Manager.
pub async fn kubernetes_action() -> Result<Lifecycle, ConfigError> {
    let env = Env::process();
    let base = Base::build(&env).await?;
    let store = SecretStore {
        name: env.or("PAO_EXTERNAL_SECRET_STORE", "aws-secrets-manager"),
        refresh_interval: env.or("PAO_EXTERNAL_SECRET_REFRESH", "1h"),
    };
    let alarm_actions: Vec<String> = env
        .or("PAO_ALARM_TOPIC_ARN", "")
        .split(',')
        .map(str::trim)
        .filter(|arn| !arn.is_empty())
        .map(str::to_string)
        .collect();
    let credentials = base
        .sdk
        .credentials_provider()
        .ok_or(ConfigError::Missing("AWS credentials"))?;
    let region = base
        .sdk
        .region()
        .map(ToString::to_string)
        .ok_or(ConfigError::Missing("AWS_REGION"))?;
    let clusters = Clusters::new(aws_sdk_eks::Client::new(&base.sdk), credentials, region);
    let driver = KubernetesDriver::new(
        clusters,
        aws_sdk_cloudwatch::Client::new(&base.sdk),
        store,
        alarm_actions,
    );
    Ok(base
        .lifecycle()
        .with(ActionType::KubernetesDeploy, Arc::new(driver)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(limit: Option<&str>) -> Result<RequestsSettings, ConfigError> {
        RequestsSettings::read(&Env(|name: &str| {
            let value = match name {
                "PAO_REQUESTS_TABLE" => "pao-requests",
                "PAO_CATALOG_TABLE" => "pao-catalog",
                "PAO_FULFILLMENT_STATE_MACHINE_ARN" => "arn:sm",
                RequestsSettings::SUBMISSIONS_PER_MINUTE => limit?,
                _ => return None,
            };
            Some(value.to_string())
        }))
    }

    #[test]
    fn the_submission_limit_is_30_a_minute_unless_set_and_0_turns_it_off() {
        let per_minute = |limit| settings(limit).unwrap().submissions_per_minute;
        assert_eq!(per_minute(None), 30);
        assert_eq!(per_minute(Some("")), 30);
        assert_eq!(per_minute(Some("600")), 600);
        assert_eq!(per_minute(Some("0")), 0);
    }

    #[test]
    fn a_submission_limit_that_is_no_count_stops_the_start() {
        for bad in ["thirty", "-1", "1.5", "10001", "99999999999"] {
            let err = settings(Some(bad)).err().expect(bad).to_string();
            assert!(err.contains("PAO_SUBMISSIONS_PER_MINUTE"), "{bad}: {err}");
        }
    }

    fn action_settings(vars: &[(&str, &str)]) -> Result<ActionSettings, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("PAO_REQUESTS_TABLE".to_string(), "pao-requests".to_string())])
            .collect();
        ActionSettings::read(&Env(move |name: &str| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        }))
    }

    #[test]
    fn a_slot_lease_that_a_wait_between_polls_could_outlast_stops_the_start() {
        let caps = ("PAO_CONCURRENCY_CAPS", "aws-eks-cluster=1");
        let deployed = action_settings(&[caps]).unwrap();
        assert_eq!(
            (deployed.slots.lease, deployed.max_wait_seconds),
            (900, 300)
        );
        let err = action_settings(&[caps, ("PAO_SLOT_LEASE_SECONDS", "600")])
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("PAO_SLOT_LEASE_SECONDS"), "{err}");
        let local = [
            caps,
            ("PAO_SLOT_LEASE_SECONDS", "60"),
            (ActionSettings::MAX_WAIT, "1"),
        ];
        assert!(action_settings(&local).is_ok());
        // Without caps there is no lease to keep.
        assert!(action_settings(&[("PAO_SLOT_LEASE_SECONDS", "60")]).is_ok());
    }
}
