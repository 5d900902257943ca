//! The Kubernetes API of an EKS cluster, reached as AWS documents it:
//! `DescribeCluster` gives the API server's endpoint and the cluster's CA,
//! TLS is verified against that CA (never disabled), and each request
//! carries an EKS token ([`token`]) signed with the function's own AWS
//! credentials, which the cluster's access entry maps to its permissions.
//!
//! A client is kept per cluster for the life of the process (a warm Lambda
//! serves many polls) and rebuilt, with a new token, before its token runs
//! out.

pub mod token;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::action::ActionError;
use crate::aws::sdk;
use token::Token;

/// Where a cluster stands for a caller that wants its API.
pub enum Reach {
    Ready(kube::Client),
    /// Not ACTIVE yet (or updating): try again later.
    NotYet(String),
}

pub struct Clusters {
    eks: aws_sdk_eks::Client,
    credentials: SharedCredentialsProvider,
    region: String,
    clients: Mutex<HashMap<String, (Token, kube::Client)>>,
}

impl Clusters {
    pub fn new(
        eks: aws_sdk_eks::Client,
        credentials: SharedCredentialsProvider,
        region: String,
    ) -> Self {
        Self {
            eks,
            credentials,
            region,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// A client of `cluster`'s API, made now or kept from before while its
    /// token is fresh.
    pub async fn reach(&self, cluster: &str) -> Result<Reach, ActionError> {
        let now = SystemTime::now();
        if let Some(client) = self.kept(cluster, now) {
            return Ok(Reach::Ready(client));
        }
        let described = match self.eks.describe_cluster().name(cluster).send().await {
            Ok(described) => described,
            Err(err) if sdk::code(&err) == Some("ResourceNotFoundException") => {
                return Err(ActionError::Fatal(format!(
                    "EKS cluster {cluster} does not exist"
                )))
            }
            Err(err) => return Err(sdk::failed("EKS", "DescribeCluster", &err)),
        };
        let Some(found) = described.cluster() else {
            return Err(ActionError::Retryable(format!(
                "EKS DescribeCluster answered without cluster {cluster}"
            )));
        };
        let status = found.status().map(|s| s.as_str()).unwrap_or("unknown");
        match status {
            "ACTIVE" | "UPDATING" => {}
            "CREATING" | "PENDING" => {
                return Ok(Reach::NotYet(format!("EKS cluster {cluster} is {status}")))
            }
            _ => {
                return Err(ActionError::Fatal(format!(
                    "EKS cluster {cluster} is {status}: nothing can be deployed on it"
                )))
            }
        }
        let endpoint = found.endpoint().ok_or_else(|| {
            ActionError::Retryable(format!("EKS cluster {cluster} has no endpoint yet"))
        })?;
        let ca = found
            .certificate_authority()
            .and_then(|ca| ca.data())
            .ok_or_else(|| {
                ActionError::Retryable(format!("EKS cluster {cluster} has no CA yet"))
            })?;
        let token = self.token(cluster, now).await?;
        let client = client(cluster, endpoint, ca, &token)?;
        self.keep(cluster, token, client.clone());
        Ok(Reach::Ready(client))
    }

    fn kept(&self, cluster: &str, now: SystemTime) -> Option<kube::Client> {
        let clients = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        clients
            .get(cluster)
            .filter(|(token, _)| token.fresh(now))
            .map(|(_, client)| client.clone())
    }

    fn keep(&self, cluster: &str, token: Token, client: kube::Client) {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        clients.insert(cluster.to_string(), (token, client));
    }

    async fn token(&self, cluster: &str, now: SystemTime) -> Result<Token, ActionError> {
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|err| {
                ActionError::Retryable(format!("no AWS credentials to sign an EKS token: {err}"))
            })?;
        Token::sign(credentials, &self.region, cluster, now).map_err(|err| {
            ActionError::Fatal(format!(
                "the EKS token for cluster {cluster} cannot be signed: {err}"
            ))
        })
    }
}

/// A client of the API at `endpoint`, trusting only the cluster's CA
/// (`data`: the base64 of its PEM, as EKS gives it).
fn client(
    cluster: &str,
    endpoint: &str,
    data: &str,
    token: &Token,
) -> Result<kube::Client, ActionError> {
    let invalid = |what: String| ActionError::Fatal(format!("EKS cluster {cluster}: {what}"));
    let pem = STANDARD
        .decode(data.trim())
        .map_err(|err| invalid(format!("its CA is not base64: {err}")))?;
    let roots: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&pem)
        .map(|cert| cert.map(|der| der.as_ref().to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|err| invalid(format!("its CA is not a PEM certificate: {err}")))?;
    if roots.is_empty() {
        return Err(invalid("its CA holds no certificate".to_string()));
    }
    let url = endpoint
        .parse()
        .map_err(|err| invalid(format!("its endpoint {endpoint} is not a URL: {err}")))?;
    let mut config = kube::Config::new(url);
    config.root_cert = Some(roots);
    config.auth_info.token = Some(token.value.clone());
    kube::Client::try_from(config)
        .map_err(|err| invalid(format!("no client can be built for it: {err}")))
}
