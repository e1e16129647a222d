//! `GET /agentguard/events`: the store's changes as Server-Sent Events.
//!
//! Each connection watches the store: it reads the oldest live requests (at most [`WINDOW`]), sends a `snapshot`
//! (with `more: true` when others are waiting beyond them), then waits for a change (the store's
//! [`changed`](crate::store::ApprovalStore::changed) signal, the next deadline, or the poll interval) and sends what
//! differs: `resolved` or `expired` for requests that left, `parked` for new ones (and, as shown ones leave, for the
//! next waiting ones, oldest first, so the page always shows the oldest), `progress` (`{request_id,
//! quorum_progress}`) for a quorum request whose votes changed, in that order; `more` (`{more}`) when whether
//! requests wait beyond the shown ones changes; then `grants` (`{grants: [...]}`, as `GET /agentguard/grants` lists
//! them) after the snapshot and whenever a grant is made, used, revoked or ends. A store that does not signal grant
//! changes (uses, revocations) is looked at every few seconds anyway, and a revocation through this router wakes its
//! streams at once. Pending rows the store cannot read back (too deep, damaged) are left out of those and named in
//! an `unreadable` event (`{"rows": [{"id", "problem"}], "message"}`), sent when that set changes. A store error is
//! an `error` event, and `ok` follows when the store answers again. A request parked and decided between two looks
//! appears in neither; the page only shows live requests, so it loses nothing.
//!
//! What a look costs does not grow with what is pending: a store with a change feed
//! ([`changes_since`](crate::store::ApprovalStore::changes_since), the in-memory store) is asked only what changed
//! and each changed request is read once; any other store is read one window (a page of at most [`WINDOW`]) at a
//! time.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::response::sse::Event;
use futures_util::Stream;
use serde_json::{json, Value};

use crate::request::{ApprovalRequest, QuorumProgress, RequestId};
use crate::store::{
    now_ms, ApprovalStore, Grant, PageCursor, PendingPage, RequestState, StoreError, StoredRequest, UnreadableRow,
};

/// How long after a deadline the watcher looks again, so the request has surely left `pending`.
const DEADLINE_SLACK: Duration = Duration::from_millis(20);

/// For a store that signals its changes, the watcher still looks this often, in case a change went unsignalled.
const SIGNALLED_POLL: Duration = Duration::from_secs(5);

/// The longest wait between looks at a failing store.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The most live requests one event stream shows at a time: the oldest ones. As they leave, the next waiting ones
/// are sent as `parked`.
pub const WINDOW: usize = 500;

