//! PAO's rotation function: Secrets Manager invokes it for each step of a
//! rotation of an aws-secret action's secret (see
//! `pao::drivers::secret::rotation`).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use pao::drivers::secret::rotation::RotationEvent;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pao::telemetry::init();
    let rotation = pao::compose::secret_rotation().await;
    let rotation = &rotation;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<RotationEvent>| async move { rotation.handle(event.payload).await },
    ))
    .await
}
