//! The submit function: S3 `ObjectCreated` under `inbox/` → validate, stage and submit a job.

use aws_lambda_events::event::s3::S3Event;
use batchdrop_lambda::{App, handle_s3_event, init_logging};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let app = App::from_env().await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<S3Event>| async move {
        handle_s3_event(app, event.payload, Some(event.context.deadline)).await
    }))
    .await
}
