//! The in-memory store's waiting: a waiter's waker kept in its request's slot (the first; further ones in
//! `Inner::more_waiters`), taken out by the decision and woken once the store's lock is released, and the futures
//! of [`ApprovalStore::wait`](super::ApprovalStore::wait) and
//! [`ApprovalStore::wait_or_expire`](super::ApprovalStore::wait_or_expire); and the count of woken waiters that
//! have yet to read their decision, which eviction waits for.

use super::*;

/// Waiters taken from a request as it was decided, woken once the store's lock is released; and the id the change
/// feed let go of meanwhile, dropped then too (with a million requests its count is seldom in the cache, and its
/// decrement was a fifth of an expiry's time under the lock).
#[derive(Default)]
#[must_use = "waiters taken out of a slot must be woken"]
pub(super) struct Woken(
    pub(super) Option<Waker>,
    pub(super) Vec<Waker>,
    pub(super) Option<RequestId>,
);

impl Woken {
    pub(super) fn wake(self) {
        let Woken(first, more, forgotten) = self;
        first.into_iter().chain(more).for_each(Waker::wake);
        drop(forgotten);
    }

    /// Wakes all but one waiter registered with `own` (the caller's own task, which is running).
    #[cfg(feature = "tokio")]
    pub(super) fn wake_except(self, own: &Waker) {
        let mut skipped = false;
        let Woken(first, more, _forgotten) = self;
        for w in first.into_iter().chain(more) {
            if !skipped && w.will_wake(own) {
                skipped = true;
                continue;
            }
            w.wake();
        }
    }
}

/// How many woken waiters have yet to read each decided request's decision, keyed by a hash of the request's id
/// (no id is cloned: its count is a cache miss with a million parked). Two ids of one hash share a count, which
/// only keeps both a little longer: never less than until each one's waiters have read (or
/// [`UNREAD_GRACE`](super::evict::UNREAD_GRACE) has passed).
#[derive(Default)]
pub(super) struct Unread(
    HashMap<u64, u32, foldhash::fast::RandomState>,
    foldhash::fast::RandomState,
);

impl Unread {
    fn key(&self, id: &RequestId) -> u64 {
        std::hash::BuildHasher::hash_one(&self.1, id)
    }

    /// `n` more waiters of `id` woken, yet to read.
    pub(super) fn add(&mut self, id: &RequestId, n: usize) {
        let key = self.key(id);
        let count = self.0.entry(key).or_default();
        *count = count.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }

    /// One of them read (or went away).
    pub(super) fn read_once(&mut self, id: &RequestId) {
        if self.0.is_empty() {
            return;
        }
        let key = self.key(id);
        if let Some(left) = self.0.get_mut(&key) {
            *left -= 1;
            if *left == 0 {
                self.0.remove(&key);
            }
        }
    }

    /// Stops counting `id`'s unread waiters (they are taken to be gone).
    pub(super) fn forget(&mut self, id: &RequestId) {
        let key = self.key(id);
        self.0.remove(&key);
    }

    /// Whether a woken waiter of `id` has yet to read its decision.
    pub(super) fn holds(&self, id: &RequestId) -> bool {
        !self.0.is_empty() && self.0.contains_key(&self.key(id))
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl InMemoryStore {
    /// [`ApprovalStore::wait_or_expire`] without its box, for the guard, which holds it inside the parked call's
    /// own box (one allocation less per parked call).
    #[cfg(feature = "tokio")]
    pub(crate) fn wait_or_expire_unboxed<'a>(
        &'a self,
        id: &'a RequestId,
        until: Instant,
    ) -> impl Future<Output = Result<Option<Decision>, StoreError>> + Send + 'a {
        WaitOrExpire::new(self, id, until)
    }

    /// [`ApprovalStore::wait_blocking`]: parks the calling thread until the decision or `until`.
    pub(super) fn park_thread_until(&self, id: &RequestId, until: Instant) -> Result<Option<Decision>, StoreError> {
        let (parker, waker) = ThreadWaker::current();
        let mut registered = None;
        loop {
            // Registered under the lock that a decision takes, so a decision between a look and the park wakes it.
            if let Poll::Ready(decision) = self.lock().poll_wait(id, &mut registered, &waker) {
                return decision.map(Some);
            }
            if !parker.park_until(until) {
                if let Some(waker) = registered.take() {
                    // A decision that came after the deadline's wake-up, before this lock, is read here: it may
                    // not be in the store by the time the caller would expire the request.
                    if let Some(decision) = self.lock().remove_waiter(id, &waker) {
                        return Ok(Some(decision));
                    }
                }
                return Ok(None);
            }
        }
    }
}

impl Inner {
    /// A waiter that a decision took out of request `id` has read the decision (or gone away without reading it).
    fn read_once(&mut self, id: &RequestId) {
        self.unread.read_once(id);
    }

