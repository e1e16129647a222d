//! Feature `tracing`: the span of each call and the event of each decision, captured by a real `tracing` subscriber
//! (a hand-written one: it keeps every span's and event's fields) over real calls — safe, approved, denied, expired,
//! a run that panics, and an async run whose own events nest under the call's span. Params never appear.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use agentguard::{AgentGuard, ApprovalRequest, ToolCall};
use serde_json::{json, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// A value put in every call's params: it must never show up in a span or an event.
const SECRET_PARAM: &str = "param-value-that-must-not-be-traced";

#[derive(Debug, Clone)]
struct SpanRec {
    name: &'static str,
    target: String,
    fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
struct EventRec {
    name: &'static str,
    target: String,
    level: tracing::Level,
    parent: Option<u64>,
    fields: BTreeMap<String, String>,
}

#[derive(Default)]
struct Collector {
    next: AtomicU64,
    spans: Mutex<HashMap<u64, SpanRec>>,
    events: Mutex<Vec<EventRec>>,
}

thread_local! {
    static ENTERED: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

struct Handle(&'static Collector);

impl Subscriber for Handle {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.0.next.fetch_add(1, Ordering::SeqCst) + 1;
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let meta = attrs.metadata();
        self.0.spans.lock().unwrap().insert(
            id,
            SpanRec {
                name: meta.name(),
                target: meta.target().to_owned(),
                fields,
            },
        );
        Id::from_u64(id)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some(rec) = self.0.spans.lock().unwrap().get_mut(&span.into_u64()) {
            values.record(&mut Fields(&mut rec.fields));
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let parent = match event.parent() {
            Some(id) => Some(id.into_u64()),
            None if event.is_contextual() => ENTERED.with(|s| s.borrow().last().copied()),
            None => None,
        };
        let meta = event.metadata();
        self.0.events.lock().unwrap().push(EventRec {
            name: meta.name(),
            target: meta.target().to_owned(),
            level: *meta.level(),
            parent,
            fields,
        });
    }
    fn enter(&self, span: &Id) {
        ENTERED.with(|s| s.borrow_mut().push(span.into_u64()));
    }
    fn exit(&self, span: &Id) {
        ENTERED.with(|s| {
            let mut s = s.borrow_mut();
            if let Some(at) = s.iter().rposition(|id| *id == span.into_u64()) {
                s.remove(at);
            }
        });
    }
}

/// The process-wide collector (installed once, before any test makes a call). Tests run in parallel, so each one
/// reads back only the spans of its own session id.
fn collector() -> &'static Collector {
    static COLLECTOR: OnceLock<&'static Collector> = OnceLock::new();
    COLLECTOR.get_or_init(|| {
        let c: &'static Collector = Box::leak(Box::default());
        tracing::subscriber::set_global_default(Handle(c)).expect("no other global subscriber");
        c
    })
}

/// The one `execute_tool` span of `session` and the events under it, in order.
fn captured(session: &str) -> (SpanRec, Vec<EventRec>) {
    let c = collector();
    let spans = c.spans.lock().unwrap();
    let mine: Vec<(u64, &SpanRec)> = spans
        .iter()
        .filter(|(_, s)| s.fields.get("gen_ai.conversation.id").map(String::as_str) == Some(session))
        .map(|(id, s)| (*id, s))
        .collect();
    assert_eq!(mine.len(), 1, "one span for session {session}: {mine:?}");
    let (id, span) = mine[0];
    let events = c
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.parent == Some(id))
        .cloned()
        .collect();
    (span.clone(), events)
}

fn decisions(events: &[EventRec]) -> Vec<&str> {
    events
        .iter()
        .filter(|e| e.target == "agentguard")
        .map(|e| e.fields["agentguard.decision"].as_str())
        .collect()
}

fn assert_no_params(span: &SpanRec, events: &[EventRec]) {
    let all = span
        .fields
        .values()
        .chain(events.iter().flat_map(|e| e.fields.values()));
    for value in all {
        assert!(!value.contains(SECRET_PARAM), "a param value was traced: {value}");
    }
}

fn call(tool: &str, session: &str) -> ToolCall {
    ToolCall::new(tool, json!({"id": 7, "note": SECRET_PARAM}))
        .agent_id("support-bot")
        .session_id(session)
        .call_id(format!("call-{session}"))
}

fn run(name: &str, _params: Value) -> String {
    format!("ran {name}")
}

#[test]
fn safe_call_has_an_execute_tool_span_with_genai_attributes_and_allowed_then_executed_events() {
    collector();
    let guard = AgentGuard::callback(|_| panic!("a safe call asks nobody"))
        .no_audit()
        .build();
    guard.execute(call("read_customer", "t-safe"), run).unwrap();

    let (span, events) = captured("t-safe");
    assert_eq!(span.name, "execute_tool");
    assert_eq!(span.target, "agentguard");
    let f = &span.fields;
    assert_eq!(f["otel.name"], "execute_tool read_customer");
    assert_eq!(f["gen_ai.operation.name"], "execute_tool");
    assert_eq!(f["gen_ai.tool.name"], "read_customer");
    assert_eq!(f["gen_ai.tool.type"], "function");
    assert_eq!(f["gen_ai.tool.call.id"], "call-t-safe");
    assert_eq!(f["gen_ai.agent.id"], "support-bot");
    assert_eq!(f["agentguard.decision"], "allowed");
    assert_eq!(f["agentguard.outcome"], "executed");
    assert!(
        !f.contains_key("agentguard.request_id"),
        "nobody was asked: no request: {f:?}"
    );
    assert_eq!(decisions(&events), ["allowed", "executed"]);
    assert_eq!(events[0].name, "agentguard.allowed");
    assert_eq!(events[1].name, "agentguard.executed");
    assert_no_params(&span, &events);
}

#[test]
fn approved_call_records_risk_request_digest_and_actor_without_params() {
    collector();
    let seen = Arc::new(Mutex::new(None::<ApprovalRequest>));
    let s = seen.clone();
    let guard = AgentGuard::callback(move |req| {
        *s.lock().unwrap() = Some(req.clone());
        true
    })
    .no_audit()
    .build();
    guard.execute(call("delete_customer", "t-approved"), run).unwrap();
    let req = seen.lock().unwrap().clone().expect("asked");

    let (span, events) = captured("t-approved");
    assert_eq!(decisions(&events), ["parked", "approved", "executed"]);
    let f = &span.fields;
    assert_eq!(f["agentguard.risk"], "irreversible");
    assert_eq!(f["agentguard.request_id"], req.request_id().as_str());
    assert_eq!(f["agentguard.params_digest"], req.params_digest().as_str());
    assert_eq!(f["agentguard.decision"], "approved");
    assert_eq!(f["agentguard.actor"], "callback");
    assert_eq!(f["agentguard.outcome"], "executed");
    assert!(!f.contains_key("error.type"), "{f:?}");
    let parked = &events[0];
    assert_eq!(parked.name, "agentguard.parked");
    assert_eq!(parked.level, tracing::Level::INFO);
    assert_eq!(parked.fields["agentguard.request_id"], req.request_id().as_str());
    assert_eq!(parked.fields["agentguard.risk"], "irreversible");
    assert_eq!(parked.fields["agentguard.params_digest"], req.params_digest().as_str());
    assert_eq!(events[1].fields["agentguard.actor"], "callback");
    assert_no_params(&span, &events);
}

#[test]
fn denied_call_records_the_reason_as_error_type_and_never_an_executed_event() {
    collector();
    let guard = AgentGuard::callback(|_| false).no_audit().build();
    let denied = guard.execute(call("send_email", "t-denied"), run).unwrap_err();

    let (span, events) = captured("t-denied");
    assert_eq!(decisions(&events), ["parked", "denied"]);
    let f = &span.fields;
    assert_eq!(f["agentguard.decision"], "denied");
    assert_eq!(f["agentguard.reason"], "user_denied");
    assert_eq!(f["error.type"], "user_denied");
    assert_eq!(f["agentguard.risk"], "external_send");
    assert!(!f.contains_key("agentguard.outcome"), "nothing ran: {f:?}");
    let ev = &events[1];
    assert_eq!(ev.name, "agentguard.denied");
    assert_eq!(ev.level, tracing::Level::WARN);
    assert_eq!(ev.fields["agentguard.reason"], "user_denied");
    assert_eq!(
        ev.fields["agentguard.request_id"],
        denied.request_id().expect("gated").as_str()
    );
    assert_no_params(&span, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_call_under_aexecute_records_expired_with_approval_timeout() {
    collector();
    let guard = AgentGuard::external()
        .timeout(Duration::from_millis(50))
        .no_audit()
        .build();
    let out = guard
        .aexecute(call("drop_table", "t-expired"), |name, _| async move { name })
        .await;
    assert_eq!(out.unwrap_err().reason(), agentguard::DenyReason::ApprovalTimeout);

    let (span, events) = captured("t-expired");
    assert_eq!(decisions(&events), ["parked", "expired"]);
    assert_eq!(span.fields["agentguard.decision"], "expired");
    assert_eq!(span.fields["error.type"], "approval_timeout");
    assert_eq!(events[1].name, "agentguard.expired");
    assert_no_params(&span, &events);
}

#[test]
fn a_run_that_panics_records_failed() {
    collector();
    let guard = AgentGuard::callback(|_| true).no_audit().build();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        guard.execute(call("delete_file", "t-panic"), |_, _| -> String {
            panic!("tool crashed")
        })
    }));
    assert!(panicked.is_err());

    let (span, events) = captured("t-panic");
    assert_eq!(decisions(&events), ["parked", "approved", "failed"]);
    assert_eq!(span.fields["agentguard.outcome"], "failed");
    assert_eq!(span.fields["error.type"], "executor_panicked");
    assert_eq!(events[2].fields["agentguard.reason"], "executor_panicked");
    assert_no_params(&span, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executors_own_events_nest_under_the_call_span_in_async_code() {
    collector();
    let guard = AgentGuard::async_callback(|_| async { true }).no_audit().build();
    guard
        .aexecute(call("update_email", "t-nested"), |_, _| async {
            tokio::task::yield_now().await;
            tracing::info!(target: "my_tool", "inside the tool");
        })
        .await
        .unwrap();

    let (span, events) = captured("t-nested");
    assert_eq!(decisions(&events), ["parked", "approved", "executed"]);
    let inside: Vec<_> = events.iter().filter(|e| e.target == "my_tool").collect();
    assert_eq!(
        inside.len(),
        1,
        "the tool's event is a child of the call span: {events:?}"
    );
    assert_eq!(inside[0].fields["message"], "inside the tool");
    assert_no_params(&span, &events);
}

#[test]
fn a_refused_call_is_one_denied_event_with_invalid_call() {
    collector();
    let guard = AgentGuard::callback(|_| true).no_audit().build();
    let long = "x".repeat(ToolCall::MAX_TEXT_BYTES + 1);
    let denied = guard
        .execute(call("delete_file", "t-invalid").reason(long), run)
        .unwrap_err();
    assert_eq!(denied.reason(), agentguard::DenyReason::InvalidCall);

    let (span, events) = captured("t-invalid");
    assert_eq!(decisions(&events), ["denied"]);
    assert_eq!(span.fields["agentguard.reason"], "invalid_call");
    assert_no_params(&span, &events);
}

#[test]
fn a_policy_rule_that_asks_is_named_on_the_span_and_a_policy_denial_is_a_denied_event() {
    collector();
    let policy = agentguard::policy::Policy::from_toml(
        r#"
[[rule]]
name = "invoices are checked"
tools = ["view_invoice"]
action = "ask"

[[rule]]
name = "no wire transfers"
tools = ["wire_money"]
action = "deny"
message = "wire transfers go through finance"
"#,
    )
    .unwrap();
    let guard = AgentGuard::callback(|_| true).policy(policy).no_audit().build();
    guard.execute(call("view_invoice", "t-policy-ask"), run).unwrap();
    let denied = guard.execute(call("wire_money", "t-policy-deny"), run).unwrap_err();
    assert_eq!(denied.reason(), agentguard::DenyReason::PolicyDenied);

    let (span, events) = captured("t-policy-ask");
    assert_eq!(decisions(&events), ["parked", "approved", "executed"]);
    assert_eq!(span.fields["agentguard.policy.rule"], "invoices are checked");
    assert_eq!(events[0].fields["agentguard.policy.rule"], "invoices are checked");
    assert_no_params(&span, &events);

    let (span, events) = captured("t-policy-deny");
    assert_eq!(decisions(&events), ["denied"]);
    assert_eq!(span.fields["agentguard.reason"], "policy_denied");
    assert_no_params(&span, &events);
}
