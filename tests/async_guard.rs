//! The async path: `aexecute` waits as a future (no thread per wait), async callbacks, cancellation.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentguard::{AgentGuard, ApprovalRequest, DenyReason, ResolveOutcome, ToolCall};
use serde_json::{json, Value};
use tokio::sync::mpsc;

fn call(name: &str) -> ToolCall {
    ToolCall::new(name, json!({"id": 7}))
}

/// An external guard whose `on_request` forwards each parked request on a channel.
fn external(timeout: Duration) -> (AgentGuard, mpsc::UnboundedReceiver<ApprovalRequest>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let guard = AgentGuard::external()
        .on_request(move |req| {
            let _ = tx.send(req.clone());
        })
        .timeout(timeout)
        .no_audit()
        .build();
    (guard, rx)
}

#[tokio::test]
async fn async_external_approve_runs_the_async_executor() {
    let (guard, mut parked) = external(Duration::from_secs(30));
    let g = guard.clone();
    let agent = tokio::spawn(async move {
        g.aexecute(call("delete_customer"), |name, params: Value| async move {
            format!("{name} {params}")
        })
        .await
    });
    let req = parked.recv().await.unwrap();
    assert_eq!(
        guard.resolve(req.request_id(), true, Some("alice")),
        ResolveOutcome::Resolved
    );
    assert_eq!(agent.await.unwrap().unwrap(), r#"delete_customer {"id":7}"#);
}

#[tokio::test]
async fn async_external_deny_returns_action_denied() {
    let (guard, mut parked) = external(Duration::from_secs(30));
    let g = guard.clone();
    let agent = tokio::spawn(async move { g.aexecute(call("delete_customer"), |_, _| async { "ran" }).await });
    let req = parked.recv().await.unwrap();
    guard.resolve(req.request_id(), false, Some("alice"));
    assert_eq!(agent.await.unwrap().unwrap_err().reason(), DenyReason::UserDenied);
}

/// With zero retention, the store evicts a decided request at its next operation. Evictions that run after the
/// denial woke the agent, before its task reads it, must not turn the denial into "store unavailable".
#[tokio::test(flavor = "current_thread")]
async fn a_denial_evicted_by_zero_retention_before_the_agent_reads_it_is_still_a_denial() {
    use agentguard::store::{ApprovalStore, InMemoryStore};
    use agentguard::Resolution;

    let store = Arc::new(InMemoryStore::with_retention(Duration::ZERO));
    let guard = Arc::new(
        AgentGuard::external()
            .shared_store(store.clone())
            .timeout(Duration::from_secs(60))
            .no_audit()
            .build(),
    );
    let g = guard.clone();
    let agent = tokio::spawn(async move { g.aexecute(call("delete_customer"), |_, _| async { "ran" }).await });
    // One thread: the agent runs only while this task awaits. Let it park and start waiting.
    let id = loop {
        tokio::task::yield_now().await;
        if let Some(parked) = store.pending().unwrap().first() {
            break parked.request_id().clone();
        }
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    // The denial, then operations that evict, with no await between them: the agent cannot read it meanwhile.
    store
        .resolve(&Resolution::deny(id.clone()).note("not this one"))
        .unwrap();
    for _ in 0..3 {
        store.pending().unwrap();
    }
    let denied = agent.await.unwrap().unwrap_err();
    assert_eq!(denied.reason(), DenyReason::UserDenied, "{denied}");
    // Read, so nothing holds it back any more.
    store.pending().unwrap();
    assert!(store.get(&id).unwrap().is_none());
}

#[tokio::test(flavor = "current_thread")]
async fn runtime_stays_responsive_while_a_request_is_parked() {
    // One thread only: if the parked call blocked it, the ticker below could never run.
    let (guard, mut parked) = external(Duration::from_secs(30));
    let g = guard.clone();
    let agent = tokio::spawn(async move { g.aexecute(call("delete_customer"), |_, _| async { "ran" }).await });
    let req = parked.recv().await.unwrap();
    let ticks = Arc::new(AtomicUsize::new(0));
    let t = ticks.clone();
    let ticker = tokio::spawn(async move {
        for _ in 0..10 {
            tokio::task::yield_now().await;
            t.fetch_add(1, Ordering::SeqCst);
        }
    });
    ticker.await.unwrap();
    assert_eq!(ticks.load(Ordering::SeqCst), 10);
    assert!(!agent.is_finished(), "still parked");
    guard.resolve(req.request_id(), true, None);
    assert_eq!(agent.await.unwrap().unwrap(), "ran");
}

#[tokio::test]
async fn async_callback_with_async_executor() {
    let guard = AgentGuard::async_callback(|req: ApprovalRequest| async move {
        tokio::task::yield_now().await;
        req.params()["id"] == 7
    })
    .no_audit()
    .build();
    let ok = guard.aexecute(call("delete_customer"), |_, _| async { "ran" }).await;
    assert_eq!(ok.unwrap(), "ran");
    let denied = guard
        .aexecute(ToolCall::new("delete_customer", json!({"id": 8})), |_, _| async {
            "ran"
        })
        .await;
    assert_eq!(denied.unwrap_err().reason(), DenyReason::UserDenied);
}

#[tokio::test]
async fn panicking_async_callback_denies_with_approver_failed() {
    let guard = AgentGuard::async_callback(|_req: ApprovalRequest| async move {
        tokio::task::yield_now().await;
        panic!("chat API returned 500")
    })
    .no_audit()
    .build();
    let denied = guard.aexecute(call("send_email"), |_, _| async {}).await.unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ApproverFailed);
    assert!(denied.detail().unwrap().contains("chat API returned 500"));
}

#[tokio::test]
async fn slow_async_callback_is_cut_off_at_the_deadline() {
    let guard = AgentGuard::async_callback(|_req: ApprovalRequest| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        true
    })
    .timeout(Duration::from_millis(20))
    .no_audit()
    .build();
    let denied = guard.aexecute(call("send_email"), |_, _| async {}).await.unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ApprovalTimeout);
}

