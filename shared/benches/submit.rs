//! Latency in process, against the local stack: the requests API's
//! submission and the catalog API's item route, each handler with its real
//! adapters (DynamoDB, Secrets Manager, Step Functions on loopback). Prints
//! p50, p99 and max of warm calls. A warm catalog read costs exactly one
//! emulator call, the consistent read of the catalog's generation.
//!
//! Run with the stack's environment, as `make bench` does:
//!     set -a; . .local/dev/stack.env; set +a
//!     PAO_AUTH_MODE=dev cargo bench -p pao --bench submit

use std::time::{Duration, Instant};

use lambda_http::Request;
use serde_json::{json, Value};

const WARM_UP: usize = 20;
const SAMPLES: usize = 300;

/// A submission of the DBaaS example item, whose password field goes to
/// Secrets Manager: the full path a submission takes.
fn submission(user: &str) -> Request {
    let fields = json!({
        "db_name": "orders", "engine": "postgres", "environment": "dev", "plan": "small",
        "admin_username": "app_admin", "storage_gb": 20, "admin_password": "Tr0ub4dor&3 horse staple",
    });
    let body = json!({"item_id": "rest-database", "fields": fields}).to_string();
    event(
        "POST",
        "/api/v1/requests",
        "POST /api/v1/requests",
        user,
        &body,
        json!({}),
    )
}

/// The catalog's item route for the DBaaS example.
fn item_read(user: &str) -> Request {
    let path = "/api/v1/catalog/items/rest-database";
    let route = "GET /api/v1/catalog/items/{item_id}";
    let params = json!({"item_id": "rest-database"});
    event("GET", path, route, user, "", params)
}

fn event(method: &str, path: &str, route: &str, user: &str, body: &str, params: Value) -> Request {
    let event = json!({
        "version": "2.0", "routeKey": route, "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "x-pao-dev-user": user, "x-pao-dev-groups": "developers"},
        "pathParameters": params,
        "requestContext": {
            "accountId": "123456789012", "apiId": "bench", "domainName": "localhost", "domainPrefix": "localhost",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"},
            "requestId": "bench", "routeKey": route, "stage": "$default",
            "time": "23/Nov/2026:12:00:00 +0000", "timeEpoch": 0
        },
        "body": body,
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).expect("a valid event")
}

/// Runs `call` warm and prints its percentiles.
fn measure(label: &str, mut call: impl FnMut() -> u16, expected: u16) {
    let mut times = Vec::with_capacity(SAMPLES);
    for round in 0..WARM_UP + SAMPLES {
        let started = Instant::now();
        let status = call();
        let elapsed = started.elapsed();
        assert_eq!(status, expected, "{label}");
        if round >= WARM_UP {
            times.push(elapsed);
        }
    }
    times.sort();
    println!(
        "{label} (in process, local stack): n={SAMPLES} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        percentile(&times, 0.50).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    if std::env::var("PAO_API_URL").is_err() {
        println!("submit: skipped — run with the local stack's environment (make bench)");
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let api = runtime
        .block_on(pao::compose::requests_api())
        .expect("configuration from the stack");
    let catalog = runtime
        .block_on(pao::compose::catalog_api())
        .expect("configuration from the stack");
    let user = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
    measure(
        "submit",
        || {
            runtime
                .block_on(api.handle(submission(&user)))
                .status()
                .as_u16()
        },
        202,
    );
    measure(
        "catalog item",
        || {
            runtime
                .block_on(catalog.handle(item_read(&user)))
                .status()
                .as_u16()
        },
        200,
    );
}
