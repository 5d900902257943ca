//! The catalog API: `/api/v1/catalog…` (see `pao::api::catalog`).

use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    pao::telemetry::init();
    let api = pao::compose::catalog_api().await?;
    let api = &api;
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(api.handle(req).await)
    }))
    .await
}