/// An async callback that blocks its thread (no await point) and says yes after the deadline.
fn late_blocking_yes(timeout: Duration) -> AgentGuard {
    AgentGuard::async_callback(move |_req: ApprovalRequest| async move {
        std::thread::sleep(timeout * 3);
        true
    })
    .timeout(timeout)
    .no_audit()
    .build()
}

#[tokio::test(flavor = "current_thread")]
async fn late_yes_from_an_async_callback_that_blocks_a_current_thread_runtime_is_a_timeout() {
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let denied = late_blocking_yes(Duration::from_millis(200))
        .aexecute(call("send_email"), |_, _| async move {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ApprovalTimeout, "{denied}");
    assert_eq!(ran.load(Ordering::SeqCst), 0, "the late yes never runs the action");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_yes_from_a_blocking_async_callback_is_a_timeout_on_a_multi_thread_runtime() {
    let denied = late_blocking_yes(Duration::from_millis(200))
        .aexecute(call("send_email"), |_, _| async { panic!("must not run") })
        .await
        .unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ApprovalTimeout, "{denied}");
}

#[test]
fn late_yes_from_a_blocking_async_callback_is_a_timeout_through_the_blocking_execute() {
    let denied = late_blocking_yes(Duration::from_millis(200))
        .execute(call("send_email"), |_, _| panic!("must not run"))
        .unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ApprovalTimeout, "{denied}");
}

#[tokio::test]
async fn sync_callback_runs_off_the_runtime_in_aexecute() {
    let guard = AgentGuard::callback(|req| req.tool() == "delete_customer")
        .no_audit()
        .build();
    assert!(guard.aexecute(call("delete_customer"), |_, _| async {}).await.is_ok());
    assert_eq!(
        guard
            .aexecute(call("send_email"), |_, _| async {})
            .await
            .unwrap_err()
            .reason(),
        DenyReason::UserDenied
    );
}

