//! The poll function: on each scheduled tick, advance every active job of the bucket.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use batchdrop_lambda::{App, handle_tick, init_logging};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let app = App::from_env().await?;
    let app = &app;
    lambda_runtime::run(service_fn(
        move |tick: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            handle_tick(app, Some(tick.context.deadline)).await
        },
    ))
    .await
}