    /// One poll of a wait for request `id`'s decision by the waiter that has `registered` (its waker in the slot,
    /// or none yet): the decision once it is final, else the waiter is (still) registered with `waker`.
    pub(super) fn poll_wait(
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
            // A decision takes every waiter out of the slot (`decide_with`), so this one is no longer held; if it
            // was registered, it was counted as an unread reader, and has now read.
            let decision = slot.decision.get().into_owned();
            if registered.take().is_some() {
                self.read_once(id);
            }
            return Poll::Ready(Ok(decision));
        }
        match registered {
            Some(known) if known.will_wake(waker) => {}
            Some(known) => {
                // Polled with another waker (the future moved to another task): swap it in, in the same place.
                let old = std::mem::replace(known, waker.clone());
                let _pending = self.remove_waiter(id, &old); // pending: checked above
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
    /// pending request: a wait that ends without a decision (dropped, or past its deadline). If the request was
    /// decided meanwhile (the decision took the waiter out already), the waiter no longer counts as an unread
    /// reader, and the decision is returned.
    pub(super) fn remove_waiter(&mut self, id: &RequestId, waker: &Waker) -> Option<Decision> {
        let slot = self.records.get_mut(id)?;
        if slot.decision.state().is_final() {
            let decision = slot.decision.get().into_owned();
            self.read_once(id);
            return Some(decision);
        }
        if slot.waiter.as_ref().is_some_and(|w| w.will_wake(waker)) {
            slot.waiter = None;
        } else if let Some(more) = self.more_waiters.get_mut(id) {
            if let Some(at) = more.iter().position(|w| w.will_wake(waker)) {
                more.swap_remove(at);
            }
        } else {
            return None;
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
        None
    }
}

/// [`InMemoryStore::wait`]'s future: it keeps its waker in the request's slot while pending, and takes it out if
/// dropped before the decision (a decision takes it out itself).
pub(super) struct Wait<'a> {
    store: &'a InMemoryStore,
    id: &'a RequestId,
    registered: Option<Waker>,
}

impl<'a> Wait<'a> {
    pub(super) fn new(store: &'a InMemoryStore, id: &'a RequestId) -> Self {
        Wait {
            store,
            id,
            registered: None,
        }
    }
}

impl Future for Wait<'_> {
    type Output = Result<Decision, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.store.lock().poll_wait(this.id, &mut this.registered, cx.waker())
    }
}

/// [`InMemoryStore::wait_or_expire`]'s future: a [`Wait`] and its seat among the store's shared deadlines
/// ([`Ticks`](super::ticks::Ticks): one tokio timer per millisecond that has waits, not one per wait).
#[cfg(feature = "tokio")]
pub(super) struct WaitOrExpire<'a> {
    wait: Wait<'a>,
    until: Instant,
    seat: Option<super::ticks::Seat>,
}

#[cfg(feature = "tokio")]
impl<'a> WaitOrExpire<'a> {
    pub(super) fn new(store: &'a InMemoryStore, id: &'a RequestId, until: Instant) -> Self {
        WaitOrExpire {
            wait: Wait::new(store, id),
            until,
            seat: None,
        }
    }

    fn leave_seat(&mut self) {
        if let Some(seat) = self.seat.take() {
            self.wait.store.ticks.leave(seat);
        }
    }
}

#[cfg(feature = "tokio")]
impl Future for WaitOrExpire<'_> {
    type Output = Result<Option<Decision>, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // The deadline first: past it, the expiry reads any decision anyway, and the store is locked once. tokio's
        // clock, as its timers use (it stands still while a test pauses time).
        if tokio::time::Instant::now() >= this.until.into() {
            this.leave_seat();
            return Poll::Ready(Ok(this.wait.expire_at_deadline()));
        }
        if let Poll::Ready(decision) = Pin::new(&mut this.wait).poll(cx) {
            this.leave_seat();
            return Poll::Ready(decision.map(Some));
        }
        match this.wait.store.ticks.sit(&mut this.seat, this.until, cx.waker()) {
            Ok(()) => Poll::Pending,
            Err(super::ticks::ShuttingDown) => Poll::Ready(Err(StoreError::new(
                "the tokio runtime waiting for this request's deadline is shutting down: no timer can wake the wait",
            ))),
        }
    }
}

#[cfg(feature = "tokio")]
impl Drop for WaitOrExpire<'_> {
    fn drop(&mut self) {
        self.leave_seat();
    }
}

impl Wait<'_> {
    /// Expires the request at its deadline (or reads the decision that came meanwhile) and takes this wait's waker
    /// out of it, under one lock: the waker is not woken (this is its task, running), and dropping the wait then
    /// costs nothing.
    #[cfg(feature = "tokio")]
    fn expire_at_deadline(&mut self) -> Option<Decision> {
        let own = self.registered.take();
        let (decision, woken) = self.store.lock_evicting().expire(self.id, own.is_some());
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
            // Decided but never read (the wait was dropped after its wake-up): it no longer holds the decision back
            // from eviction.
            let _unread = self.store.lock().remove_waiter(self.id, &waker);
        }
    }
}