struct Watch {
    store: Arc<dyn ApprovalStore>,
    poll: Duration,
    /// Live requests the client was told about, with their deadlines on this process's monotonic clock (taken when
    /// first seen, so a wall-clock jump cannot make the watcher spin).
    known: HashMap<RequestId, Instant>,
    /// Where the newest shown request sits in the pending order: every live request not shown comes after it.
    frontier: Option<PageCursor>,
    /// Live requests wait beyond the shown ones.
    more: bool,
    /// What the client was last told of `more`.
    more_sent: bool,
    /// The position in the store's change feed the next look reads from; `None` for a full look (a store without a
    /// feed, the first look, or a feed that lost changes).
    feed: Option<u64>,
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

/// What one look read from the store.
enum Read {
    /// The oldest window of live requests, the quorum requests' decisions among them, and the feed position taken
    /// just before (`None`: the store keeps no feed).
    Full {
        page: PendingPage,
        votes: HashMap<RequestId, StoredRequest>,
        feed: Option<u64>,
    },
    /// Each request changed since the last look, or shown and past its deadline, as it is now (`None`: gone from
    /// the store), and the feed's next position.
    Changes {
        now: Vec<(RequestId, Option<StoredRequest>)>,
        feed: u64,
    },
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
        frontier: None,
        more: false,
        more_sent: false,
        feed: None,
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
        let feed = self.feed;
        // Shown requests past their deadline are read again, so they leave even if no change was signalled.
        let now = Instant::now();
        let overdue: Vec<RequestId> = self
            .known
            .iter()
            .filter(|(_, d)| **d + DEADLINE_SLACK <= now)
            .map(|(id, _)| id.clone())
            .collect();
        let read = super::blocking(move || {
            let grants = store.grants()?;
            if let Some(Some(batch)) = feed.map(|at| store.changes_since(Some(at))).transpose()? {
                if batch.complete {
                    let mut ids = batch.changed;
                    let listed: std::collections::HashSet<RequestId> = ids.iter().cloned().collect();
                    ids.extend(overdue.into_iter().filter(|id| !listed.contains(id)));
                    let now = ids
                        .into_iter()
                        .map(|id| store.get(&id).map(|stored| (id, stored)))
                        .collect::<Result<Vec<_>, StoreError>>()?;
                    return Ok((Read::Changes { now, feed: batch.next }, grants));
                }
            }
            // The feed position first, so a change made while the page is read is read again next time.
            let feed = store.changes_since(None)?.map(|b| b.next);
            let page = store.pending_page(WINDOW, None)?;
            // A quorum request's votes are in its decision: one read each (one that fails only goes without).
            let mut votes: HashMap<RequestId, StoredRequest> = HashMap::new();
            for r in page.requests.iter().filter(|r| r.quorum().is_some()) {
                if let Ok(Some(stored)) = store.get(r.request_id()) {
                    votes.insert(r.request_id().clone(), stored);
                }
            }
            Ok((Read::Full { page, votes, feed }, grants))
        });
        let (read, grants) = match read.await {
            Ok(read) => read,
            Err(e) => return self.report(e),
        };
        self.failures = 0;
        if self.last_error.take().is_some() {
            self.queue
                .push_back(event("ok", &json!({ "message": "the store answers again" })));
        }
        match read {
            Read::Full { page, votes, feed } => {
                self.full(page, votes, &grants).await;
                self.feed = feed;
            }
            Read::Changes { now, feed } => {
                self.changes(now);
                self.feed = Some(feed);
                if let Err(e) = self.top_up().await {
                    // Nothing shown is lost; the next look reads the window again.
                    self.feed = None;
                    return self.report(e);
                }
            }
        }
        if self.snapshot_sent && self.more != self.more_sent {
            self.queue.push_back(event("more", &json!({ "more": self.more })));
        }
        self.more_sent = self.more;
        let grant_ms = now_ms();
        let grants_now = super::grants::fingerprint(&grants, grant_ms);
        if self.snapshot_sent && self.grants.as_ref() != Some(&grants_now) {
            let list: Vec<Value> = grants.iter().map(|g| super::grants::grant_json(g, grant_ms)).collect();
            self.queue.push_back(event("grants", &json!({ "grants": list })));
        }
        self.grants = Some(grants_now);
        self.snapshot_sent = true;
    }

