//! [`InMemoryStore`]: the default store, requests kept in this process's memory.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::answer::{step, Step};
use super::page::micros;
use super::sync::{Event, Mutex, MutexGuard, ThreadWaker};
use super::{
    now_ms, ApprovalStore, ChangeBatch, ChangeFuture, Decision, Grant, PageCursor, PendingPage, RequestState,
    StoreError, StoredRequest, WaitFuture, MAX_PAGE,
};
use crate::request::{ApprovalRequest, RequestId, Resolution, ResolveOutcome};

/// Default retention of decided requests in an [`InMemoryStore`]: 10 minutes.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(600);

/// How many recent changes the change feed keeps (24 bytes each): a watcher further behind reads a page again.
const FEED_CAPACITY: usize = 4096;

/// The default store: requests kept in this process's memory.
///
/// Decisions are atomic under one mutex. A decided request stays for the retention window (default
/// [`DEFAULT_RETENTION`]) so a repeated answer still gets [`AlreadyResolved`](ResolveOutcome::AlreadyResolved); after
/// that it is evicted (a late answer then gets [`Unknown`](ResolveOutcome::Unknown)), so memory stays flat on a
/// long-running server. Eviction is amortized O(1) per operation.
///
/// Pending requests are also kept in their order (oldest first), so a page of them costs what a page costs however
/// many are pending ([`pending_page`](ApprovalStore::pending_page)), and the store keeps a change feed of the last
/// 4,096 changes ([`changes_since`](ApprovalStore::changes_since)), so a watcher reads only what changed.
pub struct InMemoryStore {
    retention: Duration,
    inner: Mutex<Inner>,
    /// Notified on every insert and decision, for [`ApprovalStore::changed`].
    changed: Event,
}

#[derive(Default)]
struct Inner {
    /// Keyed by foldhash (seeded per process), not SipHash: ids are made by the guard (random UUIDs), never chosen
    /// by whoever answers, and the hash is taken under the store's lock on every decision.
    records: HashMap<RequestId, Slot, foldhash::fast::RandomState>,
    /// The pending requests in the pending order (creation time in microseconds, then id). Decided ones leave it
    /// lazily (see [`Inner::tidy_order`]): deciding touches only the slot, so a burst of deadlines stays cheap.
    order: BTreeSet<(u64, RequestId)>,
    /// How many requests are pending, for [`Inner::tidy_order`].
    pending: usize,
    /// The most recent changes, oldest first: (position, request changed).
    feed: VecDeque<(u64, RequestId)>,
    /// The position of the next change.
    feed_next: u64,
    /// Decided ids in decision order, for eviction.
    decided: VecDeque<(Instant, RequestId)>,
    /// Standing grants, oldest first; an inactive one is dropped a retention window after it ended.
    grants: Vec<Grant>,
    /// The second and later waiters of a pending request (the first is in its slot): rare, so a slot holds one.
    more_waiters: HashMap<RequestId, Vec<Waker>, foldhash::fast::RandomState>,
}

struct Slot {
    request: ApprovalRequest,
    deadline: Instant,
    decision: Compact,
    /// The first task (or blocked thread) waiting for this request's decision, while it is pending. Kept in the
    /// slot, not in an event of its own: a parked request then costs no allocation to be woken.
    waiter: Option<Waker>,
}

/// Waiters taken from a request as it was decided, woken once the store's lock is released.
#[derive(Default)]
#[must_use = "waiters taken out of a slot must be woken"]
struct Woken(Option<Waker>, Vec<Waker>);

impl Woken {
    fn wake(self) {
        if let Some(w) = self.0 {
            w.wake();
        }
        self.1.into_iter().for_each(Waker::wake);
    }

    /// Wakes all but one waiter registered with `own` (the caller's own task, which is running).
    #[cfg(feature = "tokio")]
    fn wake_except(self, own: &Waker) {
        let mut skipped = false;
        let Woken(first, more) = self;
        for w in first.into_iter().chain(more) {
            if !skipped && w.will_wake(own) {
                skipped = true;
                continue;
            }
            w.wake();
        }
    }
}

