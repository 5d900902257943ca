//! The HTTP action function: runs rest-api and webhook actions (see
//! `pao::actions::runner`).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use pao::action::ActionInput;
use pao::actions::runner::Runner;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pao::telemetry::init();
    let runner = Runner::from_env().await?;
    let runner = &runner;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ActionInput>| async move { runner.run(event.payload).await },
    ))
    .await
}
