//! The local HTTP API (README.md, `openapi.json`): the router, authentication, limits and
//! typed JSON errors. Handlers live by resource: `events` (the feed), `conversations`
//! (history and sending), and `handoff` (claim, transfer, resolve, notes and the desk state).
//!
//! Every route is registered through `Routes::add`, which also records it
//! ([`served_routes`]), so a test can check the router against [`OPENAPI`] in both
//! directions.

pub(crate) mod conversations;
pub(crate) mod events;
pub(crate) mod handoff;

use crate::event::Event;
use crate::files::{Secret, SentJournal};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use sealpost_client::{Client, ClientError, DeviceId, HistoryEntry};
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::{Mutex, Semaphore, watch};

/// Largest request body accepted (384 KiB: a message of [`sealpost_client::MAX_BODY_LEN`] bytes as
/// base64 in JSON fits); larger is 413.
pub const MAX_REQUEST_BODY: usize = 384 * 1024;
/// Most authenticated requests handled at once; more are refused with 503 at once.
pub const MAX_IN_FLIGHT: usize = 128;
/// Most `/v1/events` requests at once (long polls hold theirs while waiting); more are 429.
pub const MAX_POLLERS: usize = 64;
/// Largest `limit` of any list.
pub const MAX_LIMIT: usize = 500;
/// Longest `wait` of a long poll, in seconds.
pub const MAX_WAIT_SECS: u64 = 30;

/// The OpenAPI 3.1 description served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// What the handlers share.
pub(crate) struct AppState {
    pub(crate) client: Client,
    token: Secret,
    /// Ids of the messages this bridge sent; locked across a send and its recording, and
    /// across a feed read and its conversion, so no read sees a sent message unrecorded.
    pub(crate) journal: Arc<Mutex<SentJournal>>,
    /// Bumped when the history may have grown (a message arrived or was sent).
    pub(crate) wake: watch::Sender<u64>,
    /// Set when the bridge stops: long polls return at once.
    pub(crate) closing: watch::Receiver<bool>,
    pollers: Arc<Semaphore>,
    in_flight: Arc<Semaphore>,
}

impl AppState {
    pub(crate) fn new(
        client: Client,
        token: Secret,
        journal: Arc<Mutex<SentJournal>>,
        wake: watch::Sender<u64>,
        closing: watch::Receiver<bool>,
    ) -> Self {
        Self {
            client,
            token,
            journal,
            wake,
            closing,
            pollers: Arc::new(Semaphore::new(MAX_POLLERS)),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    /// Tells waiting long polls and the webhook that the history may have grown.
    pub(crate) fn bump(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The events of `entries` on the device `own`, with the journal held (see
/// [`AppState::journal`]).
pub(crate) fn to_events(
    own: DeviceId,
    journal: &SentJournal,
    entries: &[HistoryEntry],
) -> Vec<Event> {
    entries
        .iter()
        .map(|e| Event::from_entry(e, own, journal.contains(&e.message_id)))
        .collect()
}

/// An API error: a status and `{"error": {"code": ..., "message": ...}}`. Messages never
/// carry message content or secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        )
    }

    /// The error for a failed client call.
    pub(crate) fn client(e: &ClientError) -> Self {
        match e {
            ClientError::MessageTooLong { len, max } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("message of {len} bytes, at most {max}"),
            ),
            ClientError::ShutDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the bridge is stopping",
            ),
            e => {
                tracing::warn!(error = %e, "client call failed");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the device could not do this now; try again",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The error of a rejected JSON body, query or path.
pub(crate) fn rejection(status: StatusCode, what: &str) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body over {MAX_REQUEST_BODY} bytes"),
        )
    } else {
        ApiError::bad_request(format!("invalid {what}"))
    }
}

/// Checks `Authorization: Bearer <token>` in constant time, and bounds the requests in
/// flight.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    // The scheme is case-insensitive (RFC 9110 11.1), the token exact.
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
        .and_then(|v| v.split_at_checked(7))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
        .map(|(_, token)| token)
        .unwrap_or_default();
    if !state.token.matches(presented) {
        tracing::info!(
            path = request.uri().path(),
            "request refused: bad or missing token"
        );
        return Err(ApiError::unauthorized());
    }
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many requests in flight; retry shortly",
        ));
    };
    Ok(next.run(request).await)
}

/// The router under construction, with the list of what it serves.
pub(crate) struct Routes {
    router: Router<Arc<AppState>>,
    served: Vec<(&'static str, &'static str)>,
}

impl Routes {
    fn new() -> Self {
        Self {
            router: Router::new(),
            served: Vec::new(),
        }
    }

    /// Adds `method path`.
    fn add(
        mut self,
        method: &'static str,
        path: &'static str,
        handler: MethodRouter<Arc<AppState>>,
    ) -> Self {
        self.served.push((method, path));
        self.router = self.router.route(path, handler);
        self
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    connected: bool,
}

async fn health(State(state): State<Arc<AppState>>) -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok",
        connected: state.client.is_connected(),
    })
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// The open routes and the authenticated ones, without state or layers.
fn table() -> (Routes, Routes) {
    use axum::routing::post;
    let open = Routes::new().add("get", "/v1/health", get(health)).add(
        "get",
        "/openapi.json",
        get(openapi),
    );
    let authed = Routes::new()
        .add("get", "/v1/events", get(events::poll))
        .add("get", "/v1/conversations", get(conversations::list))
        .add(
            "get",
            "/v1/conversations/{account}/messages",
            get(conversations::messages),
        )
        .add(
            "post",
            "/v1/conversations/{account}/messages",
            post(conversations::send),
        )
        .add(
            "post",
            "/v1/conversations/{account}/claim",
            post(handoff::claim),
        )
        .add(
            "post",
            "/v1/conversations/{account}/transfer",
            post(handoff::transfer),
        )
        .add(
            "post",
            "/v1/conversations/{account}/resolve",
            post(handoff::resolve),
        )
        .add(
            "post",
            "/v1/conversations/{account}/notes",
            post(handoff::note),
        )
        .add(
            "get",
            "/v1/conversations/{account}/desk",
            get(handoff::desk),
        );
    (open, authed)
}

/// Every route the API serves, as `(method, path)` with OpenAPI's path templates
/// (lowercase methods, as in `openapi.json`).
pub fn served_routes() -> Vec<(&'static str, &'static str)> {
    let (open, authed) = table();
    open.served.into_iter().chain(authed.served).collect()
}

/// The router, with authentication on every route but the open ones.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let (open, authed) = table();
    open.router
        .merge(
            authed
                .router
                .route_layer(from_fn_with_state(state.clone(), authenticate)),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY))
        .with_state(state)
}

#[cfg(test)]
mod tests;
