//! Unit tests of the in-memory store: eviction, abandonment, deadlines, the lazy pending order, waiters.

use super::decision::plain_expired;
use super::*;
use crate::params::ParamsDigest;
use agentguard_classify::Risk;
use std::sync::Arc;
use std::time::SystemTime;

fn request(timeout: Duration) -> ApprovalRequest {
    let now = SystemTime::now();
    ApprovalRequest::new(
        RequestId::new(),
        "delete_row".into(),
        serde_json::json!({}),
        ParamsDigest::of(b"{}"),
        Risk::Irreversible,
        None,
        None,
        None,
        now,
        now + timeout,
    )
}

/// Parks one request in `store` for `timeout`; its id.
fn park(store: &InMemoryStore, timeout: Duration) -> RequestId {
    let req = request(timeout);
    store.insert(&req).unwrap();
    req.request_id().clone()
}

#[test]
fn a_request_due_centuries_away_is_parked_and_answered() {
    // A thousand years: past the range a request keeps its times in (to 2554), so kept as that range's end, and
    // in the store as a deadline that saturates rather than overflows; still pending, listed and answerable.
    let store = InMemoryStore::new();
    let id = park(&store, Duration::from_secs(1000 * 365 * 86_400));
    assert_eq!(store.pending_page(10, None).unwrap().requests.len(), 1);
    assert_eq!(
        store.resolve(&Resolution::approve(id.clone())).unwrap(),
        ResolveOutcome::Resolved
    );
    assert_eq!(store.get(&id).unwrap().unwrap().decision.state, RequestState::Approved);
}

#[test]
fn decided_requests_leave_the_order_lazily_and_it_stays_bounded() {
    let store = InMemoryStore::new();
    // An old request that stays pending keeps the decided ones behind it from leaving at the front.
    let old = request(Duration::from_secs(60));
    store.insert(&old).unwrap();
    for _ in 0..5000 {
        let r = request(Duration::from_secs(60));
        store.insert(&r).unwrap();
        store.resolve(&Resolution::deny(r.request_id().clone())).unwrap();
    }
    let listed = store.pending().unwrap();
    assert_eq!(listed.len(), 1, "decided requests are never listed");
    assert_eq!(listed[0].request_id(), old.request_id());
    let inner = store.lock();
    assert_eq!(inner.pending, 1);
    assert!(
        inner.order.len() <= 2 * inner.pending + 1024 + 1,
        "{}",
        inner.order.len()
    );
}

#[test]
fn eviction_never_drops_an_approval_its_waiter_has_not_claimed() {
    let store = InMemoryStore::with_retention(Duration::ZERO);
    let id = park(&store, Duration::from_secs(60));
    assert_eq!(
        store.resolve(&Resolution::approve(id.clone())).unwrap(),
        ResolveOutcome::Resolved
    );
    // Operations that evict run before the waiter claims.
    store.pending().unwrap();
    store.insert(&request(Duration::from_secs(60))).unwrap();
    assert!(store.claim(&id).unwrap(), "the approval survived eviction");
    assert!(!store.claim(&id).unwrap(), "and is claimed once only");
    store.pending().unwrap();
    store.pending().unwrap();
    assert!(store.get(&id).unwrap().is_none(), "evicted once executed");
}

/// Polls `wait` once with a waker that does nothing: it registers (or returns what is decided).
fn poll_once<F: Future + Unpin>(wait: &mut F) -> Poll<F::Output> {
    Pin::new(wait).poll(&mut Context::from_waker(Waker::noop()))
}

/// Operations that evict (with zero retention, everything decided that may go).
fn evict(store: &InMemoryStore) {
    store.pending().unwrap();
    store.insert(&request(Duration::from_secs(60))).unwrap();
    store.pending().unwrap();
}

#[test]
fn with_zero_retention_every_woken_waiter_still_reads_its_denial() {
    let store = InMemoryStore::with_retention(Duration::ZERO);
    let id = park(&store, Duration::from_secs(60));
    let (mut first, mut second) = (store.wait(&id), store.wait(&id));
    assert!(poll_once(&mut first).is_pending() && poll_once(&mut second).is_pending());
    assert_eq!(
        store.resolve(&Resolution::deny(id.clone()).note("no")).unwrap(),
        ResolveOutcome::Resolved
    );
    // Evictions run after the decision woke them, before either reads it.
    evict(&store);
    let Poll::Ready(Ok(read)) = poll_once(&mut first) else {
        panic!("the first waiter lost its decision")
    };
    assert_eq!((read.state, read.note.as_deref()), (RequestState::Denied, Some("no")));
    evict(&store);
    assert!(
        store.get(&id).unwrap().is_some(),
        "kept while a woken waiter has not read it"
    );
    let Poll::Ready(Ok(read)) = poll_once(&mut second) else {
        panic!("the second waiter lost its decision")
    };
    assert_eq!(read.state, RequestState::Denied);
    drop((first, second));
    evict(&store);
    assert!(
        store.get(&id).unwrap().is_none(),
        "evicted once every waiter has read it"
    );
    assert!(store.lock().unread.is_empty());
}

