//! What the router tests share: the Batch API's router over an in-memory bucket and a scripted
//! provider (`TestBed`), two tenants with known keys, raw requests and polling to the end.

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use batchdrop_api::auth::{Keys, digest_of, keys_file_entry};
use batchdrop_api::{ApiState, router};
use batchdrop_core::layout::ACTIVE;
use batchdrop_core::store::ObjectStore;
use batchdrop_core::testing::TestBed;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type TestResult = Result<(), Error>;

/// Tenant `acme`'s key.
pub const ACME: &str = "bdk_acme-key";
/// Tenant `globex`'s key: route `sandbox` only.
pub const GLOBEX: &str = "bdk_globex-key";

pub struct Api {
    pub bed: TestBed,
    pub app: Router,
}

impl Api {
    /// The router over `bed`: `acme` may use `acme_routes` (the first is its default),
    /// `globex` only `sandbox`. With `downloads` (a store over the bed's that gives URLs),
    /// downloads are redirected.
    pub fn new(
        bed: TestBed,
        acme_routes: &[&str],
        downloads: Option<Arc<dyn ObjectStore>>,
    ) -> Result<Api, Error> {
        let acme: Vec<String> = acme_routes.iter().map(|r| r.to_string()).collect();
        let keys = format!(
            "{}\n{}",
            keys_file_entry("acme", &hex(ACME), &acme, &acme[0]),
            keys_file_entry("globex", &hex(GLOBEX), &["sandbox".to_string()], "sandbox")
        );
        let state = ApiState {
            download_redirects: downloads
                .is_some()
                .then_some(batchdrop_api::DOWNLOAD_URL_VALIDITY),
            store: downloads.unwrap_or_else(|| bed.store.clone()),
            engine: bed.engine.clone(),
            config: bed.config.clone(),
            keys: Arc::new(Keys::from_toml(&keys)?),
            clock: bed.clock.clone(),
        };
        Ok(Api {
            app: router(state),
            bed,
        })
    }

    /// The status and body of `request`'s answer.
    pub async fn send(&self, request: Request<Body>) -> Result<(StatusCode, Vec<u8>), Error> {
        let response = self.app.clone().oneshot(request).await?;
        let status = response.status();
        let body = to_bytes(response.into_body(), usize::MAX).await?;
        Ok((status, body.to_vec()))
    }

    /// The same, the body parsed as JSON.
    pub async fn json(&self, request: Request<Body>) -> Result<(StatusCode, Value), Error> {
        let (status, body) = self.send(request).await?;
        Ok((status, serde_json::from_slice(&body)?))
    }

    /// Polls the engine until no job is active.
    pub async fn poll_to_end(&self) -> TestResult {
        for _ in 0..20 {
            let report = self.bed.engine.poll().await?;
            if let Some((id, e)) = report.failures.into_iter().next() {
                return Err(format!("poll failed on {id}: {e}").into());
            }
            if self.bed.store.list(ACTIVE).await?.is_empty() {
                return Ok(());
            }
        }
        Err("jobs still active after 20 polls".into())
    }
}

/// What the keys file holds for `key`.
pub fn hex(key: &str) -> String {
    digest_of(key).iter().map(|b| format!("{b:02x}")).collect()
}

/// The string field `field` of `value`.
pub fn str_of(value: &Value, field: &str) -> Result<String, Error> {
    value[field]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no string {field:?} in {value}").into())
}
