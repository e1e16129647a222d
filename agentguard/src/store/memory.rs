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

#[path = "memory_decision.rs"]
mod decision;
#[path = "memory_evict.rs"]
mod evict;
#[cfg(feature = "tokio")]
#[path = "memory_ticks.rs"]
mod ticks;
#[path = "memory_wait.rs"]
mod wait;
use decision::{Compact, Due};
use evict::note_change;
use wait::{Unread, Wait, Woken};

/// Default retention of decided requests in an [`InMemoryStore`]: 10 minutes.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(600);

/// How many recent changes the change feed keeps (24 bytes each): a watcher further behind reads a page again.
const FEED_CAPACITY: usize = 4096;

/// The default store: requests kept in this process's memory.
///
/// Decisions are atomic under one mutex. A decided request stays for the retention window (default
/// [`DEFAULT_RETENTION`]) so a repeated answer still gets [`AlreadyResolved`](ResolveOutcome::AlreadyResolved); after
/// that it is evicted (a late answer then gets [`Unknown`](ResolveOutcome::Unknown)), so memory stays flat on a
/// long-running server. Eviction is amortized O(1) per operation. Two things are kept past the window: an approval
/// until its call claims it (so it is never lost to a denial), and any decision until the calls it woke have read
/// it (so a short retention never turns their answer into a store error), for at most a minute more: a call that
/// has not looked by then is taken to be gone.
///
/// Pending requests are also kept in their order (oldest first), so a page of them costs what a page costs however
/// many are pending ([`pending_page`](ApprovalStore::pending_page)), and the store keeps a change feed of the last
/// 4,096 changes ([`changes_since`](ApprovalStore::changes_since)), so a watcher reads only what changed.
///
/// A service that expects hundreds of thousands of requests at once makes its store with room for them
/// ([`with_capacity`](Self::with_capacity)): the table otherwise doubles as it fills, under the store's lock.
///
/// ```
/// use agentguard::{store::InMemoryStore, AgentGuard};
///
/// let guard = AgentGuard::external().store(InMemoryStore::with_capacity(1_000_000)).build();
/// # drop(guard);
/// ```
pub struct InMemoryStore {
    retention: Duration,
    inner: Mutex<Inner>,
    /// Notified on every insert and decision, for [`ApprovalStore::changed`].
    changed: Event,
    /// The async waits' deadlines, one tokio timer per millisecond (and runtime) that has waits.
    #[cfg(feature = "tokio")]
    ticks: ticks::Ticks,
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
    /// Decided requests whose waiters were woken but have not read the decision yet: eviction keeps them until
    /// they have (see [`Inner::read_once`]), so a short retention can never turn a waiter's decision into "unknown
    /// request". Empty in the common case: a waiter that expires its own request reads it at once.
    unread: Unread,
}

struct Slot {
    request: ApprovalRequest,
    deadline: Due,
    decision: Compact,
    /// The first task (or blocked thread) waiting for this request's decision, while it is pending. Kept in the
    /// slot, not in an event of its own: a parked request then costs no allocation to be woken.
    waiter: Option<Waker>,
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

    /// A store that forgets decided requests `retention` after their decision; later if the calls that were
    /// waiting for them have not read them yet, and an approval only once its call has claimed it (see the type's
    /// docs). With `Duration::ZERO` a request is forgotten at the next operation after that, and a repeated answer
    /// then gets [`Unknown`](ResolveOutcome::Unknown).
    pub fn with_retention(retention: Duration) -> Self {
        Due::start();
        InMemoryStore {
            retention,
            inner: Mutex::new(Inner::default()),
            changed: Event::new(),
            #[cfg(feature = "tokio")]
            ticks: ticks::Ticks::default(),
        }
    }

    /// A store with the default retention and room for `capacity` requests (pending and retained) before its table
    /// grows: see [`reserve`](Self::reserve) (which says when it panics).
    pub fn with_capacity(capacity: usize) -> Self {
        let store = Self::new();
        store.reserve(capacity);
        store
    }

    /// Makes room for `additional` more requests (pending and retained) than are held now, at once.
    ///
    /// The store keeps its requests in one hash table, which doubles when it fills up, under the store's lock: at a
    /// million requests a doubling moves every one of them (tens to a hundred milliseconds on a small machine) while
    /// every park, answer and deadline waits. A service that expects that many can take the room up front. The
    /// table holds the decided requests for the retention window too: count them in. The operating system maps the
    /// room's pages as requests are first written to them; a hash table spreads its requests over all of it, so
    /// count on the whole room being resident once many have come and gone.
    ///
    /// # Panics
    ///
    /// As [`HashMap::reserve`]: if the room asked for overflows `usize` (a count no machine can hold; a million
    /// takes about 170 MB of address space). Call it when the store is made, with the number the service is sized for.
    pub fn reserve(&self, additional: usize) {
        let mut inner = self.lock();
        inner.records.reserve(additional);
        // Each decided request is queued for eviction: that queue doubles under the lock too.
        inner.decided.reserve(additional);
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
}

impl Inner {
    /// Moves a pending slot to a final decision; its waiters are returned, to be woken once the lock is released.
    fn decide(&mut self, id: &RequestId, decision: Decision) -> Woken {
        self.decide_with(id, false, |_| Some(decision))
            .map(|(_, woken)| woken)
            .unwrap_or_default()
    }

