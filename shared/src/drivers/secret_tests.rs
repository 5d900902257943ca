use aws_sdk_secretsmanager::config::retry::RetryConfig;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_secretsmanager::operation::create_secret::{CreateSecretError, CreateSecretOutput};
use aws_sdk_secretsmanager::operation::delete_secret::{DeleteSecretError, DeleteSecretOutput};
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretError;
use aws_sdk_secretsmanager::operation::get_random_password::GetRandomPasswordOutput;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
use aws_sdk_secretsmanager::operation::restore_secret::RestoreSecretOutput;
use aws_sdk_secretsmanager::operation::rotate_secret::RotateSecretOutput;
use aws_sdk_secretsmanager::types::error::{
    InvalidParameterException, InvalidRequestException, ResourceExistsException,
    ResourceNotFoundException,
};
use aws_smithy_mocks::{create_mock_http_client, mock, MockResponseInterceptor, Rule, RuleMode};
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_types::DateTime;
use serde_json::json;

use super::*;
use crate::actions::memory::{Fixture, MemoryJournal};
use crate::catalog::item::ActionType;
use crate::requests::RequestStatus;

const REQUEST: &str = "0190d4c0-5e1f-7a2b-9c3d-4e5f60718293";
const ACTION: &str = "app_secret";
const NAME: &str = "apps/dev/checkout/secret-key";
const ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:apps/dev/checkout/secret-key-AbCdEf";
const ROTATOR: &str = "arn:aws:lambda:us-east-1:123456789012:function:pao-secret-rotation";
const GENERATED: &str = "Generated-0123456789-abcdefghij-KLMNOPQRST-0123456789-uvwxyzABCD";
const FIELD_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:pao/requests/0190d4c0-5e1f-7a2b-9c3d-4e5f60718293/admin_password-Xy12Zw";
const FIELD_VALUE: &str = "correct-horse-battery-staple";
const EXCLUDE: &str = "\"'\\`";

/// A client answering with `rules`, in order: a call that does not match
/// the next rule fails the test.
pub(super) fn client(rules: &[&Rule]) -> Client {
    let interceptor = rules.iter().fold(
        MockResponseInterceptor::new().rule_mode(RuleMode::Sequential),
        |interceptor, rule| interceptor.with_rule(rule),
    );
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .http_client(create_mock_http_client())
        .interceptor(interceptor)
        .build();
    Client::from_conf(config)
}

fn driver(rules: &[&Rule]) -> SecretDriver {
    SecretDriver::new(client(rules), ROTATOR.to_string())
}

pub(super) fn meta(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

fn config(extra: Value) -> Value {
    let mut config = json!({
        "name": NAME,
        "description": "Signing key of checkout (dev)",
        "kms_key_id": "alias/apps",
        "tags": {"app": "checkout", "pao:request-id": "forged"},
    });
    if let (Value::Object(config), Value::Object(extra)) = (&mut config, extra) {
        config.extend(extra);
    }
    config
}

fn generated(rotation: Value) -> Value {
    config(json!({
        "generate": {"length": 64, "exclude_characters": EXCLUDE, "include_space": false},
        "rotation": rotation,
    }))
}

fn fixture(config: Value) -> Fixture {
    Fixture::new(
        REQUEST,
        "eks-app-stack",
        ActionType::AwsSecret,
        ACTION,
        config,
    )
}

fn recorded() -> Vec<Resource> {
    vec![Resource::new(KIND, ARN).with("name", NAME)]
}

fn tag_of<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|tag| tag.key() == Some(key))
        .and_then(Tag::value)
}

fn our_tags() -> Vec<Tag> {
    vec![
        Tag::builder().key(REQUEST_TAG).value(REQUEST).build(),
        Tag::builder().key(ACTION_TAG).value(ACTION).build(),
    ]
}

fn random_password() -> Rule {
    mock!(Client::get_random_password)
        .match_requests(|r| {
            r.password_length() == Some(64)
                && r.exclude_characters() == Some(EXCLUDE)
                && r.include_space() == Some(false)
        })
        .then_output(|| {
            GetRandomPasswordOutput::builder()
                .random_password(GENERATED)
                .build()
        })
}

