//! The fulfillment engine's steps on a request (see `pao::requests::engine`).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use pao::requests::engine::EngineInput;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pao::telemetry::init();
    let engine = pao::compose::fulfillment_engine().await?;
    let engine = &engine;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EngineInput>| async move { engine.run(event.payload).await },
    ))
    .await
}
