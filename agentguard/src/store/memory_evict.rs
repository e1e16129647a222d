//! The in-memory store's retention: decided requests evicted a retention window after their decision (an approval
//! not yet claimed stays, and so does a decision its woken waiters have not read yet), and ended grants pruned,
//! with what eviction removed freed once the lock is released.

use super::*;

/// How long past its retention window a decision is kept for woken waiters that have not read it yet: a waiter
/// that has not been polled for this long after its wake-up is taken to be gone (it then reads "unknown request",
/// and its call is denied).
pub(super) const UNREAD_GRACE: Duration = Duration::from_secs(60);

impl InMemoryStore {
    /// The store's lock, after evicting the decided requests past the retention window. What they held is freed
    /// once the lock is released ([`Evicting`]).
    pub(super) fn lock_evicting(&self) -> Evicting<'_> {
        // The clock is read before the lock is taken: every moment under it is one another worker may wait for.
        let now = Instant::now();
        let mut inner = Evicting {
            inner: self.lock(),
            evicted: Vec::new(),
        };
        while let Some((at, _)) = inner.decided.front() {
            if now.saturating_duration_since(*at) < self.retention {
                break;
            }
            let Some((at, id)) = inner.decided.pop_front() else {
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
            // A decision stays until the waiters it woke have read it, so they get it rather than "unknown
            // request"; but not past UNREAD_GRACE, so a wait that is never polled again (leaked, or a waker that
            // does not recognise itself) cannot keep it for ever. It keeps its decision time in the queue.
            if inner.unread.holds(&id) {
                if now.saturating_duration_since(at) < self.retention.saturating_add(UNREAD_GRACE) {
                    inner.decided.push_back((at, id));
                    break;
                }
                inner.unread.forget(&id);
            }
            if let Some(slot) = inner.records.remove(&id) {
                inner.evicted.push((id, slot));
            }
        }
        inner
    }

    /// Drops grants that ended more than a retention window ago, so memory stays bounded.
    pub(super) fn prune_grants(&self, inner: &mut Inner, now: u64) {
        let keep = self.retention.as_millis() as u64;
        inner.grants.retain(|g| {
            let ended = g
                .revoked_at_ms
                .or(g.expires_at_ms.filter(|&t| t <= now))
                .or((g.uses_left == Some(0)).then_some(now));
            ended.is_none_or(|t| now.saturating_sub(t) < keep.max(1))
        });
    }
}

/// The store's lock, and the requests evicted while it was taken: they are dropped after it is released (fields
/// drop in order), since freeing a request that was decided a retention window ago touches memory long out of the
/// cache.
pub(super) struct Evicting<'a> {
    inner: MutexGuard<'a, Inner>,
    evicted: Vec<(RequestId, Slot)>,
}

impl std::ops::Deref for Evicting<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl std::ops::DerefMut for Evicting<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.inner
    }
}

/// Notes a change to request `id` in the feed (the last [`FEED_CAPACITY`] changes); returns the id of the oldest
/// change if the feed let go of it.
pub(super) fn note_change(feed: &mut VecDeque<(u64, RequestId)>, next: &mut u64, id: &RequestId) -> Option<RequestId> {
    let forgotten = if feed.len() == FEED_CAPACITY {
        feed.pop_front().map(|(_, id)| id)
    } else {
        None
    };
    feed.push_back((*next, id.clone()));
    *next += 1;
    forgotten
}
