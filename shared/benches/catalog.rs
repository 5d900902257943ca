//! Benchmarks of the catalog's hot paths: validating one file and a whole
//! catalog, compiling an item's form, and the catalog API served from a warm
//! cache.
//!
//! ```sh
//! cargo bench -p pao --bench catalog
//! # p50/p99/max of the warm list handler (criterion reports means, not tails):
//! PAO_BENCH_PERCENTILES=1 cargo bench -p pao --bench catalog -- api/list
//! # validating the EKS item beside its floor, the YAML parser's bare events:
//! cargo bench -p pao --bench catalog -- validate/eks
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use pao::api::catalog::CatalogApi;
use pao::auth::{AuthMode, DEV_GROUPS_HEADER, DEV_USER_HEADER};
use pao::catalog::form::form;
use pao::catalog::index::{
    CatalogSource, CatalogStore, Generation, PublishOutcome, PublishedItem, SetDigest,
    SourceObject, StoreError, ValidationReport,
};
use pao::catalog::validate::{validate_catalog, validate_file};
use pao::config::CatalogConfig;
use tokio::runtime::Runtime;

/// The example catalog: (original id, file bytes).
const EXAMPLES: [(&str, &[u8]); 4] = [
    (
        "eks-app-stack",
        include_bytes!("../../catalog/items/eks-app-stack.yaml"),
    ),
    (
        "github-app-deploy",
        include_bytes!("../../catalog/items/github-app-deploy.yaml"),
    ),
    (
        "messaging-queue",
        include_bytes!("../../catalog/items/messaging-queue.yaml"),
    ),
    (
        "rest-database",
        include_bytes!("../../catalog/items/rest-database.yaml"),
    ),
];

const EKS: &[u8] = EXAMPLES[0].1;

/// The group every example item admits; the benchmark caller is a member, so
/// the list is not filtered down to nothing.
const CALLER_GROUP: &str = "developers";
const CALLER: &str = "bench@example.com";

fn is_item_id(id: &str) -> bool {
    (2..=63).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `count` catalog files built from the examples in turn, each with its
/// `header.id` rewritten to `<original>-<n>`: (file name, bytes).
fn generated_catalog(count: usize) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|n| {
            let (original, bytes) = EXAMPLES[n % EXAMPLES.len()];
            let text = std::str::from_utf8(bytes).expect("the examples are UTF-8");
            let id = format!("{original}-{n:04}");
            assert!(
                is_item_id(&id),
                "generated id `{id}` is not a valid item id"
            );
            let line = format!("\nheader:\n  id: {original}\n");
            assert!(
                text.contains(&line),
                "`{original}` has no `  id: {original}` line right under `header:`"
            );
            let text = text.replacen(&line, &format!("\nheader:\n  id: {id}\n"), 1);
            (format!("items/{id}.yaml"), text.into_bytes())
        })
        .collect()
}

// ------------------------------------------------------------------ fakes

/// The published catalog in memory; counts reads so the benches can prove
/// they were served from the API's cache.
struct MemoryStore {
    items: Vec<PublishedItem>,
    reads: AtomicUsize,
}

#[async_trait]
impl CatalogStore for MemoryStore {
    async fn generation(&self) -> Result<Generation, StoreError> {
        Ok(Generation {
            number: 1,
            digest: SetDigest::of(&self.items),
        })
    }