/// A wait for `id` that registers, then the request denied and evictions run: the denial is kept for it.
fn woken_by_a_denial<'a>(store: &'a InMemoryStore, id: &'a RequestId) -> WaitFuture<'a> {
    let mut wait = store.wait(id);
    assert!(poll_once(&mut wait).is_pending());
    store.resolve(&Resolution::deny(id.clone())).unwrap();
    evict(store);
    assert!(store.get(id).unwrap().is_some(), "kept for the woken waiter");
    wait
}

#[test]
fn a_woken_waiter_never_polled_again_holds_its_decision_only_for_the_grace_period() {
    let store = InMemoryStore::with_retention(Duration::ZERO);
    let id = park(&store, Duration::from_secs(60));
    let mut wait = woken_by_a_denial(&store, &id);
    // As if the grace period had passed since the decision.
    {
        let mut inner = store.lock();
        let long_ago = Instant::now()
            .checked_sub(evict::UNREAD_GRACE + Duration::from_secs(1))
            .expect("the clock is far enough from its origin");
        inner.decided.iter_mut().for_each(|(at, _)| *at = long_ago);
    }
    evict(&store);
    assert!(store.get(&id).unwrap().is_none(), "evicted once the grace has passed");
    assert!(store.lock().unread.is_empty(), "and no longer counted");
    // The wait, polled at last, reads that the request is gone (its call is then denied).
    assert!(matches!(poll_once(&mut wait), Poll::Ready(Err(_))));
}

#[test]
fn a_woken_waiter_dropped_without_reading_lets_the_decision_be_evicted() {
    let store = InMemoryStore::with_retention(Duration::ZERO);
    let id = park(&store, Duration::from_secs(60));
    let wait = woken_by_a_denial(&store, &id);
    drop(wait);
    evict(&store);
    assert!(
        store.get(&id).unwrap().is_none(),
        "not held back by a wait that is gone"
    );
    assert!(store.lock().unread.is_empty());
}

#[test]
fn a_blocking_waiter_reads_its_denial_though_evictions_run_before_it_wakes() {
    let store = Arc::new(InMemoryStore::with_retention(Duration::ZERO));
    let id = park(&store, Duration::from_secs(60));
    // Evictions follow the deny at once, usually before the woken thread runs: either way it must answer with the
    // denial, not "unknown request" (which the guard would report as the store failing).
    let waiter = {
        let (store, id) = (store.clone(), id.clone());
        std::thread::spawn(move || store.wait_blocking(&id, Instant::now() + Duration::from_secs(60)))
    };
    while store.lock().records.get(&id).is_some_and(|s| s.waiter.is_none()) {
        std::thread::yield_now(); // until the thread waits
    }
    store.resolve(&Resolution::deny(id.clone())).unwrap();
    evict(&store);
    let decision = waiter.join().unwrap().unwrap().expect("the decision, not a timeout");
    assert_eq!(decision.state, RequestState::Denied);
    evict(&store);
    assert!(store.get(&id).unwrap().is_none());
}

#[cfg(feature = "tokio")] // `wait_or_expire`
#[tokio::test]
async fn a_waiter_that_expires_its_own_request_leaves_nothing_unread_and_others_read_the_expiry() {
    let store = InMemoryStore::with_retention(Duration::ZERO);
    let id = park(&store, Duration::from_secs(60));
    let mut other = store.wait(&id);
    assert!(poll_once(&mut other).is_pending());
    let own = store.wait_or_expire(&id, Instant::now() + Duration::from_millis(20));
    assert_eq!(own.await.unwrap().unwrap().state, RequestState::Expired);
    assert!(store.lock().unread.holds(&id), "the other waiter has not read it yet");
    evict(&store);
    let Poll::Ready(Ok(read)) = poll_once(&mut other) else {
        panic!("the other waiter lost the expiry")
    };
    assert_eq!(read.state, RequestState::Expired);
    drop(other);
    evict(&store);
    assert!(store.get(&id).unwrap().is_none());
    assert!(store.lock().unread.is_empty());
}

