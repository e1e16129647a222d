//! Model checking with shuttle (`RUSTFLAGS="--cfg agentguard_model" cargo test -p agentguard --lib model::`; `.ci/run`
//! passes the cfg with `cargo rustc` instead): a waiter racing an answer, its deadline and its own drop, over the real
//! store code, in every interleaving shuttle explores.

use super::*;
use crate::params::ParamsDigest;
use agentguard_classify::Risk;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

const SCHEDULES: usize = 10_000;

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

/// One run: a waiter (blocks until decided, then claims an approval and "runs" it), a person approving, and the
/// deadline expiring it.
fn race() {
    let store = Arc::new(InMemoryStore::new());
    let req = request();
    let id = req.request_id().clone();
    store.insert(&req).unwrap();
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
    let resolver = {
        let (store, id) = (store.clone(), id.clone());
        shuttle::thread::spawn(move || store.resolve(&Resolution::approve(id)).unwrap())
    };
    let deadline = {
        let (store, id) = (store.clone(), id.clone());
        shuttle::thread::spawn(move || store.expire(&id).unwrap())
    };

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
    let store = Arc::new(InMemoryStore::new());
    let req = request();
    let id = req.request_id().clone();
    store.insert(&req).unwrap();

    let resolver = {
        let (store, id) = (store.clone(), id.clone());
        shuttle::thread::spawn(move || store.resolve(&Resolution::approve(id)).unwrap())
    };
    let deadline = {
        let (store, id) = (store.clone(), id.clone());
        shuttle::thread::spawn(move || store.expire(&id).unwrap())
    };
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

#[test]
fn model_waiter_races_an_answer_and_its_deadline() {
    shuttle::check_random(race, SCHEDULES);
    shuttle::check_pct(race, SCHEDULES, 3);
}

#[test]
fn model_dropped_waiter_races_an_answer_and_its_deadline() {
    shuttle::check_random(dropped, SCHEDULES);
    shuttle::check_pct(dropped, SCHEDULES, 3);
}
