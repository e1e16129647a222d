//! `#[gate]`: the body runs only through the guard, with the arguments frozen by name and checked again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use agentguard::{gate, ActionDenied, AgentGuard, ApprovalRequest, DenyReason, Risk};
use serde_json::{json, Value};

static RUNS: AtomicUsize = AtomicUsize::new(0);
static SEEN: Mutex<Vec<(String, Value, Risk)>> = Mutex::new(Vec::new());

/// Approves unless the params contain "forbidden"; records what it was shown.
static GUARD: LazyLock<AgentGuard> = LazyLock::new(|| {
    AgentGuard::callback(|req: &ApprovalRequest| {
        SEEN.lock()
            .unwrap()
            .push((req.tool().to_owned(), req.params().clone(), req.risk()));
        !req.params().to_string().contains("forbidden")
    })
    .no_audit()
    .build()
});

/// Deletes a file (pretend).
#[gate(guard = GUARD)]
fn delete_file(path: String, force: bool) -> std::io::Result<String> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    if path.is_empty() {
        return Err(std::io::Error::other("empty path"));
    }
    Ok(format!("deleted {path} (force={force})"))
}

fn seen_for(tool: &str) -> Vec<(Value, Risk)> {
    SEEN.lock()
        .unwrap()
        .iter()
        .filter(|(t, _, _)| t == tool)
        .map(|(_, p, r)| (p.clone(), *r))
        .collect()
}

#[test]
fn approved_gated_function_runs_once_and_returns_its_value_wrapped() {
    let before = RUNS.load(Ordering::SeqCst);
    let out: Result<std::io::Result<String>, ActionDenied> = delete_file("a.txt".into(), true);
    assert_eq!(out.unwrap().unwrap(), "deleted a.txt (force=true)");
    assert!(RUNS.load(Ordering::SeqCst) > before);
    // The body's own `return Err(..)` keeps its meaning inside the wrapper.
    assert_eq!(
        delete_file(String::new(), false).unwrap().unwrap_err().to_string(),
        "empty path"
    );
}

#[test]
fn approver_sees_params_keyed_by_argument_name_with_manually_flagged_risk() {
    delete_file("keyed.txt".into(), false).unwrap().unwrap();
    let seen = seen_for("delete_file");
    let (params, risk) = seen.iter().find(|(p, _)| p["path"] == "keyed.txt").unwrap();
    assert_eq!(params, &json!({"path": "keyed.txt", "force": false}));
    assert_eq!(*risk, Risk::ManuallyFlagged);
}

static DENY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[gate(guard = GUARD, name = "wipe", risk = "irreversible")]
fn wipe_disk(disk: String) -> u32 {
    DENY_RUNS.fetch_add(1, Ordering::SeqCst);
    7
}

#[test]
fn denied_gated_function_never_runs_its_body() {
    let denied = wipe_disk("forbidden-disk".into()).unwrap_err();
    assert_eq!(denied.reason(), DenyReason::UserDenied);
    assert_eq!(denied.tool(), "wipe");
    assert_eq!(DENY_RUNS.load(Ordering::SeqCst), 0);
    let seen = seen_for("wipe");
    assert_eq!(seen[0].1, Risk::Irreversible, "the declared risk is shown");
}

/// Not Serialize: has to be skipped.
struct Connection {
    queries: usize,
}

#[gate(guard = GUARD, skip(conn), redact(api_token))]
fn send_report(conn: &mut Connection, to: &str, api_token: &str) -> usize {
    let _ = api_token;
    conn.queries += 1;
    conn.queries + to.len()
}

#[test]
fn skipped_arguments_show_as_skipped_and_redacted_ones_are_masked() {
    let mut conn = Connection { queries: 0 };
    assert_eq!(send_report(&mut conn, "ops", "sk-123").unwrap(), 4);
    let (params, _) = seen_for("send_report").remove(0);
    assert_eq!(params["conn"], agentguard::__private::SKIPPED);
    assert_eq!(params["to"], "ops");
    assert_eq!(params["api_token"], "[REDACTED]");
}

