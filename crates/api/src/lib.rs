//! batchdrop's own Batch API: OpenAI's Files + Batches wire format over the bucket and the
//! job engine, so that code written against the OpenAI SDK gets batchdrop (no size or count
//! cap, order restored, retries, costs, any route) by changing its base URL. State lives in
//! the bucket only: a tenant's files and batch records under `_batchdrop/api/<tenant>/`, each
//! batch an ordinary engine job (status, cancel and results in the CLI see it).
//!
//! - [`auth`]: API keys (SHA-256 digests in a keys file) and the tenants they name;
//! - [`ids`]: the ids batchdrop makes and the strict form an id must have;
//! - [`layout`]: where a tenant's files and batches live, and its jobs' ids and results;
//! - [`records`]: what is kept about a file and a batch; [`tenant_store`]: reading and writing
//!   them through the `ObjectStore` port;
//! - `engine_calls`: how a handler runs an engine call (off the request's task);
//! - [`openai`]: the routes, handlers and wire shapes (files, batches, the batch object, the
//!   error file, the error shape);
//! - [`anthropic`]: Anthropic's Message Batches over the same batches (`msgbatch_<token>` is
//!   `batch_<token>`), errors in Anthropic's shape; [`prompt_batches`]: a batch from an array
//!   of prompts; `array_body` + `inline_input`: such inline arrays streamed into an upload;
//! - [`result_lines`]: a job's output in the API's own shape, translated from the route's
//!   provider's where they differ;
//! - [`webhooks`]: `POST /webhooks/openai/<route>`, OpenAI's batch webhooks in (signed, not
//!   keyed; [`with_webhooks`] adds it beside the Batch API).
//!
//! Every request needs a key ([`authenticate`]); `/v1/…` runs batches on the tenant's default
//! route, `/routes/<route>/v1/…` on another of its routes.

pub mod anthropic;
mod array_body;
pub mod auth;
mod engine_calls;
pub mod ids;
mod inline_input;
pub mod layout;
pub mod openai;
pub mod prompt_batches;
pub mod records;
pub mod result_lines;
pub mod tenant_store;
pub mod webhooks;

use auth::{Keys, Tenant};
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use batchdrop_core::clock::Clock;
use batchdrop_core::config::Config;
use batchdrop_core::engine::Engine;
use batchdrop_core::store::ObjectStore;
pub use engine_calls::within_deadline;
use openai::errors::ApiError;
use percent_encoding::percent_decode_str;
use std::sync::Arc;
use std::time::Duration;

/// What every handler works with.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn ObjectStore>,
    pub engine: Engine,
    /// The routes (the same config the engine has): which exist, and their providers.
    pub config: Arc<Config>,
    pub keys: Arc<Keys>,
    pub clock: Arc<dyn Clock>,
    /// When set, a download of an object served as it is (an upload, an output file that
    /// needs no translation) answers `307` to a URL from the store valid this long (S3: a
    /// presigned URL) instead of relaying its bytes: how the API stays under Lambda's response
    /// cap. Stores without such URLs stream anyway.
    pub download_redirects: Option<Duration>,
}

/// How long the URL of a redirected download stays valid ([`ApiState::download_redirects`]).
pub const DOWNLOAD_URL_VALIDITY: Duration = Duration::from_secs(15 * 60);

/// Who called, and the route named by the URL (`/routes/<route>/v1/…`), if any.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: Arc<Tenant>,
    pub route: Option<String>,
}

impl Caller {
    /// The route a new batch runs on: the URL's, else the tenant's default; 403 for a route
    /// the tenant may not use, 400 for one the config does not have.
    pub fn batch_route(&self, config: &Config) -> Result<String, ApiError> {
        let route = self
            .route
            .clone()
            .unwrap_or_else(|| self.tenant.default_route.clone());
        if !self.tenant.may_use(&route) {
            return Err(ApiError::ForbiddenRoute {
                route,
                allowed: self
                    .tenant
                    .routes
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if config.route(&route).is_none() {
            return Err(ApiError::bad_request(
                format!("Route {route:?} is not configured on this server."),
                None,
            ));
        }
        Ok(route)
    }
}

/// The Batch API's router: `/v1/…` and `/routes/{route}/v1/…`, every request authenticated.
pub fn router(state: ApiState) -> Router {
    let v1 = openai::routes()
        .merge(anthropic::routes())
        .merge(prompt_batches::routes());
    Router::new()
        .nest("/v1", v1.clone())
        .nest("/routes/{route}/v1", v1)
        .fallback(unknown_url)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// The Batch API's router with the webhook endpoint beside it, outside the key check (the
/// webhook's signature authenticates it).
pub fn with_webhooks(api: Router, receiver: batchdrop_core::push::Receiver) -> Router {
    webhooks::routes(receiver).merge(api)
}

/// Lets a request through only with a key of the keys file; gives the handlers its [`Caller`].
pub async fn authenticate(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let tenant = auth::key_of(request.headers()).and_then(|key| state.keys.tenant_of(key));
    let Some(tenant) = tenant else {
        if anthropic::is_anthropic_path(request.uri().path()) {
            return anthropic::errors::AnthropicError(ApiError::Unauthorized).into_response();
        }
        return ApiError::Unauthorized.into_response();
    };
    let route = route_in_path(request.uri().path());
    request.extensions_mut().insert(Caller { tenant, route });
    next.run(request).await
}

/// The `<route>` of `/routes/<route>/…`, percent-decoded.
fn route_in_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/routes/")?;
    let segment = rest.split('/').next()?;
    percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

async fn unknown_url(request: Request) -> ApiError {
    ApiError::UnknownUrl {
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
    }
}
