//! The OpenAPI document (`shared/openapi.json`) against the running stack:
//! it is served as written, it lists exactly the routes of `template.yaml`,
//! and every route, called with realistic inputs that succeed and fail, answers
//! with a status code the document lists for it and a body its schema accepts.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use pao_integration::{as_admin, as_service, as_user, env, http, queue_submission, unique, Stack};
use reqwest::{header, Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

const DOCUMENT: &str = include_str!("../shared/openapi.json");
const TEMPLATE: &str = include_str!("../template.yaml");
const MINIMAL: &str = include_str!("../shared/tests/fixtures/catalog/valid/minimal-automated.yaml");
const PASSWORD: &str = "Tr0ub4dor&3 horse staple";
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
}

/// `(METHOD, path)` of every `Type: HttpApi` event of the template. Read as
/// text: the template's CloudFormation tags (`!Ref`) are no YAML a plain
/// parser takes, and an event is a block of lines indented at least as deep
/// as its `Type: HttpApi` line.
fn template_routes() -> BTreeSet<(String, String)> {
    let indent = |line: &str| line.len() - line.trim_start().len();
    let lines: Vec<&str> = TEMPLATE.lines().collect();
    let mut routes = BTreeSet::new();
    for (at, line) in lines.iter().enumerate() {
        if line.trim() != "Type: HttpApi" {
            continue;
        }
        let depth = indent(line);
        let (mut method, mut path) = (None, None);
        for inner in lines[at + 1..]
            .iter()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .take_while(|l| indent(l) >= depth)
        {
            let value = |key: &str| {
                inner
                    .trim()
                    .strip_prefix(key)
                    .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
            };
            method = method.or_else(|| value("Method:"));
            path = path.or_else(|| value("Path:"));
        }
        let method = method.unwrap_or_else(|| panic!("no Method in the event at line {}", at + 1));
        let path = path.unwrap_or_else(|| panic!("no Path in the event at line {}", at + 1));
        assert!(
            routes.insert((method.to_uppercase(), path)),
            "a route twice in the template (line {})",
            at + 1
        );
    }
    routes
}

/// `(METHOD, path)` of every operation of the document.
fn document_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|method| item.get(**method).is_some())
                .map(|method| (method.to_uppercase(), path.clone()))
        })
        .collect()
}

/// A JSON pointer as a URI fragment: `~` and `/` escaped (RFC 6901), and the
/// characters a fragment may not hold percent-encoded (`{id}` in paths).
fn fragment(tokens: &[&str]) -> String {
    let mut pointer = String::from("#");
    for token in tokens {
        pointer.push('/');
        for c in token.chars() {
            match c {
                '~' => pointer.push_str("~0"),
                '/' => pointer.push_str("~1"),
                '%' => pointer.push_str("%25"),
                '{' => pointer.push_str("%7B"),
                '}' => pointer.push_str("%7D"),
                ' ' => pointer.push_str("%20"),
                c => pointer.push(c),
            }
        }
    }
    pointer
}

/// The value at a local `$ref` of the document, such as
/// `#/components/responses/NotFound`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("not a local reference: {reference}"));
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("{reference} resolves to nothing"))
}

/// Validates `instance` against the schema at `pointer` (a fragment into the
/// document): the whole document is the root, so every `$ref` of the schema
/// resolves as OpenAPI 3.1 (JSON Schema 2020-12) says.
fn validate(doc: &Value, pointer: &str, instance: &Value) -> Result<(), String> {
    let mut root = doc.clone();
    root["$ref"] = Value::from(pointer);
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .map_err(|err| format!("{pointer} does not compile: {err}"))?;
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|err| format!("  at `{}`: {err}", err.instance_path().as_str()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{instance:#} does not match {pointer}:\n{}",
            errors.join("\n")
        ))
    }
}

