//! A catalog item (schema v2) as typed values. An item of these types has
//! passed the JSON Schema; `validate` adds the checks a schema cannot say.
//! `ActionType` is the one list of action types PAO knows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const SCHEMA_VERSION: u8 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogItem {
    pub schema_version: u8,
    pub header: Header,
    pub presentation: Presentation,
    pub fulfillment: Fulfillment,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub id: String,
    pub name: String,
    pub version: String,
    pub owner: String,
    pub category: String,
    pub description: String,
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
}

/// Who may see and request an item; everyone when absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Presentation {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Group>,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[strum(serialize_all = "kebab-case")]
#[serde(rename_all = "kebab-case")]
pub enum FieldType {
    String,
    Text,
    Integer,
    Number,
    Boolean,
    Selection,
    MultiSelection,
    Date,
    Datetime,
    Email,
    Url,
    Password,
    File,
    Json,
    Yaml,
}

impl FieldType {
    pub const ALL: &'static [FieldType] = <Self as strum::VariantArray>::VARIANTS;

    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Types whose value is text a `pattern` can test.
    pub fn is_textual(self) -> bool {
        matches!(
            self,
            Self::String | Self::Text | Self::Password | Self::Email | Self::Url
        )
    }

    /// Types with choices from `options`.
    pub fn has_options(self) -> bool {
        matches!(self, Self::Selection | Self::MultiSelection)
    }

    /// Types on which `min`/`max` mean something (see the catalog README).
    pub fn has_bounds(self) -> bool {
        matches!(
            self,
            Self::String
                | Self::Text
                | Self::Password
                | Self::Integer
                | Self::Number
                | Self::MultiSelection
                | Self::File
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<Choice>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_if: Option<Condition>,
}

/// One choice of a selection: a plain value, or a value with a label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Choice {
    Plain(String),
    Labelled { value: String, label: String },
}

impl Choice {
    pub fn value(&self) -> &str {
        match self {
            Self::Plain(value) | Self::Labelled { value, .. } => value,
        }
    }

    pub fn label(&self) -> &str {
        match self {
            Self::Plain(value) => value,
            Self::Labelled { label, .. } => label,
        }
    }
}

/// `show_if` of a field and `when` of an action: a test on another field's value.
/// The JSON Schema guarantees exactly one of the tests is present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<Value>,
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
}

impl Condition {
    /// Whether `value` (the other field's value, `None` when absent) passes.
    pub fn holds(&self, value: Option<&Value>) -> bool {
        if let Some(expected) = &self.equals {
            return value == Some(expected);
        }
        if let Some(unexpected) = &self.not_equals {
            return value != Some(unexpected);
        }
        if let Some(allowed) = &self.one_of {
            return value.is_some_and(|value| allowed.contains(value));
        }
        true
    }

    /// The values the condition compares with, for type checks.
    pub fn operands(&self) -> Vec<&Value> {
        let mut operands: Vec<&Value> = self.equals.iter().chain(&self.not_equals).collect();
        operands.extend(self.one_of.iter().flatten());
        operands
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Manual,
    Automated,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fulfillment {
    pub mode: Mode,
    pub manual: Manual,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automated: Option<Automated>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manual {
    pub jira: JiraTicket,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JiraTicket {
    pub project: String,
    pub issue_type: String,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Automated {
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: ActionType,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    pub config: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    #[serde(default = "Retry::default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "Retry::default_interval_seconds")]
    pub interval_seconds: u32,
    #[serde(default = "Retry::default_backoff_rate")]
    pub backoff_rate: f64,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            max_attempts: Self::default_max_attempts(),
            interval_seconds: Self::default_interval_seconds(),
            backoff_rate: Self::default_backoff_rate(),
        }
    }
}

impl Retry {
    fn default_max_attempts() -> u32 {
        3
    }
    fn default_interval_seconds() -> u32 {
        5
    }
    fn default_backoff_rate() -> f64 {
        2.0
    }
}

/// The action types PAO runs: the one list. The item schema's `enum` and the
/// config schemas in `catalog/schema/actions/` are kept equal to it by tests.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::EnumString,
)]
#[strum(serialize_all = "kebab-case")]
#[serde(rename_all = "kebab-case")]
pub enum ActionType {
    JiraTicket,
    RestApi,
    Webhook,
    GithubWorkflow,
    Terraform,
    AwsNetwork,
    AwsRdsPostgres,
    AwsSecret,
    AwsEksCluster,
    KubernetesDeploy,
}

impl ActionType {
    pub const ALL: &'static [ActionType] = <Self as strum::VariantArray>::VARIANTS;

    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The outputs an action of this type always produces; `rest-api` adds
    /// the keys of its `response_mapping`.
    pub fn fixed_outputs(self) -> &'static [&'static str] {
        match self {
            Self::JiraTicket => &["issue_key", "issue_url"],
            Self::RestApi | Self::Webhook => &["status_code"],
            Self::GithubWorkflow => &["run_id", "run_url", "conclusion"],
            Self::Terraform => &["run_id", "run_url", "outputs"],
            Self::AwsNetwork => &[
                "vpc_id",
                "subnet_ids",
                "private_subnet_ids",
                "public_subnet_ids",
                "security_group_id",
                "database_security_group_id",
            ],
            Self::AwsRdsPostgres => &[
                "endpoint",
                "port",
                "db_instance_id",
                "db_name",
                "master_secret_arn",
            ],
            Self::AwsSecret => &["secret_arn", "secret_name"],
            Self::AwsEksCluster => &["cluster_name", "cluster_arn", "endpoint", "oidc_issuer"],
            Self::KubernetesDeploy => &["namespace", "deployment", "service", "url"],
        }
    }

    /// Whether PAO compensates the action by deleting what it created (AWS
    /// types), rather than by a request the item gives (HTTP types).
    pub fn compensates_natively(self) -> bool {
        matches!(
            self,
            Self::AwsNetwork
                | Self::AwsRdsPostgres
                | Self::AwsSecret
                | Self::AwsEksCluster
                | Self::KubernetesDeploy
        )
    }
}

impl Action {
    /// Every output name this action can produce.
    pub fn outputs(&self) -> Vec<String> {
        let mut outputs: Vec<String> = self
            .kind
            .fixed_outputs()
            .iter()
            .map(|name| name.to_string())
            .collect();
        if self.kind == ActionType::RestApi {
            if let Some(Value::Object(mapping)) = self.config.get("response_mapping") {
                outputs.extend(mapping.keys().cloned());
            }
        }
        outputs
    }
}

/// Whether `id` can be a catalog item's id: lower-case letters, digits and
/// dashes, starting with a letter, at most 63 characters. Anything else
/// names no item, and is not looked up.
pub fn is_item_id(id: &str) -> bool {
    id.len() <= 63
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl CatalogItem {
    pub fn actions(&self) -> &[Action] {
        self.fulfillment
            .automated
            .as_ref()
            .map_or(&[], |automated| &automated.actions)
    }

    /// Whether `caller` may see and request the item: everyone when it has no
    /// access rule, else members of its groups, and always the admins.
    pub fn visible_to(&self, caller: &crate::auth::Principal, admin_group: &str) -> bool {
        caller.in_group(admin_group)
            || self
                .header
                .access
                .as_ref()
                .is_none_or(|access| caller.in_any(&access.groups))
    }

    pub fn field(&self, id: &str) -> Option<&Field> {
        self.presentation.fields.iter().find(|field| field.id == id)
    }
}
