use serde_json::{json, Map, Value};

use super::*;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    }
}

fn context_with(fields: Value) -> Context {
    let env = TemplateEnv::from_env(env_of(&[
        ("PAO_TEMPLATE_ENV", "DBAAS_URL"),
        ("PAO_TEMPLATE_SECRETS", "DBAAS_TOKEN"),
        ("DBAAS_URL", "https://dbaas.internal"),
        ("DBAAS_TOKEN", "s3cr3t-token"),
        ("AWS_SECRET_ACCESS_KEY", "never"),
        ("HOME", "/root"),
    ]))
    .unwrap();
    let mut response = Map::new();
    response.insert(
        "db".to_string(),
        json!({"id": "db-42", "port": 5432, "endpoints": ["a", "b"]}),
    );
    Context::new(
        fields,
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

fn context() -> Context {
    context_with(json!({
        "name": "orders", "size": 20, "ha": true, "ratio": 0.5, "tags": ["a", "b"],
        "nothing": null, "meta": {"team": "core"},
    }))
}

fn render_one(text: &str) -> Result<Value, RenderError> {
    render_text(text, &context(), Secrets::Refused, "config.x")
}

#[test]
fn every_namespace_renders() {
    let config = json!({
        "name": "{{fields.name}}",
        "owner": "{{ header.owner }}",
        "request": "{{request.id}} at {{request.timestamp}} by {{request.user.email}} ({{request.user.name}}, {{request.user.id}})",
        "url": "{{env.DBAAS_URL}}/v1/databases/{{response.db.id}}",
        "second": "{{response.db.endpoints.1}}",
    });
    let rendered = render(&config, &context(), Secrets::Refused, "config").unwrap();
    assert_eq!(
        rendered,
        json!({
            "name": "orders",
            "owner": "data-platform",
            "request": "0192f6a0-0000-7000-8000-000000000001 at 2026-11-23T12:00:00Z by dev@example.com (dev, u-1)",
            "url": "https://dbaas.internal/v1/databases/db-42",
            "second": "b",
        })
    );
}

#[test]
fn a_lone_placeholder_keeps_the_type_and_text_does_not() {
    assert_eq!(render_one("{{fields.size}}").unwrap(), json!(20));
    assert_eq!(render_one(" {{ fields.ha }} ").unwrap(), json!(" true "));
    assert_eq!(render_one("{{fields.ha}}").unwrap(), json!(true));
    assert_eq!(render_one("{{fields.ratio}}").unwrap(), json!(0.5));
    assert_eq!(render_one("{{fields.tags}}").unwrap(), json!(["a", "b"]));
    assert_eq!(
        render_one("{{fields.meta}}").unwrap(),
        json!({"team": "core"})
    );
    assert_eq!(render_one("{{fields.nothing}}").unwrap(), Value::Null);
    assert_eq!(render_one("{{response.db.port}}").unwrap(), json!(5432));
    assert_eq!(
        render_one("size={{fields.size}}").unwrap(),
        json!("size=20")
    );
    assert_eq!(
        render_one("tags={{fields.tags}}").unwrap(),
        json!(r#"tags=["a","b"]"#)
    );
    assert_eq!(render_one("[{{fields.nothing}}]").unwrap(), json!("[]"));
    // Numbers, booleans and nulls in the config are not templates.
    let config = json!({"n": 3, "b": false, "z": null});
    assert_eq!(
        render(&config, &context(), Secrets::Refused, "c").unwrap(),
        config
    );
}

#[test]
fn filters_and_conditions_go_through_tera() {
    assert_eq!(
        render_one("{{ fields.name | upper }}").unwrap(),
        json!("ORDERS")
    );
    assert_eq!(
        render_one("{% if fields.ha %}multi-az{% else %}single{% endif %}").unwrap(),
        json!("multi-az")
    );
    assert_eq!(
        render_one("{% for t in fields.tags %}{{t}};{% endfor %}").unwrap(),
        json!("a;b;")
    );
    assert_eq!(
        render_one(r#"{{ fields.missing | default(value="none") }}"#).unwrap(),
        json!("none")
    );
}

#[test]
fn a_defaulted_placeholder_keeps_the_type_of_what_it_yields() {
    // An optional number stays a number whether the field was sent or not.
    assert_eq!(
        render_one("{{ fields.missing | default(value=10) }}").unwrap(),
        json!(10)
    );
    assert_eq!(
        render_one("{{fields.missing | default(value=true)}}").unwrap(),
        json!(true)
    );
    assert_eq!(
        render_one("{{ fields.ha | default(value=false) }}").unwrap(),
        json!(true)
    );
    assert_eq!(
        render_one("{{ fields.tags | default(value='none') }}").unwrap(),
        json!(["a", "b"])
    );
    // Anything more than the one filter is text, as before.
    assert_eq!(
        render_one("x-{{ fields.missing | default(value=10) }}").unwrap(),
        json!("x-10")
    );
    assert_eq!(
        render_one("{{ fields.missing | default(value='a') | upper }}").unwrap(),
        json!("A")
    );
    // A secret through a default is still refused outside a header.
    assert!(render_one("{{ env.DBAAS_TOKEN | default(value='') }}").is_err());
}

#[test]
fn undefined_names_are_errors() {
    for (text, name) in [
        ("{{fields.missing}}", "fields.missing"),
        ("db-{{response.other.id}}", "response.other.id"),
        ("{{response.db.endpoints.5}}", "response.db.endpoints.5"),
        ("{{env.HOME}}", "env.HOME"),
    ] {
        assert_eq!(
            render_one(text),
            Err(RenderError::Undefined {
                at: "config.x".to_string(),
                name: name.to_string()
            }),
            "{text}"
        );
    }
    let err = render_one("{{ fields.missing | upper }}").unwrap_err();
    assert!(err.to_string().contains("fields.missing"), "{err}");
    assert!(err.to_string().starts_with("config.x: "), "{err}");
    let err = render_one("{{ fields.name ").unwrap_err();
    assert!(err.to_string().contains("invalid template syntax"), "{err}");
}

#[test]
fn user_input_stays_inert() {
    let hostile = [
        r#"x", "admin": true, "y": ""#,
        "{{ env.DBAAS_TOKEN }}",
        "{% for k in env %}{{k}}{% endfor %}",
        "}}{{request.id}}{{",
        "a: b\nc: [d]\n- e",
        "'; DROP TABLE users; --",
        "\\u0022 \u{0} \\",
        "{\"nested\": {\"json\": 1}}",
    ];
    for input in hostile {
        let context = context_with(json!({"name": input}));
        let config = json!({
            "alone": "{{fields.name}}",
            "inside": "name={{fields.name}}!",
            "filtered": "{{ fields.name | lower }}",
            "body": {"name": "{{fields.name}}", "admin": false},
        });
        let rendered = render(&config, &context, Secrets::Refused, "config").unwrap();
        assert_eq!(rendered["alone"], json!(input));
        assert_eq!(rendered["inside"], json!(format!("name={input}!")));
        assert_eq!(rendered["filtered"], json!(input.to_lowercase()));
        assert_eq!(rendered["body"], json!({"name": input, "admin": false}));
        // The structure is the config's: no key was added or lost.
        let mut keys: Vec<&String> = rendered.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["alone", "body", "filtered", "inside"]);
        let text = rendered.to_string();
        assert!(!text.contains("s3cr3t-token"), "{input}: {text}");
    }
}

#[test]
fn env_reads_the_allow_list_only() {
    let context = context();
    for name in ["AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "HOME", "PATH"] {
        let text = format!("{{{{env.{name}}}}}");
        assert!(
            matches!(
                render_text(&text, &context, Secrets::Allowed, "h"),
                Err(RenderError::Undefined { .. })
            ),
            "{name}"
        );
    }
    for listed in [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "LAMBDA_TASK_ROOT",
        "_HANDLER",
        "lower",
    ] {
        let read = env_of(&[("PAO_TEMPLATE_ENV", listed), (listed, "x")]);
        assert!(TemplateEnv::from_env(read).is_err(), "{listed}");
    }
    let unset = env_of(&[("PAO_TEMPLATE_SECRETS", "NOT_SET")]);
    assert!(TemplateEnv::from_env(unset).is_err());
    assert!(TemplateEnv::from_env(env_of(&[])).is_ok());
}

#[test]
fn secrets_render_in_headers_only() {
    let context = context();
    let header = "Bearer {{env.DBAAS_TOKEN}}";
    assert_eq!(
        render_text(
            header,
            &context,
            Secrets::Allowed,
            "config.headers.Authorization"
        )
        .unwrap(),
        json!("Bearer s3cr3t-token")
    );
    for text in [
        header,
        "{{env.DBAAS_TOKEN}}",
        "{{ env.DBAAS_TOKEN | lower }}",
        "{% for k in env %}{{k}}{% endfor %}",
    ] {
        let err = render_text(text, &context, Secrets::Refused, "config.url").unwrap_err();
        assert!(
            matches!(err, RenderError::SecretOutsideHeader { .. }),
            "{text}: {err}"
        );
        assert!(!err.to_string().contains("s3cr3t-token"));
    }
    // Plain configuration may go anywhere.
    assert!(render_text("{{env.DBAAS_URL}}", &context, Secrets::Refused, "u").is_ok());
    let env = TemplateEnv::from_env(env_of(&[
        ("PAO_TEMPLATE_SECRETS", "DBAAS_TOKEN"),
        ("DBAAS_TOKEN", "s3cr3t-token"),
    ]))
    .unwrap();
    assert_eq!(env.secret_values().collect::<Vec<_>>(), ["s3cr3t-token"]);
}

#[test]
fn templates_cannot_reach_past_their_namespaces() {
    let context = context();
    // Tera's get_env would read any variable of the process.
    let process = env!("CARGO_MANIFEST_DIR");
    for text in [
        "{{ get_env(name=\"CARGO_MANIFEST_DIR\") }}",
        "{{ get_env(name=\"CARGO_MANIFEST_DIR\") | trim }}",
        "{% set t = get_env(name=\"CARGO_MANIFEST_DIR\") %}{{ t }}",
        "{{ __tera_context }}",
        "{% set env = fields %}{{ env.name }}",
        "{% for fields in env %}{{ fields }}{% endfor %}",
        "{% for k, env in fields %}{{ env }}{% endfor %}",
    ] {
        for secrets in [Secrets::Allowed, Secrets::Refused] {
            let err = render_text(text, &context, secrets, "config.body").unwrap_err();
            assert!(
                matches!(
                    err,
                    RenderError::Template { .. } | RenderError::Undefined { .. }
                ),
                "{text}: {err}"
            );
            assert!(!err.to_string().contains(process), "{text}: {err}");
        }
        // Refused by the check catalog validation runs too (a lone
        // `__tera_context` is a name no namespace has, refused there).
        let refused = crate::template::references(text).map_or(true, |found| {
            found
                .iter()
                .all(|r| !crate::template::NAMESPACES.contains(&r.root()))
        });
        assert!(refused, "{text}");
    }
    // Should a call get past that check, the engine itself refuses it.
    let called = locked_tera().render_str(
        "{{ get_env(name=\"CARGO_MANIFEST_DIR\") }}",
        &tera::Context::new(),
    );
    assert!(called.is_err_and(|err| !format!("{err:?}").contains(process)));
    let looped = locked_tera().render_str(
        "{% for i in range(end=100000000) %}x{% endfor %}",
        &tera::Context::new(),
    );
    assert!(looped.is_err());
    // A comparison reads the secret as surely as printing it does.
    for text in [
        "{% if env.DBAAS_TOKEN == \"s3cr3t-token\" %}yes{% endif %}",
        "{% if env.DBAAS_TOKEN is starting_with(\"s3\") %}yes{% endif %}",
        "{{ env }}",
    ] {
        let err = render_text(text, &context, Secrets::Refused, "config.body").unwrap_err();
        assert!(
            matches!(err, RenderError::SecretOutsideHeader { .. }),
            "{text}: {err}"
        );
    }
    // Tests and filters with arguments are not calls.
    assert_eq!(
        render_one("{% if fields.name is not starting_with(\"x\") %}ok{% endif %}").unwrap(),
        json!("ok")
    );
}

#[test]
fn a_message_about_a_secret_is_blanked_before_anyone_sees_it() {
    let context = context();
    let env = TemplateEnv::from_env(env_of(&[
        ("PAO_TEMPLATE_SECRETS", "DBAAS_TOKEN"),
        ("DBAAS_TOKEN", "s3cr3t-token"),
    ]))
    .unwrap();
    // Tera quotes the value a filter could not use.
    let err = render_text(
        "{{ env.DBAAS_TOKEN | round }}",
        &context,
        Secrets::Allowed,
        "config.headers.X",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("s3cr3t-token"), "{err}");
    let blanked = redact(&err, env.secret_values());
    assert!(!blanked.contains("s3cr3t-token"), "{blanked}");
    assert_eq!(
        redact("a s3cr3t-token b", env.secret_values()),
        "a [redacted] b"
    );
}

#[test]
fn a_url_takes_the_requesters_values_encoded_in_their_slots() {
    let context =
        context_with(json!({"name": "evil.example.com/x?y#", "path": "../admin?force=true"}));
    let url = |text: &str| render_url(text, &context, "config.url");
    // The host and the path stay what the item made them.
    assert_eq!(
        url("https://{{fields.name}}.dbaas.example.com/v1").unwrap(),
        json!("https://evil.example.com%2Fx%3Fy%23.dbaas.example.com/v1")
    );
    assert_eq!(
        url("{{env.DBAAS_URL}}/v1/databases/{{fields.path}}").unwrap(),
        json!("https://dbaas.internal/v1/databases/..%2Fadmin%3Fforce%3Dtrue")
    );
    assert_eq!(
        url("{{env.DBAAS_URL}}/v1/{{response.db.id}}").unwrap(),
        json!("https://dbaas.internal/v1/db-42")
    );
    // Through a filter a value could not be encoded: refused.
    let err = url("{{env.DBAAS_URL}}/v1/{{ fields.path | lower }}").unwrap_err();
    assert!(
        err.to_string().contains("must be a plain placeholder"),
        "{err}"
    );
    assert!(url("{{ env.DBAAS_URL | lower }}/v1").is_ok());
    // Secrets never go in a URL.
    assert!(matches!(
        url("{{env.DBAAS_URL}}/v1?token={{env.DBAAS_TOKEN}}"),
        Err(RenderError::SecretOutsideHeader { .. })
    ));
}

#[test]
fn the_whole_context_is_not_a_variable() {
    // Through a filter, `__tera_context` once went to Tera, which printed
    // every namespace, secrets included.
    let context = context();
    for secrets in [Secrets::Allowed, Secrets::Refused] {
        let err =
            render_text("{{ __tera_context | json_encode }}", &context, secrets, "b").unwrap_err();
        assert!(matches!(err, RenderError::Template { .. }), "{err}");
        assert!(!err.to_string().contains("s3cr3t-token"), "{err}");
    }
}
