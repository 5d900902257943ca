//! The github-workflow action function: runs github-workflow actions
//! (see `pao::drivers::github`).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use pao::action::ActionInput;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pao::telemetry::init();
    let lifecycle = pao::compose::github_action().await?;
    let lifecycle = &lifecycle;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ActionInput>| async move { lifecycle.run(event.payload).await },
    ))
    .await
}
