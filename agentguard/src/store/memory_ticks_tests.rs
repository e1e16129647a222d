//! The in-memory store's shared deadlines ([`Ticks`](super::super::ticks::Ticks)): one timer per millisecond that
//! has waits, given up by the waits that end first, and kept up when the runtime that ran it goes away.

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

#[test]
fn a_wait_whose_timer_ran_on_a_runtime_that_went_away_still_expires() {
    let store = Arc::new(InMemoryStore::new());
    let until = Instant::now() + Duration::from_millis(400);
    let (a, b) = (
        park(&store, Duration::from_secs(60)),
        park(&store, Duration::from_secs(60)),
    );
    // The first wait of the millisecond is on `first`: its timer is spawned there.
    let first = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    {
        let store = store.clone();
        first.spawn(async move { store.wait_or_expire(&a, until).await });
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.ticks.seats() < 1 {
        assert!(Instant::now() < deadline, "the first wait never took its seat");
        std::thread::sleep(Duration::from_millis(1));
    }
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let decision = second.block_on(async {
        let wait = store.wait_or_expire(&b, until);
        tokio::pin!(wait);
        // Seated beside the first wait, in the bucket whose timer is on `first`.
        assert!(futures_poll_once(wait.as_mut()).await.is_none());
        assert_eq!((store.ticks.seats(), store.ticks.buckets()), (2, 1));
        // That runtime goes away, with the timer and the first wait.
        first.shutdown_background();
        // A bound, so that a missing wake-up fails the test rather than hanging it (the wait, polled when the
        // bound fires, would then be 10 s late).
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("past its deadline when the bound fires, the wait is ready")
    });
    assert_eq!(decision.unwrap().map(|d| d.state), Some(RequestState::Expired));
    let late = Instant::now().saturating_duration_since(until);
    assert!(Instant::now() >= until, "expired before the deadline");
    // Nothing else wakes this wait: without a timer of its own it ends only when the bound above fires.
    assert!(late < Duration::from_secs(3), "expired {late:?} after its deadline");
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
