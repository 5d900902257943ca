//! `GET /api/v1/health` and `GET /api/v1/health/ready`.

use lambda_http::{service_fn, Error, Request};
use pao::api::health::HealthApi;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pao::telemetry::init();
    let api = HealthApi::from_env().await?;
    let api = &api;
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(api.handle(req).await)
    }))
    .await
}
