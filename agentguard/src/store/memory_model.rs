//! Model checking with shuttle (`RUSTFLAGS="--cfg agentguard_model" cargo test -p agentguard --lib model::`; `.ci/run`
//! passes the cfg with `cargo rustc` instead): a waiter racing an answer, its deadline and its own drop, over the real
//! store code, in every interleaving shuttle explores. Waiters are wakers kept in the request's slot: a blocked
//! thread's, or a task's on shuttle's own executor.

use super::tests::no_waiter_left;
use super::*;
use crate::params::ParamsDigest;
use agentguard_classify::Risk;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

const SCHEDULES: usize = 10_000;

/// Runs a scenario under shuttle's random scheduler and its PCT scheduler (depth 3), `SCHEDULES` times each.
fn explore(scenario: fn()) {
    shuttle::check_random(scenario, SCHEDULES);
    shuttle::check_pct(scenario, SCHEDULES, 3);
}

fn request() -> ApprovalRequest {
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
        now + Duration::from_secs(3600),
    )
}

/// A store with one request parked in it, and the request's id.
fn parked() -> (Arc<InMemoryStore>, RequestId) {
    let store = Arc::new(InMemoryStore::new());
    let req = request();
    store.insert(&req).unwrap();
    (store, req.request_id().clone())
}

/// A person approving the request, on a thread of its own.
fn approve(store: &Arc<InMemoryStore>, id: &RequestId) -> shuttle::thread::JoinHandle<ResolveOutcome> {
    let (store, id) = (Arc::clone(store), id.clone());
    shuttle::thread::spawn(move || store.resolve(&Resolution::approve(id)).unwrap())
}

/// The request's deadline passing, on a thread of its own.
fn expire(store: &Arc<InMemoryStore>, id: &RequestId) -> shuttle::thread::JoinHandle<Option<Decision>> {
    let (store, id) = (Arc::clone(store), id.clone());
    shuttle::thread::spawn(move || store.expire(&id).unwrap())
}

/// One run: a waiter (blocks until decided, then claims an approval and "runs" it), a person approving, and the
/// deadline expiring it.
fn race() {
    let (store, id) = parked();
    let runs = Arc::new(AtomicUsize::new(0));

    let waiter = {
        let (store, id, runs) = (store.clone(), id.clone(), runs.clone());
        shuttle::thread::spawn(move || {
            // No lost wake-up: if no decision ever woke this wait, shuttle reports a deadlock.
            let decision = store
                .wait_blocking(&id, Instant::now() + Duration::from_secs(3600))
                .unwrap()
                .expect("woken by a decision");
            if decision.state == RequestState::Approved && store.claim(&id).unwrap() {
                runs.fetch_add(1, Ordering::SeqCst);
            }
            decision.state
        })
    };
    let resolver = approve(&store, &id);
    let deadline = expire(&store, &id);

    let seen = waiter.join().unwrap();
    let answer = resolver.join().unwrap();
    let at_deadline = deadline.join().unwrap().expect("the request is known");
    let runs = runs.load(Ordering::SeqCst);
    let last = store.get(&id).unwrap().expect("kept").decision.state;

    assert!(runs <= 1, "ran {runs} times");
    // Exactly one of the answer and the deadline decided it.
    match answer {
        ResolveOutcome::Resolved => {
            assert_ne!(at_deadline.state, RequestState::Pending);
            assert_eq!(runs, 1, "an approval that won was lost");
            assert_eq!(last, RequestState::Executed);
        }
        ResolveOutcome::Expired => {
            assert_eq!(seen, RequestState::Expired);
            assert_eq!(runs, 0, "an expired request ran");
            assert_eq!(last, RequestState::Expired);
        }
        other => panic!("unexpected answer outcome {other:?}"),
    }
}