/// A slot's decision, shared unless it is the plain pending one: a [`Decision`] is 160 bytes, and the map holds its
/// slots inline, so a million parked requests (a table of two million slots) would carry 320 MB of room for answers
/// none of them has yet. A plain expiry (no actor, no votes: every deadline of a plain request) points at one
/// decision shared by all of them, so a million deadlines allocate nothing for it, and the expired requests kept for
/// the retention window hold a pointer each, not 176 bytes.
struct Compact(Option<Arc<Decision>>);

/// The decision of every request that expired with nothing else recorded.
fn plain_expired() -> &'static Arc<Decision> {
    static EXPIRED: std::sync::OnceLock<Arc<Decision>> = std::sync::OnceLock::new();
    EXPIRED.get_or_init(|| Arc::new(Decision::of(RequestState::Expired)))
}

impl Compact {
    const PENDING: Compact = Compact(None);

    fn state(&self) -> RequestState {
        self.0.as_ref().map_or(RequestState::Pending, |d| d.state)
    }

    fn get(&self) -> Cow<'_, Decision> {
        match &self.0 {
            Some(d) => Cow::Borrowed(d),
            None => Cow::Owned(Decision::of(RequestState::Pending)),
        }
    }

    fn votes(&self) -> Vec<crate::request::Vote> {
        self.0.as_ref().map(|d| d.votes.clone()).unwrap_or_default()
    }

    fn set(&mut self, decision: Decision) {
        self.0 = if decision == Decision::of(RequestState::Pending) {
            None
        } else if decision == **plain_expired() {
            Some(Arc::clone(plain_expired()))
        } else {
            Some(Arc::new(decision))
        };
    }

    fn set_state(&mut self, state: RequestState) {
        match &mut self.0 {
            // In place when this slot's own (an approval being claimed); a shared one is copied first.
            Some(decision) => Arc::make_mut(decision).state = state,
            None => self.set(Decision::of(state)),
        }
    }
}

impl fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryStore")
            .field("retention", &self.retention)
            .field("records", &self.len())
            .finish()
    }
}

impl Default for InMemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryStore {
    /// A store with the default retention window.
    pub fn new() -> Self {
        Self::with_retention(DEFAULT_RETENTION)
    }

    /// A store that forgets decided requests `retention` after their decision.
    pub fn with_retention(retention: Duration) -> Self {
        InMemoryStore {
            retention,
            inner: Mutex::new(Inner::default()),
            changed: Event::new(),
        }
    }

    /// How many requests (pending and retained) are held now.
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// `true` when no request is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave a record half-changed (every change is one assignment), so a
        // poisoned lock is safe to keep using.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_evicting(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.lock();
        let now = Instant::now();
        while let Some((at, _)) = inner.decided.front() {
            if now.saturating_duration_since(*at) < self.retention {
                break;
            }
            let Some((_, id)) = inner.decided.pop_front() else {
                break;
            };
            // An approval not yet claimed by its waiter stays until it is claimed (or abandoned), so eviction can
            // never turn a RESOLVED approval into a denial. Look again at the next operation.
            if inner
                .records
                .get(&id)
                .is_some_and(|s| s.decision.state() == RequestState::Approved)
            {
                inner.decided.push_back((now, id));
                break;
            }
            inner.records.remove(&id);
        }
        inner
    }
}

impl Inner {
    /// Moves a pending slot to a final decision; its waiters are returned, to be woken once the lock is released.
    fn decide(&mut self, id: &RequestId, decision: Decision) -> Woken {
        self.decide_with(id, |_| Some(decision))
            .map(|(_, woken)| woken)
            .unwrap_or_default()
    }

    /// [`decide`](Self::decide) with the decision made from the slot's current one (`None`: leave it as it is), and
    /// the slot's decision returned: one lookup (each costs a hash and, with a million parked, a cache miss, under
    /// the store's lock).
    fn decide_with(
        &mut self,
        id: &RequestId,
        decision: impl FnOnce(&Compact) -> Option<Decision>,
    ) -> Option<(&Compact, Woken)> {
        let Inner {
            records,
            pending,
            decided,
            feed,
            feed_next,
            more_waiters,
            ..
        } = self;
        let slot = records.get_mut(id)?;
        let Some(decision) = decision(&slot.decision) else {
            return Some((&slot.decision, Woken::default()));
        };
        if slot.decision.state() == RequestState::Pending {
            *pending = pending.saturating_sub(1);
        }
        slot.decision.set(decision);
        // Waiters wait only for a final decision, and every decision is final: all of them go now.
        let more = if more_waiters.is_empty() {
            Vec::new()
        } else {
            more_waiters.remove(id).unwrap_or_default()
        };
        let woken = Woken(slot.waiter.take(), more);
        decided.push_back((Instant::now(), id.clone()));
        note_change(feed, feed_next, id);
        Some((&slot.decision, woken))
    }