#[test]
fn expire_reads_a_decision_that_came_after_the_wait_ended_before_evicting_anything() {
    let store = InMemoryStore::with_retention(Duration::ZERO);
    let id = park(&store, Duration::ZERO);
    // An answer after the deadline expires the request, with nobody waiting any more.
    assert_eq!(
        store.resolve(&Resolution::approve(id.clone())).unwrap(),
        ResolveOutcome::Expired
    );
    // The caller whose wait timed out reads the outcome with `expire`: zero retention must not evict it first.
    assert_eq!(store.expire(&id).unwrap().map(|d| d.state), Some(RequestState::Expired));
    evict(&store);
    assert!(store.get(&id).unwrap().is_none());
}

#[test]
fn abandoned_approval_expires_and_can_never_be_claimed() {
    let store = InMemoryStore::new();
    let id = park(&store, Duration::from_secs(60));
    store.resolve(&Resolution::approve(id.clone())).unwrap();
    store.abandon(&id).unwrap();
    assert!(!store.claim(&id).unwrap());
    assert_eq!(store.get(&id).unwrap().unwrap().decision.state, RequestState::Expired);
}

#[test]
fn resolve_after_the_deadline_expires_the_request() {
    let store = InMemoryStore::new();
    let id = park(&store, Duration::ZERO);
    assert_eq!(
        store.resolve(&Resolution::approve(id.clone())).unwrap(),
        ResolveOutcome::Expired
    );
    assert_eq!(
        store.resolve(&Resolution::approve(id.clone())).unwrap(),
        ResolveOutcome::Expired
    );
    assert!(store.pending().unwrap().is_empty());
}

/// Nothing of a finished or dropped wait is left in the store (a waker kept there keeps its task's memory alive
/// until the decision). Also used by the shuttle model.
pub(super) fn no_waiter_left(store: &InMemoryStore, id: &RequestId, what: &str) {
    let inner = store.lock();
    assert!(inner.more_waiters.is_empty(), "{what}: waiters left behind");
    assert!(
        !inner.unread.holds(id),
        "{what}: counted as unread after its waiters finished"
    );
    assert!(
        inner.records.get(id).is_some_and(|s| s.waiter.is_none()),
        "{what}: a waker left in the slot"
    );
}

#[cfg(feature = "tokio")] // `wait_or_expire`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_or_expire_expires_at_the_deadline_and_wakes_every_other_waiter() {
    let store = Arc::new(InMemoryStore::new());
    let id = park(&store, Duration::from_secs(60));
    // Two other waiters, on other tasks: one in the slot (first to register), one in `more_waiters`.
    let others: Vec<_> = (0..2)
        .map(|_| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move { store.wait(&id).await.map(|d| d.state) })
        })
        .collect();
    while store.lock().more_waiters.is_empty() {
        tokio::task::yield_now().await;
    }
    let until = Instant::now() + Duration::from_millis(50);
    let decision = store.wait_or_expire(&id, until).await.unwrap().expect("known");
    assert!(Instant::now() >= until, "returned before its deadline");
    assert_eq!(decision.state, RequestState::Expired);
    for other in others {
        let seen = tokio::time::timeout(Duration::from_secs(5), other)
            .await
            .expect("the expiry woke every other waiter")
            .unwrap()
            .unwrap();
        assert_eq!(seen, RequestState::Expired);
    }
    no_waiter_left(&store, &id, "after the expiry");
}

#[cfg(feature = "tokio")] // `wait_or_expire`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_or_expire_returns_an_answer_that_comes_first() {
    let store = Arc::new(InMemoryStore::new());
    let id = park(&store, Duration::from_secs(60));
    let answer = {
        let (store, id) = (store.clone(), id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            store.resolve(&Resolution::approve(id)).unwrap()
        })
    };
    let decision = store
        .wait_or_expire(&id, Instant::now() + Duration::from_secs(30))
        .await
        .unwrap()
        .expect("known");
    assert_eq!(decision.state, RequestState::Approved);
    assert_eq!(answer.await.unwrap(), ResolveOutcome::Resolved);
    no_waiter_left(&store, &id, "after the answer");
}

