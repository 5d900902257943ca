//! The requests API: `/api/v1/requests…` (see `pao::api::requests`).

use lambda_http::{service_fn, Error, Request};
use pao::api::requests::RequestsApi;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pao::telemetry::init();
    let api = RequestsApi::from_env().await?;
    let api = &api;
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(api.handle(req).await)
    }))
    .await
}