    /// One poll of a wait for request `id`'s decision by the waiter that has `registered` (its waker in the slot,
    /// or none yet): the decision once it is final, else the waiter is (still) registered with `waker`.
    fn poll_wait(
        &mut self,
        id: &RequestId,
        registered: &mut Option<Waker>,
        waker: &Waker,
    ) -> Poll<Result<Decision, StoreError>> {
        let Some(slot) = self.records.get_mut(id) else {
            // Evicted (or never here): nothing of it is left, its waiters included.
            *registered = None;
            return Poll::Ready(Err(unknown(id)));
        };
        if slot.decision.state().is_final() {
            // A decision takes every waiter out of the slot (`decide_with`), so this one is no longer held.
            *registered = None;
            return Poll::Ready(Ok(slot.decision.get().into_owned()));
        }
        match registered {
            Some(known) if known.will_wake(waker) => {}
            Some(known) => {
                // Polled with another waker (the future moved to another task): swap it in, in the same place.
                let old = std::mem::replace(known, waker.clone());
                self.remove_waiter(id, &old);
                self.add_waiter(id, waker.clone());
            }
            None => {
                *registered = Some(waker.clone());
                self.add_waiter(id, waker.clone());
            }
        }
        Poll::Pending
    }

    fn add_waiter(&mut self, id: &RequestId, waker: Waker) {
        match self.records.get_mut(id) {
            Some(slot) if slot.waiter.is_none() => slot.waiter = Some(waker),
            Some(_) => self.more_waiters.entry(id.clone()).or_default().push(waker),
            None => {}
        }
    }

    /// Takes one waiter registered with `waker` (one registered by the same task, which is the same to wake) off a
    /// pending request: a wait that ends without a decision (dropped, or past its deadline).
    fn remove_waiter(&mut self, id: &RequestId, waker: &Waker) {
        let Some(slot) = self.records.get_mut(id) else {
            return;
        };
        if slot.waiter.as_ref().is_some_and(|w| w.will_wake(waker)) {
            slot.waiter = None;
        } else if let Some(more) = self.more_waiters.get_mut(id) {
            if let Some(at) = more.iter().position(|w| w.will_wake(waker)) {
                more.swap_remove(at);
            }
        } else {
            return;
        }
        // Keep the slot's place filled while others wait, so `more_waiters` stays empty in the common case.
        if let Some(more) = self.more_waiters.get_mut(id) {
            if slot.waiter.is_none() {
                slot.waiter = more.pop();
            }
            if more.is_empty() {
                self.more_waiters.remove(id);
            }
        }
    }

    /// Drops decided requests from the order: from its front, a few at a time (called at each insert, so it keeps
    /// ahead of them), and all at once when they are more than the pending ones (plus 1,024), so the order holds
    /// at most about twice what is pending, and a page skips at most that many.
    fn tidy_order(&mut self) {
        for _ in 0..4 {
            match self.order.first() {
                Some((_, id)) if !self.is_pending(id) => {
                    self.order.pop_first();
                }
                _ => break,
            }
        }
        if self.order.len() > 2 * self.pending + 1024 {
            let records = &self.records;
            self.order.retain(|(_, id)| {
                records
                    .get(id)
                    .is_some_and(|s| s.decision.state() == RequestState::Pending)
            });
        }
    }

    fn is_pending(&self, id: &RequestId) -> bool {
        self.records
            .get(id)
            .is_some_and(|s| s.decision.state() == RequestState::Pending)
    }

    /// Notes a change to request `id` in the feed.
    fn changed(&mut self, id: &RequestId) {
        note_change(&mut self.feed, &mut self.feed_next, id);
    }