#[tokio::test]
async fn blocking_execute_of_an_async_callback_inside_a_runtime_denies_with_advice() {
    let guard = AgentGuard::async_callback(|_req: ApprovalRequest| async { true })
        .no_audit()
        .build();
    let denied = guard.execute(call("send_email"), |_, _| ()).unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ApproverFailed);
    assert!(denied.detail().unwrap().contains("aexecute"));
}

#[test]
fn blocking_execute_of_an_async_callback_outside_a_runtime_works() {
    let guard = AgentGuard::async_callback(|_req: ApprovalRequest| async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        true
    })
    .no_audit()
    .build();
    assert!(guard.execute(call("send_email"), |_, _| ()).is_ok());
}

#[tokio::test]
async fn dropping_a_parked_future_expires_its_request_so_it_never_runs() {
    let (guard, mut parked) = external(Duration::from_secs(30));
    let ran = Arc::new(AtomicUsize::new(0));
    let (g, r) = (guard.clone(), ran.clone());
    let agent = tokio::spawn(async move {
        g.aexecute(call("delete_customer"), |_, _| async move {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .await
    });
    let req = parked.recv().await.unwrap();
    agent.abort();
    assert!(agent.await.unwrap_err().is_cancelled());
    assert_eq!(guard.resolve(req.request_id(), true, None), ResolveOutcome::Expired);
    assert!(guard.pending().is_empty());
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

#[test]
fn ten_thousand_parked_approvals_cost_no_threads_and_all_fail_closed() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let parked = Arc::new(AtomicUsize::new(0));
    let p = parked.clone();
    let guard = AgentGuard::external()
        .on_request(move |_| {
            p.fetch_add(1, Ordering::SeqCst);
        })
        .timeout(Duration::from_secs(2))
        .no_audit()
        .build();
    let before = thread_count();
    let ran = Arc::new(AtomicUsize::new(0));
    let results = runtime.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..10_000 {
            let (g, r) = (guard.clone(), ran.clone());
            tasks.push(tokio::spawn(async move {
                g.aexecute(ToolCall::new("delete_row", json!({"row": i})), |_, _| async move {
                    r.fetch_add(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        // Wait until all are parked at once (each notified), then count threads.
        let started = std::time::Instant::now();
        while parked.load(Ordering::SeqCst) < 10_000 {
            assert!(started.elapsed() < Duration::from_secs(60), "requests never all parked");
            tokio::task::yield_now().await;
        }
        let during = thread_count();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        (during, out)
    });
    let (during, outcomes) = results;
    // Two workers (and tokio's blocking pool, unused here): parking 10,000 calls added no threads.
    if before > 0 {
        assert!(during <= before + 3, "threads grew from {before} to {during}");
    }
    assert_eq!(outcomes.len(), 10_000);
    assert!(outcomes
        .iter()
        .all(|o| o.as_ref().unwrap_err().reason() == DenyReason::ApprovalTimeout));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert!(guard.pending().is_empty());
}

#[test]
fn aexecute_outside_a_tokio_runtime_denies_instead_of_panicking() {
    let guard = AgentGuard::external()
        .timeout(Duration::from_secs(5))
        .no_audit()
        .build();
    let fut = guard.aexecute(call("delete_customer"), |_, _| async {});
    // A minimal executor that is not tokio.
    let denied = futures_lite_block_on(fut).unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ApproverFailed);
    assert!(denied.detail().unwrap().contains("tokio runtime"), "{denied}");
}

#[test]
fn aexecute_on_a_runtime_without_timers_denies_instead_of_panicking() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap(); // no enable_time
    let guard = AgentGuard::external()
        .timeout(Duration::from_secs(5))
        .no_audit()
        .build();
    let denied = runtime
        .block_on(guard.aexecute(call("delete_customer"), |_, _| async {}))
        .unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ApproverFailed);
    assert!(denied.detail().unwrap().contains("enable_time"), "{denied}");
    assert!(guard.pending().is_empty(), "the parked request was expired");
}

#[tokio::test(flavor = "current_thread")]
async fn blocking_execute_of_an_external_guard_on_a_current_thread_runtime_denies_with_advice() {
    let guard = AgentGuard::external()
        .timeout(Duration::from_secs(30))
        .no_audit()
        .build();
    let denied = guard.execute(call("delete_customer"), |_, _| ()).unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ApproverFailed);
    assert!(denied.detail().unwrap().contains("aexecute"), "{denied}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn blocking_execute_of_an_external_guard_on_a_multi_thread_runtime_can_be_resolved_by_a_task() {
    let (guard, mut parked) = external(Duration::from_secs(30));
    let g = guard.clone();
    // The resolver is a task on the same (single) worker the blocking call sits on.
    let resolver = tokio::spawn(async move {
        let req = parked.recv().await.unwrap();
        g.resolve(req.request_id(), true, None)
    });
    assert!(guard.execute(call("delete_customer"), |_, _| ()).is_ok());
    assert_eq!(resolver.await.unwrap(), ResolveOutcome::Resolved);
}

/// Polls a future to completion on this thread, parking between wake-ups: just enough executor for the test.
fn futures_lite_block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park_timeout(Duration::from_millis(10)),
        }
    }
}

#[tokio::test]
async fn an_async_call_does_nothing_until_polled() {
    // The call is taken in at the first poll, as an async fn would: a future made and dropped unpolled parks
    // nothing, audits nothing and runs nothing.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let ran = Arc::new(AtomicUsize::new(0));
    let guard = AgentGuard::external().audit_file(&log).build();
    let (r1, r2) = (ran.clone(), ran.clone());
    let gated = guard.aexecute(call("delete_customer"), move |_, _| async move {
        r1.fetch_add(1, Ordering::SeqCst);
    });
    let safe = guard.aexecute_detailed(
        call("read_customer"),
        agentguard::guard::Gating::Auto,
        move |_, _| async move {
            r2.fetch_add(1, Ordering::SeqCst);
        },
    );
    let global = agentguard::aexecute(call("delete_customer"), |_, _| async {});
    assert!(guard.pending().is_empty(), "nothing parked before the first poll");
    drop((gated, safe, global));
    drop(guard); // writes whatever the sink has queued
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert!(
        !log.exists() || std::fs::read_to_string(&log).unwrap().is_empty(),
        "no line for an unpolled call"
    );
}

#[test]
fn a_parked_call_keeps_a_small_future() {
    // A parked call holds its future for the whole wait: with a million parked, each byte here is a megabyte, and
    // a spawned task's future over about 150 bytes makes tokio's task 384 bytes instead of 256. The call itself
    // (224 bytes) is taken in at the first poll, a call decided at once goes to its run without being kept here,
    // the parked call and its wait are boxed together (one pointer here), and the room the run needs is boxed, so
    // the future holds only pointers and the executor (with rustc 1.95 and the `tracing` feature's spans, as here:
    // 176 bytes, 96 without; 344 before the parked call moved into its wait's box, 584 and 912 before that). The
    // bound leaves room for compiler changes; a failure means something large now lives across the wait.
    let guard = AgentGuard::external().no_audit().build();
    let parked = guard.aexecute(call("delete_customer"), |_, _| async {});
    assert!(
        std::mem::size_of_val(&parked) <= 224,
        "{} bytes",
        std::mem::size_of_val(&parked)
    );
    let global = agentguard::aexecute(call("delete_customer"), |_, _| async {});
    assert!(
        std::mem::size_of_val(&global) <= 224,
        "{} bytes",
        std::mem::size_of_val(&global)
    );
}
