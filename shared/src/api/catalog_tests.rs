//! Tests of the catalog API handler, in process.
//!
//! Requests are HTTP API (payload 2.0) events; the bucket and the table are
//! in-memory fakes, and items reach the table through ingest, as they do in
//! AWS.

use std::collections::HashMap;

use serde_json::json;

use super::*;
use crate::api::test_support::body_json;
use crate::catalog::index::StoreError;
use crate::catalog::memory::{MemoryBucket, MemoryCatalog};

const DEMO: &str = include_str!("../../tests/fixtures/catalog/valid/minimal-automated.yaml");
/// Restricted to `developers`.
const DATABASE: &str = include_str!("../../../catalog/items/rest-database.yaml");

/// The demo item as `data-pipeline`, restricted to `developers` and
/// `data-engineers`.
fn data_pipeline() -> String {
    DEMO.replace("id: demo-item", "id: data-pipeline")
        .replace("name: Demo", "name: Data pipeline")
        .replace("category: demos", "category: data")
        .replace(
            "tags: [demo]",
            "tags: [pipeline, etl]\n  access:\n    groups: [developers, data-engineers]",
        )
}

const ADMIN_GROUP: &str = "pao-admins";

// ---------------------------------------------------------------- stores

type Bucket = MemoryBucket;
type Table = MemoryCatalog;

/// What a failing store says; none of it may reach a caller.
const INTERNAL_DETAIL: &str = "DynamoDB GetItem on pao-catalog-secret-table: dispatch failure";

// ---------------------------------------------------------------- world

struct World {
    api: CatalogApi,
    bucket: Arc<Bucket>,
    table: Arc<Table>,
    /// The ingest function, publishing into the same table.
    ingest: Ingest,
}

/// An API over an empty catalog.
fn empty_world() -> World {
    let bucket = Arc::new(Bucket::default());
    let table = Arc::new(Table::default());
    let config = CatalogConfig {
        catalog_table: "pao-catalog".to_string(),
        catalog_bucket: "pao-catalog".to_string(),
        admin_group: ADMIN_GROUP.to_string(),
    };
    World {
        api: CatalogApi::new(table.clone(), bucket.clone(), AuthMode::Dev, &config),
        ingest: Ingest::new(bucket.clone(), table.clone()),
        bucket,
        table,
    }
}

/// The demo item (open to all), the database (developers) and the pipeline
/// (developers, data engineers), published.
async fn world() -> World {
    let world = empty_world();
    world.upload("items/demo.yaml", DEMO).await;
    world.upload("items/rest-database.yaml", DATABASE).await;
    world
        .upload("items/data-pipeline.yaml", &data_pipeline())
        .await;
    world
}

impl World {
    /// Puts a file in the bucket and runs ingest on its event.
    async fn upload(&self, key: &str, text: &str) -> Ingested {
        self.bucket.put(key, text, 100);
        self.ingest.sync_key(key).await.unwrap()
    }

    fn published(&self, item_id: &str) -> PublishedItem {
        self.table.snapshot().published[item_id].clone()
    }
}

// ---------------------------------------------------------------- requests

#[derive(Clone, Copy)]
struct Caller {
    email: &'static str,
    groups: &'static str,
}

const DEVELOPER: Caller = Caller {
    email: "dev@example.com",
    groups: "developers",
};
const OUTSIDER: Caller = Caller {
    email: "designer@example.com",
    groups: "designers, marketing",
};
const ADMIN: Caller = Caller {
    email: "admin@example.com",
    groups: ADMIN_GROUP,
};