/// One run: the waiter's future is dropped (abandon) while a person approves and the deadline passes; whatever
/// the order, the request ends expired, and a claim made after the drop (a waiter that should be gone) fails.
fn dropped() {
    let (store, id) = parked();

    let resolver = approve(&store, &id);
    let deadline = expire(&store, &id);
    let drop_then_claim = {
        let (store, id) = (store.clone(), id.clone());
        shuttle::thread::spawn(move || {
            store.abandon(&id).unwrap();
            store.claim(&id).unwrap()
        })
    };
    resolver.join().unwrap();
    deadline.join().unwrap();
    assert!(
        !drop_then_claim.join().unwrap(),
        "a request claimed after its waiter was dropped"
    );
    let last = store.get(&id).unwrap().expect("kept").decision.state;
    assert_eq!(last, RequestState::Expired, "a dropped request ended {last:?}");
}

/// One run: two waiters of one request, a blocked thread and an async task (so one waits in the slot and one in
/// `more_waiters`), while a person approves and the deadline passes. Neither wake-up is lost (shuttle reports a
/// deadlock otherwise), both read the same final decision (or the approval the other has claimed since), at most one
/// claim wins, and no waker is left behind.
fn two_waiters() {
    let (store, id) = parked();

    let blocked = {
        let (store, id) = (store.clone(), id.clone());
        shuttle::thread::spawn(move || {
            let d = store
                .wait_blocking(&id, Instant::now() + Duration::from_secs(3600))
                .unwrap()
                .expect("woken by a decision");
            (d.state, d.state == RequestState::Approved && store.claim(&id).unwrap())
        })
    };
    let task = {
        let (store, id) = (store.clone(), id.clone());
        shuttle::future::spawn(async move {
            let d = store.wait(&id).await.unwrap();
            (d.state, d.state == RequestState::Approved && store.claim(&id).unwrap())
        })
    };
    let resolver = approve(&store, &id);
    let deadline = expire(&store, &id);
    let (seen_blocked, ran_blocked) = blocked.join().unwrap();
    let (seen_task, ran_task) = shuttle::future::block_on(task).unwrap();
    resolver.join().unwrap();
    deadline.join().unwrap();

    // The one that reads second may see the approval already claimed by the other.
    let approved = |s: RequestState| {
        if s == RequestState::Executed {
            RequestState::Approved
        } else {
            s
        }
    };
    assert_eq!(
        approved(seen_blocked),
        approved(seen_task),
        "two waiters saw different decisions"
    );
    assert!(!(ran_blocked && ran_task), "one approval claimed twice");
    no_waiter_left(&store, &id, "two waiters");
}

/// One run: an async waiter polled once (so its waker is in the slot) and then dropped, racing an answer. Whatever
/// the order, its waker is gone once it is dropped (a dropped wait must not keep its task alive from the store).
fn waiter_dropped_after_a_poll() {
    let (store, id) = parked();

    let waiter = {
        let (store, id) = (store.clone(), id.clone());
        shuttle::thread::spawn(move || {
            let mut wait = store.wait(&id);
            let waker = Waker::noop();
            let first = wait.as_mut().poll(&mut Context::from_waker(waker));
            drop(wait);
            // Still pending or decided meanwhile, nothing of the dropped wait is left in the store.
            no_waiter_left(&store, &id, "a dropped wait");
            first.is_ready()
        })
    };
    let resolver = approve(&store, &id);
    waiter.join().unwrap();
    assert_eq!(resolver.join().unwrap(), ResolveOutcome::Resolved);
    no_waiter_left(&store, &id, "after the answer");
}

#[test]
fn model_two_waiters_race_an_answer_and_its_deadline() {
    explore(two_waiters);
}

#[test]
fn model_waiter_dropped_after_a_poll_leaves_no_waker() {
    explore(waiter_dropped_after_a_poll);
}

#[test]
fn model_waiter_races_an_answer_and_its_deadline() {
    explore(race);
}

#[test]
fn model_dropped_waiter_races_an_answer_and_its_deadline() {
    explore(dropped);
}
