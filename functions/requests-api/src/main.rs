//! The requests API: `/api/v1/requests…` (see `pao::api::requests`).

use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    pao::telemetry::init();
    let api = pao::compose::requests_api().await?;
    let api = &api;
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(api.handle(req).await)
    }))
    .await
}
