//! Catalog ingest end to end: a file uploaded to the catalog bucket is
//! delivered by the bucket's notification to the real ingest binary, and the
//! catalog API (through the local gateway) serves the result. Each test uses
//! its own item id and bucket key.

use aws_sdk_s3::primitives::ByteStream;
use pao_integration::{as_admin, as_user, env, http, unique, Stack};
use reqwest::StatusCode;
use serde_json::{json, Value};

const MINIMAL: &str = include_str!("../shared/tests/fixtures/catalog/valid/minimal-automated.yaml");

/// A valid item with the given id and version.
fn item(id: &str, version: &str) -> String {
    MINIMAL
        .replace("id: demo-item", &format!("id: {id}"))
        .replace("version: 1.0.0", &format!("version: {version}"))
}

struct Catalog {
    stack: Stack,
    s3: aws_sdk_s3::Client,
    bucket: String,
}

impl Catalog {
    async fn new() -> Self {
        let stack = Stack::connect().await;
        // moto runs the bucket's notification, so the ingest of the upload,
        // inside PutObject (S3 itself delivers it afterwards): an upload of
        // an alias bomb waits for a debug build's parses of it.
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .operation_timeout(std::time::Duration::from_secs(120))
            .operation_attempt_timeout(std::time::Duration::from_secs(120))
            .build();
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&stack.sdk)
                .timeout_config(timeouts)
                .build(),
        );
        Self {
            stack,
            s3,
            bucket: env("PAO_CATALOG_BUCKET"),
        }
    }

    async fn upload(&self, key: &str, body: &str) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body.as_bytes().to_vec()))
            .send()
            .await
            .expect("PutObject");
    }

    async fn delete(&self, key: &str) {
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .expect("DeleteObject");
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = as_admin(http().get(self.stack.url(path)))
            .send()
            .await
            .expect("the API answers");
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }
}

