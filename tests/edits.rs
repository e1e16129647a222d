//! Edits through the macros: an approver approves with new params, and a `#[derive(Tool)]` handler or a `#[gate]`
//! body runs with them, checked against the tool's own argument types first; a function whose arguments cannot be
//! read back from JSON refuses edits up front. Every case parks in a real external guard (in-memory store) and is
//! answered from another thread or task, as the page or the CLI would.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::Duration;

use agentguard::answer::AnswerKind;
use agentguard::store::{ApprovalStore, InMemoryStore, RequestState};
use agentguard::{gate, AgentGuard, Approval, ApprovalRequest, DenyReason, Resolution, ResolveOutcome, Tool};
use serde_json::{json, Value};

/// Requests parked by [`GUARD`], until a test takes the one of its tool.
static PARKED: Mutex<Vec<ApprovalRequest>> = Mutex::new(Vec::new());
static PARKED_CHANGED: Condvar = Condvar::new();

/// The external guard every case parks in; its store is read back by the tests.
static STORE: LazyLock<Arc<InMemoryStore>> = LazyLock::new(|| Arc::new(InMemoryStore::new()));
static GUARD: LazyLock<AgentGuard> = LazyLock::new(|| {
    AgentGuard::external()
        .shared_store(STORE.clone())
        .on_request(|req| {
            PARKED.lock().unwrap().push(req.clone());
            PARKED_CHANGED.notify_all();
        })
        .dangerous_tools(["read_note"])
        .timeout(Duration::from_secs(60))
        .no_audit()
        .build()
});

/// Waits (on a condvar, no polling) until a request of `tool` whose params mention `marker` is parked (the tests run
/// at once and share the guard), and takes it.
fn parked(tool: &str, marker: &str) -> ApprovalRequest {
    let mut parked = PARKED.lock().unwrap();
    loop {
        if let Some(i) = parked
            .iter()
            .position(|r| r.tool() == tool && r.params().to_string().contains(marker))
        {
            return parked.remove(i);
        }
        let (next, timeout) = PARKED_CHANGED.wait_timeout(parked, Duration::from_secs(30)).unwrap();
        assert!(!timeout.timed_out(), "no request of {tool} with {marker} was parked");
        parked = next;
    }
}

/// `parked`, for async tests: waits on a blocking thread.
async fn aparked(tool: &'static str, marker: &'static str) -> ApprovalRequest {
    tokio::task::spawn_blocking(move || parked(tool, marker)).await.unwrap()
}

fn edit(req: &ApprovalRequest, params: Value) -> ResolveOutcome {
    GUARD.resolve_with(&Resolution::edit(req.request_id().clone(), params).actor("alice"))
}

fn state(req: &ApprovalRequest) -> RequestState {
    STORE.get(req.request_id()).unwrap().unwrap().decision.state
}

// ---------------------------------------------------------------------------------------------------------------
// #[derive(Tool)]

#[derive(Tool, Debug, serde::Serialize, serde::Deserialize)]
enum Bank {
    /// Refunds an order.
    #[tool(risk = "irreversible")]
    Refund { order: String, amount_cents: u64 },
    /// Reads a note: not gated by its declaration or name (the guard's `dangerous_tools` asks about it).
    ReadNote { id: u64 },
}

/// What ran, and how.
#[derive(Debug, PartialEq)]
struct Ran {
    order: String,
    amount_cents: u64,
    edited_by: Option<String>,
    original_digest: Option<String>,
}

#[derive(Default)]
struct Teller {
    runs: usize,
}

impl BankHandler for Teller {
    type Output = Ran;

    fn refund(&mut self, approval: Approval<'_, BankRefund>) -> Ran {
        self.runs += 1;
        let edited = approval.edited();
        Ran {
            edited_by: edited.and_then(|e| e.by()).map(str::to_owned),
            original_digest: edited.map(|e| e.original_digest().to_string()),
            order: approval.order.clone(),
            amount_cents: approval.amount_cents,
        }
    }

    fn read_note(&mut self, id: u64) -> Ran {
        self.runs += 1;
        Ran {
            order: format!("note {id}"),
            amount_cents: 0,
            edited_by: None,
            original_digest: None,
        }
    }
}

impl BankAsyncHandler for Teller {
    type Output = Ran;

