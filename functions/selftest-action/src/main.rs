//! The self-test action Lambda (see `pao::selftest`).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use pao::selftest::{self, SelftestInput};

#[tokio::main]
async fn main() -> Result<(), Error> {
    pao::telemetry::init();
    lambda_runtime::run(service_fn(|event: LambdaEvent<SelftestInput>| async move {
        selftest::run(event.payload)
    }))
    .await
}