fn create_ok() -> Rule {
    mock!(Client::create_secret)
        .match_requests(|r| r.name() == Some(NAME))
        .then_output(|| CreateSecretOutput::builder().arn(ARN).name(NAME).build())
}

fn create_error(error: fn() -> CreateSecretError) -> Rule {
    mock!(Client::create_secret).then_error(error)
}

fn exists() -> CreateSecretError {
    CreateSecretError::ResourceExistsException(
        ResourceExistsException::builder()
            .message("the secret exists")
            .meta(meta("ResourceExistsException", "the secret exists"))
            .build(),
    )
}

fn describe(id: &'static str, output: fn() -> DescribeSecretOutput) -> Rule {
    mock!(Client::describe_secret)
        .match_requests(move |r| r.secret_id() == Some(id))
        .then_output(output)
}

fn describe_error(error: fn() -> DescribeSecretError) -> Rule {
    mock!(Client::describe_secret).then_error(error)
}

fn not_found() -> DescribeSecretError {
    DescribeSecretError::ResourceNotFoundException(
        ResourceNotFoundException::builder()
            .message("Secrets Manager can't find the specified secret.")
            .meta(meta("ResourceNotFoundException", "not found"))
            .build(),
    )
}

fn ours() -> DescribeSecretOutput {
    DescribeSecretOutput::builder()
        .arn(ARN)
        .name(NAME)
        .set_tags(Some(our_tags()))
        .build()
}

fn ours_deleted() -> DescribeSecretOutput {
    DescribeSecretOutput::builder()
        .arn(ARN)
        .name(NAME)
        .set_tags(Some(our_tags()))
        .deleted_date(DateTime::from_secs(1_800_000_000))
        .build()
}

fn restore() -> Rule {
    mock!(Client::restore_secret)
        .match_requests(|r| r.secret_id() == Some(ARN))
        .then_output(|| RestoreSecretOutput::builder().arn(ARN).name(NAME).build())
}

fn rotate(days: i64) -> Rule {
    mock!(Client::rotate_secret)
        .match_requests(move |r| {
            r.secret_id() == Some(ARN)
                && r.rotation_lambda_arn() == Some(ROTATOR)
                && r.rotation_rules()
                    .and_then(|rules| rules.automatically_after_days())
                    == Some(days)
                && r.rotate_immediately() == Some(false)
        })
        .then_output(|| RotateSecretOutput::builder().arn(ARN).build())
}

fn expected_outputs() -> Map<String, Value> {
    match json!({"secret_arn": ARN, "secret_name": NAME}) {
        Value::Object(outputs) => outputs,
        _ => unreachable!(),
    }
}

/// The ledger as (kind, id, name).
fn ledger(journal: &MemoryJournal) -> Vec<(String, String, Option<String>)> {
    journal
        .resources()
        .into_iter()
        .map(|r| {
            (
                r.kind.clone(),
                r.id.clone(),
                r.detail("name").map(str::to_string),
            )
        })
        .collect()
}

/// Nothing the journal holds shows `secret`.
fn assert_kept_out(journal: &MemoryJournal, secret: &str) {
    for (_, line) in journal.lines() {
        assert!(!line.contains(secret), "a log line shows the value: {line}");
    }
    let ledger = format!("{:?}", journal.resources());
    assert!(!ledger.contains(secret), "the ledger shows the value");
}

async fn start(
    driver: &SecretDriver,
    fixture: &Fixture,
    resources: &[Resource],
) -> (Result<Progress, ActionError>, MemoryJournal) {
    let journal = MemoryJournal::default();
    let outcome = driver.start(&fixture.step(&journal, resources)).await;
    (outcome, journal)
}

// ------------------------------------------------------------------ start

