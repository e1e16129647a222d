//! `GET /agentguard/events`: the store's changes as Server-Sent Events.
//!
//! Each connection watches the store: it reads the live requests, sends a `snapshot`, then waits for a change
//! (the store's [`changed`](crate::store::ApprovalStore::changed) signal, the next deadline, or the poll interval) and sends
//! what differs: `resolved` or `expired` for requests that left, `parked` for new ones, `progress`
//! (`{request_id, quorum_progress}`) for a quorum request whose votes changed, in that order; then `grants`
//! (`{grants: [...]}`, as `GET /agentguard/grants` lists them) after the snapshot and whenever a grant is made, used,
//! revoked or ends. A store that does not signal grant changes (uses, revocations) is looked at every few seconds
//! anyway, and a revocation through this router wakes its streams at once. Pending rows the
//! store cannot read back (too deep, damaged) are left out of those and named in an `unreadable` event
//! (`{"rows": [{"id", "problem"}], "message"}`), sent when that set changes. A store error
//! is an `error` event, and `ok` follows when the store answers again. A request
//! parked and decided between two looks appears in neither; the page only shows live requests, so it loses nothing.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::response::sse::Event;
use futures_util::Stream;
use serde_json::{json, Value};

use crate::request::{ApprovalRequest, QuorumProgress, RequestId};
use crate::store::{now_ms, ApprovalStore, RequestState, StoreError, StoredRequest, UnreadableRow};

/// How long after a deadline the watcher looks again, so the request has surely left `pending`.
const DEADLINE_SLACK: Duration = Duration::from_millis(20);

/// For a store that signals its changes, the watcher still looks this often, in case a change went unsignalled.
const SIGNALLED_POLL: Duration = Duration::from_secs(5);

/// The longest wait between looks at a failing store.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

struct Watch {
    store: Arc<dyn ApprovalStore>,
    poll: Duration,
    /// Live requests the client was told about, with their deadlines on this process's monotonic clock (taken when
    /// first seen, so a wall-clock jump cannot make the watcher spin).
    known: HashMap<RequestId, Instant>,
    queue: VecDeque<Event>,
    /// The first look has been made; later ones wait for a change first.
    started: bool,
    /// The `snapshot` event has been queued; later looks send differences.
    snapshot_sent: bool,
    change: Option<crate::store::ChangeFuture>,
    last_error: Option<String>,
    /// Consecutive failed looks, for backing off.
    failures: u32,
    /// The unreadable rows last reported, so the `unreadable` event is sent when they change only.
    unreadable: Vec<UnreadableRow>,
    /// The progress last reported of each live quorum request, so `progress` is sent when votes change only.
    progress: HashMap<RequestId, QuorumProgress>,
    /// What the client was last told of the grants (`None`: nothing yet).
    grants: Option<super::grants::Fingerprint>,
    /// Changes made through this router (a revocation), which the store may not signal.
    local: tokio::sync::watch::Receiver<u64>,
}

