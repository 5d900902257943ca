use std::collections::HashMap;

use aws_sdk_secretsmanager::operation::get_random_password::GetRandomPasswordOutput;
use aws_sdk_secretsmanager::operation::get_secret_value::{
    GetSecretValueError, GetSecretValueOutput,
};
use aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueOutput;
use aws_sdk_secretsmanager::operation::update_secret_version_stage::UpdateSecretVersionStageOutput;
use aws_sdk_secretsmanager::types::error::ResourceNotFoundException;
use aws_smithy_mocks::{mock, Rule};

use super::*;
use crate::drivers::secret::tests::{client, meta};

const SECRET: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:apps/dev/checkout/secret-key-AbCdEf";
const TOKEN: &str = "6f9c2a3e-1b2c-4d5e-8f90-a1b2c3d4e5f6";
const OLD: &str = "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d";
const NEW_VALUE: &str = "New-0123456789-abcdefghij-KLMNOPQRST-0123456789-uvwxyzABCD-0123";

fn event(step: RotationStep) -> RotationEvent {
    RotationEvent {
        step,
        secret_id: SECRET.to_string(),
        client_request_token: TOKEN.to_string(),
    }
}

/// DescribeSecret of a secret with rotation `enabled`, its versions'
/// stages, and the `pao:generate` tag when given.
fn described(enabled: bool, versions: &[(&str, &[&str])], tag: Option<&str>) -> Rule {
    let versions: HashMap<String, Vec<String>> = versions
        .iter()
        .map(|(id, stages)| {
            (
                id.to_string(),
                stages.iter().map(|s| s.to_string()).collect(),
            )
        })
        .collect();
    let tag = tag.map(str::to_string);
    mock!(Client::describe_secret)
        .match_requests(|r| r.secret_id() == Some(SECRET))
        .then_output(move || {
            let mut output = DescribeSecretOutput::builder()
                .arn(SECRET)
                .rotation_enabled(enabled)
                .set_version_ids_to_stages(Some(versions.clone()));
            if let Some(tag) = &tag {
                output = output.tags(Tag::builder().key(generate::TAG).value(tag).build());
            }
            output.build()
        })
}

fn staged() -> Rule {
    described(
        true,
        &[(TOKEN, &[PENDING]), (OLD, &[CURRENT])],
        Some("length=64 exclude=IidcYA=="),
    )
}

fn read_pending(value: Option<&'static str>) -> Rule {
    let rule = mock!(Client::get_secret_value).match_requests(|r| {
        r.secret_id() == Some(SECRET)
            && r.version_id() == Some(TOKEN)
            && r.version_stage() == Some(PENDING)
    });
    match value {
        Some(value) => rule.then_output(move || {
            GetSecretValueOutput::builder()
                .arn(SECRET)
                .version_id(TOKEN)
                .secret_string(value)
                .build()
        }),
        None => rule.then_error(|| {
            GetSecretValueError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .meta(meta(
                        "ResourceNotFoundException",
                        "Secrets Manager can't find the specified secret value for staging label: AWSPENDING",
                    ))
                    .build(),
            )
        }),
    }
}

fn random_password(length: i64, exclude: &'static str) -> Rule {
    mock!(Client::get_random_password)
        .match_requests(move |r| {
            r.password_length() == Some(length) && r.exclude_characters() == Some(exclude)
        })
        .then_output(|| {
            GetRandomPasswordOutput::builder()
                .random_password(NEW_VALUE)
                .build()
        })
}

fn put_pending() -> Rule {
    mock!(Client::put_secret_value)
        .match_requests(|r| {
            r.secret_id() == Some(SECRET)
                && r.client_request_token() == Some(TOKEN)
                && r.secret_string() == Some(NEW_VALUE)
                && r.version_stages() == [PENDING.to_string()]
        })
        .then_output(|| PutSecretValueOutput::builder().arn(SECRET).build())
}