#[tokio::test]
async fn generates_the_value_inside_aws_and_outputs_only_the_arn_and_name() {
    let password = random_password();
    let token = client_token(REQUEST, ACTION);
    let create = mock!(Client::create_secret)
        .match_requests(move |r| {
            r.name() == Some(NAME)
                && r.secret_string() == Some(GENERATED)
                && r.client_request_token() == Some(token.as_str())
                && r.description() == Some("Signing key of checkout (dev)")
                && r.kms_key_id() == Some("alias/apps")
                && tag_of(r.tags(), REQUEST_TAG) == Some(REQUEST)
                && tag_of(r.tags(), ACTION_TAG) == Some(ACTION)
                && tag_of(r.tags(), "pao:item-id") == Some("eks-app-stack")
                && tag_of(r.tags(), "app") == Some("checkout")
                && tag_of(r.tags(), generate::TAG).is_none()
                && r.tags().len() == 4
        })
        .then_output(|| CreateSecretOutput::builder().arn(ARN).name(NAME).build());
    let driver = driver(&[&password, &create]);
    let fixture = fixture(generated(json!({"enabled": false, "schedule_days": 90})));

    let (outcome, journal) = start(&driver, &fixture, &[]).await;

    let Ok(Progress::Done(outputs)) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(outputs.values, expected_outputs());
    assert!(outputs.secret.is_empty());
    assert_eq!((password.num_calls(), create.num_calls()), (1, 1));
    assert_eq!(
        ledger(&journal),
        vec![(KIND.to_string(), ARN.to_string(), Some(NAME.to_string()))]
    );
    assert!(journal
        .lines()
        .iter()
        .any(|(_, line)| line
            == "created secret apps/dev/checkout/secret-key with a generated value"));
    assert_kept_out(&journal, GENERATED);
}

#[tokio::test]
async fn rotation_is_turned_on_with_the_function_and_the_days_of_the_rendered_config() {
    let password = random_password();
    let expected_tag = Generate {
        length: 64,
        exclude_characters: EXCLUDE.to_string(),
        ..Generate::default()
    }
    .to_tag()
    .unwrap();
    let create = mock!(Client::create_secret)
        .match_requests(move |r| tag_of(r.tags(), generate::TAG) == Some(expected_tag.as_str()))
        .then_output(|| CreateSecretOutput::builder().arn(ARN).name(NAME).build());
    let rotation = rotate(90);
    let driver = driver(&[&password, &create, &rotation]);
    // What `{{fields.secret_rotation}}` and `{{fields.rotation_days | default(value=90)}}` render to.
    let fixture = fixture(generated(json!({"enabled": "true", "schedule_days": "90"})));

    let (outcome, journal) = start(&driver, &fixture, &[]).await;

    assert_eq!(
        outcome,
        Ok(Progress::Done(Outputs::new(expected_outputs())))
    );
    assert_eq!(rotation.num_calls(), 1);
    assert!(journal
        .lines()
        .iter()
        .any(|(_, line)| line == "secret apps/dev/checkout/secret-key rotates every 90 days"));
}

#[tokio::test]
async fn a_repeated_start_takes_up_the_recorded_secret_and_makes_nothing() {
    let described = describe(ARN, || {
        DescribeSecretOutput::builder()
            .arn(ARN)
            .name(NAME)
            .rotation_enabled(true)
            .rotation_lambda_arn(ROTATOR)
            .rotation_rules(
                RotationRulesType::builder()
                    .automatically_after_days(90)
                    .build(),
            )
            .build()
    });
    let driver = driver(&[&described]);
    let fixture = fixture(generated(json!({"enabled": true, "schedule_days": 90})));

    let (outcome, journal) = start(&driver, &fixture, &recorded()).await;

    assert_eq!(
        outcome,
        Ok(Progress::Done(Outputs::new(expected_outputs())))
    );
    assert_eq!(described.num_calls(), 1);
    assert!(journal.resources().is_empty(), "nothing new recorded");
}

#[tokio::test]
async fn a_recorded_secret_whose_start_died_before_rotation_gets_it() {
    let described = describe(ARN, ours);
    let rotation = rotate(30);
    let driver = driver(&[&described, &rotation]);
    let fixture = fixture(generated(json!({"enabled": true})));

    let (outcome, _) = start(&driver, &fixture, &recorded()).await;

    assert_eq!(
        outcome,
        Ok(Progress::Done(Outputs::new(expected_outputs())))
    );
    assert_eq!(rotation.num_calls(), 1);
}

