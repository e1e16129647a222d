//! The in-memory store's shared deadlines ([`Ticks`](super::super::ticks::Ticks)): one timer per millisecond and
//! runtime that has waits, given up by the waits that end first, never borrowed from another runtime, and an error
//! when the runtime is shutting down.

use super::*;

/// Waits for `check` to hold, yielding to the runtime meanwhile (at most 5 s).
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < Duration::from_secs(5), "{what}: not after 5 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A spawned wait's outcome, failing the test if it has not ended within 5 s.
async fn ended<T>(wait: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("the wait ended within 5 s")
        .expect("the wait's task")
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_due_in_one_millisecond_share_one_timer_and_all_expire_at_their_deadline() {
    let store = Arc::new(InMemoryStore::new());
    let until = Instant::now() + Duration::from_millis(300);
    let waits: Vec<_> = (0..200)
        .map(|_| {
            let (store, id) = (store.clone(), park(&store, Duration::from_secs(60)));
            tokio::spawn(async move { store.wait_or_expire(&id, until).await.map(|d| d.map(|d| d.state)) })
        })
        .collect();
    eventually("every wait took a seat", || store.ticks.seats() == 200).await;
    assert_eq!(store.ticks.buckets(), 1, "one millisecond, one bucket");
    // 200 waits and one timer: not a timer in each wait.
    assert_eq!(alive_tasks(), 201);
    for wait in waits {
        assert_eq!(ended(wait).await.unwrap(), Some(RequestState::Expired));
    }
    assert!(Instant::now() >= until, "expired before the deadline");
    assert_eq!(store.ticks.buckets(), 0);
    eventually("the timer task ended", || alive_tasks() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_that_end_first_give_up_their_seats_and_the_last_stops_the_timer() {
    let store = Arc::new(InMemoryStore::new());
    let until = Instant::now() + Duration::from_secs(3600);
    // Three answered, three dropped: a long timeout must leave no timer behind once nobody waits for it.
    let ids: Vec<_> = (0..6).map(|_| park(&store, Duration::from_secs(3600))).collect();
    let waits: Vec<_> = ids
        .iter()
        .cloned()
        .map(|id| {
            let store = store.clone();
            tokio::spawn(async move { store.wait_or_expire(&id, until).await.map(|d| d.map(|d| d.state)) })
        })
        .collect();
    eventually("every wait took a seat", || store.ticks.seats() == 6).await;
    assert_eq!(alive_tasks(), 7, "six waits and one timer");
    for id in &ids[..3] {
        store.resolve(&Resolution::approve(id.clone())).unwrap();
    }
    let mut waits = waits.into_iter();
    for wait in waits.by_ref().take(3) {
        assert_eq!(ended(wait).await.unwrap(), Some(RequestState::Approved));
    }
    assert_eq!(
        (store.ticks.seats(), store.ticks.buckets()),
        (3, 1),
        "the others still wait"
    );
    for wait in waits {
        wait.abort();
        assert!(wait.await.unwrap_err().is_cancelled());
    }
    assert_eq!(store.ticks.buckets(), 0, "the last one out took the bucket");
    eventually("the stopped timer's task ended", || alive_tasks() == 0).await;
}

/// A current-thread runtime that polls `wait` once (it takes its seat there) and is then kept but never driven
/// again: a timer task on it never runs.
fn seat_on_an_idle_runtime<F: Future + Unpin>(wait: &mut F) -> tokio::runtime::Runtime {
    let idle = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    assert!(idle.block_on(futures_poll_once(&mut *wait)).is_none());
    idle
}

/// Awaits `wait` on a runtime of its own, bounded so that a missing wake-up fails the test (the wait, polled when
/// the bound fires, would then be 10 s late) rather than hanging it; how late it was past `until`.
fn late_on_another_runtime<F: Future>(wait: F, until: Instant) -> (F::Output, Duration) {
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let out = other.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("past its deadline when the bound fires, the wait is ready")
    });
    assert!(Instant::now() >= until, "expired before the deadline");
    (out, Instant::now().saturating_duration_since(until))
}

#[test]
fn a_wait_never_relies_on_the_timer_of_a_runtime_that_is_kept_but_idle() {
    let store = Arc::new(InMemoryStore::new());
    let until = Instant::now() + Duration::from_millis(400);
    let (a, b) = (
        park(&store, Duration::from_secs(60)),
        park(&store, Duration::from_secs(60)),
    );
    // The first wait of the millisecond takes its seat on a runtime nobody drives afterwards (a runtime kept in a
    // static for later, say): its timer never runs.
    let mut first = store.wait_or_expire(&a, until);
    let _idle = seat_on_an_idle_runtime(&mut first);
    // A wait due in the same millisecond on another runtime has a timer of its own there.
    let (decision, late) = late_on_another_runtime(store.wait_or_expire(&b, until), until);
    assert_eq!(decision.unwrap().map(|d| d.state), Some(RequestState::Expired));
    assert!(late < Duration::from_secs(3), "expired {late:?} after its deadline");
    assert_eq!(store.ticks.buckets(), 1, "only the idle runtime's bucket is left");
    drop(first);
    assert_eq!(store.ticks.buckets(), 0);
}

#[test]
fn a_wait_moved_to_another_runtime_takes_its_seat_there() {
    let store = Arc::new(InMemoryStore::new());
    let until = Instant::now() + Duration::from_millis(400);
    let id = park(&store, Duration::from_secs(60));
    // Polled once on a runtime that is then left idle, and moved: its seat must follow it.
    let mut wait = store.wait_or_expire(&id, until);
    let _idle = seat_on_an_idle_runtime(&mut wait);
    let (decision, late) = late_on_another_runtime(wait, until);
    assert_eq!(decision.unwrap().map(|d| d.state), Some(RequestState::Expired));
    assert!(late < Duration::from_secs(3), "expired {late:?} after its deadline");
    assert_eq!((store.ticks.seats(), store.ticks.buckets()), (0, 0));
}

#[test]
fn a_wait_on_a_runtime_that_is_shutting_down_ends_with_an_error_at_once() {
    let store = InMemoryStore::new();
    let id = park(&store, Duration::from_secs(60));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let handle = runtime.handle().clone();
    runtime.shutdown_background();
    // The runtime drops the timer's task as it is spawned: no timer will come, so the wait says so (the guard
    // denies the call as a store failure) instead of waking itself again and again until its deadline.
    let started = Instant::now();
    let out = handle.block_on(store.wait_or_expire(&id, Instant::now() + Duration::from_secs(30)));
    let err = out.expect_err("no timer can wake it").to_string();
    assert!(err.contains("shutting down"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!((store.ticks.seats(), store.ticks.buckets()), (0, 0));
}

/// Polls `fut` once: its output if it is ready.
async fn futures_poll_once<F: Future + Unpin>(mut fut: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut fut).poll(cx) {
            Poll::Ready(out) => Some(out),
            Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_wait_follows_tokio_s_clock_when_a_test_pauses_time() {
    let store = InMemoryStore::new();
    let id = park(&store, Duration::from_secs(7200));
    // An hour of tokio's paused clock passes at once (it jumps to the next timer); the real clock barely moves.
    let started = Instant::now();
    let paused_at = tokio::time::Instant::now();
    let wait = store.wait_or_expire(&id, Instant::now() + Duration::from_secs(3600));
    // Paused, tokio's clock jumps to its next timer: the millisecond's, at the deadline. (Without it, the bound's
    // timer is the next, two hours on.)
    let decision = tokio::time::timeout(Duration::from_secs(7200), wait)
        .await
        .expect("past its deadline when the bound fires, the wait is ready")
        .unwrap();
    let waited = paused_at.elapsed();
    assert!(
        waited < Duration::from_secs(3601),
        "woken after {waited:?} of tokio's clock"
    );
    assert_eq!(decision.map(|d| d.state), Some(RequestState::Expired));
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn without_a_time_driver_the_wait_panics_in_its_own_poll_and_leaves_no_seat() {
    let store = InMemoryStore::new();
    let id = park(&store, Duration::from_secs(60));
    let no_timers = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        no_timers.block_on(store.wait_or_expire(&id, Instant::now() + Duration::from_secs(30)))
    }));
    assert!(
        caught.is_err(),
        "a wait without timers cannot end: it must say so, not hang"
    );
    assert_eq!((store.ticks.seats(), store.ticks.buckets()), (0, 0));
}