fn unstage_pending() -> Rule {
    mock!(Client::update_secret_version_stage)
        .match_requests(|r| {
            r.version_stage() == Some(PENDING)
                && r.remove_from_version_id() == Some(TOKEN)
                && r.move_to_version_id().is_none()
        })
        .then_output(|| {
            UpdateSecretVersionStageOutput::builder()
                .arn(SECRET)
                .build()
        })
}

fn calls(rules: &[&Rule]) -> Vec<usize> {
    rules.iter().map(|rule| rule.num_calls()).collect()
}

#[test]
fn the_event_reads_secrets_managers_contract() {
    let event: RotationEvent = serde_json::from_str(&format!(
        r#"{{"Step":"finishSecret","SecretId":"{SECRET}","ClientRequestToken":"{TOKEN}","RotationToken":"x"}}"#
    ))
    .unwrap();
    assert_eq!(event, self::event(RotationStep::FinishSecret));
}

#[tokio::test]
async fn create_makes_the_pending_version_with_the_settings_of_the_tag() {
    let rules = [
        staged(),
        read_pending(None),
        random_password(64, "\"'\\`"),
        put_pending(),
    ];
    let refs: Vec<&Rule> = rules.iter().collect();
    let rotation = Rotation::new(client(&refs));

    let outcome = rotation.handle(event(RotationStep::CreateSecret)).await;

    assert_eq!(outcome, Ok(()));
    assert_eq!(calls(&refs), [1, 1, 1, 1]);
}

#[tokio::test]
async fn create_without_the_tag_uses_the_defaults() {
    let rules = [
        described(true, &[(TOKEN, &[PENDING]), (OLD, &[CURRENT])], None),
        read_pending(None),
        random_password(32, generate::DEFAULT_EXCLUDE),
        put_pending(),
    ];
    let refs: Vec<&Rule> = rules.iter().collect();
    let rotation = Rotation::new(client(&refs));

    let outcome = rotation.handle(event(RotationStep::CreateSecret)).await;

    assert_eq!(outcome, Ok(()));
    assert_eq!(calls(&refs), [1, 1, 1, 1]);
}

#[tokio::test]
async fn create_again_finds_the_pending_value_and_makes_no_other() {
    let rules = [staged(), read_pending(Some(NEW_VALUE))];
    let refs: Vec<&Rule> = rules.iter().collect();
    let rotation = Rotation::new(client(&refs));

    let outcome = rotation.handle(event(RotationStep::CreateSecret)).await;

    assert_eq!(outcome, Ok(()));
    assert_eq!(calls(&refs), [1, 1]);
}

#[tokio::test]
async fn a_tag_that_does_not_read_stops_the_rotation() {
    let rules = [
        described(
            true,
            &[(TOKEN, &[PENDING]), (OLD, &[CURRENT])],
            Some("length=4"),
        ),
        read_pending(None),
    ];
    let refs: Vec<&Rule> = rules.iter().collect();
    let rotation = Rotation::new(client(&refs));

    let outcome = rotation.handle(event(RotationStep::CreateSecret)).await;

    assert_eq!(
        outcome,
        Err(ActionError::Fatal(format!(
            "secret {SECRET}: generate.length: 4 is not between 16 and 128"
        )))
    );
}