    /// A full look: the oldest window, compared with what the client was told.
    async fn full(&mut self, page: PendingPage, votes: HashMap<RequestId, StoredRequest>, grants: &[Grant]) {
        let now = SystemTime::now();
        let mono_now = Instant::now();
        let PendingPage {
            requests: live,
            unreadable,
            next,
        } = page;
        self.more = next.is_some();
        self.frontier = next.or_else(|| live.last().map(PageCursor::at));
        let live_ids: HashMap<&RequestId, &ApprovalRequest> = live.iter().map(|r| (r.request_id(), r)).collect();
        let shown = |r: &ApprovalRequest| super::answer::request_json(r, votes.get(r.request_id()));

        if !self.snapshot_sent {
            let requests: Vec<Value> = live.iter().map(shown).collect();
            let grant_ms = now_ms();
            let grants: Vec<Value> = grants.iter().map(|g| super::grants::grant_json(g, grant_ms)).collect();
            self.queue.push_back(event(
                "snapshot",
                &json!({ "now": unix_seconds(now), "requests": requests, "more": self.more, "grants": grants }),
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
                self.queue.push_back(gone_event(&id, stored, deadline <= mono_now));
            }
            for request in &live {
                if !self.known.contains_key(request.request_id()) {
                    self.queue.push_back(event("parked", &shown(request)));
                }
            }
            for request in &live {
                let id = request.request_id();
                let Some(stored) = votes.get(id) else { continue };
                if self.known.contains_key(id) {
                    self.progress_event(stored);
                }
            }
        }
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
    }

    /// What the change feed reported: each changed request as it is now.
    fn changes(&mut self, now: Vec<(RequestId, Option<StoredRequest>)>) {
        let mono_now = Instant::now();
        let (mut gone, mut parked, mut progress) = (Vec::new(), Vec::new(), Vec::new());
        for (id, stored) in now {
            let live = stored
                .as_ref()
                .filter(|s| s.decision.state == RequestState::Pending && !s.request.remaining().is_zero());
            match (self.known.get(&id).copied(), live) {
                (Some(_), Some(s)) => progress.push(s.clone()),
                (Some(deadline), None) => {
                    self.known.remove(&id);
                    self.progress.remove(&id);
                    gone.push(gone_event(&id, stored, deadline <= mono_now));
                }
                (None, Some(s)) if !self.more && self.known.len() < WINDOW => {
                    // Everything waiting is shown, and there is room: show it.
                    let cursor = PageCursor::at(&s.request);
                    if self.frontier.as_ref().is_none_or(|f| *f < cursor) {
                        self.frontier = Some(cursor);
                    }
                    self.known.insert(id, mono_now + s.request.remaining());
                    if let Some(p) = super::answer::progress_of(s) {
                        self.progress.insert(s.request.request_id().clone(), p);
                    }
                    parked.push(super::answer::request_json(&s.request, Some(s)));
                }
                (None, Some(s)) => {
                    // No room: it waits beyond the shown ones. One placed before the newest shown (its clock ran
                    // behind) would never be reached by topping up after it: read the window again next time.
                    self.more = true;
                    if self.frontier.as_ref().is_some_and(|f| !f.precedes(&s.request)) {
                        self.feed = None;
                    }
                }
                (None, None) => {}
            }
        }
        self.queue.extend(gone);
        for body in parked {
            self.queue.push_back(event("parked", &body));
        }
        for stored in progress {
            self.progress_event(&stored);
        }
    }

    /// While requests wait beyond the shown ones and the window has room, the next ones (oldest first) are shown.
    async fn top_up(&mut self) -> Result<(), StoreError> {
        if !self.more || self.known.len() >= WINDOW {
            return Ok(());
        }
        let store = self.store.clone();
        let room = WINDOW - self.known.len();
        let after = self.frontier.clone();
        let (page, votes) = super::blocking(move || {
            let page = store.pending_page(room, after.as_ref())?;
            let mut votes: HashMap<RequestId, StoredRequest> = HashMap::new();
            for r in page.requests.iter().filter(|r| r.quorum().is_some()) {
                if let Ok(Some(stored)) = store.get(r.request_id()) {
                    votes.insert(r.request_id().clone(), stored);
                }
            }
            Ok((page, votes))
        })
        .await?;
        let mono_now = Instant::now();
        self.more = page.next.is_some();
        if let Some(cursor) = page.next.clone().or_else(|| page.requests.last().map(PageCursor::at)) {
            self.frontier = Some(cursor);
        }
        for request in &page.requests {
            let id = request.request_id();
            if self.known.contains_key(id) {
                continue;
            }
            self.known.insert(id.clone(), mono_now + request.remaining());
            let stored = votes.get(id);
            if let Some(p) = stored.and_then(super::answer::progress_of) {
                self.progress.insert(id.clone(), p);
            }
            self.queue
                .push_back(event("parked", &super::answer::request_json(request, stored)));
        }
        Ok(())
    }

    /// Queues `progress` for a shown quorum request whose votes changed since the client was last told.
    fn progress_event(&mut self, stored: &StoredRequest) {
        let id = stored.request.request_id();
        let Some(progress) = super::answer::progress_of(stored) else {
            return;
        };
        if self.progress.get(id) != Some(&progress) {
            let body = json!({ "request_id": id, "quorum_progress": super::answer::progress_json(stored) });
            self.queue.push_back(event("progress", &body));
            self.progress.insert(id.clone(), progress);
        }
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

/// The event for a shown request that left: `resolved` (with how) when it was answered, `expired` when it expired
/// or, gone from the store, its deadline passed.
fn gone_event(id: &RequestId, stored: Option<StoredRequest>, past_deadline: bool) -> Event {
    match stored.map(|s| s.decision) {
        Some(d)
            if matches!(
                d.state,
                RequestState::Approved | RequestState::Denied | RequestState::Executed | RequestState::Responded
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
        None if past_deadline => event("expired", &json!({ "request_id": id })),
        None => event("resolved", &json!({ "request_id": id, "state": Value::Null })),
    }
}

fn event(name: &str, data: &Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