#[tokio::test]
async fn a_recorded_secret_scheduled_for_deletion_is_restored() {
    let described = describe(ARN, ours_deleted);
    let restored = restore();
    let driver = driver(&[&described, &restored]);
    let fixture = fixture(generated(Value::Null));

    let (outcome, journal) = start(&driver, &fixture, &recorded()).await;

    assert_eq!(
        outcome,
        Ok(Progress::Done(Outputs::new(expected_outputs())))
    );
    assert_eq!(restored.num_calls(), 1);
    assert!(journal.lines().iter().any(|(_, line)| line
        .starts_with("restored secret apps/dev/checkout/secret-key, which an earlier rollback")));
}

#[tokio::test]
async fn a_recorded_secret_that_is_gone_is_made_again() {
    let described = describe_error(not_found);
    let password = random_password();
    let create = create_ok();
    let driver = driver(&[&described, &password, &create]);
    let fixture = fixture(generated(Value::Null));

    let (outcome, journal) = start(&driver, &fixture, &recorded()).await;

    assert_eq!(
        outcome,
        Ok(Progress::Done(Outputs::new(expected_outputs())))
    );
    assert_eq!(create.num_calls(), 1);
    assert!(journal
        .lines()
        .iter()
        .any(|(level, line)| *level == Level::Warn && line.contains("is gone")));
}

#[tokio::test]
async fn an_existing_secret_made_by_an_earlier_attempt_is_taken_up() {
    let password = random_password();
    let create = create_error(exists);
    let described = describe(NAME, ours);
    let driver = driver(&[&password, &create, &described]);
    let fixture = fixture(generated(Value::Null));

    let (outcome, journal) = start(&driver, &fixture, &[]).await;

    assert_eq!(
        outcome,
        Ok(Progress::Done(Outputs::new(expected_outputs())))
    );
    assert_eq!(
        ledger(&journal),
        vec![(KIND.to_string(), ARN.to_string(), Some(NAME.to_string()))]
    );
}

#[tokio::test]
async fn an_existing_secret_of_another_request_is_fatal_and_not_recorded() {
    let password = random_password();
    let create = create_error(exists);
    let described = describe(NAME, || {
        DescribeSecretOutput::builder()
            .arn(ARN)
            .name(NAME)
            .tags(
                Tag::builder()
                    .key(REQUEST_TAG)
                    .value("another-request")
                    .build(),
            )
            .tags(Tag::builder().key(ACTION_TAG).value(ACTION).build())
            .build()
    });
    let driver = driver(&[&password, &create, &described]);
    let fixture = fixture(generated(Value::Null));

    let (outcome, journal) = start(&driver, &fixture, &[]).await;

    assert_eq!(
        outcome,
        Err(ActionError::Fatal(
            "a secret named apps/dev/checkout/secret-key exists and was not made by this request"
                .to_string()
        ))
    );
    assert!(journal.resources().is_empty());
}

#[tokio::test]
async fn an_existing_secret_pao_may_not_describe_is_not_ours() {
    let password = random_password();
    let create = create_error(exists);
    let described = describe_error(|| {
        DescribeSecretError::generic(meta("AccessDeniedException", "not authorized"))
    });
    let driver = driver(&[&password, &create, &described]);
    let fixture = fixture(generated(Value::Null));

    let (outcome, journal) = start(&driver, &fixture, &[]).await;

    let Err(ActionError::Fatal(message)) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        message.contains("exists and was not made by this request"),
        "{message}"
    );
    assert!(journal.resources().is_empty());
}