    /// [`decide`](Self::decide) with the decision made from the slot's current one (`None`: leave it as it is), and
    /// the slot's decision returned: one lookup (each costs a hash and, with a million parked, a cache miss, under
    /// the store's lock). `reader`: the caller is one of the request's registered waiters and reads the decision
    /// now (it is not counted as unread).
    fn decide_with(
        &mut self,
        id: &RequestId,
        reader: bool,
        decision: impl FnOnce(&Compact) -> Option<Decision>,
    ) -> Option<(&Compact, Woken)> {
        let Inner {
            records,
            pending,
            decided,
            feed,
            feed_next,
            more_waiters,
            unread,
            ..
        } = self;
        let slot = records.get_mut(id)?;
        let Some(decision) = decision(&slot.decision) else {
            if reader && slot.decision.state().is_final() {
                // Taken out by an earlier decision, and reading it only now.
                unread.read_once(id);
            }
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
        let first = slot.waiter.take();
        let taken = usize::from(first.is_some()) + more.len();
        if let Some(left) = taken.checked_sub(usize::from(reader)).filter(|&n| n > 0) {
            unread.add(id, left);
        }
        decided.push_back((Instant::now(), id.clone()));
        let forgotten = note_change(feed, feed_next, id);
        Some((&slot.decision, Woken(first, more, forgotten)))
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

    /// Notes a change to request `id` in the feed; the id the feed let go of is returned, to be dropped once the
    /// lock is released.
    #[must_use = "drop it once the store's lock is released"]
    fn changed(&mut self, id: &RequestId) -> Option<RequestId> {
        note_change(&mut self.feed, &mut self.feed_next, id)
    }

    /// The live pending requests in order from `after` (exclusive), at most `limit`, and whether more follow.
    fn page(&self, limit: usize, after: Option<&PageCursor>) -> (Vec<ApprovalRequest>, bool) {
        let now = Due::now();
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
    /// stay (as a database store keeps them), so they are audited. `reader`: as for
    /// [`decide_with`](Self::decide_with).
    fn expire(&mut self, id: &RequestId, reader: bool) -> (Option<Decision>, Woken) {
        match self.decide_with(id, reader, |current| {
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
        if Due::now() >= slot.deadline {
            return (ResolveOutcome::Expired, inner.expire(id, false).1);
        }
        let step = step(&slot.request, &slot.decision.get(), resolution, now_ms());
        let outcome = step.outcome();
        let woken = match step {
            Step::Refuse(_) => Woken::default(),
            Step::Vote(decision) => {
                if let Some(slot) = inner.records.get_mut(id) {
                    slot.decision.set(decision);
                }
                Woken(None, Vec::new(), inner.changed(id))
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

    fn expire_now(&self, id: &RequestId) -> Option<Decision> {
        // Not `lock_evicting`: a caller whose wait just ended (timed out, or dropped as the decision came) reads the
        // decision here, which evicting first could remove with a short retention. The next operation evicts.
        let (decision, woken) = self.lock().expire(id, false);
        woken.wake();
        decision
    }

    fn abandon_now(&self, id: &RequestId) {
        let mut inner = self.lock();
        match inner.records.get(id).map(|s| s.decision.state()) {
            Some(RequestState::Pending) => {
                let (_, woken) = inner.expire(id, false);
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
        let deadline = Due::after(request.remaining());
        let mut inner = self.lock_evicting();
        let id = request.request_id().clone();
        if inner.records.contains_key(&id) {
            return Err(StoreError::new(format!("request {id} is already in the store")));
        }
        inner.order.insert((micros(request.timestamp()), id.clone()));
        inner.pending += 1;
        let forgotten = inner.changed(&id);
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
        drop(forgotten);
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
        // The clock is read only for a grant of this tool: every gated call asks, and most tools have none.
        let mut now = None;
        Ok(self
            .lock()
            .grants
            .iter()
            .filter(|g| g.tool == tool && g.is_active(*now.get_or_insert_with(now_ms)))
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
        Box::pin(Wait::new(self, id))
    }

    #[cfg(feature = "tokio")]
    fn wait_or_expire<'a>(&'a self, id: &'a RequestId, until: Instant) -> super::ExpiringWaitFuture<'a> {
        Box::pin(self.wait_or_expire_unboxed(id, until))
    }

    fn wait_blocking(&self, id: &RequestId, until: Instant) -> Result<Option<Decision>, StoreError> {
        self.park_thread_until(id, until)
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;

#[cfg(all(test, agentguard_model))]
#[path = "memory_model.rs"]
mod model;