    /// The live pending requests in order from `after` (exclusive), at most `limit`, and whether more follow.
    fn page(&self, limit: usize, after: Option<&PageCursor>) -> (Vec<ApprovalRequest>, bool) {
        let now = Instant::now();
        let start = match after {
            Some(c) => Bound::Excluded((c.created_us, RequestId::position(&c.id))),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        let mut more = false;
        for (_, id) in self.order.range((start, Bound::Unbounded)) {
            let Some(slot) = self.records.get(id) else { continue };
            if slot.decision.state() != RequestState::Pending || slot.deadline <= now {
                continue;
            }
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(slot.request.clone());
        }
        (out, more)
    }

    /// Expires the slot if it is pending, and returns its decision (`None`: no such request); the votes cast on it
    /// stay (as a database store keeps them), so they are audited.
    fn expire(&mut self, id: &RequestId) -> (Option<Decision>, Woken) {
        match self.decide_with(id, |current| {
            (current.state() == RequestState::Pending).then(|| Decision {
                votes: current.votes(),
                ..Decision::of(RequestState::Expired)
            })
        }) {
            Some((decided, woken)) => (Some(decided.get().into_owned()), woken),
            None => (None, Woken::default()),
        }
    }
}

/// Notes a change to request `id` in the feed (the last [`FEED_CAPACITY`] changes).
fn note_change(feed: &mut VecDeque<(u64, RequestId)>, next: &mut u64, id: &RequestId) {
    if feed.len() == FEED_CAPACITY {
        feed.pop_front();
    }
    feed.push_back((*next, id.clone()));
    *next += 1;
}

fn unknown(id: &RequestId) -> StoreError {
    StoreError::new(format!(
        "no request {id} in the store (unknown, or evicted after its retention window)"
    ))
}

impl InMemoryStore {
    /// Applies an answer; the waiters it decided for are returned, to be woken once the lock is released.
    fn resolve_now(&self, resolution: &Resolution) -> (ResolveOutcome, Woken) {
        let mut inner = self.lock_evicting();
        let id = resolution.request_id();
        let Some(slot) = inner.records.get(id) else {
            return (ResolveOutcome::Unknown, Woken::default());
        };
        match slot.decision.state() {
            RequestState::Pending => {}
            RequestState::Expired => return (ResolveOutcome::Expired, Woken::default()),
            _ => return (ResolveOutcome::AlreadyResolved, Woken::default()),
        }
        if Instant::now() >= slot.deadline {
            return (ResolveOutcome::Expired, inner.expire(id).1);
        }
        let step = step(&slot.request, &slot.decision.get(), resolution, now_ms());
        let outcome = step.outcome();
        let woken = match step {
            Step::Refuse(_) => Woken::default(),
            Step::Vote(decision) => {
                if let Some(slot) = inner.records.get_mut(id) {
                    slot.decision.set(decision);
                }
                inner.changed(id);
                Woken::default()
            }
            Step::Decide(decision, grant) => {
                if let Some(grant) = grant {
                    inner.grants.push(*grant);
                }
                inner.decide(id, decision)
            }
        };
        (outcome, woken)
    }

    /// Drops grants that ended more than a retention window ago, so memory stays bounded.
    fn prune_grants(&self, inner: &mut Inner, now: u64) {
        let keep = self.retention.as_millis() as u64;
        inner.grants.retain(|g| {
            let ended = g
                .revoked_at_ms
                .or(g.expires_at_ms.filter(|&t| t <= now))
                .or((g.uses_left == Some(0)).then_some(now));
            ended.is_none_or(|t| now.saturating_sub(t) < keep.max(1))
        });
    }

    fn expire_now(&self, id: &RequestId) -> Option<Decision> {
        let (decision, woken) = self.lock_evicting().expire(id);
        woken.wake();
        decision
    }

    fn abandon_now(&self, id: &RequestId) {
        let mut inner = self.lock();
        match inner.records.get(id).map(|s| s.decision.state()) {
            Some(RequestState::Pending) => {
                let (_, woken) = inner.expire(id);
                drop(inner);
                woken.wake();
            }
            Some(RequestState::Approved) => {
                // Already queued for eviction since its approval; it just must never be claimed now.
                if let Some(slot) = inner.records.get_mut(id) {
                    slot.decision.set(Decision::of(RequestState::Expired));
                }
            }
            _ => {}
        }
    }
}

impl ApprovalStore for InMemoryStore {
    fn insert(&self, request: &ApprovalRequest) -> Result<(), StoreError> {
        let deadline = Instant::now() + request.remaining();
        let mut inner = self.lock_evicting();
        let id = request.request_id().clone();
        if inner.records.contains_key(&id) {
            return Err(StoreError::new(format!("request {id} is already in the store")));
        }
        inner.order.insert((micros(request.timestamp()), id.clone()));
        inner.pending += 1;
        inner.changed(&id);
        inner.records.insert(
            id,
            Slot {
                request: request.clone(),
                deadline,
                decision: Compact::PENDING,
                waiter: None,
            },
        );
        inner.tidy_order();
        drop(inner);
        self.changed.notify(usize::MAX);
        Ok(())
    }

