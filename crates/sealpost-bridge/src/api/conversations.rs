//! `GET /v1/conversations`, `GET /v1/conversations/{account}/messages` and
//! `POST /v1/conversations/{account}/messages`.

use super::{ApiError, AppState, MAX_LIMIT, rejection, to_events};
use crate::event::Event;
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine as _;
use sealpost_client::{AccountId, MAX_BODY_LEN};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Default `limit` of the lists.
pub const DEFAULT_LIST_LIMIT: usize = 50;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitQuery {
    limit: Option<usize>,
}

fn limit(query: Result<Query<LimitQuery>, QueryRejection>) -> Result<usize, ApiError> {
    let Query(q) = query.map_err(|r| rejection(r.status(), "query"))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_LIMIT}"
        )));
    }
    Ok(limit)
}

/// The account of the path: an account id (1 to 64 bytes, no control characters, no
/// surrounding space).
pub(crate) fn account(path: Result<Path<String>, PathRejection>) -> Result<AccountId, ApiError> {
    let Path(text) = path.map_err(|r| rejection(r.status(), "path"))?;
    if text.trim() != text {
        return Err(ApiError::bad_request("invalid account id"));
    }
    AccountId::new(text).map_err(|_| ApiError::bad_request("invalid account id"))
}

#[derive(Debug, Serialize)]
pub(crate) struct Conversation {
    account: String,
    last_cursor: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Conversations {
    conversations: Vec<Conversation>,
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    query: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Json<Conversations>, ApiError> {
    let limit = limit(query)?;
    let found = state
        .client
        .recent_conversations(limit)
        .await
        .map_err(|e| ApiError::client(&e))?;
    Ok(Json(Conversations {
        conversations: found
            .into_iter()
            .map(|(a, last_cursor)| Conversation {
                account: a.as_str().to_owned(),
                last_cursor,
            })
            .collect(),
    }))
}

#[derive(Debug, Serialize)]
pub(crate) struct Messages {
    messages: Vec<Event>,
}

pub(crate) async fn messages(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Json<Messages>, ApiError> {
    let account = account(path)?;
    let limit = limit(query)?;
    let journal = state.journal.lock().await;
    let entries = state
        .client
        .history(&account, limit)
        .await
        .map_err(|e| ApiError::client(&e))?;
    Ok(Json(Messages {
        messages: to_events(state.client.address().device, &journal, &entries),
    }))
}

/// `{"text": "..."}` or `{"bytes_base64": "..."}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendRequest {
    text: Option<String>,
    bytes_base64: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Sent {
    message_id: String,
}

pub(crate) async fn send(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<SendRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Sent>), ApiError> {
    let account = account(path)?;
    let Json(request) = body.map_err(|r| rejection(r.status(), "JSON body"))?;
    enum Content {
        Text(String),
        Bytes(Vec<u8>),
    }
    let content = match (request.text, request.bytes_base64) {
        (Some(text), None) => Content::Text(text),
        (None, Some(b64)) => Content::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|_| ApiError::bad_request("bytes_base64 is not valid base64"))?,
        ),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of text and bytes_base64",
            ));
        }
    };
    let len = match &content {
        Content::Text(t) => t.len(),
        Content::Bytes(b) => b.len(),
    };
    if len == 0 {
        return Err(ApiError::bad_request("empty message"));
    }
    if len > MAX_BODY_LEN {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("message of {len} bytes, at most {MAX_BODY_LEN}"),
        ));
    }
    // Held across the send and its recording: no feed read sees the message unrecorded.
    let journal = state.journal.clone().lock_owned().await;
    let sent = match &content {
        Content::Text(t) => state.client.send_text(&account, t).await,
        Content::Bytes(b) => state.client.send_bytes(&account, b).await,
    };
    let id = sent.map_err(|e| ApiError::client(&e))?;
    let recorded = tokio::task::spawn_blocking(move || {
        let mut journal = journal;
        journal.record(id)
    })
    .await;
    match recorded {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "sent message not journaled"),
        Err(e) => tracing::warn!(error = %e, "sent message not journaled"),
    }
    state.bump();
    tracing::debug!(len, "message queued");
    Ok((
        StatusCode::ACCEPTED,
        Json(Sent {
            message_id: hex::encode(id.as_bytes()),
        }),
    ))
}
