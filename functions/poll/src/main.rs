//! The poll function: on each scheduled tick, advance every active job of the bucket; on a
//! Bedrock job's state change (EventBridge), advance only that job; on an OpenAI webhook to its
//! function URL, verify it and advance the job of its batch (`batchdrop_lambda::push`).

use batchdrop_lambda::push::{PollEvent, handle_bedrock_state_change, handle_webhook};
use batchdrop_lambda::{App, HandlerError, handle_tick, init_logging};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let app = App::from_env().await?;
    let app = &app;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let deadline = Some(event.context.deadline);
            let answer = match PollEvent::of(event.payload) {
                PollEvent::Http(request) => {
                    serde_json::to_value(handle_webhook(app, request, deadline).await?)
                }
                PollEvent::BedrockStateChange { job_arn, status } => serde_json::to_value(
                    handle_bedrock_state_change(app, job_arn, status, deadline).await?,
                ),
                PollEvent::Tick => serde_json::to_value(handle_tick(app, deadline).await?),
            };
            answer.map_err(|e| HandlerError::Config(format!("answer not serialisable: {e}")))
        },
    ))
    .await
}
