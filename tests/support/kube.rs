//! The Kubernetes API stand-in of the local stack, read as tests and the
//! demo read it: `GET /_objects?cluster=<name>` over its TLS, trusted
//! through the CA the stack made.

use serde_json::Value;

use crate::env;

pub struct StandIn {
    url: String,
    client: reqwest::Client,
}

impl StandIn {
    pub fn connect() -> Self {
        let ca = std::fs::read(env("PAO_KUBE_CA_FILE")).expect("the stand-in's CA");
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("a PEM"))
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        Self {
            url: env("PAO_KUBE_URL"),
            client,
        }
    }

    /// Every object cluster `cluster` holds.
    pub async fn objects(&self, cluster: &str) -> Vec<Value> {
        let all: Value = self
            .client
            .get(format!("{}/_objects?cluster={cluster}", self.url))
            .send()
            .await
            .expect("GET /_objects")
            .json()
            .await
            .expect("JSON");
        all["clusters"][cluster]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The objects in `namespace`, and the namespace itself.
    pub async fn namespace(&self, cluster: &str, namespace: &str) -> Vec<Value> {
        self.objects(cluster)
            .await
            .into_iter()
            .filter(|o| {
                o["metadata"]["namespace"] == namespace
                    || (o["kind"] == "Namespace" && o["metadata"]["name"] == namespace)
            })
            .collect()
    }
}

/// The objects of `kind` among `objects`.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}
