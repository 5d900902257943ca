//! The chain PAO stands on: an execution started from Rust, whose Task state
//! invokes the real Rust action binary (through moto and cargo lambda watch),
//! with the action's named errors matched by the ASL's `Retry` and `Catch`.

use std::time::Duration;

use aws_sdk_sfn::types::ExecutionStatus;
use pao_integration::{env, unique, Stack};
use serde_json::{json, Value};

struct Finished {
    status: ExecutionStatus,
    output: Option<Value>,
    error: Option<String>,
    cause: Option<String>,
}

async fn run_selftest(scenario: Value) -> Finished {
    let stack = Stack::connect().await;
    let sfn = aws_sdk_sfn::Client::new(&stack.sdk);
    let started = sfn
        .start_execution()
        .state_machine_arn(env("PAO_SELFTEST_STATE_MACHINE_ARN"))
        .name(unique("selftest"))
        .input(json!({ "scenario": scenario }).to_string())
        .send()
        .await
        .expect("StartExecution");
    let arn = started.execution_arn();
    for _ in 0..240 {
        let execution = sfn
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
            .expect("DescribeExecution");
        if *execution.status() != ExecutionStatus::Running {
            return Finished {
                status: execution.status().clone(),
                output: execution
                    .output()
                    .map(|text| serde_json::from_str(text).expect("JSON output")),
                error: execution.error().map(str::to_string),
                cause: execution.cause().map(str::to_string),
            };
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("execution {arn} still running after 60 s");
}

#[tokio::test]
async fn the_action_binary_runs_and_its_outputs_come_back() {
    let finished = run_selftest(json!({})).await;
    assert_eq!(finished.status, ExecutionStatus::Succeeded);
    let result = &finished.output.unwrap()["result"];
    assert_eq!(result["done"], true);
    assert_eq!(result["outputs"]["action_id"], "selftest");
    assert_eq!(result["outputs"]["attempt"], 0);
    // The request id the action saw is the execution's name.
    assert!(result["outputs"]["request_id"]
        .as_str()
        .unwrap()
        .starts_with("selftest-"));
}

#[tokio::test]
async fn a_retryable_error_is_retried_by_name_until_the_action_succeeds() {
    let finished = run_selftest(json!({"fail_attempts": 2, "fail_with": "Retryable"})).await;
    assert_eq!(finished.status, ExecutionStatus::Succeeded);
    // Attempts 0 and 1 failed; the third attempt (retry count 2) succeeded.
    assert_eq!(finished.output.unwrap()["result"]["outputs"]["attempt"], 2);
}

#[tokio::test]
async fn a_fatal_error_is_caught_by_name() {
    let finished = run_selftest(json!({"fail_attempts": 1, "fail_with": "Fatal"})).await;
    assert_eq!(finished.status, ExecutionStatus::Succeeded);
    let output = finished.output.unwrap();
    assert_eq!(output["outcome"], "fatal-error-caught");
    assert_eq!(output["error"], "Fatal");
    assert!(output["cause"]
        .as_str()
        .unwrap()
        .contains("attempt 0 of the first 1 fails"));
}

#[tokio::test]
async fn when_retries_run_out_the_execution_fails_with_the_error_name() {
    // Retry allows two retries of Throttled: a third failure reaches the catch-all.
    let finished = run_selftest(json!({"fail_attempts": 3, "fail_with": "Throttled"})).await;
    assert_eq!(finished.status, ExecutionStatus::Failed);
    assert_eq!(finished.error.as_deref(), Some("Throttled"));
    assert!(finished
        .cause
        .unwrap()
        .contains("attempt 2 of the first 3 fails"));
}