/// Who calls.
#[derive(Clone, Copy)]
enum Caller<'a> {
    Anonymous,
    User(&'a str, &'a [&'a str]),
    Admin,
    /// A service with this IAM ARN, on the IAM-authorised routes.
    Service(&'a str),
}

/// The stack's API, with the document to check every answer against.
struct Api {
    stack: Stack,
    doc: Value,
    /// The operations called so far, as `(METHOD, route)`.
    called: Mutex<BTreeSet<(String, String)>>,
}

struct Answer {
    status: StatusCode,
    headers: header::HeaderMap,
    body: Value,
}

impl Api {
    async fn new() -> Self {
        Self {
            stack: Stack::connect().await,
            doc: document(),
            called: Mutex::new(BTreeSet::new()),
        }
    }

    fn operation(&self, method: &Method, route: &str) -> &Value {
        let operation = &self.doc["paths"][route][method.as_str().to_lowercase()];
        assert!(
            operation.is_object(),
            "the document has no operation {method} {route}"
        );
        operation
    }

    /// Calls `method target` (a concrete path with its query) as the route
    /// `route` of the document, then checks the answer: a status code the
    /// operation lists, JSON, and a body its schema for that code accepts.
    async fn call(
        &self,
        method: Method,
        route: &str,
        target: &str,
        caller: Caller<'_>,
        prepare: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Answer {
        let operation = self.operation(&method, route);
        self.check_query(operation, route, target);
        let request = http().request(method.clone(), self.stack.url(target));
        let request = match caller {
            Caller::Anonymous => request,
            Caller::User(email, groups) => as_user(request, email, groups),
            Caller::Admin => as_admin(request),
            Caller::Service(arn) => as_service(request, arn),
        };
        let response = prepare(request).send().await.expect("the API answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let context = format!("{method} {target} -> {status}");
        let code = status.as_str();
        let Some(documented) = operation["responses"].get(code) else {
            let listed: Vec<&String> = operation["responses"]
                .as_object()
                .map(|r| r.keys().collect())
                .unwrap_or_default();
            panic!(
                "{context}: the document lists only {listed:?} for {method} {route}; body: {text}"
            );
        };
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "{context}: content-type `{content_type}`"
        );
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("{context}: not JSON ({err}): {text}"));
        let (pointer, response) = match documented.get("$ref").and_then(Value::as_str) {
            Some(reference) => (
                format!("{reference}/content/application~1json/schema"),
                resolve(&self.doc, reference),
            ),
            None => (
                fragment(&[
                    "paths",
                    route,
                    &method.as_str().to_lowercase(),
                    "responses",
                    code,
                    "content",
                    "application/json",
                    "schema",
                ]),
                documented,
            ),
        };
        assert!(
            response["content"]["application/json"]["schema"].is_object(),
            "{context}: the document gives no JSON schema for it"
        );
        if let Err(problem) = validate(&self.doc, &pointer, &body) {
            panic!("{context}: {problem}");
        }
        for (name, _) in response["headers"].as_object().into_iter().flatten() {
            assert!(
                headers.contains_key(name.as_str()),
                "{context}: the documented header {name} is missing"
            );
        }
        self.called
            .lock()
            .unwrap()
            .insert((method.as_str().to_string(), route.to_string()));
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Every query parameter sent is one the operation declares.
    fn check_query(&self, operation: &Value, route: &str, target: &str) {
        let Some((_, query)) = target.split_once('?') else {
            return;
        };
        let declared: BTreeSet<&str> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| match p.get("$ref").and_then(Value::as_str) {
                Some(reference) => resolve(&self.doc, reference),
                None => p,
            })
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str())
            .collect();
        for pair in query.split('&') {
            let name = pair.split('=').next().unwrap_or_default();
            assert!(
                declared.contains(name),
                "{route}: the query parameter `{name}` is not documented"
            );
        }
    }

    async fn get(&self, route: &str, target: &str, caller: Caller<'_>) -> Answer {
        self.call(Method::GET, route, target, caller, |r| r).await
    }
}

fn developer() -> String {
    format!("{}@example.com", unique("openapi"))
}

fn fields() -> Value {
    json!({
        "db_name": "orders", "engine": "postgres", "environment": "dev", "plan": "small",
        "admin_username": "app_admin", "storage_gb": 20, "admin_password": PASSWORD,
    })
}

fn database(fields: Value) -> Value {
    json!({"item_id": "rest-database", "fields": fields})
}

#[tokio::test]
async fn the_document_is_served_as_written() {
    let stack = Stack::connect().await;
    let response = http()
        .get(stack.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("the API answers");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let served: Value = response.json().await.expect("a JSON body");
    assert_eq!(served, document());
    assert_eq!(served["openapi"], "3.1.0");
}

/// API Gateway answers a method or path no route has itself, with its JSON
/// 404, whatever the method; so must the local gateway (never an HTML page,
/// never a 501 for a method its HTTP server has no handler for).
#[tokio::test]
async fn a_method_no_route_has_is_the_gateways_json_404() {
    let stack = Stack::connect().await;
    for (method, path) in [
        ("PUT", "/api/v1/health"),
        ("PATCH", "/api/v1/requests"),
        ("OPTIONS", "/api/v1/catalog"),
        ("TRACE", "/api/v1/health"),
        ("QUERY", "/api/v1/requests"),
        ("BREW", "/api/v1/openapi.json"),
        ("GET", "/api/v1/no-such-route"),
        ("GET", "/api/v1/requests/"),
        ("DELETE", "/api/v1/requests/a/b"),
    ] {
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        let response = as_admin(http().request(method.clone(), stack.url(path)))
            .send()
            .await
            .expect("the API answers");
        let context = format!("{method} {path}");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{context}");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/json",
            "{context}"
        );
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(body, json!({"message": "Not Found"}), "{context}");
    }
}

/// What the gateway's HTTP server cannot parse is refused in JSON too.
#[tokio::test]
async fn a_request_the_gateway_cannot_parse_is_a_json_400() {
    use std::io::{Read, Write};
    let api = env("PAO_API_URL");
    let address = api.trim_start_matches("http://").trim_end_matches('/');
    for raw in [
        "GET /api/v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
        "GET /api/v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        "GET /api/v1/health HTTP/9.9\r\nHost: x\r\n\r\n",
        "NOT A REQUEST LINE\r\n\r\n",
    ] {
        let mut stream = std::net::TcpStream::connect(address).expect("the gateway");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a timeout");
        stream.write_all(raw.as_bytes()).expect("sent");
        let mut answer = String::new();
        // The gateway closes the connection after an answer it could not route.
        stream.read_to_string(&mut answer).expect("an answer");
        let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
        let context = format!("{raw:?} -> {head}");
        assert!(
            head.starts_with("HTTP/1.0 400 ") || head.starts_with("HTTP/1.1 400 "),
            "{context}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{context}"
        );
        let body: Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(body, json!({"message": "Bad Request"}), "{context}");
    }
}

#[test]
fn the_document_lists_exactly_the_routes_of_the_template() {
    let routes = template_routes();
    assert!(
        routes.contains(&("GET".to_string(), "/api/v1/openapi.json".to_string())),
        "{routes:?}"
    );
    let operations = document_operations(&document());
    let missing: Vec<_> = routes.difference(&operations).collect();
    let extra: Vec<_> = operations.difference(&routes).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes not documented: {missing:?}; documented but not routed: {extra:?}"
    );
}