    async fn refund(&mut self, approval: Approval<'_, BankRefund>) -> Ran {
        BankHandler::refund(self, approval)
    }

    async fn read_note(&mut self, id: u64) -> Ran {
        BankHandler::read_note(self, id)
    }
}

#[test]
fn a_derive_tool_handler_runs_with_the_approvers_edited_arguments() {
    let agent = std::thread::spawn(|| {
        let mut teller = Teller::default();
        let tool = Bank::parse("refund", json!({"order": "A-1", "amount_cents": 90_000})).unwrap();
        let out = GUARD.dispatch(tool, &mut teller);
        (out, teller.runs)
    });
    let req = parked("refund", "A-1");
    assert_eq!(req.edit_refused(), None, "a gated variant's args can be read back");
    let resolver = std::thread::spawn({
        let req = req.clone();
        move || edit(&req, json!({"order": "A-1", "amount_cents": 9_000}))
    });
    assert_eq!(resolver.join().unwrap(), ResolveOutcome::Resolved);
    let (out, runs) = agent.join().unwrap();
    assert_eq!(
        out.unwrap(),
        Ran {
            order: "A-1".into(),
            amount_cents: 9_000,
            edited_by: Some("alice".into()),
            original_digest: Some(req.params_digest().to_string()),
        }
    );
    assert_eq!(runs, 1);
    assert_eq!(state(&req), RequestState::Executed);
    let decision = STORE.get(req.request_id()).unwrap().unwrap().decision;
    assert_eq!(decision.kind, Some(AnswerKind::Edit));
}

