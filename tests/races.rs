//! Races: many resolvers on one id, resolve against the deadline, and memory over a long resolve loop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use agentguard::store::{ApprovalStore, InMemoryStore};
use agentguard::{AgentGuard, DenyReason, RequestId, ResolveOutcome, ToolCall};
use serde_json::json;

const RESOLVERS: usize = 32;

#[test]
fn thirty_two_threads_resolving_one_id_yield_exactly_one_resolved_and_one_run() {
    let trials: usize = std::env::var("AGENTGUARD_RACE_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let (parked_tx, parked_rx) = mpsc::channel::<RequestId>();
    let guard = AgentGuard::external()
        .on_request(move |req| {
            let _ = parked_tx.send(req.request_id().clone());
        })
        .timeout(Duration::from_secs(60))
        .no_audit()
        .build();
    let ran = Arc::new(AtomicUsize::new(0));

    // The agent: one gated call per trial, in sequence.
    let (g, r) = (guard.clone(), ran.clone());
    let (done_tx, done_rx) = mpsc::channel();
    let agent = std::thread::spawn(move || {
        for _ in 0..trials {
            let out = g.execute(ToolCall::new("delete_row", json!({})), |_, _| {
                r.fetch_add(1, Ordering::SeqCst);
            });
            done_tx.send(out.is_ok()).unwrap();
        }
    });

    // 32 resolvers, released together on each id.
    let current = Arc::new(Mutex::new(None::<RequestId>));
    let start = Arc::new(Barrier::new(RESOLVERS + 1));
    let end = Arc::new(Barrier::new(RESOLVERS + 1));
    let resolved = Arc::new(AtomicUsize::new(0));
    let already = Arc::new(AtomicUsize::new(0));
    let mut resolvers = Vec::new();
    for i in 0..RESOLVERS {
        let (g, cur, s, e, res, alr) = (
            guard.clone(),
            current.clone(),
            start.clone(),
            end.clone(),
            resolved.clone(),
            already.clone(),
        );
        resolvers.push(std::thread::spawn(move || loop {
            s.wait();
            let Some(id) = cur.lock().unwrap().clone() else { return };
            match g.resolve(&id, true, Some(&format!("resolver-{i}"))) {
                ResolveOutcome::Resolved => res.fetch_add(1, Ordering::SeqCst),
                ResolveOutcome::AlreadyResolved => alr.fetch_add(1, Ordering::SeqCst),
                other => panic!("unexpected outcome {other}"),
            };
            e.wait();
        }));
    }

    for trial in 0..trials {
        let id = parked_rx.recv_timeout(Duration::from_secs(30)).expect("agent parked");
        *current.lock().unwrap() = Some(id);
        start.wait();
        end.wait();
        assert!(
            done_rx.recv_timeout(Duration::from_secs(30)).unwrap(),
            "trial {trial}: approved call ran"
        );
        assert_eq!(
            resolved.swap(0, Ordering::SeqCst),
            1,
            "trial {trial}: exactly one RESOLVED"
        );
        assert_eq!(already.swap(0, Ordering::SeqCst), RESOLVERS - 1, "trial {trial}");
        assert_eq!(
            ran.load(Ordering::SeqCst),
            trial + 1,
            "trial {trial}: executor ran once"
        );
    }
    *current.lock().unwrap() = None;
    start.wait();
    for r in resolvers {
        r.join().unwrap();
    }
    agent.join().unwrap();
}

#[test]
fn resolve_racing_the_deadline_has_one_final_state_and_expired_never_runs() {
    let (mut approved_runs, mut expired) = (0, 0);
    for _ in 0..2_000 {
        let (tx, rx) = mpsc::channel::<RequestId>();
        let guard = AgentGuard::external()
            .on_request(move |req| {
                let _ = tx.send(req.request_id().clone());
            })
            .timeout(Duration::from_micros(300))
            .no_audit()
            .build();
        let ran = Arc::new(AtomicUsize::new(0));
        let (g, r) = (guard.clone(), ran.clone());
        let agent = std::thread::spawn(move || {
            g.execute(ToolCall::new("delete_row", json!({})), |_, _| {
                r.fetch_add(1, Ordering::SeqCst);
            })
        });
        let id = rx.recv().unwrap();
        let outcome = guard.resolve(&id, true, None);
        let result = agent.join().unwrap();
        match outcome {
            ResolveOutcome::Resolved => {
                assert!(result.is_ok(), "a RESOLVED approval must run");
                assert_eq!(ran.load(Ordering::SeqCst), 1);
                approved_runs += 1;
            }
            ResolveOutcome::Expired => {
                assert_eq!(result.unwrap_err().reason(), DenyReason::ApprovalTimeout);
                assert_eq!(ran.load(Ordering::SeqCst), 0, "EXPIRED never executes");
                expired += 1;
            }
            other => panic!("unexpected outcome {other}"),
        }
        // The store agrees with what happened.
        let state = guard.store().get(&id).unwrap().unwrap().decision.state;
        assert_eq!(
            state == agentguard::store::RequestState::Executed,
            outcome == ResolveOutcome::Resolved,
            "store state {state:?} vs outcome {outcome}"
        );
    }
    println!("resolve won {approved_runs} times, the deadline won {expired} times");
}

#[test]
fn store_expire_and_resolve_racing_on_one_id_have_exactly_one_winner() {
    let store = Arc::new(InMemoryStore::new());
    let guard = AgentGuard::external()
        .shared_store(store.clone())
        .timeout(Duration::from_secs(60))
        .no_audit()
        .build();
    for _ in 0..2_000 {
        let (tx, rx) = mpsc::channel::<RequestId>();
        let g = AgentGuard::external()
            .shared_store(store.clone())
            .on_request(move |req| {
                let _ = tx.send(req.request_id().clone());
            })
            .no_audit()
            .build();
        let agent = std::thread::spawn(move || g.execute(ToolCall::new("delete_row", json!({})), |_, _| ()));
        let id = rx.recv().unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let (s, b, i) = (store.clone(), barrier.clone(), id.clone());
        let expirer = std::thread::spawn(move || {
            b.wait();
            s.expire(&i).unwrap().unwrap().state
        });
        barrier.wait();
        let outcome = guard.resolve(&id, false, None);
        let final_state = expirer.join().unwrap();
        let result = agent.join().unwrap();
        match outcome {
            ResolveOutcome::Resolved => assert_eq!(final_state, agentguard::store::RequestState::Denied),
            ResolveOutcome::Expired => assert_eq!(final_state, agentguard::store::RequestState::Expired),
            other => panic!("unexpected outcome {other}"),
        }
        assert!(result.is_err());
    }
}

#[test]
fn a_million_park_resolve_cycles_keep_the_store_bounded_by_the_retention_window() {
    let cycles: usize = std::env::var("AGENTGUARD_MEMORY_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // Zero retention: a decided request is evicted by the next store operation.
    let store = Arc::new(InMemoryStore::with_retention(Duration::ZERO));
    let s = store.clone();
    let guard = AgentGuard::external()
        .shared_store(store.clone())
        // Answer inside the notifier: the request is decided before the agent starts waiting.
        .on_request(move |req| {
            s.resolve(&agentguard::Resolution::approve(req.request_id().clone()))
                .unwrap();
        })
        .no_audit()
        .build();
    let mut max_len = 0;
    for i in 0..cycles {
        guard
            .execute(ToolCall::new("delete_row", json!({"row": i})), |_, _| ())
            .unwrap();
        if i % 1000 == 0 {
            max_len = max_len.max(store.len());
        }
    }
    assert!(max_len <= 2, "the store grew to {max_len} records");
}

/// Parks one call on a guard over `store`, approves it, waits for it to run, and answers it a second time.
fn approve_then_answer_again(store: Arc<InMemoryStore>) -> ResolveOutcome {
    let (tx, rx) = mpsc::channel::<RequestId>();
    let guard = AgentGuard::external()
        .shared_store(store)
        .on_request(move |req| {
            let _ = tx.send(req.request_id().clone());
        })
        .no_audit()
        .build();
    let g = guard.clone();
    let agent = std::thread::spawn(move || g.execute(ToolCall::new("delete_row", json!({})), |_, _| ()));
    let id = rx.recv().unwrap();
    assert_eq!(guard.resolve(&id, true, None), ResolveOutcome::Resolved);
    agent.join().unwrap().unwrap();
    guard.resolve(&id, true, None)
}

#[test]
fn decided_requests_stay_idempotent_within_retention() {
    let store = Arc::new(InMemoryStore::with_retention(Duration::from_secs(3600)));
    assert_eq!(
        approve_then_answer_again(store.clone()),
        ResolveOutcome::AlreadyResolved
    );
    assert_eq!(store.len(), 1);
}

#[test]
fn decided_requests_are_forgotten_after_retention() {
    let store = Arc::new(InMemoryStore::with_retention(Duration::ZERO));
    assert_eq!(approve_then_answer_again(store.clone()), ResolveOutcome::Unknown);
    assert_eq!(store.len(), 0);
}