#[test]
fn only_the_public_routes_need_no_caller() {
    let doc = document();
    assert_eq!(doc["security"], json!([{"bearerAuth": []}]));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"],
        json!({
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"],
        })
    );
    // The template's `Authorizer: NONE` routes are the document's `security: []` ones.
    let public: BTreeSet<(String, String)> = document_operations(&doc)
        .into_iter()
        .filter(|(method, path)| doc["paths"][path][method.to_lowercase()]["security"] == json!([]))
        .collect();
    let mut expected: BTreeSet<(String, String)> = [
        "/api/v1/health",
        "/api/v1/health/ready",
        "/api/v1/openapi.json",
    ]
    .into_iter()
    .map(|path| ("GET".to_string(), path.to_string()))
    .collect();
    // JIRA signs its deliveries instead.
    expected.insert(("POST".to_string(), "/api/v1/webhooks/jira".to_string()));
    assert_eq!(public, expected);
    assert_eq!(TEMPLATE.matches("Authorizer: NONE").count(), expected.len());

    // The template's `Authorizer: AWS_IAM` routes are the document's SigV4 ones.
    let signed: BTreeSet<(String, String)> = document_operations(&doc)
        .into_iter()
        .filter(|(method, path)| {
            doc["paths"][path][method.to_lowercase()]["security"] == json!([{"sigv4": []}])
        })
        .collect();
    assert_eq!(
        signed,
        BTreeSet::from([
            ("POST".to_string(), "/api/v1/service/requests".to_string()),
            (
                "GET".to_string(),
                "/api/v1/service/requests/{id}".to_string()
            ),
        ])
    );
    assert_eq!(
        TEMPLATE.matches("Authorizer: AWS_IAM").count(),
        signed.len()
    );
}