/// The approver changes the argument after seeing it.
static SHARED: LazyLock<Arc<Mutex<String>>> = LazyLock::new(|| Arc::new(Mutex::new(String::from("notes.txt"))));
static TAMPERING_GUARD: LazyLock<AgentGuard> = LazyLock::new(|| {
    AgentGuard::callback(|_| {
        *SHARED.lock().unwrap() = String::from("/etc/passwd");
        true
    })
    .no_audit()
    .build()
});
static CHANGED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[gate(guard = TAMPERING_GUARD)]
fn remove_path(path: Arc<Mutex<String>>) {
    let _ = path;
    CHANGED_RUNS.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn arguments_mutated_after_approval_deny_with_params_changed_and_the_body_never_runs() {
    let denied = remove_path(SHARED.clone()).unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ParamsChanged);
    assert_eq!(CHANGED_RUNS.load(Ordering::SeqCst), 0);
}

// Methods: &self, &mut self, self; generics, where-clauses, impl Trait.
#[derive(Debug, Default)]
struct Repo {
    commits: Vec<String>,
}

impl Repo {
    #[gate(guard = GUARD)]
    fn commit(&mut self, message: String) -> usize {
        self.commits.push(message);
        self.commits.len()
    }

    #[gate(guard = GUARD)]
    fn push_to(&self, remote: &str) -> String {
        format!("pushed {} commits to {remote}", self.commits.len())
    }

    #[gate(guard = GUARD)]
    fn archive(self, label: String) -> (usize, String) {
        (self.commits.len(), label)
    }
}

#[test]
fn methods_with_every_receiver_are_gated_and_the_receiver_is_not_a_param() {
    let mut repo = Repo::default();
    assert_eq!(repo.commit("first".into()).unwrap(), 1);
    assert_eq!(repo.push_to("origin").unwrap(), "pushed 1 commits to origin");
    assert_eq!(repo.archive("v1".into()).unwrap(), (1, "v1".into()));
    let (params, _) = seen_for("commit").remove(0);
    assert_eq!(params, json!({"message": "first"}));
}

#[gate(guard = GUARD)]
fn store_items<T>(items: Vec<T>, tag: impl serde::Serialize + std::fmt::Display) -> String
where
    T: serde::Serialize + Clone,
{
    format!("{} items tagged {tag}", items.len())
}

#[test]
fn generic_functions_with_where_clauses_and_impl_trait_arguments_are_gated() {
    assert_eq!(store_items(vec![1, 2, 3], "x").unwrap(), "3 items tagged x");
    let (params, _) = seen_for("store_items").remove(0);
    assert_eq!(params, json!({"items": [1, 2, 3], "tag": "x"}));
}

trait Mailer {
    fn send(&self, to: String) -> Result<String, ActionDenied>;
}

struct Smtp;

impl Mailer for Smtp {
    #[gate(guard = GUARD)]
    fn send(&self, to: String) -> String {
        format!("sent to {to}")
    }
}

#[test]
fn trait_impl_methods_are_gated_when_the_trait_returns_result_with_action_denied() {
    assert_eq!(Smtp.send("a@b.c".into()).unwrap(), "sent to a@b.c");
    assert_eq!(
        Smtp.send("forbidden@b.c".into()).unwrap_err().reason(),
        DenyReason::UserDenied
    );
}

// Async: parks in external mode; resolved from another task.
static EXTERNAL: LazyLock<AgentGuard> = LazyLock::new(|| {
    AgentGuard::external()
        .timeout(Duration::from_secs(30))
        .no_audit()
        .build()
});

#[gate(guard = EXTERNAL, risk = "external_send")]
async fn notify_customer(id: u64, text: String) -> Result<String, std::io::Error> {
    tokio::task::yield_now().await;
    Ok(format!("notified #{id}: {text}"))
}