#[tokio::test]
async fn our_secret_scheduled_for_deletion_is_restored_when_create_is_refused() {
    let password = random_password();
    let create = create_error(|| {
        CreateSecretError::InvalidRequestException(
            InvalidRequestException::builder()
                .message("You can't create this secret because a secret with this name is already scheduled for deletion.")
                .meta(meta("InvalidRequestException", "scheduled for deletion"))
                .build(),
        )
    });
    let described = describe(NAME, ours_deleted);
    let restored = restore();
    let driver = driver(&[&password, &create, &described, &restored]);
    let fixture = fixture(generated(Value::Null));

    let (outcome, journal) = start(&driver, &fixture, &[]).await;

    assert_eq!(
        outcome,
        Ok(Progress::Done(Outputs::new(expected_outputs())))
    );
    assert_eq!(restored.num_calls(), 1);
    assert_eq!(journal.resources().len(), 1);
}

#[tokio::test]
async fn create_refused_for_another_reason_is_fatal_with_the_aws_message() {
    let password = random_password();
    let create = create_error(|| {
        CreateSecretError::InvalidRequestException(
            InvalidRequestException::builder()
                .message("The KMS key is disabled.")
                .meta(meta("InvalidRequestException", "The KMS key is disabled."))
                .build(),
        )
    });
    let described = describe_error(not_found);
    let driver = driver(&[&password, &create, &described]);
    let fixture = fixture(generated(Value::Null));

    let (outcome, journal) = start(&driver, &fixture, &[]).await;

    assert_eq!(
        outcome,
        Err(ActionError::Fatal(
            "Secrets Manager CreateSecret: InvalidRequestException: The KMS key is disabled."
                .to_string()
        ))
    );
    assert!(journal.resources().is_empty());
}