/// A request to one route; by default from `DEVELOPER`.
struct Call {
    method: &'static str,
    route: &'static str,
    params: Vec<(&'static str, String)>,
    query: Vec<(&'static str, String)>,
    caller: Option<Caller>,
}

/// `GET /api/v1/catalog/...`: `route` is the route's path, such as
/// `/api/v1/catalog/items/{item_id}`.
fn get(route: &'static str) -> Call {
    Call {
        method: "GET",
        route,
        params: Vec::new(),
        query: Vec::new(),
        caller: Some(DEVELOPER),
    }
}

fn post(route: &'static str) -> Call {
    Call {
        method: "POST",
        ..get(route)
    }
}

/// Percent-encodes a query component.
fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, crate::template::render::UNRESERVED).to_string()
}

impl Call {
    fn param(mut self, name: &'static str, value: &str) -> Self {
        self.params.push((name, value.to_string()));
        self
    }

    fn query(mut self, name: &'static str, value: &str) -> Self {
        self.query.push((name, value.to_string()));
        self
    }

    fn by(mut self, caller: Caller) -> Self {
        self.caller = Some(caller);
        self
    }

    fn anonymous(mut self) -> Self {
        self.caller = None;
        self
    }

    /// The HTTP API event API Gateway would send for this call.
    fn request(&self) -> Request {
        let route_key = format!("{} {}", self.method, self.route);
        let path = self
            .params
            .iter()
            .fold(self.route.to_string(), |path, (name, value)| {
                path.replace(&format!("{{{name}}}"), value)
            });
        let raw_query = self
            .query
            .iter()
            .map(|(name, value)| format!("{name}={}", encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let mut headers = json!({"accept": "application/json"});
        if let Some(caller) = self.caller {
            headers[crate::auth::DEV_USER_HEADER] = caller.email.into();
            headers[crate::auth::DEV_GROUPS_HEADER] = caller.groups.into();
        }
        let mut event = json!({
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": path,
            "rawQueryString": raw_query,
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "local",
                "domainName": "localhost",
                "domainPrefix": "localhost",
                "http": {"method": self.method, "path": path, "protocol": "HTTP/1.1",
                         "sourceIp": "127.0.0.1", "userAgent": "test"},
                "requestId": "test",
                "routeKey": route_key,
                "stage": "$default",
                "time": "23/Nov/2026:12:00:00 +0000",
                "timeEpoch": 0
            },
            "isBase64Encoded": false
        });
        if !self.params.is_empty() {
            let params: HashMap<&str, &str> =
                self.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            event["pathParameters"] = json!(params);
        }
        if !self.query.is_empty() {
            let query: HashMap<&str, &str> =
                self.query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            event["queryStringParameters"] = json!(query);
        }
        lambda_http::request::from_str(&event.to_string()).expect("a valid HTTP API event")
    }

    /// The status and the JSON body of the answer.
    async fn send(self, api: &CatalogApi) -> (StatusCode, Value) {
        let response = api.handle(self.request()).await;
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "every answer is JSON"
        );
        (response.status(), body_json(&response))
    }
}

fn error(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

/// The ids of the items of a list answer.
fn ids(body: &Value) -> Vec<&str> {
    body["items"]
        .as_array()
        .expect("an items array")
        .iter()
        .map(|item| item["id"].as_str().expect("an id"))
        .collect()
}

// ---------------------------------------------------------------- list

#[tokio::test]
async fn list_summarises_every_visible_item_sorted_by_id() {
    let world = world().await;

    let (status, body) = get("/api/v1/catalog").send(&world.api).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], 3);
    assert_eq!(ids(&body), ["data-pipeline", "demo-item", "rest-database"]);
    assert_eq!(
        body["items"][1],
        json!({
            "id": "demo-item",
            "name": "Demo",
            "version": "1.0.0",
            "category": "demos",
            "description": "A demo.",
            "owner": "team-a",
            "tags": ["demo"],
            "mode": "automated",
        })
    );
    assert_eq!(body["items"][0]["tags"], json!(["pipeline", "etl"]));
}

