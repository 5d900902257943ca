//! The aws-secret driver and the rotation function, in process, against the
//! emulator at `AWS_ENDPOINT_URL` (a bare moto server is enough): each test
//! has its own request id, and leaves no live secret tagged with it.
//!
//! Rotation is not turned on through the driver here: moto's RotateSecret
//! invokes the rotation Lambda, which a bare moto has not got (the local
//! stack registers it). The rotation's four steps run in process instead.

use std::time::Duration;

use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, RotationRulesType, Tag};
use aws_sdk_secretsmanager::Client;
use pao::action::ActionError;
use pao::actions::driver::{Driver, Outputs, Progress, Undone};
use pao::actions::memory::{Fixture, MemoryJournal};
use pao::catalog::item::ActionType;
use pao::drivers::secret::generate::Generate;
use pao::drivers::secret::rotation::{Rotation, RotationEvent, RotationStep};
use pao::drivers::secret::{generate, SecretDriver};
use pao::requests::fulfillment::Resource;
use pao::requests::RequestStatus;
use serde_json::{json, Value};

const ACTION: &str = "app_secret";
/// moto refuses RotateSecret with a function it does not know; no test
/// here turns rotation on through the driver.
const ROTATOR: &str = "arn:aws:lambda:us-east-1:123456789012:function:secret-rotation";
const EXCLUDE: &str = "\"'\\`";

async fn client() -> Client {
    pao_integration::env("AWS_ENDPOINT_URL");
    Client::new(&pao::aws::sdk_config().await)
}

fn request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn fixture(request: &str, config: Value) -> Fixture {
    Fixture::new(
        request,
        "eks-app-stack",
        ActionType::AwsSecret,
        ACTION,
        config,
    )
}

fn generated(name: &str) -> Value {
    json!({
        "name": name,
        "description": "Signing key of checkout (test)",
        "generate": {"length": 40, "exclude_characters": EXCLUDE, "include_space": false},
        "rotation": {"enabled": false},
        "tags": {"app": "checkout"},
    })
}