    fn resolve(&self, resolution: &Resolution) -> Result<ResolveOutcome, StoreError> {
        let (outcome, woken) = self.resolve_now(resolution);
        woken.wake();
        if matches!(
            outcome,
            ResolveOutcome::Resolved | ResolveOutcome::Expired | ResolveOutcome::VoteRecorded
        ) {
            self.changed.notify(usize::MAX);
        }
        Ok(outcome)
    }

    fn expire(&self, id: &RequestId) -> Result<Option<Decision>, StoreError> {
        let decision = self.expire_now(id);
        self.changed.notify(usize::MAX);
        Ok(decision)
    }

    fn abandon(&self, id: &RequestId) -> Result<(), StoreError> {
        self.abandon_now(id);
        self.changed.notify(usize::MAX);
        Ok(())
    }

    fn changed(&self) -> Option<ChangeFuture> {
        Some(Box::pin(self.changed.listen()))
    }

    fn blocks_on_io(&self) -> bool {
        false
    }

    fn claim(&self, id: &RequestId) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        match inner.records.get_mut(id) {
            Some(slot) if slot.decision.state() == RequestState::Approved => {
                slot.decision.set_state(RequestState::Executed);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn get(&self, id: &RequestId) -> Result<Option<StoredRequest>, StoreError> {
        Ok(self.lock().records.get(id).map(|s| StoredRequest {
            request: s.request.clone(),
            decision: s.decision.get().into_owned(),
            outcome: None,
        }))
    }

    fn pending(&self) -> Result<Vec<ApprovalRequest>, StoreError> {
        Ok(self.lock_evicting().page(usize::MAX, None).0)
    }

    fn pending_page(&self, limit: usize, after: Option<&PageCursor>) -> Result<PendingPage, StoreError> {
        let (requests, more) = self.lock_evicting().page(limit.clamp(1, MAX_PAGE), after);
        let next = if more {
            requests.last().map(PageCursor::at)
        } else {
            None
        };
        Ok(PendingPage {
            requests,
            unreadable: Vec::new(),
            next,
        })
    }

    fn changes_since(&self, after: Option<u64>) -> Result<Option<ChangeBatch>, StoreError> {
        let inner = self.lock();
        let next = inner.feed_next;
        let Some(after) = after else {
            return Ok(Some(ChangeBatch {
                changed: Vec::new(),
                next,
                complete: true,
            }));
        };
        let oldest = inner.feed.front().map_or(next, |(seq, _)| *seq);
        if after < oldest || after > next {
            // Changes it has not seen were dropped (or the position is not this feed's): read a page again.
            return Ok(Some(ChangeBatch {
                changed: Vec::new(),
                next,
                complete: false,
            }));
        }
        let skip = usize::try_from(after - oldest).unwrap_or(usize::MAX);
        let mut changed: Vec<RequestId> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        // Newest first, so each id is kept at its latest change; then back to oldest first.
        for (_, id) in inner.feed.iter().skip(skip).rev() {
            if seen.insert(id) {
                changed.push(id.clone());
            }
        }
        changed.reverse();
        Ok(Some(ChangeBatch {
            changed,
            next,
            complete: true,
        }))
    }

    fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        let mut inner = self.lock();
        self.prune_grants(&mut inner, now_ms());
        let mut out = inner.grants.clone();
        out.reverse();
        Ok(out)
    }

    fn grants_for(&self, tool: &str) -> Result<Vec<Grant>, StoreError> {
        let now = now_ms();
        Ok(self
            .lock()
            .grants
            .iter()
            .filter(|g| g.tool == tool && g.is_active(now))
            .cloned()
            .collect())
    }

    fn use_grant(&self, id: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut inner = self.lock();
        let Some(grant) = inner.grants.iter_mut().find(|g| g.id == id) else {
            return Ok(false);
        };
        if !grant.is_active(now) {
            return Ok(false);
        }
        grant.used += 1;
        if let Some(left) = &mut grant.uses_left {
            *left -= 1;
        }
        drop(inner);
        // Watchers (the page's event stream) show a grant's uses as they happen.
        self.changed.notify(usize::MAX);
        Ok(true)
    }

    fn revoke_grant(&self, id: &str, by: Option<&str>) -> Result<Option<Grant>, StoreError> {
        let mut inner = self.lock();
        let Some(grant) = inner.grants.iter_mut().find(|g| g.id == id) else {
            return Ok(None);
        };
        if grant.revoked_at_ms.is_none() {
            grant.revoked_at_ms = Some(now_ms());
            grant.revoked_by = by.map(str::to_owned);
        }
        let grant = grant.clone();
        drop(inner);
        self.changed.notify(usize::MAX);
        Ok(Some(grant))
    }

    fn wait<'a>(&'a self, id: &'a RequestId) -> WaitFuture<'a> {
        Box::pin(Wait {
            store: self,
            id,
            registered: None,
        })
    }

    #[cfg(feature = "tokio")]
    fn wait_or_expire<'a>(&'a self, id: &'a RequestId, until: Instant) -> super::ExpiringWaitFuture<'a> {
        Box::pin(WaitOrExpire {
            wait: Wait {
                store: self,
                id,
                registered: None,
            },
            deadline: tokio::time::sleep_until(until.into()),
        })
    }

    fn wait_blocking(&self, id: &RequestId, until: Instant) -> Result<Option<Decision>, StoreError> {
        let (parker, waker) = ThreadWaker::current();
        let mut registered = None;
        loop {
            // Registered under the lock that a decision takes, so a decision between a look and the park wakes it.
            if let Poll::Ready(decision) = self.lock().poll_wait(id, &mut registered, &waker) {
                return decision.map(Some);
            }
            if !parker.park_until(until) {
                if let Some(waker) = registered.take() {
                    self.lock().remove_waiter(id, &waker);
                }
                return Ok(None);
            }
        }
    }
}

/// [`InMemoryStore::wait`]'s future: it keeps its waker in the request's slot while pending, and takes it out if
/// dropped before the decision (a decision takes it out itself).
struct Wait<'a> {
    store: &'a InMemoryStore,
    id: &'a RequestId,
    registered: Option<Waker>,
}

impl Future for Wait<'_> {
    type Output = Result<Decision, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.store.lock().poll_wait(this.id, &mut this.registered, cx.waker())
    }
}