#[tokio::test]
async fn an_upload_is_validated_published_and_listed() {
    let catalog = Catalog::new().await;
    let id = unique("good");
    catalog
        .upload(&format!("it/{id}.yaml"), &item(&id, "1.0.0"))
        .await;

    let (status, listed) = catalog.get(&format!("/api/v1/catalog?q={id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["count"], 1);
    assert_eq!(listed["items"][0]["id"], id.as_str());
    assert_eq!(listed["items"][0]["mode"], "automated");

    let (status, report) = catalog
        .get(&format!("/api/v1/catalog/validation/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["status"], "valid");
    assert_eq!(report["source_key"], format!("it/{id}.yaml"));
}

#[tokio::test]
async fn a_bad_upload_keeps_the_last_good_version_and_stores_a_located_report() {
    let catalog = Catalog::new().await;
    let id = unique("kept");
    let key = format!("it/{id}.yaml");
    catalog.upload(&key, &item(&id, "1.0.0")).await;
    let broken = item(&id, "1.1.0").replace("type: integer", "type: colour");
    catalog.upload(&key, &broken).await;

    let (status, served) = catalog.get(&format!("/api/v1/catalog/items/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served["version"], "1.0.0");

    let (_, report) = catalog
        .get(&format!("/api/v1/catalog/validation/{id}"))
        .await;
    assert_eq!(report["status"], "invalid");
    assert_eq!(
        report["errors"][0]["message"],
        "unknown field type `colour`; expected one of: string, text, integer, number, boolean, selection, multi-selection, date, datetime, email, url, password, file, json, yaml"
    );
    assert_eq!(report["errors"][0]["path"], "presentation.fields[1].type");
    assert_eq!(report["errors"][0]["line"], 17);
    assert_eq!(report["errors"][0]["column"], 13);
}

#[tokio::test]
async fn a_deleted_file_unpublishes_its_item() {
    let catalog = Catalog::new().await;
    let id = unique("gone");
    let key = format!("it/{id}.yaml");
    catalog.upload(&key, &item(&id, "1.0.0")).await;
    assert_eq!(
        catalog.get(&format!("/api/v1/catalog/items/{id}")).await.0,
        StatusCode::OK
    );

    catalog.delete(&key).await;
    let (status, body) = catalog.get(&format!("/api/v1/catalog/items/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_late_event_for_an_older_version_changes_nothing() {
    let catalog = Catalog::new().await;
    let id = unique("late");
    let key = format!("it/{id}.yaml");
    catalog.upload(&key, &item(&id, "1.0.0")).await;
    catalog.upload(&key, &item(&id, "2.0.0")).await;

    // S3 delivers the first upload's event again, late: invoke the ingest
    // function with it, as S3 would.
    let event = json!({"Records": [{
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": catalog.bucket}, "object": {"key": key, "size": 1}}
    }]});
    let lambda = aws_sdk_lambda::Client::new(&catalog.stack.sdk);
    let invoked = lambda
        .invoke()
        .function_name("catalog-ingest")
        .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
        .send()
        .await
        .expect("Invoke");
    assert_eq!(invoked.function_error(), None);
    let outcome: Value = serde_json::from_slice(invoked.payload().unwrap().as_ref()).unwrap();
    assert_eq!(outcome[0]["outcome"], "unchanged");

    let (_, served) = catalog.get(&format!("/api/v1/catalog/items/{id}")).await;
    assert_eq!(served["version"], "2.0.0");
}

#[tokio::test]
async fn a_second_file_cannot_take_a_published_id() {
    let catalog = Catalog::new().await;
    let id = unique("owned");
    catalog
        .upload(&format!("it/{id}-a.yaml"), &item(&id, "1.0.0"))
        .await;
    catalog
        .upload(&format!("it/{id}-b.yaml"), &item(&id, "9.0.0"))
        .await;

    let (_, served) = catalog.get(&format!("/api/v1/catalog/items/{id}")).await;
    assert_eq!(served["version"], "1.0.0");
    let (_, report) = catalog
        .get(&format!("/api/v1/catalog/validation/{id}"))
        .await;
    assert_eq!(report["status"], "invalid");
    assert_eq!(
        report["errors"][0]["message"],
        format!("item id `{id}` is already used by it/{id}-a.yaml")
    );
}

#[tokio::test]
async fn the_example_catalog_is_served_with_forms_and_access_rules() {
    let catalog = Catalog::new().await;
    // Uploaded by the stack at start-up, through the bucket.
    for id in [
        "eks-app-stack",
        "rest-database",
        "github-app-deploy",
        "messaging-queue",
    ] {
        let (status, form) = catalog
            .get(&format!("/api/v1/catalog/items/{id}/schema"))
            .await;
        assert_eq!(status, StatusCode::OK, "{id}");
        assert_eq!(
            form["schema"]["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert!(form["uiSchema"]["ui:order"].is_array(), "{id}");
    }
    let (status, category) = catalog.get("/api/v1/catalog/application-stacks").await;
    assert_eq!(status, StatusCode::OK);
    assert!(category["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["id"] == "eks-app-stack"));

    // eks-app-stack is for developers and tech leads only: 404 to others.
    let outsider = as_user(
        http().get(catalog.stack.url("/api/v1/catalog/items/eks-app-stack")),
        "someone@example.com",
        &["finance"],
    );
    assert_eq!(
        outsider.send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let developer = as_user(
        http().get(catalog.stack.url("/api/v1/catalog/items/eks-app-stack")),
        "dev@example.com",
        &["developers"],
    );
    assert_eq!(developer.send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn the_catalog_api_refuses_anonymous_callers_and_answers_unknowns_with_404() {
    let catalog = Catalog::new().await;
    let anonymous = http()
        .get(catalog.stack.url("/api/v1/catalog"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated");

    // Ids no item can have (3,000 characters, more than DynamoDB takes as a
    // key) are unknown too, never a 5xx.
    let long = "x".repeat(3000);
    for path in [
        "/api/v1/catalog/items/no-such-item".to_string(),
        "/api/v1/catalog/items/no-such-item/schema".to_string(),
        "/api/v1/catalog/validation/no-such-item".to_string(),
        "/api/v1/catalog/no-such-category".to_string(),
        format!("/api/v1/catalog/items/{long}"),
        format!("/api/v1/catalog/validation/{long}"),
        format!("/api/v1/catalog/{long}"),
    ] {
        let (status, body) = catalog.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    let (status, body) = catalog
        .get(&format!("/api/v1/catalog?q={}", "x".repeat(201)))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad_request");
}

#[tokio::test]
async fn refresh_is_for_admins_and_rebuilds_from_the_bucket() {
    let catalog = Catalog::new().await;
    let denied = as_user(
        http().post(catalog.stack.url("/api/v1/catalog/refresh")),
        "dev@example.com",
        &["developers"],
    )
    .send()
    .await
    .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);

    let response = as_admin(http().post(catalog.stack.url("/api/v1/catalog/refresh")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let summary: Value = response.json().await.unwrap();
    let results = summary["results"].as_array().unwrap();
    assert!(results
        .iter()
        .any(|r| r["key"] == "examples/eks-app-stack.yaml" && r["outcome"] == "unchanged"));
}

const INVALID: &str = "../shared/tests/fixtures/catalog/invalid";

/// Each way a file can fail before it is even YAML, as its bytes with
/// `demo-item` standing for the item id, and what its report must say.
fn unparseable_uploads() -> Vec<(&'static str, Vec<u8>, u64, &'static str)> {
    let fixture = |name: &str| {
        std::fs::read(format!("{}/{INVALID}/{name}", env!("CARGO_MANIFEST_DIR")))
            .unwrap_or_else(|err| panic!("fixture {name}: {err}"))
    };
    let oversized = format!(
        "{}# {}\n",
        item("demo-item", "2.0.0"),
        "x".repeat(300 * 1024)
    );
    vec![
        (
            "syntax error",
            fixture("yaml-syntax-error.yaml"),
            10,
            "illegal placement of ':' indicator",
        ),
        (
            "duplicate key",
            fixture("yaml-duplicate-key.yaml"),
            7,
            "duplicate key `owner`",
        ),
        (
            "not UTF-8",
            fixture("yaml-not-utf8.yaml"),
            4,
            "the file is not valid UTF-8",
        ),
        (
            "alias bomb",
            fixture("yaml-alias-bomb.yaml"),
            5,
            "more than 50000 values once aliases are expanded",
        ),
        (
            "too deep",
            fixture("yaml-deep-nesting.yaml"),
            2,
            "nesting deeper than 32 levels",
        ),
        (
            "oversized",
            oversized.into_bytes(),
            1,
            "a catalog item may be at most 262144 bytes",
        ),
    ]
}

fn with_id(bytes: &[u8], id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(at) = rest.windows(9).position(|w| w == b"demo-item") {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(id.as_bytes());
        rest = &rest[at + 9..];
    }
    out.extend_from_slice(rest);
    out
}

impl Catalog {
    async fn upload_bytes(&self, key: &str, body: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .expect("PutObject");
    }
}

#[tokio::test]
async fn every_unparseable_replacement_is_reported_and_the_live_version_named() {
    let catalog = Catalog::new().await;
    for (kind, bytes, line, message) in unparseable_uploads() {
        let id = unique("broken");
        let key = format!("it/{id}.yaml");
        catalog.upload(&key, &item(&id, "1.0.0")).await;
        catalog.upload_bytes(&key, with_id(&bytes, &id)).await;

        let (status, served) = catalog.get(&format!("/api/v1/catalog/items/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{kind}");
        assert_eq!(served["version"], "1.0.0", "{kind}");
        let (status, report) = catalog
            .get(&format!("/api/v1/catalog/validation/{id}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{kind}");
        assert_eq!(report["status"], "invalid", "{kind}: {report}");
        assert_eq!(report["source_key"], key.as_str(), "{kind}");
        let error = &report["errors"][0];
        assert_eq!(error["file"], key.as_str(), "{kind}");
        assert_eq!(error["line"], line, "{kind}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{kind}: {error}"
        );
        assert_eq!(report["live"]["version"], "1.0.0", "{kind}");
        assert!(
            report["summary"]
                .as_str()
                .unwrap()
                .contains("was refused (1 error); "),
            "{kind}: {report}"
        );
        assert!(
            report["summary"]
                .as_str()
                .unwrap()
                .contains("version 1.0.0"),
            "{kind}: {report}"
        );
    }
}

#[tokio::test]
async fn an_unparseable_first_upload_is_reported_under_its_id_or_its_file_name() {
    let catalog = Catalog::new().await;
    // The id is readable from the text even though the YAML is not.
    let id = unique("first");
    let fixture = &unparseable_uploads()[0].1;
    catalog
        .upload_bytes(&format!("it/other-{id}.yaml"), with_id(fixture, &id))
        .await;
    let (status, report) = catalog
        .get(&format!("/api/v1/catalog/validation/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["status"], "invalid");
    assert_eq!(report["errors"][0]["line"], 10);
    assert_eq!(report["live"], Value::Null);

    // No id in the file at all: the file name names the report.
    let name = unique("nameless");
    let bomb = &unparseable_uploads()[3].1;
    catalog
        .upload_bytes(&format!("it/{name}.yaml"), bomb.clone())
        .await;
    let (status, report) = catalog
        .get(&format!("/api/v1/catalog/validation/{name}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["source_key"], format!("it/{name}.yaml"));
    assert_eq!(report["errors"][0]["line"], 5);
}

/// The processes of the catalog function this workspace built: the
/// instances `cargo lambda watch` is running (a binary rebuilt meanwhile
/// shows as `… (deleted)`, and still counts).
fn catalog_instances() -> usize {
    let binary = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .join("target/debug/catalog-api");
    let binary = binary.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| std::fs::read_link(entry.path().join("exe")).ok())
                .filter(|exe| exe.to_string_lossy().starts_with(binary.as_str()))
                .count()
        })
        .unwrap_or(0)
}

/// Several instances of the catalog function answer reads while items are
/// published and others published and unpublished again: once any instance
/// served an item, no instance answers 404 for it or leaves it out of the
/// list.
#[tokio::test]
async fn no_instance_answers_from_a_catalog_older_than_one_already_served() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    const READERS: usize = 4;
    const STABLE: usize = 4;
    let catalog = Arc::new(Catalog::new().await);
    let prefix = unique("gen");
    let stable: Arc<Vec<String>> =
        Arc::new((0..STABLE).map(|n| format!("{prefix}-s{n}")).collect());
    let seen: Arc<Vec<AtomicBool>> =
        Arc::new((0..STABLE).map(|_| AtomicBool::new(false)).collect());
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));

    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (catalog, stable, seen, done, reads, prefix) = (
                Arc::clone(&catalog),
                Arc::clone(&stable),
                Arc::clone(&seen),
                Arc::clone(&done),
                Arc::clone(&reads),
                prefix.clone(),
            );
            tokio::spawn(async move {
                let mut violations = Vec::new();
                while !done.load(Ordering::SeqCst) {
                    for (n, id) in stable.iter().enumerate() {
                        let known = seen[n].load(Ordering::SeqCst);
                        let (status, _) = catalog.get(&format!("/api/v1/catalog/items/{id}")).await;
                        reads.fetch_add(1, Ordering::Relaxed);
                        match status {
                            StatusCode::OK => seen[n].store(true, Ordering::SeqCst),
                            StatusCode::NOT_FOUND if known => {
                                violations.push(format!("{id}: 404 after it was served"))
                            }
                            StatusCode::NOT_FOUND => {}
                            other => violations.push(format!("{id}: {other}")),
                        }
                    }
                    let known: Vec<bool> = seen.iter().map(|s| s.load(Ordering::SeqCst)).collect();
                    let (status, listed) =
                        catalog.get(&format!("/api/v1/catalog?q={prefix}")).await;
                    reads.fetch_add(1, Ordering::Relaxed);
                    assert_eq!(status, StatusCode::OK);
                    let ids: Vec<&str> = listed["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(|item| item["id"].as_str())
                        .collect();
                    for (n, id) in stable.iter().enumerate() {
                        if ids.contains(&id.as_str()) {
                            seen[n].store(true, Ordering::SeqCst);
                        } else if known[n] {
                            violations
                                .push(format!("{id}: missing from the list after it was served"));
                        }
                    }
                }
                violations
            })
        })
        .collect();

    // Publish the stable items one by one; between them, publish and delete
    // another item, so the catalog changes under the readers all the time.
    for (n, id) in stable.iter().enumerate() {
        catalog
            .upload(&format!("it/{id}.yaml"), &item(id, "1.0.0"))
            .await;
        let churn = format!("{prefix}-c{n}");
        let churn_key = format!("it/{churn}.yaml");
        catalog.upload(&churn_key, &item(&churn, "1.0.0")).await;
        catalog.delete(&churn_key).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    done.store(true, Ordering::SeqCst);

    let mut violations = Vec::new();
    for reader in readers {
        violations.extend(reader.await.expect("a reader"));
    }
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(
        seen.iter().all(|s| s.load(Ordering::SeqCst)),
        "every stable item was served"
    );
    let instances = catalog_instances();
    assert!(
        instances >= 3,
        "only {instances} catalog-api instances served {} reads",
        reads.load(Ordering::Relaxed)
    );
}