#[cfg(feature = "tokio")] // `wait_or_expire`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_wait_or_expire_leaves_no_waker_and_the_request_pending() {
    let store = Arc::new(InMemoryStore::new());
    let id = park(&store, Duration::from_secs(60));
    let gone = tokio::time::timeout(
        Duration::from_millis(20),
        store.wait_or_expire(&id, Instant::now() + Duration::from_secs(30)),
    )
    .await;
    assert!(gone.is_err(), "no decision came");
    no_waiter_left(&store, &id, "after a dropped wait");
    // The store does not expire a request whose wait was dropped: the guard abandons it (and that is tested there).
    assert_eq!(store.get(&id).unwrap().unwrap().decision.state, RequestState::Pending);
}

#[test]
fn a_blocking_wait_past_its_deadline_leaves_no_waker() {
    let store = InMemoryStore::new();
    let id = park(&store, Duration::from_secs(60));
    let until = Instant::now() + Duration::from_millis(30);
    assert_eq!(store.wait_blocking(&id, until).unwrap(), None);
    assert!(Instant::now() >= until);
    no_waiter_left(&store, &id, "after a blocking wait past its deadline");
}

#[test]
fn plain_expiries_share_one_decision_and_an_approval_is_claimed_in_place() {
    let store = InMemoryStore::new();
    let (a, b, c) = (
        request(Duration::from_secs(60)),
        request(Duration::from_secs(60)),
        request(Duration::from_secs(60)),
    );
    for r in [&a, &b, &c] {
        store.insert(r).unwrap();
    }
    assert_eq!(
        store.expire(a.request_id()).unwrap().unwrap().state,
        RequestState::Expired
    );
    assert_eq!(
        store.expire(b.request_id()).unwrap().unwrap().state,
        RequestState::Expired
    );
    store.resolve(&Resolution::approve(c.request_id().clone())).unwrap();
    assert!(store.claim(c.request_id()).unwrap());
    let inner = store.lock();
    let shared = |r: &ApprovalRequest| inner.records[r.request_id()].decision.0.clone().expect("decided");
    assert!(
        Arc::ptr_eq(&shared(&a), &shared(&b)),
        "two plain expiries allocated two decisions"
    );
    assert!(Arc::ptr_eq(&shared(&a), plain_expired()));
    // The claimed approval changed its own decision, not the shared one.
    assert_eq!(shared(&c).state, RequestState::Executed);
    assert_eq!(plain_expired().state, RequestState::Expired);
    assert_eq!(**plain_expired(), Decision::of(RequestState::Expired));
}

/// Counts its wake-ups.
struct Counter(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_wait_polled_from_another_task_is_woken_there_and_not_where_it_was() {
    let store = InMemoryStore::new();
    let id = park(&store, Duration::from_secs(60));
    let (first, second) = (
        Arc::new(Counter(Default::default())),
        Arc::new(Counter(Default::default())),
    );
    let mut wait = store.wait(&id);
    let waker = Waker::from(first.clone());
    assert!(wait.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
    // The future moves to another task: the next poll brings another waker, which replaces the first.
    let waker = Waker::from(second.clone());
    assert!(wait.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
    assert!(
        store.lock().more_waiters.is_empty(),
        "the old waker was kept beside the new one"
    );
    store.resolve(&Resolution::deny(id.clone())).unwrap();
    let count = |c: &Counter| c.0.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!((count(&first), count(&second)), (0, 1));
    match wait.as_mut().poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(Ok(decision)) => assert_eq!(decision.state, RequestState::Denied),
        other => panic!("not decided: {other:?}"),
    }
    drop(wait);
    no_waiter_left(&store, &id, "after a wait that moved");
}

#[test]
fn a_reserved_store_takes_its_requests_without_growing() {
    let store = InMemoryStore::with_capacity(10_000);
    let room = store.lock().records.capacity();
    assert!(room >= 10_000, "room for {room}");
    for _ in 0..10_000 {
        park(&store, Duration::from_secs(60));
    }
    assert_eq!(store.lock().records.capacity(), room, "the table grew");
    // Without the reservation the same requests make it grow.
    let plain = InMemoryStore::new();
    let first = {
        park(&plain, Duration::from_secs(60));
        plain.lock().records.capacity()
    };
    for _ in 1..10_000 {
        park(&plain, Duration::from_secs(60));
    }
    assert!(plain.lock().records.capacity() > first);
}

#[cfg(feature = "tokio")]
#[path = "memory_ticks_tests.rs"]
mod ticks;
