//! `GET /v1/events`: the device's history after a cursor, as a long poll.

use super::{ApiError, AppState, MAX_LIMIT, MAX_WAIT_SECS, rejection, to_events};
use crate::event::Event;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Default `limit` of `/v1/events`.
pub const DEFAULT_EVENTS_LIMIT: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    after: Option<u64>,
    limit: Option<usize>,
    wait: Option<u64>,
}

/// A page of the feed.
#[derive(Debug, Serialize)]
pub(crate) struct EventsPage {
    pub(crate) events: Vec<Event>,
    pub(crate) next_cursor: u64,
}

/// Reads one page of events after `after` (the journal held across read and conversion).
pub(crate) async fn read_page(
    state: &AppState,
    after: u64,
    limit: usize,
) -> Result<EventsPage, ApiError> {
    let journal = state.journal.lock().await;
    let page = state
        .client
        .history_after(after, limit)
        .await
        .map_err(|e| ApiError::client(&e))?;
    Ok(EventsPage {
        events: to_events(state.client.address().device, &journal, &page.entries),
        next_cursor: page.next,
    })
}

pub(crate) async fn poll(
    State(state): State<Arc<AppState>>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<EventsPage>, ApiError> {
    let Query(q) = query.map_err(|r| rejection(r.status(), "query"))?;
    let limit = q.limit.unwrap_or(DEFAULT_EVENTS_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_LIMIT}"
        )));
    }
    let wait = q.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::bad_request(format!(
            "wait must be at most {MAX_WAIT_SECS} seconds"
        )));
    }
    let Ok(_permit) = state.pollers.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_pollers",
            format!("at most {} concurrent event polls", super::MAX_POLLERS),
        ));
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let mut after = q.after.unwrap_or(0);
    let mut wake = state.wake.subscribe();
    let mut closing = state.closing.clone();
    loop {
        // Mark the current value seen before reading: a bump after this wakes the wait.
        wake.borrow_and_update();
        let page = read_page(&state, after, limit).await?;
        if !page.events.is_empty() {
            return Ok(Json(page));
        }
        if page.next_cursor != after {
            // Positions without readable entries were passed: go on from there.
            after = page.next_cursor;
            continue;
        }
        if *closing.borrow() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(page));
        }
        tokio::select! {
            changed = wake.changed() => if changed.is_err() { return Ok(Json(page)) },
            _ = closing.changed() => return Ok(Json(page)),
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}
