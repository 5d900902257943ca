//! `GET /api/v1/health` and `GET /api/v1/health/ready`.

use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    pao::telemetry::init();
    let api = pao::compose::health_api().await?;
    let api = &api;
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(api.handle(req).await)
    }))
    .await
}
