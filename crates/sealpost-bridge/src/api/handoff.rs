//! The routes that move a conversation among the business's devices (spec/business.md 8):
//! `POST /v1/conversations/{account}/claim`, `.../transfer`, `.../resolve` and `.../notes`,
//! and `GET /v1/conversations/{account}/desk` (who has the conversation, its notes, the
//! last handoff and its check against the customer's confirmation). Everything they move
//! travels end to end among the business's devices; the customer sees only that another
//! device answers.

use super::conversations::account;
use super::{ApiError, AppState, rejection};
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sealpost_client::{ClientError, DeskConversation, DeviceId, HandoffCheck, RouteError, Side};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Most devices one transfer names (a business list holds at most 64).
const MAX_TRANSFER_DEVICES: usize = 64;

#[derive(Debug, Serialize)]
pub(crate) struct Routed {
    route_version: u64,
}

/// The error of a desk action: the client's refusals are the caller's mistakes (4xx), not
/// the bridge's.
fn desk_error(e: &ClientError) -> ApiError {
    match e {
        ClientError::RouteRefused(RouteError::Unauthorized) => ApiError::new(
            StatusCode::FORBIDDEN,
            "not_allowed",
            "this device may not route the conversation (it is not on its current route, and is not an owner or admin)",
        ),
        ClientError::UnknownDevice(d) => {
            ApiError::bad_request(format!("device {} is not on the business's list", d.0))
        }
        ClientError::NoteRefused => ApiError::bad_request("note empty or over 4096 bytes"),
        ClientError::NoDevices => ApiError::bad_request("name at least one device"),
        ClientError::HandoffTooLarge => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the conversation is too long for one handoff",
        ),
        ClientError::NotBusiness => ApiError::new(
            StatusCode::CONFLICT,
            "not_business",
            "this device is not a device of a business account, or the account is the customer",
        ),
        e => ApiError::client(e),
    }
}

pub(crate) async fn claim(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Routed>, ApiError> {
    let customer = account(path)?;
    routed(&state, state.client.claim(&customer)).await
}

/// Answers a desk action that made a new conversation route with its version, and wakes
/// long polls and the webhook (the assignment is in the history now).
async fn routed(
    state: &AppState,
    action: impl std::future::Future<Output = Result<u64, ClientError>>,
) -> Result<Json<Routed>, ApiError> {
    let route_version = action.await.map_err(|e| desk_error(&e))?;
    state.bump();
    Ok(Json(Routed { route_version }))
}

/// `{"to": [device ids], "note": "..."}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TransferRequest {
    to: Vec<u32>,
    #[serde(default)]
    note: String,
}

pub(crate) async fn transfer(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<TransferRequest>, JsonRejection>,
) -> Result<Json<Routed>, ApiError> {
    let customer = account(path)?;
    let Json(request) = body.map_err(|r| rejection(r.status(), "JSON body"))?;
    if request.to.is_empty() || request.to.len() > MAX_TRANSFER_DEVICES {
        return Err(ApiError::bad_request(format!(
            "to names 1 to {MAX_TRANSFER_DEVICES} devices"
        )));
    }
    let to: Vec<DeviceId> = request.to.into_iter().map(DeviceId).collect();
    routed(&state, state.client.transfer(&customer, &to, &request.note)).await
}

pub(crate) async fn resolve(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Routed>, ApiError> {
    let customer = account(path)?;
    routed(&state, state.client.resolve(&customer)).await
}

/// `{"text": "..."}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoteRequest {
    text: String,
}

pub(crate) async fn note(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<NoteRequest>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let customer = account(path)?;
    let Json(request) = body.map_err(|r| rejection(r.status(), "JSON body"))?;
    state
        .client
        .add_note(&customer, &request.text)
        .await
        .map_err(|e| desk_error(&e))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize)]
pub(crate) struct Note {
    from: u32,
    at: u64,
    text: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Check {
    /// `pending`, `verified`, `incomplete` or `mismatch`.
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmed: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unconfirmed: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    missing: Option<usize>,
    /// For a mismatch: the chain that differs, `customer` or `business`, and its device.
    #[serde(skip_serializing_if = "Option::is_none")]
    side: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<u32>,
}

fn check(c: Option<HandoffCheck>) -> Check {
    let mut out = Check {
        result: "pending",
        confirmed: None,
        unconfirmed: None,
        missing: None,
        side: None,
        device: None,
    };
    match c {
        None => {}
        Some(HandoffCheck::Verified {
            confirmed,
            unconfirmed,
        }) => {
            out.result = "verified";
            out.confirmed = Some(confirmed);
            out.unconfirmed = Some(unconfirmed);
        }
        Some(HandoffCheck::Incomplete { missing, confirmed }) => {
            out.result = "incomplete";
            out.missing = Some(missing);
            out.confirmed = Some(confirmed);
        }
        Some(HandoffCheck::Mismatch { side, device }) => {
            out.result = "mismatch";
            out.side = Some(match side {
                Side::Customer => "customer",
                _ => "business",
            });
            out.device = Some(device);
        }
        Some(_) => out.result = "mismatch",
    }
    out
}

#[derive(Debug, Serialize)]
pub(crate) struct Handoff {
    from: u32,
    note: String,
    messages: usize,
    /// Whether every part arrived (it is checked only then).
    complete: bool,
    check: Check,
}

#[derive(Debug, Serialize)]
pub(crate) struct Desk {
    customer: String,
    resolved: bool,
    assigned_to: Vec<u32>,
    mine: bool,
    notes: Vec<Note>,
    handoff: Option<Handoff>,
}

impl From<DeskConversation> for Desk {
    fn from(c: DeskConversation) -> Self {
        Self {
            customer: c.customer.as_str().to_owned(),
            resolved: c.resolved,
            assigned_to: c.assigned_to.iter().map(|d| d.0).collect(),
            mine: c.mine,
            notes: c
                .notes
                .into_iter()
                .map(|n| Note {
                    from: n.from.0,
                    at: n.at,
                    text: n.text,
                })
                .collect(),
            handoff: c.handoff.map(|h| Handoff {
                from: h.from.0,
                note: h.note,
                messages: h.messages,
                complete: h.complete,
                check: check(h.check),
            }),
        }
    }
}

pub(crate) async fn desk(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Desk>, ApiError> {
    let customer = account(path)?;
    let c = state
        .client
        .conversation(&customer)
        .await
        .map_err(|e| desk_error(&e))?;
    Ok(Json(c.into()))
}