#[tokio::test]
async fn failures_are_classified_for_the_state_machine() {
    let throttled =
        create_error(|| CreateSecretError::generic(meta("ThrottlingException", "Rate exceeded")));
    let unavailable = mock!(Client::create_secret)
        .sequence()
        .http_status(
            500,
            Some(r#"{"__type":"InternalServiceError","message":"try again"}"#.to_string()),
        )
        .build();
    let invalid = create_error(|| {
        CreateSecretError::InvalidParameterException(
            InvalidParameterException::builder()
                .message("Invalid name")
                .meta(meta("InvalidParameterException", "Invalid name"))
                .build(),
        )
    });
    let denied = create_error(|| {
        CreateSecretError::generic(meta(
            "AccessDeniedException",
            "not authorized to CreateSecret",
        ))
    });
    let fixture = fixture(generated(Value::Null));
    let mut outcomes = Vec::new();
    for failure in [&throttled, &unavailable, &invalid, &denied] {
        let password = random_password();
        let driver = driver(&[&password, failure]);
        outcomes.push(start(&driver, &fixture, &[]).await.0);
    }
    assert_eq!(
        outcomes,
        vec![
            Err(ActionError::Throttled(
                "Secrets Manager CreateSecret: ThrottlingException: Rate exceeded".to_string()
            )),
            Err(ActionError::Retryable(
                "Secrets Manager CreateSecret: InternalServiceError: try again".to_string()
            )),
            Err(ActionError::Fatal(
                "Secrets Manager CreateSecret: InvalidParameterException: Invalid name".to_string()
            )),
            Err(ActionError::Fatal(
                "Secrets Manager CreateSecret: AccessDeniedException: not authorized to CreateSecret"
                    .to_string()
            )),
        ]
    );
}

// ------------------------------------------------------- password fields

fn with_password_field(mut fixture: Fixture) -> Fixture {
    fixture
        .request
        .fields
        .insert("admin_password".to_string(), json!(FIELD_ARN));
    fixture
        .request
        .fields
        .insert("app_name".to_string(), json!("checkout"));
    fixture.request.secret_fields = vec!["admin_password".to_string()];
    fixture
}

#[tokio::test]
async fn a_password_field_is_copied_from_the_requests_own_secret() {
    let read = mock!(Client::get_secret_value)
        .match_requests(|r| r.secret_id() == Some(FIELD_ARN))
        .then_output(|| {
            GetSecretValueOutput::builder()
                .arn(FIELD_ARN)
                .secret_string(FIELD_VALUE)
                .build()
        });
    let create = mock!(Client::create_secret)
        .match_requests(|r| r.secret_string() == Some(FIELD_VALUE) && r.name() == Some(NAME))
        .then_output(|| CreateSecretOutput::builder().arn(ARN).name(NAME).build());
    let driver = driver(&[&read, &create]);
    let fixture = with_password_field(fixture(config(json!({"value": FIELD_ARN}))));

    let (outcome, journal) = start(&driver, &fixture, &[]).await;

    assert_eq!(
        outcome,
        Ok(Progress::Done(Outputs::new(expected_outputs())))
    );
    assert_eq!((read.num_calls(), create.num_calls()), (1, 1));
    assert!(journal
        .lines()
        .iter()
        .any(|(_, line)| line.ends_with("with the password field admin_password")));
    assert_kept_out(&journal, FIELD_VALUE);
}

#[tokio::test]
async fn a_value_that_is_not_a_password_field_is_refused_and_not_quoted() {
    for value in ["literal-s3cret", "checkout"] {
        let driver = driver(&[]);
        let fixture = with_password_field(fixture(config(json!({"value": value}))));

        let (outcome, journal) = start(&driver, &fixture, &[]).await;

        let Err(ActionError::Fatal(message)) = outcome else {
            panic!("{outcome:?}")
        };
        assert!(message.starts_with("config.value: not one of the request's password fields"));
        assert!(!message.contains(value), "{message}");
        assert!(journal.resources().is_empty());
    }
}

#[tokio::test]
async fn the_config_is_checked_before_any_call() {
    let cases = [
        (config(json!({})), "config.value, config.generate: give one of them (value: a password field)"),
        (
            config(json!({"value": FIELD_ARN, "generate": true})),
            "config.value, config.generate: give one of them, not both",
        ),
        (
            config(json!({"generate": {"length": 8}})),
            "config.generate.length: 8 is not between 16 and 128",
        ),
        (
            config(json!({"generate": {"length": "64", "exclude_symbols": true}})),
            "config.generate.exclude_symbols: not a setting (length, exclude_characters, include_space, exclude_numbers, exclude_punctuation, exclude_uppercase, exclude_lowercase)",
        ),
        (
            config(json!({"generate": true, "rotation": {"enabled": true, "schedule_days": "400"}})),
            "config.rotation.schedule_days: 400 is not between 1 and 365",
        ),
        (
            config(json!({"generate": true, "rotation": {"enabled": "yes"}})),
            "config.rotation.enabled: `yes` is not true or false",
        ),
        (
            config(json!({"generate": true, "name": "apps/dev/check out"})),
            "config.name: `apps/dev/check out` holds ` `; a secret name has letters, digits and /_+=.@- only",
        ),
        (
            config(json!({"generate": true, "tags": "app=checkout"})),
            "config.tags: must be a mapping",
        ),
    ];
    for (config, expected) in cases {
        let driver = driver(&[]);
        let fixture = with_password_field(fixture(config));
        let (outcome, _) = start(&driver, &fixture, &[]).await;
        assert_eq!(outcome, Err(ActionError::Fatal(expected.to_string())));
    }
}

#[tokio::test]
async fn generate_true_takes_the_defaults() {
    let password = mock!(Client::get_random_password)
        .match_requests(|r| {
            r.password_length() == Some(32)
                && r.exclude_characters() == Some(generate::DEFAULT_EXCLUDE)
        })
        .then_output(|| {
            GetRandomPasswordOutput::builder()
                .random_password(GENERATED)
                .build()
        });
    let create = create_ok();
    let driver = driver(&[&password, &create]);
    let fixture = fixture(config(json!({"generate": true})));

    let (outcome, _) = start(&driver, &fixture, &[]).await;

    assert_eq!(
        outcome,
        Ok(Progress::Done(Outputs::new(expected_outputs())))
    );
}

#[test]
fn the_client_token_is_the_same_on_every_attempt_and_fits_secrets_manager() {
    let token = client_token(REQUEST, ACTION);
    assert_eq!(token, client_token(REQUEST, ACTION));
    assert_ne!(token, client_token(REQUEST, "other_secret"));
    assert_ne!(token, client_token("another-request", ACTION));
    assert!((32..=64).contains(&token.len()), "{token}");
    assert_eq!(uuid::Uuid::parse_str(&token).unwrap().get_version_num(), 8);
}

// ------------------------------------------------------------ generation

#[test]
fn generation_settings_survive_the_tag() {
    let settings = Generate {
        length: 100,
        exclude_characters: "\"'\\` @/".to_string(),
        include_space: true,
        exclude_numbers: false,
        exclude_punctuation: true,
        exclude_uppercase: false,
        exclude_lowercase: true,
    };
    let tag = settings.to_tag().unwrap();
    assert!(
        tag.chars()
            .all(|c| c.is_ascii_alphanumeric() || " +-=._:/@".contains(c)),
        "a tag value holds letters, digits, spaces and + - = . _ : / @ only: {tag}"
    );
    assert_eq!(
        tag,
        "length=100 exclude=IidcYCBALw== include-space exclude-punctuation exclude-lowercase"
    );
    assert_eq!(Generate::from_tag(&tag), Ok(settings));
    assert_eq!(
        Generate::from_tag("length=40"),
        Ok(Generate {
            length: 40,
            exclude_characters: String::new(),
            ..Generate::default()
        })
    );
}

#[test]
fn a_tag_that_does_not_read_is_refused() {
    assert_eq!(
        Generate::from_tag("length=8"),
        Err("generate.length: 8 is not between 16 and 128".to_string())
    );
    assert_eq!(
        Generate::from_tag("length=32 shorter"),
        Err("pao:generate: `shorter` is not a setting".to_string())
    );
    assert_eq!(
        Generate::from_tag("length=32 exclude=***"),
        Err("pao:generate: exclude is not base64".to_string())
    );
}

#[test]
fn exclusions_too_long_for_the_tag_are_refused() {
    let settings = Generate {
        exclude_characters: "x".repeat(200),
        ..Generate::default()
    };
    let err = settings.to_tag().unwrap_err();
    assert!(
        err.starts_with("generate.exclude_characters: too long"),
        "{err}"
    );
}

#[test]
fn excluding_every_kind_of_character_is_refused() {
    let config = json!({
        "exclude_numbers": true, "exclude_punctuation": "true",
        "exclude_uppercase": true, "exclude_lowercase": true,
    });
    assert_eq!(
        Generate::from_config(&config),
        Err("generate: every kind of character is excluded".to_string())
    );
    assert_eq!(Generate::from_config(&json!(false)), Ok(None));
}

// ----------------------------------------------------------- compensate

async fn compensate(
    driver: &SecretDriver,
    fixture: &Fixture,
    resources: &[Resource],
) -> Result<Undone, ActionError> {
    let journal = MemoryJournal::default();
    driver.compensate(&fixture.step(&journal, resources)).await
}

fn delete() -> aws_smithy_mocks::RuleBuilder<
    aws_sdk_secretsmanager::operation::delete_secret::DeleteSecretInput,
    DeleteSecretOutput,
    DeleteSecretError,
> {
    mock!(Client::delete_secret).match_requests(|r| {
        r.secret_id() == Some(ARN)
            && r.recovery_window_in_days() == Some(RECOVERY_WINDOW_DAYS)
            && r.force_delete_without_recovery() != Some(true)
    })
}

fn delete_at_once() -> aws_smithy_mocks::RuleBuilder<
    aws_sdk_secretsmanager::operation::delete_secret::DeleteSecretInput,
    DeleteSecretOutput,
    DeleteSecretError,
> {
    mock!(Client::delete_secret).match_requests(|r| {
        r.secret_id() == Some(ARN)
            && r.recovery_window_in_days().is_none()
            && r.force_delete_without_recovery() == Some(true)
    })
}

#[tokio::test]
async fn a_rollback_schedules_the_recorded_secret_for_deletion_with_a_recovery_window() {
    let deleted = delete().then_output(|| DeleteSecretOutput::builder().arn(ARN).build());
    let driver = driver(&[&deleted]);
    let fixture = fixture(generated(Value::Null)).status(RequestStatus::RollingBack);

    let outcome = compensate(&driver, &fixture, &recorded()).await;

    assert_eq!(
        outcome,
        Ok(Undone::Done(
            "secret apps/dev/checkout/secret-key scheduled for deletion (restorable for 7 days)"
                .to_string()
        ))
    );
    assert_eq!(deleted.num_calls(), 1);
}

#[tokio::test]
async fn a_failed_fulfillment_deletes_its_secret_without_a_recovery_window() {
    let deleted = delete_at_once().then_output(|| DeleteSecretOutput::builder().arn(ARN).build());
    let driver = driver(&[&deleted]);
    let fixture = fixture(generated(Value::Null)).status(RequestStatus::InProgress);

    let outcome = compensate(&driver, &fixture, &recorded()).await;

    assert_eq!(
        outcome,
        Ok(Undone::Done(
            "secret apps/dev/checkout/secret-key deleted (the request never completed)".to_string()
        ))
    );
    assert_eq!(deleted.num_calls(), 1);
}

#[tokio::test]
async fn compensation_of_a_secret_that_is_gone_is_done() {
    let deleted = delete().then_error(|| {
        DeleteSecretError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .meta(meta("ResourceNotFoundException", "gone"))
                .build(),
        )
    });
    let driver = driver(&[&deleted]);
    let fixture = fixture(generated(Value::Null)).status(RequestStatus::RollingBack);

    let outcome = compensate(&driver, &fixture, &recorded()).await;

    assert!(matches!(outcome, Ok(Undone::Done(_))), "{outcome:?}");
}