#[cfg(feature = "tokio")]
pin_project_lite::pin_project! {
    /// [`InMemoryStore::wait_or_expire`]'s future: a [`Wait`] and its deadline's timer, in one allocation.
    struct WaitOrExpire<'a> {
        wait: Wait<'a>,
        #[pin]
        deadline: tokio::time::Sleep,
    }
}

#[cfg(feature = "tokio")]
impl Future for WaitOrExpire<'_> {
    type Output = Result<Option<Decision>, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The deadline first: past it, the expiry reads any decision anyway, and the store is locked once.
        if this.deadline.poll(cx).is_ready() {
            return Poll::Ready(Ok(this.wait.expire_at_deadline()));
        }
        Pin::new(this.wait).poll(cx).map(|decision| decision.map(Some))
    }
}

impl Wait<'_> {
    /// Expires the request at its deadline (or reads the decision that came meanwhile) and takes this wait's waker
    /// out of it, under one lock: the waker is not woken (this is its task, running), and dropping the wait then
    /// costs nothing.
    #[cfg(feature = "tokio")]
    fn expire_at_deadline(&mut self) -> Option<Decision> {
        let own = self.registered.take();
        let (decision, woken) = self.store.lock_evicting().expire(self.id);
        // A pending request's expiry took every waiter, this one included; a decided one took them before.
        match own {
            Some(own) => woken.wake_except(&own),
            None => woken.wake(),
        }
        self.store.changed.notify(usize::MAX);
        decision
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(waker) = self.registered.take() {
            self.store.lock().remove_waiter(self.id, &waker);
        }
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;

#[cfg(all(test, agentguard_model))]
#[path = "memory_model.rs"]
mod model;