#[tokio::test]
async fn nothing_is_done_unless_rotation_is_enabled_and_the_version_staged() {
    let cases: [(fn() -> Rule, String); 3] = [
        (
            || described(false, &[(TOKEN, &[PENDING]), (OLD, &[CURRENT])], None),
            format!("secret {SECRET} is not enabled for rotation"),
        ),
        (
            || described(true, &[(OLD, &[CURRENT])], None),
            format!("version {TOKEN} of secret {SECRET} has no stage for rotation"),
        ),
        (
            || described(true, &[(TOKEN, &["AWSPREVIOUS"]), (OLD, &[CURRENT])], None),
            format!("version {TOKEN} of secret {SECRET} is not staged AWSPENDING"),
        ),
    ];
    for (describe, expected) in cases {
        for step in [
            RotationStep::CreateSecret,
            RotationStep::SetSecret,
            RotationStep::TestSecret,
            RotationStep::FinishSecret,
        ] {
            // Only the description is answered: any other call fails the test.
            let describe = describe();
            let rotation = Rotation::new(client(&[&describe]));
            let outcome = rotation.handle(event(step)).await;
            assert_eq!(
                outcome,
                Err(ActionError::Fatal(expected.clone())),
                "{step:?}"
            );
            assert_eq!(describe.num_calls(), 1);
        }
    }
}

#[tokio::test]
async fn a_version_that_is_current_already_is_done() {
    for step in [
        RotationStep::CreateSecret,
        RotationStep::SetSecret,
        RotationStep::TestSecret,
    ] {
        let describe = described(true, &[(TOKEN, &[CURRENT]), (OLD, &["AWSPREVIOUS"])], None);
        let rotation = Rotation::new(client(&[&describe]));
        assert_eq!(rotation.handle(event(step)).await, Ok(()), "{step:?}");
        assert_eq!(describe.num_calls(), 1);
    }
}

#[tokio::test]
async fn set_has_nothing_to_set() {
    let describe = staged();
    let rotation = Rotation::new(client(&[&describe]));

    assert_eq!(
        rotation.handle(event(RotationStep::SetSecret)).await,
        Ok(())
    );
    assert_eq!(describe.num_calls(), 1);
}

#[tokio::test]
async fn test_reads_the_pending_value_back() {
    let rules = [staged(), read_pending(Some(NEW_VALUE))];
    let refs: Vec<&Rule> = rules.iter().collect();
    let rotation = Rotation::new(client(&refs));
    assert_eq!(
        rotation.handle(event(RotationStep::TestSecret)).await,
        Ok(())
    );
    assert_eq!(calls(&refs), [1, 1]);

    let rules = [staged(), read_pending(Some(""))];
    let refs: Vec<&Rule> = rules.iter().collect();
    let rotation = Rotation::new(client(&refs));
    assert_eq!(
        rotation.handle(event(RotationStep::TestSecret)).await,
        Err(ActionError::Fatal(format!(
            "version {TOKEN} of secret {SECRET} holds no value"
        )))
    );
}

#[tokio::test]
async fn finish_moves_awscurrent_to_the_new_version_and_ends_with_nothing_pending() {
    let promote = mock!(Client::update_secret_version_stage)
        .match_requests(|r| {
            r.secret_id() == Some(SECRET)
                && r.version_stage() == Some(CURRENT)
                && r.move_to_version_id() == Some(TOKEN)
                && r.remove_from_version_id() == Some(OLD)
        })
        .then_output(|| {
            UpdateSecretVersionStageOutput::builder()
                .arn(SECRET)
                .build()
        });
    let rules = [staged(), promote, unstage_pending()];
    let refs: Vec<&Rule> = rules.iter().collect();
    let rotation = Rotation::new(client(&refs));

    let outcome = rotation.handle(event(RotationStep::FinishSecret)).await;

    assert_eq!(outcome, Ok(()));
    assert_eq!(calls(&refs), [1, 1, 1]);
}

#[tokio::test]
async fn finish_retried_after_awscurrent_moved_only_removes_awspending() {
    let rules = [
        described(
            true,
            &[(TOKEN, &[CURRENT, PENDING]), (OLD, &["AWSPREVIOUS"])],
            None,
        ),
        unstage_pending(),
    ];
    let refs: Vec<&Rule> = rules.iter().collect();
    let rotation = Rotation::new(client(&refs));

    let outcome = rotation.handle(event(RotationStep::FinishSecret)).await;

    assert_eq!(outcome, Ok(()));
    assert_eq!(calls(&refs), [1, 1]);
}