fn refused_delete() -> DeleteSecretError {
    DeleteSecretError::InvalidRequestException(
        InvalidRequestException::builder()
            .message(
                "You tried to perform the operation on a secret that's currently marked deleted.",
            )
            .meta(meta(
                "InvalidRequestException",
                "You tried to perform the operation on a secret that's currently marked deleted.",
            ))
            .build(),
    )
}

#[tokio::test]
async fn compensation_of_a_secret_scheduled_for_deletion_already_is_done() {
    let deleted = delete().then_error(refused_delete);
    let described = describe(ARN, ours_deleted);
    let driver = driver(&[&deleted, &described]);
    let fixture = fixture(generated(Value::Null)).status(RequestStatus::RollingBack);

    let outcome = compensate(&driver, &fixture, &recorded()).await;

    assert!(matches!(outcome, Ok(Undone::Done(_))), "{outcome:?}");
    assert_eq!(described.num_calls(), 1);
}

#[tokio::test]
async fn a_deletion_refused_for_another_reason_is_fatal() {
    let deleted = delete().then_error(refused_delete);
    let described = describe(ARN, ours);
    let driver = driver(&[&deleted, &described]);
    let fixture = fixture(generated(Value::Null)).status(RequestStatus::RollingBack);

    let outcome = compensate(&driver, &fixture, &recorded()).await;

    let Err(ActionError::Fatal(message)) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        message.starts_with("Secrets Manager DeleteSecret: InvalidRequestException"),
        "{message}"
    );
}

#[tokio::test]
async fn a_retained_secret_is_kept_and_nothing_is_called() {
    let driver = driver(&[]);
    let fixture = fixture(generated(Value::Null)).rollback(json!({"retain": true}));

    let outcome = compensate(&driver, &fixture, &recorded()).await;

    assert_eq!(
        outcome,
        Ok(Undone::Kept(
            "secret apps/dev/checkout/secret-key kept, as the item's rollback retains it"
                .to_string()
        ))
    );
}

#[tokio::test]
async fn nothing_recorded_is_nothing_to_undo() {
    let driver = driver(&[]);
    let fixture = fixture(generated(Value::Null));

    let outcome = compensate(&driver, &fixture, &[]).await;

    assert_eq!(
        outcome,
        Ok(Undone::Kept("the action created no secret".to_string()))
    );
}