    async fn published(&self) -> Result<Vec<PublishedItem>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(self.items.clone())
    }

    async fn published_item(&self, item_id: &str) -> Result<Option<PublishedItem>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .items
            .iter()
            .find(|published| published.item.header.id == item_id)
            .cloned())
    }

    async fn publish(&self, _item: &PublishedItem) -> Result<PublishOutcome, StoreError> {
        Ok(PublishOutcome::Stale)
    }

    async fn unpublish(
        &self,
        _item_id: &str,
        _source_key: &str,
        _modified_before: i64,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    async fn report(&self, _item_id: &str) -> Result<Option<ValidationReport>, StoreError> {
        Ok(None)
    }

    async fn save_own_report(&self, _report: &ValidationReport) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn save_report(&self, _report: &ValidationReport) -> Result<(), StoreError> {
        Ok(())
    }

    async fn item_of_source(&self, _source_key: &str) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    async fn claim_source(
        &self,
        _source_key: &str,
        _item_id: &str,
        _modified: i64,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }

    async fn release_source(&self, _source_key: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn contenders(&self, _item_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    async fn set_contender(
        &self,
        _item_id: &str,
        _source_key: &str,
        _contending: bool,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

/// An empty bucket: the read routes never touch it.
struct NoSource;

#[async_trait]
impl CatalogSource for NoSource {
    async fn fetch(
        &self,
        _key: &str,
        _max_bytes: usize,
    ) -> Result<Option<SourceObject>, StoreError> {
        Ok(None)
    }

    async fn keys(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
}

/// `count` valid, published items with distinct ids.
fn published_items(count: usize) -> Vec<PublishedItem> {
    generated_catalog(count)
        .into_iter()
        .enumerate()
        .map(|(n, (key, bytes))| {
            let valid = validate_file(&key, &bytes).unwrap_or_else(|errors| {
                panic!("{key} is invalid: {errors:?}");
            });
            PublishedItem {
                item: valid.item,
                source_key: key,
                content_hash: valid.content_hash,
                source_modified: 1_700_000_000_000 + n as i64,
                published_at: "2026-01-01T00:00:00Z".to_string(),
            }
        })
        .collect()
}

struct Api {
    api: CatalogApi,
    store: Arc<MemoryStore>,
}

/// The catalog API over 100 published items, whose generation never changes.
fn api() -> Api {
    let store = Arc::new(MemoryStore {
        items: published_items(100),
        reads: AtomicUsize::new(0),
    });
    let config = CatalogConfig {
        catalog_table: "bench-catalog".to_string(),
        catalog_bucket: "bench-catalog".to_string(),
        admin_group: "pao-admins".to_string(),
    };
    let api = CatalogApi::new(
        Arc::clone(&store) as Arc<dyn CatalogStore>,
        Arc::new(NoSource),
        AuthMode::Dev,
        &config,
    );
    Api { api, store }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// An HTTP API (payload 2.0) event from a developer, as API Gateway sends it.
fn request(path: &str, route: &str, path_parameters: Option<serde_json::Value>) -> Request {
    let mut event = serde_json::json!({
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "accept": "application/json",
            DEV_USER_HEADER: CALLER,
            DEV_GROUPS_HEADER: CALLER_GROUP,
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "bench"},
            "requestId": "bench",
            "routeKey": route,
            "stage": "$default",
            "time": "23/Nov/2026:12:00:00 +0000",
            "timeEpoch": 0
        },
        "isBase64Encoded": false
    });
    if let Some(parameters) = path_parameters {
        event["pathParameters"] = parameters;
    }
    lambda_http::request::from_str(&event.to_string()).expect("a valid HTTP API event")
}

const LIST_ROUTE: &str = "GET /api/v1/catalog";
const LIST_PATH: &str = "/api/v1/catalog";
const SCHEMA_ROUTE: &str = "GET /api/v1/catalog/items/{item_id}/schema";
const SCHEMA_ITEM: &str = "eks-app-stack-0000";

fn list_request() -> Request {
    request(LIST_PATH, LIST_ROUTE, None)
}

fn schema_request() -> Request {
    request(
        &format!("/api/v1/catalog/items/{SCHEMA_ITEM}/schema"),
        SCHEMA_ROUTE,
        Some(serde_json::json!({ "item_id": SCHEMA_ITEM })),
    )
}

fn body_json(response: &Response<Body>) -> serde_json::Value {
    serde_json::from_slice(response.body().as_ref()).expect("a JSON body")
}

// ------------------------------------------------------------------ benches

/// How many events the YAML parser under validation (granit-parser, read
/// with the options validation gives it) yields for `bytes`.
fn yaml_events(bytes: &[u8]) -> usize {
    let text = std::str::from_utf8(bytes).expect("the examples are UTF-8");
    let mut options = granit_parser::Options::default();
    options.emit_comments = false;
    let mut events = 0;
    for event in granit_parser::Parser::new_from_str_with_options(text, options) {
        event.expect("the examples are YAML");
        events += 1;
    }
    events
}

fn validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate");

    let valid = validate_file("items/eks-app-stack.yaml", EKS)
        .unwrap_or_else(|errors| panic!("eks-app-stack.yaml is invalid: {errors:?}"));
    assert_eq!(valid.item.header.id, "eks-app-stack");
    group.throughput(Throughput::Elements(1));
    group.bench_function("eks-app-stack", |b| {
        b.iter(|| validate_file(black_box("items/eks-app-stack.yaml"), black_box(EKS)))
    });
    // The floor under the figure above: the same file through the same YAML
    // parser, each event read and dropped, nothing built or checked.
    assert!(yaml_events(EKS) > 1000);
    group.bench_function("eks-app-stack-yaml-events", |b| {
        b.iter(|| yaml_events(black_box(EKS)))
    });

    let files = generated_catalog(1000);
    let report = validate_catalog(
        files
            .iter()
            .map(|(name, bytes)| (name.as_str(), &bytes[..])),
    );
    assert!(
        report.diagnostics.is_empty(),
        "the generated catalog is invalid: {:?}",
        &report.diagnostics[..report.diagnostics.len().min(5)]
    );
    assert_eq!(report.items.len(), 1000);
    group.throughput(Throughput::Elements(1000));
    // One iteration takes seconds: 10 samples (criterion's minimum) keep a run
    // in tens of seconds rather than minutes.
    group.sample_size(10);
    group.bench_function("catalog-1000", |b| {
        b.iter(|| {
            validate_catalog(
                black_box(&files)
                    .iter()
                    .map(|(name, bytes)| (name.as_str(), &bytes[..])),
            )
        })
    });

    group.finish();
}

fn form_bench(c: &mut Criterion) {
    let item = validate_file("items/eks-app-stack.yaml", EKS)
        .expect("eks-app-stack.yaml is valid")
        .item;
    let compiled = form(&item);
    assert_eq!(compiled.schema["type"], "object");
    assert!(
        compiled.schema["properties"]
            .as_object()
            .is_some_and(|properties| !properties.is_empty()),
        "the form has no properties"
    );
    c.bench_function("form/eks-app-stack", |b| b.iter(|| form(black_box(&item))));
}

fn api_benches(c: &mut Criterion) {
    let rt = runtime();
    let Api { api, store } = api();

    // Warm the cache, and check each route answers what we mean to measure.
    let list = rt.block_on(api.handle(list_request()));
    assert_eq!(list.status(), StatusCode::OK, "{:?}", body_json(&list));
    assert_eq!(body_json(&list)["count"], 100);
    let schema = rt.block_on(api.handle(schema_request()));
    assert_eq!(schema.status(), StatusCode::OK, "{:?}", body_json(&schema));
    let schema = body_json(&schema);
    assert_eq!(schema["item_id"], SCHEMA_ITEM);
    assert!(schema["schema"]["properties"].is_object());
    assert_eq!(store.reads.load(Ordering::Relaxed), 1);

    let mut group = c.benchmark_group("api");
    group.bench_function("list-warm-cache", |b| {
        b.iter_batched(
            list_request,
            |req| rt.block_on(api.handle(black_box(req))),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("item-schema-warm-cache", |b| {
        b.iter_batched(
            schema_request,
            |req| rt.block_on(api.handle(black_box(req))),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    // Every measured call was served from the cache: the store was read once.
    assert_eq!(store.reads.load(Ordering::Relaxed), 1);
}

/// p50/p99/max of 20,000 sequential warm `GET /api/v1/catalog` calls, each
/// timed on its own (request construction and response drop excluded).
fn list_percentiles() {
    const CALLS: usize = 20_000;
    let rt = runtime();
    let Api { api, store } = api();
    for _ in 0..200 {
        let response = rt.block_on(api.handle(list_request()));
        assert_eq!(response.status(), StatusCode::OK);
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let req = list_request();
        let start = Instant::now();
        let response = rt.block_on(api.handle(black_box(req)));
        let elapsed = start.elapsed();
        assert_eq!(response.status(), StatusCode::OK);
        drop(black_box(response));
        samples.push(elapsed);
    }
    assert_eq!(store.reads.load(Ordering::Relaxed), 1);
    samples.sort_unstable();
    // Nearest rank: the smallest sample at or above the given fraction.
    let rank = |p: f64| samples[((p * CALLS as f64).ceil() as usize).clamp(1, CALLS) - 1];
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = samples.iter().sum::<Duration>() / CALLS as u32;
    println!(
        "api/list-warm-cache percentiles over {CALLS} sequential calls: \
         p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs, mean {:.1} µs",
        micros(rank(0.50)),
        micros(rank(0.99)),
        micros(rank(0.999)),
        micros(samples[CALLS - 1]),
        micros(mean),
    );
}

criterion_group!(benches, validate, form_bench, api_benches);

fn main() {
    if std::env::var("PAO_BENCH_PERCENTILES").as_deref() == Ok("1") {
        list_percentiles();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
