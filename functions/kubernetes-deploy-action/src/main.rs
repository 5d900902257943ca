//! The kubernetes-deploy action function: runs kubernetes-deploy actions
//! (see `pao::drivers::kubernetes`).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use pao::action::ActionInput;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pao::telemetry::init();
    let lifecycle = pao::compose::kubernetes_action().await?;
    let lifecycle = &lifecycle;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ActionInput>| async move { lifecycle.run(event.payload).await },
    ))
    .await
}
