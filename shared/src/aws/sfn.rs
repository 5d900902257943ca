//! The Step Functions adapter: PAO's state machines seen through the domain's traits.

use async_trait::async_trait;
use aws_sdk_sfn::Client;

use crate::catalog::index::StoreError;
use crate::health::{Probe, ProbeFailure};
use crate::requests::{TaskOutcome, Workflow};

const SERVICE: &str = "Step Functions";

/// Checks that a state machine exists and answers.
pub struct StateMachineProbe {
    client: Client,
    arn: String,
}

impl StateMachineProbe {
    pub fn new(client: Client, arn: impl Into<String>) -> Self {
        Self {
            client,
            arn: arn.into(),
        }
    }
}

#[async_trait]
impl Probe for StateMachineProbe {
    fn dependency(&self) -> &'static str {
        "stepfunctions"
    }

    async fn check(&self) -> Result<(), ProbeFailure> {
        self.client
            .describe_state_machine()
            .state_machine_arn(&self.arn)
            .send()
            .await
            .map(|_| ())
            .map_err(|err| super::probe_failure(self.dependency(), &err))
    }
}

/// The fulfillment state machine as the domain's `Workflow`.
pub struct Fulfillment {
    client: Client,
    state_machine_arn: String,
}

impl Fulfillment {
    pub fn new(client: Client, state_machine_arn: impl Into<String>) -> Self {
        Self {
            client,
            state_machine_arn: state_machine_arn.into(),
        }
    }
}

#[async_trait]
impl Workflow for Fulfillment {
    /// Step Functions derives an execution's ARN from the state machine's.
    fn execution_arn(&self, name: &str) -> String {
        format!(
            "{}:{name}",
            self.state_machine_arn
                .replacen(":stateMachine:", ":execution:", 1)
        )
    }

    async fn start(&self, name: &str, input: &str) -> Result<String, StoreError> {
        let started = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(name)
            .input(input)
            .send()
            .await;
        match started {
            Ok(output) => Ok(output.execution_arn().to_string()),
            // Started already (by a retry of the same submission).
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_execution_already_exists()) =>
            {
                Ok(self.execution_arn(name))
            }
            Err(err) => Err(super::unavailable(SERVICE, "StartExecution", &err)),
        }
    }

    async fn resume(&self, token: &str, outcome: &TaskOutcome) -> Result<bool, StoreError> {
        let (operation, sent) = match outcome {
            TaskOutcome::Succeeded(output) => (
                "SendTaskSuccess",
                self.client
                    .send_task_success()
                    .task_token(token)
                    .output(output.to_string())
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|err| err.into_service_error().meta().code().map(str::to_string)),
            ),
            TaskOutcome::Failed { error, cause } => (
                "SendTaskFailure",
                self.client
                    .send_task_failure()
                    .task_token(token)
                    .error(error)
                    .cause(cause)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|err| err.into_service_error().meta().code().map(str::to_string)),
            ),
            TaskOutcome::Heartbeat => (
                "SendTaskHeartbeat",
                self.client
                    .send_task_heartbeat()
                    .task_token(token)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|err| err.into_service_error().meta().code().map(str::to_string)),
            ),
        };
        match sent {
            Ok(()) => Ok(true),
            // The execution ended, or timed out waiting: nothing to resume.
            Err(Some(code))
                if code == "TaskTimedOut"
                    || code == "InvalidToken"
                    || code == "TaskDoesNotExist" =>
            {
                Ok(false)
            }
            Err(code) => Err(StoreError::Unavailable(format!(
                "Step Functions {operation} failed ({})",
                code.unwrap_or_else(|| "no answer".to_string())
            ))),
        }
    }

    async fn stop(&self, execution_arn: &str, cause: &str) -> Result<(), StoreError> {
        let stopped = self
            .client
            .stop_execution()
            .execution_arn(execution_arn)
            .cause(cause)
            .send()
            .await;
        match stopped {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_execution_does_not_exist()) =>
            {
                Ok(())
            }
            Err(err) => Err(super::unavailable(SERVICE, "StopExecution", &err)),
        }
    }
}
