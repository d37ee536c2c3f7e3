//! The API function: batchdrop's Batch API (OpenAI Files, Uploads and Batches) behind a
//! Lambda function URL. Every request carries a tenant's key (the function URL itself is
//! public); the state is built once per cold start, and a bad configuration stops the start.

use batchdrop_lambda::{App, init_logging};
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let router = App::api_from_env().await?;
    lambda_http::run(router).await
}