#[tokio::test]
async fn list_filters_by_category_tag_and_text() {
    let world = world().await;
    let list = |name: &'static str, value: &str| get("/api/v1/catalog").query(name, value);

    let (_, by_category) = list("category", "databases").send(&world.api).await;
    assert_eq!(ids(&by_category), ["rest-database"]);
    assert_eq!(by_category["count"], 1);

    let (_, by_tag) = list("tag", "etl").send(&world.api).await;
    assert_eq!(ids(&by_tag), ["data-pipeline"]);

    let (_, partial_tag) = list("tag", "pipe").send(&world.api).await;
    assert_eq!(partial_tag["count"], 0, "tags match exactly");

    let (_, by_text) = list("q", "PostGres").send(&world.api).await;
    assert_eq!(ids(&by_text), ["rest-database"]);

    let (_, by_name) = list("q", "  DaTa PIPELINE ").send(&world.api).await;
    assert_eq!(ids(&by_name), ["data-pipeline"]);

    let (_, by_description) = list("q", "DEMO").send(&world.api).await;
    assert_eq!(ids(&by_description), ["data-pipeline", "demo-item"]);

    let (status, combined) = get("/api/v1/catalog")
        .query("category", "demos")
        .query("q", "postgres")
        .send(&world.api)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(combined, json!({"count": 0, "items": []}));
}

#[tokio::test]
async fn the_text_query_limit_counts_the_query_as_sent() {
    let world = world().await;

    let padded = format!(" {} ", "a".repeat(199));
    let (status, _) = get("/api/v1/catalog")
        .query("q", &padded)
        .send(&world.api)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "201 characters as sent");

    // `İ` lowercases to two characters: still 200 as sent.
    let (status, _) = get("/api/v1/catalog")
        .query("q", &"İ".repeat(200))
        .send(&world.api)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn list_rejects_a_text_query_over_200_characters() {
    let world = world().await;

    let (status, body) = get("/api/v1/catalog")
        .query("q", &"a".repeat(201))
        .send(&world.api)
        .await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        error("bad_request", "q may be at most 200 characters")
    );

    let (status, _) = get("/api/v1/catalog")
        .query("q", &"é".repeat(200))
        .send(&world.api)
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the limit counts characters, not bytes"
    );
}

// ---------------------------------------------------------------- category

#[tokio::test]
async fn category_lists_its_items() {
    let world = world().await;

    let (status, body) = get("/api/v1/catalog/{category}")
        .param("category", "databases")
        .send(&world.api)
        .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["category"], "databases");
    assert_eq!(body["count"], 1);
    assert_eq!(ids(&body), ["rest-database"]);
    assert_eq!(body["items"][0]["name"], "Managed database (DBaaS)");
}

#[tokio::test]
async fn an_unknown_category_is_404() {
    let world = world().await;

    let (status, body) = get("/api/v1/catalog/{category}")
        .param("category", "spaceships")
        .send(&world.api)
        .await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, error("not_found", "no catalog category `spaceships`"));
}

// ---------------------------------------------------------------- item

#[tokio::test]
async fn item_shows_its_form_and_steps_but_not_their_config() {
    let world = world().await;
    let published = world.published("demo-item");

    let (status, body) = get("/api/v1/catalog/items/{item_id}")
        .param("item_id", "demo-item")
        .send(&world.api)
        .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], "demo-item");
    assert_eq!(body["version"], "1.0.0");
    assert_eq!(body["content_hash"], published.content_hash.as_str());
    assert_eq!(body["published_at"], published.published_at.as_str());
    assert_eq!(
        body["header"],
        serde_json::to_value(&published.item.header).unwrap()
    );
    assert_eq!(
        body["presentation"],
        serde_json::to_value(&published.item.presentation).unwrap()
    );
    assert_eq!(body["presentation"]["fields"][0]["id"], "name");
    assert_eq!(
        body["fulfillment"],
        json!({
            "mode": "automated",
            "actions": [
                {"id": "create", "type": "rest-api", "depends_on": []},
                {"id": "notify", "type": "webhook", "depends_on": ["create"]},
            ],
        })
    );
    let text = body.to_string();
    for secret in ["config", "API_URL", "HOOK_URL", "response_mapping", "jira"] {
        assert!(!text.contains(secret), "`{secret}` leaked: {text}");
    }
}