#[tokio::test]
async fn async_gated_function_parks_and_is_resolved_from_another_task() {
    let agent = tokio::spawn(notify_customer(7, "hello".into()));
    let req = loop {
        if let Some(r) = EXTERNAL.pending().into_iter().find(|r| r.tool() == "notify_customer") {
            break r;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(req.params(), &json!({"id": 7, "text": "hello"}));
    assert_eq!(req.risk(), Risk::ExternalSend);
    let resolver = tokio::spawn(async move { EXTERNAL.resolve(req.request_id(), true, Some("alice")) });
    assert_eq!(resolver.await.unwrap(), agentguard::ResolveOutcome::Resolved);
    assert_eq!(agent.await.unwrap().unwrap().unwrap(), "notified #7: hello");
}

fn guard_fn() -> &'static AgentGuard {
    &GUARD
}

#[gate(guard = guard_fn())]
fn drop_table(table: String) -> String {
    format!("dropped {table}")
}

#[test]
fn the_guard_can_be_named_by_a_function_call() {
    assert_eq!(drop_table("t".into()).unwrap(), "dropped t");
    assert!(drop_table("forbidden".into()).is_err());
}

#[gate(guard = GUARD)]
async fn count_cells(counter: std::cell::Cell<u32>) -> u32 {
    tokio::task::yield_now().await;
    counter.get()
}

fn assert_send<T: Send>(value: T) -> T {
    value
}

#[tokio::test]
async fn async_gated_future_is_send_when_its_arguments_are_send_even_if_not_sync() {
    // Cell is Send but not Sync: the gated future must still be spawnable.
    let fut = assert_send(count_cells(std::cell::Cell::new(3)));
    assert_eq!(tokio::spawn(fut).await.unwrap().unwrap(), 3);
}

/// A map with non-string keys cannot be JSON: the snapshot cannot be built.
#[gate(guard = GUARD)]
fn set_grid(cells: std::collections::HashMap<(u8, u8), u8>) -> usize {
    cells.len()
}

#[test]
fn arguments_that_cannot_become_json_deny_with_invalid_params_before_anyone_is_asked() {
    let cells = std::collections::HashMap::from([((1, 2), 3)]);
    let denied = set_grid(cells).unwrap_err();
    assert_eq!(denied.reason(), DenyReason::InvalidParams);
    assert!(denied.detail().unwrap().contains("could not be serialized"), "{denied}");
    assert!(seen_for("set_grid").is_empty(), "the approver was never asked");
}

/// Refunds an amount (pretend); the guard records what it was asked about.
#[gate(guard = GUARD)]
fn refund_payment(order: String, amount_eur: f64) -> String {
    format!("refunded {amount_eur} on {order}")
}

#[test]
fn nan_and_infinite_arguments_are_refused_at_intake_naming_the_argument() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let denied = refund_payment("A-1".into(), bad).unwrap_err();
        assert_eq!(denied.reason(), DenyReason::InvalidParams, "{denied}");
        assert!(denied.detail().unwrap().contains("amount_eur is"), "{denied}");
        assert!(denied.detail().unwrap().contains("finite"), "{denied}");
    }
    assert!(
        seen_for("refund_payment").is_empty(),
        "nobody was shown a null for a NaN"
    );
    assert_eq!(refund_payment("A-1".into(), 12.5).unwrap(), "refunded 12.5 on A-1");
}

static LIMIT: Mutex<f64> = Mutex::new(100.0);
static RAISING_GUARD: LazyLock<AgentGuard> = LazyLock::new(|| {
    // Behind the approver's back: the limit becomes infinite once it has been shown.
    AgentGuard::callback(|_| {
        *LIMIT.lock().unwrap() = f64::INFINITY;
        true
    })
    .no_audit()
    .build()
});

#[gate(guard = RAISING_GUARD)]
fn set_spending_limit(limit: &Mutex<f64>) -> f64 {
    *limit.lock().unwrap()
}

#[test]
fn an_argument_changed_to_infinity_after_approval_is_params_changed() {
    let denied = set_spending_limit(&LIMIT).unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ParamsChanged, "{denied}");
}

#[test]
fn an_async_gated_function_keeps_a_small_future() {
    // A parked call holds its future for the whole wait. The expansion takes the call in at the first poll, awaits
    // a verdict that waits in a box of its own, and boxes the run, so the future holds the function's arguments and
    // a few pointers (with rustc 1.95 and the `tracing` feature, as here: 152 bytes for this one, two arguments; it
    // was 1,128 when the call, the decision and the run were held inline). The bound leaves room for compiler
    // changes; a failure means something large now lives across the wait.
    let parked = notify_customer(7, "hello".into());
    let size = std::mem::size_of_val(&parked);
    assert!(size <= 256, "{size} bytes");
}
