//! The Step Functions adapter: PAO's state machines seen through the domain's traits.

use async_trait::async_trait;
use aws_sdk_sfn::Client;

use crate::health::{Probe, ProbeFailure};

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