#[tokio::test]
async fn an_unknown_item_is_404() {
    let world = world().await;

    let (status, body) = get("/api/v1/catalog/items/{item_id}")
        .param("item_id", "no-such-item")
        .send(&world.api)
        .await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, error("not_found", "no catalog item `no-such-item`"));
}

// ---------------------------------------------------------------- schema

#[tokio::test]
async fn schema_is_the_items_draft_2020_12_form() {
    let world = world().await;
    let expected = form(&world.published("demo-item").item);

    let (status, body) = get("/api/v1/catalog/items/{item_id}/schema")
        .param("item_id", "demo-item")
        .send(&world.api)
        .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["item_id"], "demo-item");
    assert_eq!(body["version"], "1.0.0");
    assert_eq!(
        body["schema"]["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(body["schema"]["required"], json!(["name"]));
    assert_eq!(body["schema"], expected.schema);
    assert_eq!(body["uiSchema"], expected.ui_schema);
    assert_eq!(
        body["uiSchema"]["ui:order"],
        json!(["name", "size", "public", "host", "*"])
    );
}

#[tokio::test]
async fn the_schema_of_an_unknown_item_is_404() {
    let world = world().await;

    let (status, body) = get("/api/v1/catalog/items/{item_id}/schema")
        .param("item_id", "no-such-item")
        .send(&world.api)
        .await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, error("not_found", "no catalog item `no-such-item`"));
}

// ---------------------------------------------------------------- validation

#[tokio::test]
async fn validation_returns_the_last_report_with_located_errors() {
    let world = world().await;
    let broken = DEMO.replace("label: Name", "labl: Name");
    world.bucket.put("items/demo.yaml", &broken, 200);
    world.ingest.sync_key("items/demo.yaml").await.unwrap();

    let (status, body) = get("/api/v1/catalog/validation/{item_id}")
        .param("item_id", "demo-item")
        .send(&world.api)
        .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["item_id"], "demo-item");
    assert_eq!(body["source_key"], "items/demo.yaml");
    assert_eq!(body["status"], "invalid");
    assert_eq!(body["source_modified"], 200);
    assert_eq!(
        body["errors"][1],
        json!({
            "file": "items/demo.yaml",
            "line": 14,
            "column": 7,
            "path": "presentation.fields[0].labl",
            "message": "unknown key `labl` (did you mean `label`?)",
        })
    );

    let (_, valid) = get("/api/v1/catalog/validation/{item_id}")
        .param("item_id", "data-pipeline")
        .send(&world.api)
        .await;
    assert_eq!(valid["status"], "valid");
    assert_eq!(valid["errors"], json!([]));
    assert_eq!(
        valid,
        serde_json::to_value(world.table.snapshot().reports["data-pipeline"].clone()).unwrap()
    );
}

#[tokio::test]
async fn validation_of_an_unknown_item_is_404() {
    let world = world().await;

    let (status, body) = get("/api/v1/catalog/validation/{item_id}")
        .param("item_id", "no-such-item")
        .send(&world.api)
        .await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        error("not_found", "no validation report for `no-such-item`")
    );
}

// ---------------------------------------------------------------- refresh

#[tokio::test]
async fn refresh_is_for_admins_only() {
    let world = world().await;

    let (status, body) = post("/api/v1/catalog/refresh")
        .by(DEVELOPER)
        .send(&world.api)
        .await;

    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        error(
            "forbidden",
            "refreshing the catalog is for members of `pao-admins`"
        )
    );
}