/// Starts, then polls while the driver asks to wait, as the lifecycle does;
/// what the driver records joins `ledger`.
async fn run(
    driver: &SecretDriver,
    fixture: &Fixture,
    ledger: &mut Vec<Resource>,
) -> Result<Outputs, ActionError> {
    let mut polling = false;
    for _ in 0..30 {
        let journal = MemoryJournal::default();
        let step = fixture.step(&journal, ledger);
        let outcome = if polling {
            driver.poll(&step).await
        } else {
            driver.start(&step).await
        };
        ledger.extend(journal.resources());
        match outcome? {
            Progress::Done(outputs) => return Ok(outputs),
            Progress::Wait { .. } => {
                polling = true;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    panic!("the action was not done after 30 polls");
}

async fn undo(driver: &SecretDriver, fixture: &Fixture, ledger: &[Resource]) -> Undone {
    for _ in 0..30 {
        let journal = MemoryJournal::default();
        match driver.compensate(&fixture.step(&journal, ledger)).await {
            Ok(Undone::Wait { .. }) => tokio::time::sleep(Duration::from_secs(1)).await,
            Ok(undone) => return undone,
            Err(err) => panic!("compensation failed: {err}"),
        }
    }
    panic!("compensation was not done after 30 calls");
}

/// The ARNs of the secrets tagged with the request, live ones only or
/// those scheduled for deletion too.
async fn tagged(client: &Client, request: &str, planned_deletion: bool) -> Vec<String> {
    let listed = client
        .list_secrets()
        .filters(
            Filter::builder()
                .key(FilterNameStringType::TagKey)
                .values("pao:request-id")
                .build(),
        )
        .filters(
            Filter::builder()
                .key(FilterNameStringType::TagValue)
                .values(request)
                .build(),
        )
        .include_planned_deletion(planned_deletion)
        .send()
        .await
        .expect("ListSecrets");
    listed
        .secret_list()
        .iter()
        .filter(|secret| {
            secret
                .tags()
                .iter()
                .any(|tag| tag.key() == Some("pao:request-id") && tag.value() == Some(request))
        })
        .filter_map(|secret| secret.arn().map(str::to_string))
        .collect()
}

async fn current_value(client: &Client, arn: &str) -> (String, String) {
    let answer = client
        .get_secret_value()
        .secret_id(arn)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .expect("GetSecretValue");
    (
        answer.version_id().unwrap_or_default().to_string(),
        answer.secret_string().unwrap_or_default().to_string(),
    )
}

fn output<'a>(outputs: &'a Outputs, name: &str) -> &'a str {
    outputs.values[name].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_generated_secret_is_made_once_taken_up_again_and_scheduled_for_deletion() {
    let client = client().await;
    let driver = SecretDriver::new(client.clone(), ROTATOR.to_string());
    let request = request_id();
    let name = format!("apps/test/{request}/secret-key");
    let fixture = fixture(&request, generated(&name));
    let mut ledger = Vec::new();

    let outputs = run(&driver, &fixture, &mut ledger).await.expect("start");

    let arn = output(&outputs, "secret_arn").to_string();
    assert_eq!(output(&outputs, "secret_name"), name);
    assert_eq!(outputs.values.len(), 2, "{:?}", outputs.values);
    assert_eq!(ledger.len(), 1);
    assert_eq!(
        (ledger[0].kind.as_str(), ledger[0].id.as_str()),
        ("secretsmanager:secret", arn.as_str())
    );
    let (_, value) = current_value(&client, &arn).await;
    assert_eq!(value.chars().count(), 40);
    assert!(!value.chars().any(|c| EXCLUDE.contains(c) || c == ' '));
    assert!(!serde_json::to_string(&outputs.values)
        .unwrap()
        .contains(&value));
    let described = client
        .describe_secret()
        .secret_id(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.description(),
        Some("Signing key of checkout (test)")
    );
    let tag = |key: &str| {
        described
            .tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(Tag::value)
            .map(str::to_string)
    };
    assert_eq!(tag("pao:request-id"), Some(request.clone()));
    assert_eq!(tag("pao:action-id"), Some(ACTION.to_string()));
    assert_eq!(tag("pao:item-id"), Some("eks-app-stack".to_string()));
    assert_eq!(tag("app"), Some("checkout".to_string()));

    // Started again, by the ledger: nothing new.
    let again = run(&driver, &fixture, &mut ledger)
        .await
        .expect("second start");
    assert_eq!(again.values, outputs.values);
    assert_eq!(ledger.len(), 1);
    // Started again by a call that never saw the ledger (a start that died
    // after CreateSecret): the secret is found by its name and tags.
    let mut lost = Vec::new();
    let found = run(&driver, &fixture, &mut lost)
        .await
        .expect("start without the ledger");
    assert_eq!(found.values, outputs.values);
    assert_eq!(lost.len(), 1);
    assert_eq!(tagged(&client, &request, false).await, vec![arn.clone()]);
    assert_eq!(
        current_value(&client, &arn).await.1,
        value,
        "the value was not replaced"
    );

    // Compensation of a rollback: scheduled for deletion, twice over is
    // still done.
    let rolling_back = self::fixture(&request, generated(&name)).status(RequestStatus::RollingBack);
    for _ in 0..2 {
        let undone = undo(&driver, &rolling_back, &ledger).await;
        assert!(
            matches!(undone, Undone::Done(ref what) if what.contains("restorable for 7 days")),
            "{undone:?}"
        );
    }
    assert!(tagged(&client, &request, false).await.is_empty());
    assert_eq!(
        tagged(&client, &request, true).await,
        vec![arn.clone()],
        "kept for its recovery window"
    );

    // A retry after the rollback takes the same secret back, value and all.
    let restored = run(&driver, &fixture, &mut ledger)
        .await
        .expect("start after rollback");
    assert_eq!(restored.values, outputs.values);
    assert_eq!(current_value(&client, &arn).await.1, value);

    // Compensation of a failed fulfillment deletes it at once: it never
    // reached anyone, and its name is free again.
    let undone = undo(&driver, &fixture, &ledger).await;
    assert!(
        matches!(undone, Undone::Done(ref what) if what.contains("deleted (the request never completed)")),
        "{undone:?}"
    );
    assert!(tagged(&client, &request, true).await.is_empty());
}

#[tokio::test]
async fn a_password_field_is_copied_without_passing_through_the_request() {
    let client = client().await;
    let driver = SecretDriver::new(client.clone(), ROTATOR.to_string());
    let request = request_id();
    // What submission stores for a password field.
    let password = format!("pw-{}", uuid::Uuid::new_v4());
    let field_secret = client
        .create_secret()
        .name(format!("pao/requests/{request}/admin_password"))
        .secret_string(&password)
        .send()
        .await
        .unwrap();
    let field_arn = field_secret.arn().unwrap().to_string();
    let name = format!("apps/test/{request}/admin");
    let mut fixture = fixture(
        &request,
        json!({"name": name, "value": field_arn, "tags": {"app": "checkout"}}),
    );
    fixture
        .request
        .fields
        .insert("admin_password".to_string(), json!(field_arn));
    fixture.request.secret_fields = vec!["admin_password".to_string()];
    let mut ledger = Vec::new();

    let outputs = run(&driver, &fixture, &mut ledger).await.expect("start");

    let arn = output(&outputs, "secret_arn").to_string();
    assert_eq!(current_value(&client, &arn).await.1, password);
    assert!(!serde_json::to_string(&outputs.values)
        .unwrap()
        .contains(&password));

    undo(&driver, &fixture, &ledger).await;
    assert!(tagged(&client, &request, false).await.is_empty());
    client
        .delete_secret()
        .secret_id(&field_arn)
        .recovery_window_in_days(7)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_secret_of_that_name_made_by_someone_else_is_left_alone() {
    let client = client().await;
    let driver = SecretDriver::new(client.clone(), ROTATOR.to_string());
    let request = request_id();
    let name = format!("apps/test/{request}/taken");
    let theirs = client
        .create_secret()
        .name(&name)
        .secret_string("theirs")
        .send()
        .await
        .unwrap();
    let fixture = fixture(&request, generated(&name));
    let mut ledger = Vec::new();

    let outcome = run(&driver, &fixture, &mut ledger).await;

    assert_eq!(
        outcome,
        Err(ActionError::Fatal(format!(
            "a secret named {name} exists and was not made by this request"
        )))
    );
    assert!(ledger.is_empty());
    assert_eq!(
        current_value(&client, theirs.arn().unwrap()).await.1,
        "theirs"
    );
    assert!(matches!(
        undo(&driver, &fixture, &ledger).await,
        Undone::Kept(_)
    ));
    client
        .delete_secret()
        .secret_id(&name)
        .recovery_window_in_days(7)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_rotation_steps_make_a_new_current_value_with_the_secrets_settings() {
    let client = client().await;
    let driver = SecretDriver::new(client.clone(), ROTATOR.to_string());
    let request = request_id();
    let name = format!("apps/test/{request}/rotated");
    let fixture = fixture(&request, generated(&name));
    let mut ledger = Vec::new();
    let outputs = run(&driver, &fixture, &mut ledger).await.expect("start");
    let arn = output(&outputs, "secret_arn").to_string();
    let (old_version, old_value) = current_value(&client, &arn).await;
    // The tag the driver writes when rotation is on.
    let settings = Generate {
        length: 48,
        exclude_characters: EXCLUDE.to_string(),
        exclude_punctuation: true,
        ..Generate::default()
    };
    client
        .tag_resource()
        .secret_id(&arn)
        .tags(
            Tag::builder()
                .key(generate::TAG)
                .value(settings.to_tag().unwrap())
                .build(),
        )
        .send()
        .await
        .unwrap();

    // Secrets Manager's part: rotation on, the new version staged
    // AWSPENDING with no value yet. moto does both before it looks for the
    // function, and then fails for want of it.
    let token = uuid::Uuid::new_v4().to_string();
    let staged = client
        .rotate_secret()
        .secret_id(&arn)
        .client_request_token(&token)
        .rotation_lambda_arn("arn:aws:lambda:us-east-1:123456789012:function:no-such-function")
        .rotation_rules(
            RotationRulesType::builder()
                .automatically_after_days(30)
                .build(),
        )
        .rotate_immediately(true)
        .send()
        .await;
    assert!(staged.is_err(), "moto has no such function");
    let described = client
        .describe_secret()
        .secret_id(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(described.rotation_enabled(), Some(true));
    assert_eq!(
        described.version_ids_to_stages().unwrap()[&token],
        vec!["AWSPENDING".to_string()]
    );

    let rotation = Rotation::new(client.clone());
    let event = |step| RotationEvent {
        step,
        secret_id: arn.clone(),
        client_request_token: token.clone(),
    };
    for step in [
        RotationStep::CreateSecret,
        // Secrets Manager retries a step: the same value stays pending.
        RotationStep::CreateSecret,
        RotationStep::SetSecret,
        RotationStep::TestSecret,
        RotationStep::FinishSecret,
        RotationStep::FinishSecret,
    ] {
        rotation
            .handle(event(step))
            .await
            .unwrap_or_else(|err| panic!("{step:?}: {err}"));
    }

    let (version, value) = current_value(&client, &arn).await;
    assert_eq!(version, token);
    assert_ne!(value, old_value);
    assert_eq!(value.chars().count(), 48);
    assert!(value.chars().all(char::is_alphanumeric), "no punctuation");
    let described = client
        .describe_secret()
        .secret_id(&arn)
        .send()
        .await
        .unwrap();
    let stages = described.version_ids_to_stages().unwrap();
    assert_eq!(stages[&token], vec!["AWSCURRENT".to_string()]);
    assert_eq!(stages[&old_version], vec!["AWSPREVIOUS".to_string()]);

    undo(&driver, &fixture, &ledger).await;
    assert!(tagged(&client, &request, false).await.is_empty());
}
