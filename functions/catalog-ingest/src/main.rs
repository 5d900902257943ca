//! Catalog ingest: the catalog bucket notifies this function of every upload
//! and removal (see `pao::catalog::index`).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use pao::catalog::event::S3Notification;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pao::telemetry::init();
    let ingest = pao::compose::catalog_ingest().await?;
    let ingest = &ingest;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<S3Notification>| async move {
        ingest.sync_event(&event.payload).await
    }))
    .await
}