#[test]
fn the_check_refuses_what_the_document_does_not_allow() {
    let doc = document();
    let get = |route: &str, code: &str| {
        fragment(&[
            "paths",
            route,
            "get",
            "responses",
            code,
            "content",
            "application/json",
            "schema",
        ])
    };
    let request = json!({
        "id": "0192f6a0-0000-7000-8000-000000000000", "item_id": "rest-database",
        "item_version": "2.1.0", "item_hash": "sha256:00", "status": "Queued", "version": 2,
        "requester": {"subject": "dev@example.com", "email": "dev@example.com"},
        "fields": {"db_name": "orders"}, "actions": {},
        "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:f:x",
        "created_at": "2026-11-23T15:04:05.123Z", "updated_at": "2026-11-23T15:04:05.123Z",
    });
    let one = get("/api/v1/requests/{id}", "200");
    validate(&doc, &one, &request).expect("a request");
    let changed = |change: Value| {
        let mut body = request.clone();
        for (key, value) in change.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(key);
            } else {
                body[key] = value.clone();
            }
        }
        body
    };
    for wrong in [
        json!({"status": null}),
        json!({"status": "Finished"}),
        json!({"version": "2"}),
        json!({"created_at": "yesterday"}),
        json!({"secret_fields": []}),
        json!({"unexpected": true}),
    ] {
        assert!(
            validate(&doc, &one, &changed(wrong.clone())).is_err(),
            "{wrong}"
        );
    }

    let not_found = "#/components/responses/NotFound/content/application~1json/schema";
    let error = |code: &str| json!({"error": {"code": code, "message": "m"}});
    validate(&doc, not_found, &error("not_found")).expect("a 404");
    assert!(validate(&doc, not_found, &error("conflict")).is_err());
    let unauthenticated = "#/components/responses/Unauthenticated/content/application~1json/schema";
    validate(&doc, unauthenticated, &json!({"message": "Unauthorized"}))
        .expect("the authorizer's own 401");
    let unprocessable = "#/components/responses/Unprocessable/content/application~1json/schema";
    assert!(validate(&doc, unprocessable, &error("invalid_fields")).is_err());
    let mut fields = error("invalid_fields");
    fields["error"]["fields"] = json!([{"field": "plan", "path": "/plan", "message": "m"}]);
    validate(&doc, unprocessable, &fields).expect("a 422 with its fields");

    let list = get("/api/v1/requests", "200");
    validate(
        &doc,
        &list,
        &json!({"requests": [request], "next_token": null}),
    )
    .expect("a page");
    assert!(validate(&doc, &list, &json!({"requests": []})).is_err());
}

