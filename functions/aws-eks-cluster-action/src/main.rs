//! The aws-eks-cluster action function: an EKS cluster, its deploy access
//! and managed node groups (see `pao::drivers::eks`).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use pao::action::ActionInput;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pao::telemetry::init();
    let lifecycle = pao::compose::eks_action().await?;
    let lifecycle = &lifecycle;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ActionInput>| async move { lifecycle.run(event.payload).await },
    ))
    .await
}
