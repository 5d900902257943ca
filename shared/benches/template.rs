//! Rendering an action's config at run time: leaves per second on one core.
//!
//! ```sh
//! cargo bench -p pao --bench template
//! ```
//!
//! The config is the shape real actions have: plain strings, lone
//! placeholders (type-preserving), text with placeholders, and a filter.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pao::template::render::{render, Context, RequestVars, Secrets, TemplateEnv};
use serde_json::{json, Map, Value};

fn context() -> Context {
    let env = TemplateEnv::from_env(|name| match name {
        "PAO_TEMPLATE_ENV" => Some("DBAAS_URL".to_string()),
        "DBAAS_URL" => Some("https://dbaas.internal".to_string()),
        _ => None,
    })
    .expect("a valid allow-list");
    let mut response = Map::new();
    response.insert(
        "network".to_string(),
        json!({"vpc_id": "vpc-0abc", "subnet_ids": ["subnet-1", "subnet-2"]}),
    );
    Context::new(
        json!({"db_name": "orders", "storage_gb": 20, "plan": "small", "multi_az": true,
               "environment": "dev", "tags": ["pci", "orders"]}),
        json!({"id": "rest-database", "owner": "data-platform", "version": "2.1.0"}),
        RequestVars {
            id: "0192f6a0-0000-7000-8000-000000000001",
            timestamp: "2026-11-23T12:00:00Z",
            user_id: "u-1",
            user_email: "dev@example.com",
        },
        &env,
        response,
    )
}

/// A rest-api action's config; `LEAVES` string leaves.
fn config() -> Value {
    json!({
        "method": "POST",
        "url": "{{env.DBAAS_URL}}/v1/databases",
        "headers": {"Content-Type": "application/json", "X-Request-Id": "{{request.id}}"},
        "body": {
            "name": "{{fields.db_name}}-{{fields.environment}}",
            "storage_gb": "{{fields.storage_gb}}",
            "plan": "{{fields.plan}}",
            "multi_az": "{{fields.multi_az}}",
            "owner": "{{header.owner}}",
            "requested_by": "{{request.user.email}}",
            "vpc": "{{response.network.vpc_id}}",
            "subnets": "{{response.network.subnet_ids}}",
            "tags": "{{fields.tags}}",
            "description": "Database for {{header.id}} {{header.version}}, requested {{request.timestamp}}",
            "engine": "postgres",
            "label": "{{ fields.db_name | upper }}",
        },
        "success_codes": [200, 201, 202],
    })
}

const LEAVES: u64 = 17;

fn benches(c: &mut Criterion) {
    let context = context();
    let config = config();
    let mut group = c.benchmark_group("template");
    group.throughput(Throughput::Elements(LEAVES));
    group.bench_function("rest-api-config", |b| {
        b.iter(|| {
            render(black_box(&config), &context, Secrets::Refused, "config").expect("renders")
        })
    });
    // Without the one filtered leaf: the share Tera's parse takes.
    let mut plain = config.clone();
    plain["body"]["label"] = json!("{{fields.db_name}}");
    group.bench_function("rest-api-config-no-filter", |b| {
        b.iter(|| render(black_box(&plain), &context, Secrets::Refused, "config").expect("renders"))
    });
    group.finish();
}

criterion_group!(template, benches);
criterion_main!(template);
