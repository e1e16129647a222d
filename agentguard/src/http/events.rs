//! `GET /agentguard/events`: the store's changes as Server-Sent Events.
//!
//! Each connection watches the store: it reads the live requests, sends a `snapshot`, then waits for a change
//! (the store's [`changed`](crate::ApprovalStore::changed) signal, the next deadline, or the poll interval) and sends
//! what differs: `resolved` or `expired` for requests that left, `parked` for new ones, in that order. A request
//! parked and decided between two looks appears in neither; the page only shows live requests, so it loses nothing.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::response::sse::Event;
use futures_util::Stream;
use serde_json::{json, Value};

use crate::request::{ApprovalRequest, RequestId};
use crate::store::{ApprovalStore, RequestState, StoreError};

/// How long after a deadline the watcher looks again, so the request has surely left `pending`.
const DEADLINE_SLACK: Duration = Duration::from_millis(20);

/// For a store that signals its changes, the watcher still looks this often, in case a change went unsignalled.
const SIGNALLED_POLL: Duration = Duration::from_secs(5);

struct Watch {
    store: Arc<dyn ApprovalStore>,
    poll: Duration,
    /// Live requests the client was told about, with their deadlines.
    known: HashMap<RequestId, SystemTime>,
    queue: VecDeque<Event>,
    /// The first look has been made; later ones wait for a change first.
    started: bool,
    /// The `snapshot` event has been queued; later looks send differences.
    snapshot_sent: bool,
    change: Option<crate::store::ChangeFuture>,
    last_error: Option<String>,
}

/// The event stream of one client.
pub(crate) fn stream(store: Arc<dyn ApprovalStore>, poll: Duration) -> impl Stream<Item = Result<Event, Infallible>> {
    let watch = Watch {
        store,
        poll,
        known: HashMap::new(),
        queue: VecDeque::new(),
        started: false,
        snapshot_sent: false,
        change: None,
        last_error: None,
    };
    futures_util::stream::unfold(watch, |mut w| async move {
        loop {
            if let Some(event) = w.queue.pop_front() {
                return Some((Ok(event), w));
            }
            if w.started {
                w.wait().await;
            }
            w.started = true;
            w.look().await;
        }
    })
}

impl Watch {
    /// Sleeps until the store signals a change, the earliest known deadline passes, or the poll interval ends.
    async fn wait(&mut self) {
        let now = SystemTime::now();
        let next_deadline = self
            .known
            .values()
            .map(|d| d.duration_since(now).unwrap_or(Duration::ZERO) + DEADLINE_SLACK)
            .min();
        let poll = if self.change.is_some() {
            SIGNALLED_POLL
        } else {
            self.poll
        };
        let wait = next_deadline.map_or(poll, |d| d.min(poll));
        match self.change.take() {
            Some(change) => {
                let _ = tokio::time::timeout(wait, change).await;
            }
            None => tokio::time::sleep(wait).await,
        }
    }

    /// Reads the store and queues what changed since the last look.
    async fn look(&mut self) {
        // Listen before reading, so a change between the read and the next wait is not missed.
        self.change = self.store.changed();
        let store = self.store.clone();
        let live = match blocking(move || store.pending()).await {
            Ok(live) => live,
            Err(e) => return self.report(e),
        };
        self.last_error = None;
        let now = SystemTime::now();
        let live_ids: HashMap<&RequestId, &ApprovalRequest> = live.iter().map(|r| (r.request_id(), r)).collect();

        if !self.snapshot_sent {
            self.queue.push_back(event(
                "snapshot",
                &json!({ "now": unix_seconds(now), "requests": &live }),
            ));
        } else {
            let mut gone: Vec<(RequestId, SystemTime)> = self
                .known
                .iter()
                .filter(|(id, _)| !live_ids.contains_key(id))
                .map(|(id, d)| (id.clone(), *d))
                .collect();
            gone.sort_by_key(|(_, d)| *d);
            for (id, deadline) in gone {
                let store = self.store.clone();
                let lookup = id.clone();
                let stored = blocking(move || store.get(&lookup)).await.ok().flatten();
                let ev = match stored.map(|s| s.decision) {
                    Some(d)
                        if matches!(
                            d.state,
                            RequestState::Approved | RequestState::Denied | RequestState::Executed
                        ) =>
                    {
                        event(
                            "resolved",
                            &json!({
                                "request_id": id,
                                "approved": d.state != RequestState::Denied,
                                "state": d.state,
                                "actor": d.actor,
                            }),
                        )
                    }
                    Some(_) => event("expired", &json!({ "request_id": id })),
                    None if deadline <= now => event("expired", &json!({ "request_id": id })),
                    None => event("resolved", &json!({ "request_id": id, "state": Value::Null })),
                };
                self.queue.push_back(ev);
            }
            for request in &live {
                if !self.known.contains_key(request.request_id()) {
                    self.queue.push_back(event("parked", &json!(request)));
                }
            }
        }
        self.known = live.iter().map(|r| (r.request_id().clone(), r.deadline())).collect();
        self.snapshot_sent = true;
    }

    /// A store error becomes an `error` event (once per distinct message); the client keeps what it has.
    fn report(&mut self, e: StoreError) {
        let message = e.to_string();
        if self.last_error.as_deref() != Some(message.as_str()) {
            self.queue.push_back(event(
                "error",
                &json!({ "error": "store_unavailable", "message": message }),
            ));
            self.last_error = Some(message);
        }
    }
}

fn event(name: &str, data: &Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Runs a store call off the async workers (stores may block on files or sockets). A panic in the store becomes a
/// store error.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::new(format!("the store failed: {e}"))),
    }
}
