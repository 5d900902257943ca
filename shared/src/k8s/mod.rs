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
    /// Not ACTIVE yet: try again later.
    NotYet(String),
    /// EKS has no such cluster (any more).
    Gone,
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
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Ok(Reach::Gone)
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use aws_sdk_eks::operation::describe_cluster::{DescribeClusterError, DescribeClusterOutput};
    use aws_sdk_eks::types::error::ResourceNotFoundException;
    use aws_sdk_eks::types::{Certificate, Cluster, ClusterStatus};
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};

    /// A self-signed CA made for these tests (no key kept), base64 of its
    /// PEM as EKS gives it.
    const CA: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJQakNCNUtBREFnRUNBZ0VCTUFvR0NDcUdTTTQ5QkFNQ01CNHhIREFhQmdOVkJBTU1FM0JoYnlCMFpYTjAKSUdOc2RYTjBaWElnUTBFd0hoY05Nall3TVRBeE1EQXdNREF3V2hjTk5EWXdNVEF4TURBd01EQXdXakFlTVJ3dwpHZ1lEVlFRRERCTndZVzhnZEdWemRDQmpiSFZ6ZEdWeUlFTkJNRmt3RXdZSEtvWkl6ajBDQVFZSUtvWkl6ajBECkFRY0RRZ0FFYjJjOEpraUhlKy9GVlFPL3FDTGdGVlBLYnc5anAxbGZSRHp0eHdNK1RZaUpXSWRTcHpUWnN1RFYKQzhkMFc0RlF5dXRST1F0Z1dCQmF5U1VSKzVXdWM2TVRNQkV3RHdZRFZSMFRBUUgvQkFVd0F3RUIvekFLQmdncQpoa2pPUFFRREFnTkpBREJHQWlFQXh2cE9vMUEwMFNmNE5rU0NuT1NaNTFBOEVyRHUzK3VQMVBHb3MrVWQ0TVFDCklRRHMzQ2xlc2pBMlFhVWtjaEVjWlc0c0hpSHdNeW9IbHE5em5XNEw4bnBqZGc9PQotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg==";

    fn described(status: ClusterStatus, ca: &str) -> Rule {
        let ca = ca.to_string();
        mock!(aws_sdk_eks::Client::describe_cluster)
            .match_requests(|input| input.name() == Some("shop"))
            .then_output(move || {
                DescribeClusterOutput::builder()
                    .cluster(
                        Cluster::builder()
                            .name("shop")
                            .status(status.clone())
                            .endpoint("https://ABCDEF.gr7.us-east-1.eks.amazonaws.com")
                            .certificate_authority(Certificate::builder().data(&ca).build())
                            .build(),
                    )
                    .build()
            })
    }

    fn clusters(rules: &[&Rule]) -> Clusters {
        let credentials = Credentials::new("AKID", "secret", None, None, "test");
        Clusters::new(
            mock_client!(aws_sdk_eks, RuleMode::MatchAny, rules),
            SharedCredentialsProvider::new(credentials),
            "us-east-1".to_string(),
        )
    }

    #[tokio::test]
    async fn an_active_cluster_gives_a_client_kept_while_its_token_is_fresh() {
        let active = described(ClusterStatus::Active, CA);
        let clusters = clusters(&[&active]);
        assert!(matches!(clusters.reach("shop").await, Ok(Reach::Ready(_))));
        assert!(matches!(clusters.reach("shop").await, Ok(Reach::Ready(_))));
        assert_eq!(active.num_calls(), 1, "described once, then kept");
    }

    #[tokio::test]
    async fn a_cluster_being_made_is_waited_for() {
        let creating = described(ClusterStatus::Creating, CA);
        let reached = clusters(&[&creating]).reach("shop").await;
        assert!(
            matches!(&reached, Ok(Reach::NotYet(why)) if why == "EKS cluster shop is CREATING"),
            "{:?}",
            reached.as_ref().err()
        );
    }

    #[tokio::test]
    async fn a_failed_or_deleting_cluster_is_fatal_and_a_missing_one_gone() {
        for status in [ClusterStatus::Failed, ClusterStatus::Deleting] {
            let rule = described(status.clone(), CA);
            let reached = clusters(&[&rule]).reach("shop").await;
            assert!(
                matches!(&reached, Err(ActionError::Fatal(m)) if m.contains(status.as_str())),
                "{status:?}"
            );
        }
        let missing = mock!(aws_sdk_eks::Client::describe_cluster).then_error(|| {
            DescribeClusterError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .message("No cluster found")
                    .build(),
            )
        });
        assert!(matches!(
            clusters(&[&missing]).reach("shop").await,
            Ok(Reach::Gone)
        ));
    }

    #[tokio::test]
    async fn a_ca_that_is_not_a_pem_certificate_is_refused_never_skipped() {
        for (data, said) in [
            ("not base64!", "its CA is not base64"),
            ("aGVsbG8=", "its CA holds no certificate"),
        ] {
            let rule = described(ClusterStatus::Active, data);
            let reached = clusters(&[&rule]).reach("shop").await;
            assert!(
                matches!(&reached, Err(ActionError::Fatal(m)) if m.contains(said)),
                "{data}: {:?}",
                reached.as_ref().err()
            );
        }
    }
}