#[tokio::test]
async fn every_route_answers_as_documented() {
    let api = Api::new().await;
    let user = developer();
    let dev = Caller::User(&user, &["developers"]);
    let other = developer();
    let stranger = Caller::User(&other, &["developers"]);
    let outsider = Caller::User("finance@example.com", &["finance"]);
    let anonymous = Caller::Anonymous;

    // ------------------------------------------------------------ health
    let health = api.get("/api/v1/health", "/api/v1/health", anonymous).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.body);
    let ready = api
        .get("/api/v1/health/ready", "/api/v1/health/ready", anonymous)
        .await;
    assert_eq!(ready.status, StatusCode::OK);
    for caller in [anonymous, dev] {
        let openapi = api
            .get("/api/v1/openapi.json", "/api/v1/openapi.json", caller)
            .await;
        assert_eq!(openapi.status, StatusCode::OK);
    }

    // ------------------------------------------------------------ catalog
    let list = "/api/v1/catalog";
    assert_eq!(
        api.get(list, list, anonymous).await.status,
        StatusCode::UNAUTHORIZED
    );
    let all = api.get(list, list, Caller::Admin).await;
    assert_eq!(all.status, StatusCode::OK);
    assert!(all.body["count"].as_u64().unwrap() >= 4, "{}", all.body);
    let filtered = api
        .get(
            list,
            "/api/v1/catalog?category=databases&tag=postgres&q=Postgre",
            dev,
        )
        .await;
    assert_eq!(filtered.status, StatusCode::OK);
    assert!(filtered.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|item| item["id"] == "rest-database"));
    let too_long = format!("/api/v1/catalog?q={}", "x".repeat(201));
    assert_eq!(
        api.get(list, &too_long, dev).await.status,
        StatusCode::BAD_REQUEST
    );

    let category = "/api/v1/catalog/{category}";
    let databases = api.get(category, "/api/v1/catalog/databases", dev).await;
    assert_eq!(databases.status, StatusCode::OK);
    assert_eq!(databases.body["category"], "databases");
    for (target, caller, expected) in [
        (
            "/api/v1/catalog/no-such-category",
            dev,
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v1/catalog/databases",
            anonymous,
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        assert_eq!(api.get(category, target, caller).await.status, expected);
    }

    let item = "/api/v1/catalog/items/{item_id}";
    let schema = "/api/v1/catalog/items/{item_id}/schema";
    let validation = "/api/v1/catalog/validation/{item_id}";
    // The example catalog: a manual item, group-restricted ones, every field type in use.
    for id in [
        "eks-app-stack",
        "rest-database",
        "github-app-deploy",
        "messaging-queue",
    ] {
        for route in [item, schema, validation] {
            let target = route.replace("{item_id}", id);
            let answer = api.get(route, &target, Caller::Admin).await;
            assert_eq!(answer.status, StatusCode::OK, "{target}: {}", answer.body);
        }
    }
    for route in [item, schema, validation] {
        for (id, caller, expected) in [
            ("rest-database", dev, StatusCode::OK),
            ("rest-database", outsider, StatusCode::NOT_FOUND),
            ("no-such-item", dev, StatusCode::NOT_FOUND),
            ("rest-database", anonymous, StatusCode::UNAUTHORIZED),
        ] {
            let target = route.replace("{item_id}", id);
            let answer = api.get(route, &target, caller).await;
            assert_eq!(answer.status, expected, "{target}: {}", answer.body);
        }
    }

    // A file that never validated: its report is served to admins, with located errors.
    let broken = unique("openapi-broken");
    let key = format!("it/{broken}.yaml");
    let s3 = aws_sdk_s3::Client::new(&api.stack.sdk);
    s3.put_object()
        .bucket(env("PAO_CATALOG_BUCKET"))
        .key(&key)
        .body(ByteStream::from(
            MINIMAL
                .replace("id: demo-item", &format!("id: {broken}"))
                .replace("type: integer", "type: colour")
                .into_bytes(),
        ))
        .send()
        .await
        .expect("PutObject");
    let target = format!("/api/v1/catalog/validation/{broken}");
    let mut report = api.get(validation, &target, Caller::Admin).await;
    for _ in 0..20 {
        if report.status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        report = api.get(validation, &target, Caller::Admin).await;
    }
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    // No published version says who else may see it.
    let hidden = api.get(validation, &target, dev).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{}", hidden.body);
    assert_eq!(report.body["status"], "invalid");
    assert_eq!(
        report.body["errors"][0]["path"],
        "presentation.fields[1].type"
    );

    let refresh = "/api/v1/catalog/refresh";
    for (caller, expected) in [
        (anonymous, StatusCode::UNAUTHORIZED),
        (dev, StatusCode::FORBIDDEN),
        (Caller::Admin, StatusCode::OK),
    ] {
        let answer = api
            .call(Method::POST, refresh, refresh, caller, |r| r)
            .await;
        assert_eq!(answer.status, expected, "{}", answer.body);
        if expected == StatusCode::OK {
            let results = answer.body["results"].as_array().unwrap();
            assert!(results
                .iter()
                .any(|r| r["key"] == key.as_str() && r["outcome"] == "rejected"));
        }
    }
    s3.delete_object()
        .bucket(env("PAO_CATALOG_BUCKET"))
        .key(&key)
        .send()
        .await
        .expect("DeleteObject");

    // ------------------------------------------------------------ submit
    let requests = "/api/v1/requests";
    let submission = database(fields());
    let body_schema = fragment(&[
        "paths",
        requests,
        "post",
        "requestBody",
        "content",
        "application/json",
        "schema",
    ]);
    validate(&api.doc, &body_schema, &submission).expect("the submission is documented");
    let submit = |caller, body: Value, key: Option<String>| {
        api.call(Method::POST, requests, requests, caller, move |r| {
            let r = r.json(&body);
            match key {
                Some(key) => r.header("Idempotency-Key", key),
                None => r,
            }
        })
    };
    let idempotency_key = unique("key");
    let first = submit(dev, submission.clone(), Some(idempotency_key.clone())).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    let id = first.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        first.headers[header::LOCATION],
        format!("/api/v1/requests/{id}").as_str()
    );
    assert_eq!(first.body["secret_fields"], json!(["admin_password"]));
    let again = submit(dev, submission.clone(), Some(idempotency_key.clone())).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body["id"], id.as_str());

    let mut other_fields = fields();
    other_fields["db_name"] = json!("invoices");
    let reused = submit(dev, database(other_fields), Some(idempotency_key)).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.body["error"]["code"], "idempotency_key_reused");

    let mut bad = fields();
    bad.as_object_mut().unwrap().remove("db_name");
    bad["storage_gb"] = json!("twenty");
    bad["plan"] = json!("enormous");
    let invalid = submit(dev, database(bad), None).await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(invalid.body["error"]["code"], "invalid_fields");
    let not_an_object = submit(dev, database(json!([1, 2])), None).await;
    assert_eq!(not_an_object.status, StatusCode::UNPROCESSABLE_ENTITY);

    for (caller, body, expected) in [
        (
            dev,
            json!({"item_id": "no-such-item", "fields": {}}),
            StatusCode::NOT_FOUND,
        ),
        (outsider, submission.clone(), StatusCode::NOT_FOUND),
        (anonymous, submission.clone(), StatusCode::UNAUTHORIZED),
        (
            dev,
            json!({"item_id": "rest-database", "extra": 1}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let answer = submit(caller, body, None).await;
        assert_eq!(answer.status, expected, "{}", answer.body);
    }
    let raw = |content_type: &'static str, body: String| {
        api.call(Method::POST, requests, requests, dev, move |r| {
            r.header(header::CONTENT_TYPE, content_type).body(body)
        })
    };
    for (content_type, body, expected) in [
        (
            "application/json",
            "{not json".to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "text/plain",
            "hello".to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "application/json",
            format!(
                r#"{{"item_id": "rest-database", "fields": {{"db_name": "{}"}}}}"#,
                "a".repeat(300 * 1024)
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let answer = raw(content_type, body).await;
        assert_eq!(answer.status, expected, "{}", answer.body);
    }
    let bad_key = submit(dev, submission.clone(), Some("x".repeat(200))).await;
    assert_eq!(bad_key.status, StatusCode::BAD_REQUEST);

    // ------------------------------------------------------------ list
    let second = submit(dev, submission.clone(), None).await;
    assert_eq!(second.status, StatusCode::ACCEPTED);
    let mine = api.get(requests, requests, dev).await;
    assert_eq!(mine.status, StatusCode::OK);
    assert_eq!(mine.body["requests"].as_array().unwrap().len(), 2);
    assert_eq!(mine.body["next_token"], Value::Null);
    let page = api
        .get(
            requests,
            "/api/v1/requests?status=Queued&item=rest-database&limit=1",
            dev,
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    if let Some(token) = page.body["next_token"].as_str() {
        let next = api
            .get(
                requests,
                &format!(
                    "/api/v1/requests?status=Queued&item=rest-database&limit=1&next_token={token}"
                ),
                dev,
            )
            .await;
        assert_eq!(next.status, StatusCode::OK);
    }
    let everyone = api
        .get(requests, "/api/v1/requests?limit=5", Caller::Admin)
        .await;
    assert_eq!(everyone.status, StatusCode::OK);
    for (target, caller, expected) in [
        ("/api/v1/requests?limit=0", dev, StatusCode::BAD_REQUEST),
        ("/api/v1/requests?limit=101", dev, StatusCode::BAD_REQUEST),
        ("/api/v1/requests?limit=ten", dev, StatusCode::BAD_REQUEST),
        // Values are taken as given: no sign, no spaces around.
        ("/api/v1/requests?limit=%2B5", dev, StatusCode::BAD_REQUEST),
        ("/api/v1/requests?limit=%205", dev, StatusCode::BAD_REQUEST),
        (
            "/api/v1/requests?status=%20Queued",
            dev,
            StatusCode::BAD_REQUEST,
        ),
        // A parameter given empty is left out (allowEmptyValue).
        (
            "/api/v1/requests?status=&item=&limit=&next_token=",
            dev,
            StatusCode::OK,
        ),
        (
            "/api/v1/requests?status=Finished",
            dev,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/requests?next_token=forged",
            dev,
            StatusCode::BAD_REQUEST,
        ),
        ("/api/v1/requests", anonymous, StatusCode::UNAUTHORIZED),
    ] {
        let answer = api.get(requests, target, caller).await;
        assert_eq!(answer.status, expected, "{target}: {}", answer.body);
    }

    // ------------------------------------------------------------ one request
    let one = "/api/v1/requests/{id}";
    let status = "/api/v1/requests/{id}/status";
    let logs = "/api/v1/requests/{id}/logs";
    for route in [one, status, logs] {
        for (request, caller, expected) in [
            (id.as_str(), dev, StatusCode::OK),
            (id.as_str(), Caller::Admin, StatusCode::OK),
            (id.as_str(), stranger, StatusCode::NOT_FOUND),
            (id.as_str(), anonymous, StatusCode::UNAUTHORIZED),
            ("no-such-request", dev, StatusCode::NOT_FOUND),
        ] {
            let target = route.replace("{id}", request);
            let answer = api.get(route, &target, caller).await;
            assert_eq!(answer.status, expected, "{target}: {}", answer.body);
        }
    }

    let queue = queue_submission();
    // ------------------------------------------------------------ cancel
    // A manual request waits for its ticket: there is time to cancel it.
    let waiting = submit(dev, queue.clone(), None).await;
    assert_eq!(waiting.status, StatusCode::ACCEPTED, "{}", waiting.body);
    let id = waiting.body["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/requests/{id}");
    for (caller, target, expected) in [
        (anonymous, path.clone(), StatusCode::UNAUTHORIZED),
        (stranger, path.clone(), StatusCode::NOT_FOUND),
        (
            dev,
            "/api/v1/requests/no-such-request".to_string(),
            StatusCode::NOT_FOUND,
        ),
        (dev, path.clone(), StatusCode::OK),
        (dev, path.clone(), StatusCode::CONFLICT),
    ] {
        let answer = api.call(Method::DELETE, one, &target, caller, |r| r).await;
        assert_eq!(answer.status, expected, "{}", answer.body);
        if expected == StatusCode::OK {
            assert_eq!(answer.body["status"], "Cancelled");
        }
    }
    // Retry and rollback answer 409 for a request in no state to have them.
    for route in [
        "/api/v1/requests/{id}/retry",
        "/api/v1/requests/{id}/rollback",
    ] {
        for (request, caller, expected) in [
            (id.as_str(), dev, StatusCode::CONFLICT),
            (id.as_str(), stranger, StatusCode::NOT_FOUND),
            (id.as_str(), anonymous, StatusCode::UNAUTHORIZED),
            ("no-such-request", dev, StatusCode::NOT_FOUND),
        ] {
            let target = route.replace("{id}", request);
            let answer = api.call(Method::POST, route, &target, caller, |r| r).await;
            assert_eq!(answer.status, expected, "{target}: {}", answer.body);
        }
    }

    // The JIRA webhook: signed deliveries only.
    let hook = "/api/v1/webhooks/jira";
    let delivery =
        json!({"webhookEvent": "jira:issue_updated", "issue": {"key": "NOPE-1", "fields": {}}});
    let signed = |body: String, signature: String| {
        api.call(Method::POST, hook, hook, anonymous, move |r| {
            r.header("X-Hub-Signature", signature)
                .header(header::CONTENT_TYPE, "application/json")
                .body(body)
        })
    };
    let secret = env("PAO_JIRA_WEBHOOK_SECRET");
    let body = delivery.to_string();
    let ignored = signed(
        body.clone(),
        pao::requests::ticket::sign(secret.as_bytes(), body.as_bytes()),
    )
    .await;
    assert_eq!(ignored.status, StatusCode::OK, "{}", ignored.body);
    assert_eq!(ignored.body["outcome"], "ignored");
    let forged = signed(
        body.clone(),
        pao::requests::ticket::sign(b"guess", body.as_bytes()),
    )
    .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let unsigned = api
        .call(Method::POST, hook, hook, anonymous, |r| r.json(&delivery))
        .await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    let junk = "{not json".to_string();
    let garbled = signed(
        junk.clone(),
        pao::requests::ticket::sign(secret.as_bytes(), junk.as_bytes()),
    )
    .await;
    assert_eq!(garbled.status, StatusCode::BAD_REQUEST);

    // Cancelled: a reason, and an audit entry with `from` and `reason`.
    let cancelled = api.get(status, &format!("{path}/status"), dev).await;
    assert_eq!(cancelled.body["status"], "Cancelled");
    assert!(cancelled.body["reason"].is_string());
    let trail = api.get(logs, &format!("{path}/logs"), dev).await;
    let audit = trail.body["audit"].as_array().unwrap();
    assert_eq!(audit.last().unwrap()["to"], "Cancelled");
    assert!(!trail.body["entries"].as_array().unwrap().is_empty());

    // ------------------------------------------------------------ services (IAM)
    let service_requests = "/api/v1/service/requests";
    let service_one = "/api/v1/service/requests/{id}";
    let role = format!("arn:aws:iam::123456789012:role/{}", unique("svc"));
    let session = format!(
        "{}/session-1",
        role.replace(":iam::", ":sts::")
            .replace(":role/", ":assumed-role/")
    );
    let service_submit = |caller, body: Value| {
        api.call(
            Method::POST,
            service_requests,
            service_requests,
            caller,
            move |r| r.json(&body),
        )
    };
    let by_service = service_submit(Caller::Service(&session), queue.clone()).await;
    assert_eq!(
        by_service.status,
        StatusCode::ACCEPTED,
        "{}",
        by_service.body
    );
    let service_id = by_service.body["id"].as_str().unwrap().to_string();
    assert_eq!(by_service.body["requester"]["subject"], role.as_str());
    assert_eq!(
        by_service.headers[header::LOCATION],
        format!("/api/v1/service/requests/{service_id}").as_str()
    );
    for (caller, body, expected) in [
        // Items that do not admit the service group are not there for it.
        (
            Caller::Service(&role),
            submission.clone(),
            StatusCode::NOT_FOUND,
        ),
        // A user's identity does not open a service route.
        (dev, queue.clone(), StatusCode::UNAUTHORIZED),
        (anonymous, queue.clone(), StatusCode::UNAUTHORIZED),
        (
            Caller::Service("not-an-arn"),
            queue.clone(),
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let answer = service_submit(caller, body).await;
        assert_eq!(answer.status, expected, "{}", answer.body);
    }
    let other_role = "arn:aws:iam::123456789012:role/someone-else";
    for (request, caller, expected) in [
        (service_id.as_str(), Caller::Service(&role), StatusCode::OK),
        (
            service_id.as_str(),
            Caller::Service(other_role),
            StatusCode::NOT_FOUND,
        ),
        (service_id.as_str(), dev, StatusCode::UNAUTHORIZED),
        (id.as_str(), Caller::Service(&role), StatusCode::NOT_FOUND),
    ] {
        let target = service_one.replace("{id}", request);
        let answer = api.get(service_one, &target, caller).await;
        assert_eq!(answer.status, expected, "{target}: {}", answer.body);
    }
    // A service identity does not open a user route either.
    let as_user_route = api
        .get(
            one,
            &format!("/api/v1/requests/{service_id}"),
            Caller::Service(&role),
        )
        .await;
    assert_eq!(as_user_route.status, StatusCode::UNAUTHORIZED);

    // ------------------------------------------------------------ coverage
    let called = api.called.lock().unwrap().clone();
    let operations = document_operations(&api.doc);
    let uncalled: Vec<_> = operations.difference(&called).collect();
    assert!(uncalled.is_empty(), "operations never called: {uncalled:?}");
}
