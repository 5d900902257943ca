//! The terraform action function: runs terraform actions
//! (see `pao::drivers::terraform`).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use pao::action::ActionInput;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pao::telemetry::init();
    let lifecycle = pao::compose::terraform_action().await?;
    let lifecycle = &lifecycle;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ActionInput>| async move { lifecycle.run(event.payload).await },
    ))
    .await
}