#[tokio::test]
async fn refresh_rebuilds_from_the_bucket_and_clears_the_cache() {
    let world = empty_world();
    world.bucket.put("items/demo.yaml", DEMO, 100);
    world.bucket.put("items/rest-database.yaml", DATABASE, 100);
    world.bucket.put(
        "items/broken.yaml",
        DEMO.replace("label: Name", "labl: Name")
            .replace("demo-item", "broken-item"),
        100,
    );
    let (_, before) = get("/api/v1/catalog").by(ADMIN).send(&world.api).await;
    assert_eq!(before["count"], 0, "the bucket's files had no events yet");

    let (status, body) = post("/api/v1/catalog/refresh")
        .by(ADMIN)
        .send(&world.api)
        .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({
            "published": 2,
            "unchanged": 0,
            "rejected": 1,
            "removed": 0,
            "results": [
                {"key": "items/broken.yaml", "outcome": "rejected", "item_id": "broken-item", "errors": 2},
                {"key": "items/demo.yaml", "outcome": "published", "item_id": "demo-item"},
                {"key": "items/rest-database.yaml", "outcome": "published", "item_id": "rest-database"},
            ],
        })
    );
    let (_, after) = get("/api/v1/catalog").by(ADMIN).send(&world.api).await;
    assert_eq!(ids(&after), ["demo-item", "rest-database"]);

    let (_, again) = post("/api/v1/catalog/refresh")
        .by(ADMIN)
        .send(&world.api)
        .await;
    assert_eq!(
        (&again["published"], &again["unchanged"], &again["rejected"]),
        (&json!(0), &json!(2), &json!(1))
    );
}

// ---------------------------------------------------------------- identity and access

#[tokio::test]
async fn a_request_without_identity_is_401_on_every_route() {
    let world = world().await;
    let calls = [
        get("/api/v1/catalog"),
        get("/api/v1/catalog/{category}").param("category", "demos"),
        get("/api/v1/catalog/items/{item_id}").param("item_id", "demo-item"),
        get("/api/v1/catalog/items/{item_id}/schema").param("item_id", "demo-item"),
        get("/api/v1/catalog/validation/{item_id}").param("item_id", "demo-item"),
        post("/api/v1/catalog/refresh"),
    ];

    for call in calls {
        let route = call.route;
        let (status, body) = call.anonymous().send(&world.api).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{route}");
        assert_eq!(
            body,
            error(
                "unauthenticated",
                "sign in: this route needs an authenticated caller"
            ),
            "{route}"
        );
    }
}