/// The event stream of one client.
pub(crate) fn stream(
    store: Arc<dyn ApprovalStore>,
    poll: Duration,
    local: tokio::sync::watch::Receiver<u64>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let watch = Watch {
        store,
        poll,
        known: HashMap::new(),
        queue: VecDeque::new(),
        started: false,
        snapshot_sent: false,
        change: None,
        last_error: None,
        failures: 0,
        unreadable: Vec::new(),
        progress: HashMap::new(),
        grants: None,
        local,
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
    /// Sleeps until the store signals a change, the earliest known deadline passes, or the poll interval ends. While
    /// the store fails, it backs off instead (doubling, up to 5 s).
    async fn wait(&mut self) {
        let poll = if self.change.is_some() {
            SIGNALLED_POLL
        } else {
            self.poll
        };
        let wait = if self.failures > 0 {
            (self.poll * 2u32.saturating_pow(self.failures.min(6))).min(MAX_BACKOFF)
        } else {
            // Only deadlines still ahead count: a request still listed after its deadline (another clock, a slow
            // store) is looked at again at the poll interval, not in a tight loop.
            let now = Instant::now();
            let next_deadline = self
                .known
                .values()
                .filter(|d| **d + DEADLINE_SLACK > now)
                .map(|d| (*d + DEADLINE_SLACK).saturating_duration_since(now))
                .min();
            next_deadline.map_or(poll, |d| d.min(poll))
        };
        let change = self.change.take();
        let local = &mut self.local;
        let signalled = async move {
            match change {
                Some(change) => change.await,
                None => std::future::pending().await,
            }
        };
        // A closed sender (the router is gone) never wakes anyone: wait for the rest.
        let local = async move {
            if local.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let either = futures_util::future::select(Box::pin(signalled), Box::pin(local));
        let _ = tokio::time::timeout(wait, either).await;
    }

    /// Reads the store and queues what changed since the last look.
    async fn look(&mut self) {
        // Listen before reading, so a change between the read and the next wait is not missed.
        self.change = self.store.changed();
        let store = self.store.clone();
        let read = super::blocking(move || {
            let list = store.list_pending()?;
            // A quorum request's votes are in its decision: one read each (one that fails only goes without).
            let mut votes: HashMap<RequestId, StoredRequest> = HashMap::new();
            for r in list.requests.iter().filter(|r| r.quorum().is_some()) {
                if let Ok(Some(stored)) = store.get(r.request_id()) {
                    votes.insert(r.request_id().clone(), stored);
                }
            }
            let grants = store.grants()?;
            Ok((list, votes, grants))
        });
        let (live, unreadable, votes, grants) = match read.await {
            Ok((list, votes, grants)) => (list.requests, list.unreadable, votes, grants),
            Err(e) => return self.report(e),
        };
        self.failures = 0;
        if self.last_error.take().is_some() {
            self.queue
                .push_back(event("ok", &json!({ "message": "the store answers again" })));
        }
        let now = SystemTime::now();
        let mono_now = Instant::now();
        let live_ids: HashMap<&RequestId, &ApprovalRequest> = live.iter().map(|r| (r.request_id(), r)).collect();
        let shown = |r: &ApprovalRequest| super::answer::request_json(r, votes.get(r.request_id()));
        let grant_ms = now_ms();
        let grants_now = super::grants::fingerprint(&grants, grant_ms);
        let grants_json = || -> Vec<Value> { grants.iter().map(|g| super::grants::grant_json(g, grant_ms)).collect() };

        if !self.snapshot_sent {
            let requests: Vec<Value> = live.iter().map(shown).collect();
            self.queue.push_back(event(
                "snapshot",
                &json!({ "now": unix_seconds(now), "requests": requests, "grants": grants_json() }),
            ));
        } else {
            let mut gone: Vec<(RequestId, Instant)> = self
                .known
                .iter()
                .filter(|(id, _)| !live_ids.contains_key(id))
                .map(|(id, d)| (id.clone(), *d))
                .collect();
            gone.sort_by_key(|(_, d)| *d);
            for (id, deadline) in gone {
                let store = self.store.clone();
                let lookup = id.clone();
                let stored = super::blocking(move || store.get(&lookup)).await.ok().flatten();
                let ev = match stored.map(|s| s.decision) {
                    Some(d)
                        if matches!(
                            d.state,
                            RequestState::Approved
                                | RequestState::Denied
                                | RequestState::Executed
                                | RequestState::Responded
                        ) =>
                    {
                        event(
                            "resolved",
                            &json!({
                                "request_id": id,
                                "approved": matches!(d.state, RequestState::Approved | RequestState::Executed),
                                "state": d.state,
                                "kind": d.kind,
                                "actor": d.actor,
                            }),
                        )
                    }
                    Some(_) => event("expired", &json!({ "request_id": id })),
                    None if deadline <= mono_now => event("expired", &json!({ "request_id": id })),
                    None => event("resolved", &json!({ "request_id": id, "state": Value::Null })),
                };
                self.queue.push_back(ev);
            }
            for request in &live {
                if !self.known.contains_key(request.request_id()) {
                    self.queue.push_back(event("parked", &shown(request)));
                }
            }
            for request in &live {
                let id = request.request_id();
                let Some(stored) = votes.get(id) else { continue };
                let seen = self.progress.get(id);
                let progress = super::answer::progress_of(stored);
                if self.known.contains_key(id) && progress.is_some() && seen != progress.as_ref() {
                    let body = json!({ "request_id": id, "quorum_progress": super::answer::progress_json(stored) });
                    self.queue.push_back(event("progress", &body));
                }
            }
            if self.grants.as_ref() != Some(&grants_now) {
                self.queue
                    .push_back(event("grants", &json!({ "grants": grants_json() })));
            }
        }
        self.grants = Some(grants_now);
        self.progress = votes
            .iter()
            .filter_map(|(id, stored)| Some((id.clone(), super::answer::progress_of(stored)?)))
            .collect();
        if unreadable != self.unreadable {
            let message = unreadable
                .iter()
                .map(UnreadableRow::advice)
                .collect::<Vec<_>>()
                .join("; ");
            self.queue
                .push_back(event("unreadable", &json!({ "rows": &unreadable, "message": message })));
            self.unreadable = unreadable;
        }
        let known = std::mem::take(&mut self.known);
        self.known = live
            .iter()
            .map(|r| {
                let id = r.request_id().clone();
                let deadline = known.get(&id).copied().unwrap_or_else(|| mono_now + r.remaining());
                (id, deadline)
            })
            .collect();
        self.snapshot_sent = true;
    }

    /// A store error becomes an `error` event (once per distinct message); the client keeps what it has.
    fn report(&mut self, e: StoreError) {
        self.failures = self.failures.saturating_add(1);
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
