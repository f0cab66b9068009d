//! The OCI Distribution Spec v1.1 endpoint.
//!
//! One fallback handler reads the path into an [`Endpoint`](path::Endpoint)
//! (`path.rs`) and dispatches on it and the method; each operation family has
//! its own file. Errors are OCI JSON bodies (`error.rs`).

mod blob_stream;
mod blobs;
mod error;
mod listing;
mod manifests;
pub mod mirror;
mod path;
mod range;
mod referrers;
mod request;
mod status;
mod uploads;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

pub use error::{ErrorCode, RegistryError};
pub use path::Endpoint;

use crate::metrics::Metrics;
use crate::store::Store;
use crate::transfer::Fetcher;
use request::RequestParts;

/// The largest manifest accepted on push (the spec's suggested minimum limit).
pub const DEFAULT_MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Limits the endpoint enforces; each has a config key.
#[derive(Debug, Clone)]
pub struct RegistryLimits {
    /// Manifests larger than this are refused on push.
    pub max_manifest_bytes: usize,
    /// Upload requests carrying data at once; more get `TOO_MANY_REQUESTS`.
    pub max_concurrent_uploads: usize,
    /// Largest page of a tag or catalog listing.
    pub max_page_size: usize,
}

impl Default for RegistryLimits {
    fn default() -> RegistryLimits {
        RegistryLimits {
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            max_concurrent_uploads: 64,
            max_page_size: 1000,
        }
    }
}

/// Everything a registry handler needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct RegistryState {
    store: Store,
    limits: Arc<RegistryLimits>,
    upload_slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    /// Where blobs that are not local come from; `None` without p2p.
    fetcher: Option<Fetcher>,
    /// The pull-through mirror; `None` when upstreams are off.
    mirror: Option<mirror::Mirror>,
}

impl RegistryState {
    pub fn new(store: Store, limits: RegistryLimits) -> RegistryState {
        let upload_slots = Arc::new(Semaphore::new(limits.max_concurrent_uploads.max(1)));
        RegistryState {
            store,
            limits: Arc::new(limits),
            upload_slots,
            metrics: Arc::default(),
            fetcher: None,
            mirror: None,
        }
    }

    /// Serves blobs that are not local from peers, through `fetcher`.
    pub fn with_peers(mut self, fetcher: Fetcher, metrics: Arc<Metrics>) -> RegistryState {
        self.fetcher = Some(fetcher);
        self.metrics = metrics;
        self
    }

    /// Pulls through from upstream registries what is neither local nor
    /// on peers.
    pub fn with_mirror(mut self, mirror: mirror::Mirror) -> RegistryState {
        self.mirror = Some(mirror);
        self
    }
}

/// The registry's HTTP routes (and `/metrics`).
pub fn router(state: RegistryState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .route("/_shoal/status", axum::routing::get(status::status))
        .fallback(dispatch)
        .with_state(state)
}

async fn metrics(State(state): State<RegistryState>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn dispatch(State(state): State<RegistryState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let req = RequestParts::new(parts);
    let result = match Endpoint::parse(req.uri.path()) {
        Ok(endpoint) => route(&state, endpoint, req, body).await,
        Err(e) => Err(e.into()),
    };
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

async fn route(
    state: &RegistryState,
    endpoint: Endpoint,
    req: RequestParts,
    body: axum::body::Body,
) -> Result<Response, RegistryError> {
    use Endpoint as E;
    let m = req.method.clone();
    match endpoint {
        E::Base if m == Method::GET || m == Method::HEAD => {
            Ok((StatusCode::OK, [("content-type", "application/json")], "{}").into_response())
        }
        E::Catalog if m == Method::GET => listing::catalog(state, &req),
        E::Tags { name } if m == Method::GET => listing::tags(state, &name, &req),
        E::Manifest { name, reference } => match m {
            Method::GET | Method::HEAD => manifests::get(state, &name, &reference, &req).await,
            Method::PUT => manifests::put(state, &name, &reference, &req, body).await,
            Method::DELETE => manifests::delete(state, &name, &reference).await,
            _ => Err(unsupported(&m)),
        },
        E::Blob { name, digest } => match m {
            Method::GET | Method::HEAD => blobs::get(state, &name, &digest, &req).await,
            Method::DELETE => blobs::delete(state, &digest).await,
            _ => Err(unsupported(&m)),
        },
        E::UploadStart { name } if m == Method::POST => {
            uploads::start(state, &name, &req, body).await
        }
        E::Upload { name, id } => match m {
            Method::GET => uploads::status(state, &name, &id),
            Method::PATCH => uploads::patch(state, &name, &id, &req, body).await,
            Method::PUT => uploads::finish(state, &name, &id, &req, body).await,
            Method::DELETE => uploads::cancel(state, &name, &id).await,
            _ => Err(unsupported(&m)),
        },
        E::Referrers { name, digest } if m == Method::GET => {
            referrers::list(state, &name, &digest, &req)
        }
        _ => Err(unsupported(&m)),
    }
}

fn unsupported(method: &Method) -> RegistryError {
    RegistryError::new(
        ErrorCode::Unsupported,
        format!("method {method} is not supported on this endpoint"),
    )
}