#[test]
fn a_derive_tool_edit_that_does_not_fit_the_variant_is_refused_and_the_handler_never_runs() {
    for (bad, says) in [
        (
            json!({"order": "A-2", "amount_cents": "ten"}),
            "at `amount_cents`: invalid type: string \"ten\"",
        ),
        (json!({"order": "A-2"}), "missing field `amount_cents`"),
        (
            json!({"order": "A-2", "amount_cents": 1, "to": "mallory"}),
            "unknown field `to`",
        ),
        (
            json!({"order": "A-2", "amount_cents": -5}),
            "at `amount_cents`: invalid value: integer `-5`",
        ),
    ] {
        let agent = std::thread::spawn(|| {
            let mut teller = Teller::default();
            let tool = Bank::Refund {
                order: "A-2".into(),
                amount_cents: 100,
            };
            (GUARD.dispatch(tool, &mut teller), teller.runs)
        });
        let req = parked("refund", "A-2");
        assert_eq!(edit(&req, bad.clone()), ResolveOutcome::Resolved, "{bad}");
        let (out, runs) = agent.join().unwrap();
        let denied = out.unwrap_err();
        assert_eq!(denied.reason(), DenyReason::EditRejected, "{bad}: {denied}");
        let detail = denied.detail().unwrap();
        assert!(detail.contains(says), "{bad}: {detail}");
        assert!(detail.contains("`refund`"), "the detail names the tool: {detail}");
        assert_eq!(runs, 0, "{bad}: the handler ran");
        assert_ne!(state(&req), RequestState::Executed, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_derive_tool_handler_runs_with_the_edited_arguments_and_a_bad_edit_never_runs_it() {
    let agent = tokio::spawn(async {
        let mut teller = Teller::default();
        let tool = Bank::Refund {
            order: "B-1".into(),
            amount_cents: 5_000,
        };
        let out = GUARD.adispatch(tool, &mut teller).await;
        (out, teller.runs)
    });
    let req = aparked("refund", "B-1").await;
    let resolver = tokio::spawn(async move { edit(&req, json!({"order": "B-2", "amount_cents": 500})) });
    assert_eq!(resolver.await.unwrap(), ResolveOutcome::Resolved);
    let (out, runs) = agent.await.unwrap();
    let ran = out.unwrap();
    assert_eq!((ran.order.as_str(), ran.amount_cents, runs), ("B-2", 500, 1));

    let agent = tokio::spawn(async {
        let mut teller = Teller::default();
        let tool = Bank::Refund {
            order: "B-3".into(),
            amount_cents: 5_000,
        };
        (GUARD.adispatch(tool, &mut teller).await, teller.runs)
    });
    let req = aparked("refund", "B-3").await;
    assert_eq!(
        edit(&req, json!({"order": 3, "amount_cents": 1})),
        ResolveOutcome::Resolved
    );
    let (out, runs) = agent.await.unwrap();
    assert_eq!(out.unwrap_err().reason(), DenyReason::EditRejected);
    assert_eq!(runs, 0);
}

#[test]
fn a_variant_whose_handler_takes_its_fields_refuses_edits_up_front_and_still_runs_as_approved() {
    let agent = std::thread::spawn(|| {
        let mut teller = Teller::default();
        (GUARD.dispatch(Bank::ReadNote { id: 7 }, &mut teller), teller.runs)
    });
    let req = parked("read_note", "");
    let why = req.edit_refused().expect("edits are refused");
    assert!(why.contains("would not see an edit"), "{why}");
    assert_eq!(edit(&req, json!({"id": 8})), ResolveOutcome::NotAllowedHere);
    assert_eq!(
        GUARD.resolve(req.request_id(), true, Some("alice")),
        ResolveOutcome::Resolved
    );
    let (out, runs) = agent.join().unwrap();
    assert_eq!(out.unwrap().order, "note 7");
    assert_eq!(runs, 1);
    // It ran, so the store says so: claimed once (executed), not abandoned as if it never started.
    assert_eq!(state(&req), RequestState::Executed);
}

// ---------------------------------------------------------------------------------------------------------------
// #[gate]

static GATE_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Sends an email (pretend); `retries` is declared `mut` and changed by the body.
#[gate(guard = GUARD, risk = "external_send")]
fn send_email(to: String, subject: String, mut retries: u8) -> String {
    GATE_RUNS.fetch_add(1, Ordering::SeqCst);
    retries += 1;
    format!("to {to}: {subject} (attempt {retries})")
}

#[test]
fn a_gate_body_runs_with_the_edited_values_of_its_owned_arguments() {
    let agent = std::thread::spawn(|| send_email("mallory@evil.example".into(), "invoice".into(), 0));
    let req = parked("send_email", "");
    assert_eq!(req.edit_refused(), None);
    let resolver = std::thread::spawn(move || {
        edit(
            &req,
            json!({"to": "billing@example.com", "subject": "invoice #12", "retries": 2}),
        )
    });
    assert_eq!(resolver.join().unwrap(), ResolveOutcome::Resolved);
    assert_eq!(
        agent.join().unwrap().unwrap(),
        "to billing@example.com: invoice #12 (attempt 3)"
    );
}

static SEND_RUNS: AtomicUsize = AtomicUsize::new(0);

#[gate(guard = GUARD)]
fn send_sms(number: String, text: String) -> String {
    SEND_RUNS.fetch_add(1, Ordering::SeqCst);
    format!("{number}: {text}")
}

#[test]
fn a_gate_edit_that_does_not_fit_the_arguments_is_refused_and_the_body_never_runs() {
    for (bad, says) in [
        (
            json!({"number": 112, "text": "hi"}),
            "argument `number`: invalid type: integer `112`, expected a string",
        ),
        (json!({"text": "hi"}), "argument `number` is missing"),
        (
            json!({"number": "1", "text": "hi", "cc": "2"}),
            "`cc` is not an argument of `send_sms`",
        ),
    ] {
        let agent = std::thread::spawn(|| send_sms("555".into(), "hello".into()));
        let req = parked("send_sms", "");
        assert_eq!(edit(&req, bad.clone()), ResolveOutcome::Resolved, "{bad}");
        let denied = agent.join().unwrap().unwrap_err();
        assert_eq!(denied.reason(), DenyReason::EditRejected, "{bad}: {denied}");
        assert!(denied.detail().unwrap().contains(says), "{bad}: {denied:?}");
        assert_ne!(state(&req), RequestState::Executed, "{bad}");
    }
    assert_eq!(SEND_RUNS.load(Ordering::SeqCst), 0);
}

/// A log the caller keeps: skipped, so it is not in the params and is not editable.
#[derive(Default)]
struct Ledger(Vec<String>);

#[gate(guard = GUARD, skip(ledger))]
fn transfer(ledger: &mut Ledger, to: String, amount: u64) -> usize {
    ledger.0.push(format!("{amount} to {to}"));
    ledger.0.len()
}

#[test]
fn a_skipped_argument_keeps_its_live_value_and_an_edit_may_not_change_it() {
    let agent = std::thread::spawn(|| {
        let mut ledger = Ledger(vec!["opening".into()]);
        let out = transfer(&mut ledger, "mallory".into(), 1_000);
        (out, ledger.0)
    });
    let req = parked("transfer", "");
    assert_eq!(req.params()["ledger"], agentguard::__private::SKIPPED);
    assert_eq!(
        req.edit_refused(),
        None,
        "a skipped argument does not stop edits of the others"
    );
    // The placeholder kept as shown (or left out) is fine.
    let kept = json!({"ledger": agentguard::__private::SKIPPED, "to": "bob", "amount": 10});
    assert_eq!(edit(&req, kept), ResolveOutcome::Resolved);
    let (out, ledger) = agent.join().unwrap();
    assert_eq!(out.unwrap(), 2);
    assert_eq!(
        ledger,
        ["opening", "10 to bob"],
        "the caller's ledger, with the edited values"
    );

    let agent = std::thread::spawn(|| transfer(&mut Ledger::default(), "mallory".into(), 1_000));
    let req = parked("transfer", "");
    assert_eq!(
        edit(&req, json!({"ledger": ["forged"], "to": "bob", "amount": 10})),
        ResolveOutcome::Resolved
    );
    let denied = agent.join().unwrap().unwrap_err();
    assert_eq!(denied.reason(), DenyReason::EditRejected);
    assert!(
        denied
            .detail()
            .unwrap()
            .contains("argument `ledger` of `transfer` is skipped"),
        "{denied:?}"
    );
}

static NOTIFY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[gate(guard = GUARD)]
fn notify_team(team: &str, text: String) -> String {
    NOTIFY_RUNS.fetch_add(1, Ordering::SeqCst);
    format!("{team}: {text}")
}

#[test]
fn a_gate_function_with_a_borrowed_argument_refuses_edits_up_front() {
    let agent = std::thread::spawn(|| notify_team("ops", "deploy".into()));
    let req = parked("notify_team", "");
    assert_eq!(
        req.edit_refused(),
        Some(
            "argument `team` of `notify_team` is a `&str`, which cannot be read back from JSON: take an owned type \
             (String) to let approvers edit it"
        )
    );
    assert_eq!(
        edit(&req, json!({"team": "ops", "text": "rollback"})),
        ResolveOutcome::NotAllowedHere
    );
    assert_eq!(
        GUARD.resolve(req.request_id(), true, Some("alice")),
        ResolveOutcome::Resolved
    );
    assert_eq!(agent.join().unwrap().unwrap(), "ops: deploy", "approved as shown");
    assert_eq!(NOTIFY_RUNS.load(Ordering::SeqCst), 1);
}

/// Serializable, not deserializable.
#[derive(serde::Serialize)]
struct Snapshot {
    rows: u32,
}

#[gate(guard = GUARD)]
fn archive_snapshot(snapshot: Snapshot, label: String) -> String {
    format!("{label}: {} rows", snapshot.rows)
}

#[gate(guard = GUARD)]
fn store_value<T: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug>(value: T) -> String {
    format!("{value:?}")
}

#[gate(guard = GUARD)]
fn store_shown<T: serde::Serialize + std::fmt::Debug>(value: T) -> String {
    format!("{value:?}")
}

#[test]
fn an_argument_that_is_not_deserialize_refuses_edits_saying_which_and_what_to_do() {
    let agent = std::thread::spawn(|| archive_snapshot(Snapshot { rows: 3 }, "nightly".into()));
    let req = parked("archive_snapshot", "");
    let why = req.edit_refused().expect("refused");
    assert!(
        why.starts_with(
            "argument `snapshot` of `archive_snapshot` is a `Snapshot`, which cannot be read back from JSON"
        ),
        "{why}"
    );
    assert!(why.contains("derive or implement `serde::Deserialize`"), "{why}");
    assert_eq!(
        edit(&req, json!({"snapshot": {"rows": 1}, "label": "x"})),
        ResolveOutcome::NotAllowedHere
    );
    assert_eq!(
        GUARD.resolve(req.request_id(), false, Some("alice")),
        ResolveOutcome::Resolved
    );
    assert_eq!(agent.join().unwrap().unwrap_err().reason(), DenyReason::UserDenied);
}

#[test]
fn a_generic_argument_is_editable_when_its_bounds_say_deserialize_owned_and_refused_when_not() {
    let agent = std::thread::spawn(|| store_value(vec![1u32, 2]));
    let req = parked("store_value", "");
    assert_eq!(req.edit_refused(), None);
    assert_eq!(edit(&req, json!({"value": [3, 4, 5]})), ResolveOutcome::Resolved);
    assert_eq!(agent.join().unwrap().unwrap(), "[3, 4, 5]");

    let agent = std::thread::spawn(|| store_shown(vec![1u32, 2]));
    let req = parked("store_shown", "");
    let why = req.edit_refused().expect("refused");
    assert!(
        why.contains("argument `value` of `store_shown` is a `T`")
            && why.contains("bound its type parameters by `serde::de::DeserializeOwned`"),
        "{why}"
    );
    assert_eq!(GUARD.resolve(req.request_id(), true, None), ResolveOutcome::Resolved);
    assert_eq!(agent.join().unwrap().unwrap(), "[1, 2]");
}

/// Shared with whoever else holds it: changed behind the approver's back below.
static TARGET: LazyLock<Arc<Mutex<String>>> = LazyLock::new(|| Arc::new(Mutex::new(String::from("notes.txt"))));

#[gate(guard = GUARD)]
fn shred(path: Arc<Mutex<String>>) -> String {
    path.lock().unwrap().clone()
}

#[test]
fn an_edit_does_not_excuse_live_arguments_changed_after_they_were_shown() {
    let agent = std::thread::spawn(|| shred(TARGET.clone()));
    let req = parked("shred", "");
    *TARGET.lock().unwrap() = String::from("/etc/passwd");
    assert_eq!(edit(&req, json!({"path": "notes.txt"})), ResolveOutcome::Resolved);
    assert_eq!(agent.join().unwrap().unwrap_err().reason(), DenyReason::ParamsChanged);
}

static ASYNC_RUNS: AtomicUsize = AtomicUsize::new(0);

#[gate(guard = GUARD)]
async fn post_message(channel: String, text: String) -> String {
    tokio::task::yield_now().await;
    ASYNC_RUNS.fetch_add(1, Ordering::SeqCst);
    format!("#{channel}: {text}")
}

#[gate(guard = GUARD)]
async fn post_to(channel: &str, text: String) -> String {
    tokio::task::yield_now().await;
    format!("#{channel}: {text}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_gate_body_runs_with_the_edited_values_and_a_bad_edit_never_runs_it() {
    let agent = tokio::spawn(post_message("general".into(), "all hands".into()));
    let req = aparked("post_message", "").await;
    let resolver = tokio::spawn(async move { edit(&req, json!({"channel": "staff", "text": "all hands at 3"})) });
    assert_eq!(resolver.await.unwrap(), ResolveOutcome::Resolved);
    assert_eq!(agent.await.unwrap().unwrap(), "#staff: all hands at 3");

    let before = ASYNC_RUNS.load(Ordering::SeqCst);
    let agent = tokio::spawn(post_message("general".into(), "hi".into()));
    let req = aparked("post_message", "").await;
    assert_eq!(
        edit(&req, json!({"channel": ["x"], "text": "hi"})),
        ResolveOutcome::Resolved
    );
    let denied = agent.await.unwrap().unwrap_err();
    assert_eq!(denied.reason(), DenyReason::EditRejected);
    assert!(denied.detail().unwrap().contains("argument `channel`"), "{denied:?}");
    assert_eq!(ASYNC_RUNS.load(Ordering::SeqCst), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_gate_function_with_a_borrowed_argument_refuses_edits() {
    let agent = tokio::spawn(async { post_to("ops", "deploy".into()).await });
    let req = aparked("post_to", "").await;
    assert!(req
        .edit_refused()
        .unwrap()
        .contains("argument `channel` of `post_to` is a `&str`"));
    assert_eq!(
        edit(&req, json!({"channel": "x", "text": "y"})),
        ResolveOutcome::NotAllowedHere
    );
    assert_eq!(GUARD.resolve(req.request_id(), true, None), ResolveOutcome::Resolved);
    assert_eq!(agent.await.unwrap().unwrap(), "#ops: deploy");
}