#[tokio::test]
async fn a_restricted_item_is_invisible_outside_its_groups() {
    let world = world().await;

    let (_, list) = get("/api/v1/catalog").by(OUTSIDER).send(&world.api).await;
    assert_eq!(ids(&list), ["demo-item"]);
    assert_eq!(list["count"], 1);

    let (_, search) = get("/api/v1/catalog")
        .query("q", "database")
        .by(OUTSIDER)
        .send(&world.api)
        .await;
    assert_eq!(search["count"], 0);

    for route in [
        "/api/v1/catalog/items/{item_id}",
        "/api/v1/catalog/items/{item_id}/schema",
    ] {
        let (status, body) = get(route)
            .param("item_id", "rest-database")
            .by(OUTSIDER)
            .send(&world.api)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{route}");
        assert_eq!(
            body,
            error("not_found", "no catalog item `rest-database`"),
            "{route}: 404 like an unknown item, not 403"
        );
    }

    let (status, _) = get("/api/v1/catalog/{category}")
        .param("category", "databases")
        .by(OUTSIDER)
        .send(&world.api)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_restricted_item_is_visible_to_its_groups_and_to_admins() {
    let world = world().await;
    let data_engineer = Caller {
        email: "de@example.com",
        groups: "data-engineers",
    };

    for caller in [DEVELOPER, ADMIN] {
        let (_, list) = get("/api/v1/catalog").by(caller).send(&world.api).await;
        assert_eq!(
            ids(&list),
            ["data-pipeline", "demo-item", "rest-database"],
            "{}",
            caller.email
        );
        for route in [
            "/api/v1/catalog/items/{item_id}",
            "/api/v1/catalog/items/{item_id}/schema",
        ] {
            let (status, _) = get(route)
                .param("item_id", "rest-database")
                .by(caller)
                .send(&world.api)
                .await;
            assert_eq!(status, StatusCode::OK, "{} {route}", caller.email);
        }
    }

    let (_, list) = get("/api/v1/catalog")
        .by(data_engineer)
        .send(&world.api)
        .await;
    assert_eq!(ids(&list), ["data-pipeline", "demo-item"]);
}

#[tokio::test]
async fn the_report_of_a_restricted_item_is_invisible_outside_its_groups() {
    let world = world().await;

    let (status, body) = get("/api/v1/catalog/validation/{item_id}")
        .param("item_id", "rest-database")
        .by(OUTSIDER)
        .send(&world.api)
        .await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn the_report_of_an_item_with_no_published_version_is_for_admins() {
    let world = world().await;
    // Never valid: no published version says who may see it.
    let broken = DEMO
        .replace("id: demo-item", "id: never-valid")
        .replace("label: Name", "labl: Name");
    world.bucket.put("items/never.yaml", &broken, 300);
    world.ingest.sync_key("items/never.yaml").await.unwrap();
    // Restricted, then deleted: its groups went with it.
    world.bucket.delete("items/rest-database.yaml");
    world
        .ingest
        .sync_key("items/rest-database.yaml")
        .await
        .unwrap();

    for item_id in ["never-valid", "rest-database"] {
        let (status, _) = get("/api/v1/catalog/validation/{item_id}")
            .param("item_id", item_id)
            .by(OUTSIDER)
            .send(&world.api)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{item_id}");
    }
    let (status, body) = get("/api/v1/catalog/validation/{item_id}")
        .param("item_id", "never-valid")
        .by(ADMIN)
        .send(&world.api)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "invalid");
}

// ---------------------------------------------------------------- errors

#[tokio::test]
async fn an_unknown_route_is_404() {
    let world = world().await;

    let (status, body) = get("/api/v1/catalog/items/{item_id}/versions")
        .param("item_id", "demo-item")
        .send(&world.api)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        error(
            "not_found",
            "no route for GET /api/v1/catalog/items/demo-item/versions"
        )
    );

    let (status, body) = post("/api/v1/catalog").send(&world.api).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the method is part of the route"
    );
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn an_unavailable_store_is_503_without_internal_detail() {
    let world = world().await;
    world
        .table
        .fail_with(Some(StoreError::Unavailable(INTERNAL_DETAIL.to_string())));
    let calls = [
        get("/api/v1/catalog"),
        get("/api/v1/catalog/{category}").param("category", "demos"),
        get("/api/v1/catalog/items/{item_id}").param("item_id", "demo-item"),
        get("/api/v1/catalog/items/{item_id}/schema").param("item_id", "demo-item"),
        get("/api/v1/catalog/validation/{item_id}").param("item_id", "demo-item"),
        post("/api/v1/catalog/refresh").by(ADMIN),
    ];

    for call in calls {
        let route = call.route;
        let response = world.api.handle(call.request()).await;
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{route}"
        );
        let text = String::from_utf8(response.body().to_vec()).unwrap();
        assert!(
            !text.contains("DynamoDB") && !text.contains("secret"),
            "{route}: {text}"
        );
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            error(
                "unavailable",
                "a service PAO depends on did not answer; try again shortly"
            ),
            "{route}"
        );
    }
}

#[tokio::test]
async fn a_corrupt_record_is_500_without_internal_detail() {
    let world = empty_world();
    world
        .table
        .fail_with(Some(StoreError::Corrupt(INTERNAL_DETAIL.to_string())));

    let (status, body) = get("/api/v1/catalog").send(&world.api).await;

    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, error("internal", "internal error"));
}

