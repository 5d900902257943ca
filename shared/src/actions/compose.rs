//! The composition root of the action functions: each reads its settings
//! once, builds its adapters, and hands them to the one lifecycle with the
//! drivers of the types it runs. Nothing below this reads the environment.

use std::sync::Arc;

use super::http::{HttpDriver, Kind};
use super::jira::{Jira, TicketDriver};
use super::lifecycle::Lifecycle;
use crate::aws::requests_table::RequestTable;
use crate::aws::secrets::Secrets;
use crate::catalog::item::ActionType;
use crate::config::{ConfigError, Env};
use crate::outbound::{AllowList, Egress};
use crate::template::render::TemplateEnv;

/// What every action function reads.
pub struct ActionSettings {
    pub requests_table: String,
    pub template_env: TemplateEnv,
    /// `PAO_MAX_WAIT_SECONDS`: the longest wait between polls (default
    /// 300); the local stack sets a few seconds.
    pub max_wait_seconds: u32,
}

impl ActionSettings {
    pub const MAX_WAIT: &'static str = "PAO_MAX_WAIT_SECONDS";

    pub fn read<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let max_wait = env.number(Self::MAX_WAIT, 300)?;
        Ok(Self {
            requests_table: env.required("PAO_REQUESTS_TABLE")?,
            template_env: TemplateEnv::from_env(&env.0)?,
            max_wait_seconds: u32::try_from(max_wait.clamp(1, 3600)).unwrap_or(300),
        })
    }
}

/// What every action function builds from its settings: the SDK
/// configuration its clients share and the requests table.
pub struct Base {
    pub sdk: aws_config::SdkConfig,
    pub store: Arc<RequestTable>,
    settings: ActionSettings,
}

impl Base {
    /// Reads the settings and builds the shared parts, once per process.
    pub async fn build<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let settings = ActionSettings::read(env)?;
        let sdk = crate::aws::sdk_config().await;
        let store = Arc::new(RequestTable::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            settings.requests_table.clone(),
        ));
        Ok(Self {
            sdk,
            store,
            settings,
        })
    }

    /// The lifecycle, with no driver yet.
    pub fn lifecycle(&self) -> Lifecycle {
        let secrets = Secrets::new(aws_sdk_secretsmanager::Client::new(&self.sdk));
        Lifecycle::new(
            self.store.clone(),
            Arc::new(secrets),
            self.settings.template_env.clone(),
            self.settings.max_wait_seconds,
        )
    }
}

/// The HTTP action function: rest-api, webhook and the manual ticket.
pub async fn http_action() -> Result<Lifecycle, ConfigError> {
    let env = Env::process();
    let base = Base::build(&env).await?;
    let allow = AllowList::parse(&env.or(AllowList::VARIABLE, ""))?;
    let egress = Egress::new(allow).map_err(|err| ConfigError::Invalid {
        name: AllowList::VARIABLE,
        reason: format!("the guarded HTTP client cannot be built: {err}"),
    })?;
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