// ---------------------------------------------------------------- cache

#[tokio::test]
async fn a_published_change_is_seen_at_once_by_every_route() {
    let world = empty_world();
    world.upload("items/demo.yaml", DEMO).await;
    let (_, first) = get("/api/v1/catalog").send(&world.api).await;
    assert_eq!(ids(&first), ["demo-item"]);

    world.upload("items/rest-database.yaml", DATABASE).await;

    let (_, second) = get("/api/v1/catalog").send(&world.api).await;
    assert_eq!(ids(&second), ["demo-item", "rest-database"]);
    let (status, body) = get("/api/v1/catalog/items/{item_id}")
        .param("item_id", "rest-database")
        .send(&world.api)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["version"], "2.2.0");
}

#[tokio::test]
async fn the_catalog_is_read_once_per_generation() {
    let world = empty_world();
    world.upload("items/demo.yaml", DEMO).await;
    for _ in 0..3 {
        get("/api/v1/catalog").send(&world.api).await;
        get("/api/v1/catalog/items/{item_id}")
            .param("item_id", "demo-item")
            .send(&world.api)
            .await;
    }
    assert_eq!(world.table.scans(), 1, "five reads served from the copy");

    world.upload("items/rest-database.yaml", DATABASE).await;
    get("/api/v1/catalog").send(&world.api).await;
    get("/api/v1/catalog").send(&world.api).await;

    assert_eq!(
        world.table.scans(),
        2,
        "one new read for the new generation"
    );
}

#[tokio::test]
async fn a_read_that_is_not_exactly_the_generation_is_served_but_never_kept() {
    let world = empty_world();
    world.upload("items/demo.yaml", DEMO).await;
    let true_generation = world.table.snapshot().generation;
    // The generation moved on (a publish under way), its item not seen yet.
    let ahead = Generation {
        number: true_generation.number + 1,
        digest: true_generation.digest.toggle("rest-database", "sha256:00"),
    };
    world.table.set_generation(ahead);

    let (status, listed) = get("/api/v1/catalog").send(&world.api).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&listed), ["demo-item"]);
    assert_eq!(world.table.scans(), 3, "read again while it did not match");
    get("/api/v1/catalog").send(&world.api).await;
    assert_eq!(world.table.scans(), 6, "nothing was kept");

    world.table.set_generation(true_generation);
    get("/api/v1/catalog").send(&world.api).await;
    get("/api/v1/catalog").send(&world.api).await;
    assert_eq!(world.table.scans(), 7, "a read that matches is kept");
}

#[tokio::test]
async fn instances_over_one_store_never_answer_from_an_older_catalog() {
    let world = empty_world();
    let other = CatalogApi::new(
        world.table.clone(),
        world.bucket.clone(),
        AuthMode::Dev,
        &CatalogConfig {
            catalog_table: "pao-catalog".to_string(),
            catalog_bucket: "pao-catalog".to_string(),
            admin_group: ADMIN_GROUP.to_string(),
        },
    );
    world.upload("items/demo.yaml", DEMO).await;
    // Both instances hold the one-item catalog.
    assert_eq!(
        ids(&get("/api/v1/catalog").send(&world.api).await.1),
        ["demo-item"]
    );
    assert_eq!(
        ids(&get("/api/v1/catalog").send(&other).await.1),
        ["demo-item"]
    );

    world.upload("items/rest-database.yaml", DATABASE).await;
    let (status, _) = get("/api/v1/catalog/items/{item_id}")
        .param("item_id", "rest-database")
        .send(&world.api)
        .await;
    assert_eq!(status, StatusCode::OK);

    // The other instance, asked next, answers from the newer catalog too.
    let (status, _) = get("/api/v1/catalog/items/{item_id}")
        .param("item_id", "rest-database")
        .send(&other)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = get("/api/v1/catalog").send(&other).await;
    assert_eq!(ids(&listed), ["demo-item", "rest-database"]);
}
