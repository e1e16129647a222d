//! Richer answers in every store — in memory (the reference), SQLite (a real file) and PostgreSQL (a real server):
//! each kind of answer (approve, deny, edit, respond) round-trips with its details, a quorum of two counts a vote and
//! then decides, standing grants are made with the approval that asked for them, used, revoked, expired, and dropped
//! after the retention. Requests are parked by a real guard (a real agent thread waiting on the store), answers go
//! to the store. PostgreSQL needs `AGENTGUARD_TEST_POSTGRES_URL` (`.ci/run` sets it); without it those tests say
//! they were skipped and why.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agentguard::answer::{AnswerKind, GrantScope, GrantSpec};
use agentguard::policy::Policy;
use agentguard::store::{ApprovalStore, InMemoryStore, PostgresStore, RequestState, SqliteStore};
use agentguard::{
    ActionDenied, AgentGuard, ApprovalRequest, DenyReason, RequestId, Resolution, ResolveOutcome, ToolCall,
};
use serde_json::{json, Value};

/// Where the stores of one test live: `open` gives a handle on the test's store, with a retention of its own for the
/// sweep tests (the in-memory store cannot be shared, so each `open` is a new one there: a test that needs two
/// handles on one store uses `open` once).
struct Env {
    kind: &'static str,
    dir: tempfile::TempDir,
    postgres: Option<String>,
}

impl Env {
    fn open(&self, retention: Option<Duration>) -> Arc<dyn ApprovalStore> {
        match self.kind {
            "memory" => Arc::new(retention.map_or_else(InMemoryStore::new, InMemoryStore::with_retention)),
            "sqlite" => {
                let store = SqliteStore::open(self.dir.path().join("store.db")).unwrap();
                Arc::new(match retention {
                    Some(r) => store.retention(r),
                    None => store,
                })
            }
            _ => {
                let (base, schema) = self.postgres.as_deref().unwrap().split_once(" ").unwrap();
                let store = PostgresStore::connect(base, Some(schema)).unwrap();
                Arc::new(match retention {
                    Some(r) => store.retention(r),
                    None => store,
                })
            }
        }
    }

    fn store(&self) -> Arc<dyn ApprovalStore> {
        self.open(None)
    }

    fn audit(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }
}

fn memory() -> Option<Env> {
    Some(Env {
        kind: "memory",
        dir: tempfile::tempdir().unwrap(),
        postgres: None,
    })
}

fn sqlite() -> Option<Env> {
    Some(Env {
        kind: "sqlite",
        dir: tempfile::tempdir().unwrap(),
        postgres: None,
    })
}

/// A fresh schema on the test server, or `None` (and a message) when the tests are not configured.
fn postgres() -> Option<Env> {
    let server = common::postgres_server()?;
    let schema = format!("ag_{}", RequestId::new().as_str().replace('-', ""));
    Some(Env {
        kind: "postgres",
        dir: tempfile::tempdir().unwrap(),
        postgres: Some(format!("{server} {schema}")),
    })
}

/// Each behaviour below, once per store: `memory::name`, `sqlite::name`, `postgres::name`.
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod memory { $( #[test] fn $name() { if let Some(env) = super::memory() { super::$name(&env) } } )* }
        mod sqlite { $( #[test] fn $name() { if let Some(env) = super::sqlite() { super::$name(&env) } } )* }
        mod postgres { $( #[test] fn $name() { if let Some(env) = super::postgres() { super::$name(&env) } } )* }
    };
}

on_every_store!(
    an_approval_and_a_denial_keep_their_kind_actor_and_note,
    an_edit_round_trips_and_the_agent_runs_the_edited_params,
    a_response_round_trips_is_final_and_the_tool_never_runs,
    an_answer_on_a_decided_request_changes_nothing,
    a_quorum_of_two_records_a_vote_then_decides_and_refuses_the_rest,
    one_denial_ends_a_quorum_request,
    an_approval_asking_to_be_remembered_makes_a_grant_that_lets_the_next_call_run,
    a_grant_is_used_once_per_call_until_its_uses_are_gone,
    a_revoked_grant_lets_nothing_through_and_keeps_its_first_revocation,
    an_expired_grant_is_neither_offered_nor_usable,
    a_grant_ended_longer_than_the_retention_ago_is_dropped,
    a_grant_that_cannot_be_honoured_is_refused_and_nothing_is_decided,
);

const QUORUM_POLICY: &str = r#"
[principals]
bot = ["dave"]

[[rule]]
name = "two people approve deletions"
tools = ["delete_row"]
action = "ask"
approvers = ["alice", "bob", "carol", "dave"]
quorum = 2
"#;

/// An agent thread with a guard over `store`, parking one call; the executor returns the params it ran with.
struct Parked {
    request: ApprovalRequest,
    agent: JoinHandle<Result<Value, ActionDenied>>,
    ran: Arc<AtomicUsize>,
}

impl Parked {
    fn id(&self) -> RequestId {
        self.request.request_id().clone()
    }

    fn result(self) -> Result<Value, ActionDenied> {
        self.agent.join().unwrap()
    }
}

fn guard(
    store: Arc<dyn ApprovalStore>,
    policy: Option<&str>,
    audit: Option<PathBuf>,
) -> (AgentGuard, mpsc::Receiver<ApprovalRequest>) {
    let (tx, rx) = mpsc::channel();
    let mut builder = AgentGuard::external()
        .shared_store(store)
        .on_request(move |req| {
            let _ = tx.send(req.clone());
        })
        .timeout(Duration::from_secs(60));
    if let Some(policy) = policy {
        builder = builder.policy(Policy::from_toml(policy).unwrap());
    }
    let guard = match audit {
        Some(path) => builder.audit_file(path).build(),
        None => builder.no_audit().build(),
    };
    (guard, rx)
}

fn park_on(guard: &AgentGuard, parked: &mpsc::Receiver<ApprovalRequest>, call: ToolCall) -> Parked {
    let ran = Arc::new(AtomicUsize::new(0));
    let (g, r) = (guard.clone(), ran.clone());
    let agent = std::thread::spawn(move || {
        g.execute(call, |_, params| {
            r.fetch_add(1, Ordering::SeqCst);
            params
        })
    });
    let request = parked.recv_timeout(Duration::from_secs(30)).expect("the call parked");
    Parked { request, agent, ran }
}

fn park(store: Arc<dyn ApprovalStore>, call: ToolCall) -> Parked {
    let (guard, rx) = guard(store, None, None);
    park_on(&guard, &rx, call)
}

fn delete_row(row: u64) -> ToolCall {
    ToolCall::new("delete_row", json!({ "row": row })).agent_id("bot")
}

fn an_approval_and_a_denial_keep_their_kind_actor_and_note(env: &Env) {
    let store = env.store();
    let approved = park(store.clone(), delete_row(1));
    let answer = Resolution::approve(approved.id()).actor("alice").note("checked");
    assert_eq!(store.resolve(&answer).unwrap(), ResolveOutcome::Resolved);
    let id = approved.id();
    assert_eq!(approved.result().unwrap(), json!({"row": 1}));
    let d = store.get(&id).unwrap().unwrap().decision;
    assert_eq!(d.state, RequestState::Executed);
    assert_eq!(
        (d.kind, d.actor.as_deref(), d.note.as_deref()),
        (Some(AnswerKind::Approve), Some("alice"), Some("checked"))
    );
    assert!(d.edited.is_none() && d.response.is_none() && d.grant.is_none() && d.votes.is_empty());

    let denied = park(store.clone(), delete_row(2));
    let answer = Resolution::deny(denied.id()).actor("bob").note("wrong row");
    assert_eq!(store.resolve(&answer).unwrap(), ResolveOutcome::Resolved);
    let id = denied.id();
    let ran = denied.ran.clone();
    assert_eq!(denied.result().unwrap_err().reason(), DenyReason::UserDenied);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    let d = store.get(&id).unwrap().unwrap().decision;
    assert_eq!(d.state, RequestState::Denied);
    assert_eq!(
        (d.kind, d.actor.as_deref(), d.note.as_deref()),
        (Some(AnswerKind::Deny), Some("bob"), Some("wrong row"))
    );
}

fn an_edit_round_trips_and_the_agent_runs_the_edited_params(env: &Env) {
    let store = env.store();
    let parked = park(
        store.clone(),
        ToolCall::new("send_email", json!({"to": "eve@example.com", "body": "hi"})),
    );
    let edited = json!({"to": "bob@example.com", "body": "hi"});
    let answer = Resolution::edit(parked.id(), edited.clone()).actor("alice");
    assert_eq!(store.resolve(&answer).unwrap(), ResolveOutcome::Resolved);
    let id = parked.id();
    assert_eq!(parked.result().unwrap(), edited, "the executor ran the edited params");
    let d = store.get(&id).unwrap().unwrap().decision;
    assert_eq!(d.state, RequestState::Executed);
    assert_eq!(d.kind, Some(AnswerKind::Edit));
    assert_eq!(d.edited, Some(edited));
    assert_eq!(d.actor.as_deref(), Some("alice"));
}

fn a_response_round_trips_is_final_and_the_tool_never_runs(env: &Env) {
    let store = env.store();
    let parked = park(store.clone(), ToolCall::new("refund_order", json!({"order": 7})));
    let text = "already refunded yesterday (ticket 4411)";
    let answer = Resolution::respond(parked.id(), text).actor("carol");
    assert_eq!(store.resolve(&answer).unwrap(), ResolveOutcome::Resolved);
    let id = parked.id();
    let ran = parked.ran.clone();
    let err = parked.result().unwrap_err();
    assert_eq!(err.reason(), DenyReason::Responded);
    assert!(!err.is_denial());
    assert_eq!(err.response(), Some(text));
    assert_eq!(ran.load(Ordering::SeqCst), 0, "the tool never ran");
    let d = store.get(&id).unwrap().unwrap().decision;
    assert_eq!(d.state, RequestState::Responded);
    assert_eq!(d.kind, Some(AnswerKind::Respond));
    assert_eq!(d.response.as_deref(), Some(text));
    // Final: a waiter returns it at once, nothing claims it, expiring it changes nothing.
    let waited = store
        .wait_blocking(&id, Instant::now() + Duration::from_secs(5))
        .unwrap()
        .unwrap();
    assert_eq!(waited.state, RequestState::Responded);
    assert_eq!(waited.response.as_deref(), Some(text));
    assert!(!store.claim(&id).unwrap());
    assert_eq!(store.expire(&id).unwrap().unwrap().state, RequestState::Responded);
    store.abandon(&id).unwrap();
    assert_eq!(store.get(&id).unwrap().unwrap().decision.state, RequestState::Responded);
}

fn an_answer_on_a_decided_request_changes_nothing(env: &Env) {
    let store = env.store();
    let parked = park(store.clone(), delete_row(3));
    let id = parked.id();
    assert_eq!(
        store.resolve(&Resolution::respond(id.clone(), "done by hand")).unwrap(),
        ResolveOutcome::Resolved
    );
    parked.result().unwrap_err();
    for late in [
        Resolution::approve(id.clone()),
        Resolution::edit(id.clone(), json!({"row": 4})),
        Resolution::deny(id.clone()),
    ] {
        assert_eq!(store.resolve(&late).unwrap(), ResolveOutcome::AlreadyResolved);
    }
    let d = store.get(&id).unwrap().unwrap().decision;
    assert_eq!(
        (d.state, d.response.as_deref()),
        (RequestState::Responded, Some("done by hand"))
    );
    assert_eq!(
        store.resolve(&Resolution::approve(RequestId::new())).unwrap(),
        ResolveOutcome::Unknown
    );
}

fn a_quorum_of_two_records_a_vote_then_decides_and_refuses_the_rest(env: &Env) {
    let store = env.store();
    let (guard, rx) = guard(store.clone(), Some(QUORUM_POLICY), Some(env.audit()));
    let parked = park_on(&guard, &rx, delete_row(5));
    let id = parked.id();
    let quorum = parked
        .request
        .quorum()
        .expect("the rule's quorum is on the request")
        .clone();
    assert_eq!(quorum.needed, 2);
    let vote = |actor: Option<&str>| {
        let answer = Resolution::approve(id.clone());
        store
            .resolve(&match actor {
                Some(a) => answer.actor(a),
                None => answer,
            })
            .unwrap()
    };
    assert_eq!(vote(Some("bot")), ResolveOutcome::OwnRequest, "the agent itself");
    assert_eq!(
        vote(Some("dave")),
        ResolveOutcome::OwnRequest,
        "a principal of the agent"
    );
    assert_eq!(vote(Some("mallory")), ResolveOutcome::NotAnApprover);
    assert_eq!(
        vote(None),
        ResolveOutcome::NotAnApprover,
        "a quorum counts named people"
    );
    assert_eq!(
        store
            .resolve(&Resolution::edit(id.clone(), json!({"row": 6})).actor("alice"))
            .unwrap(),
        ResolveOutcome::NotAllowedHere
    );
    assert_eq!(
        store.get(&id).unwrap().unwrap().decision.votes,
        vec![],
        "refused answers leave no vote"
    );

    assert_eq!(
        store
            .resolve(&Resolution::approve(id.clone()).actor("alice").note("looks right"))
            .unwrap(),
        ResolveOutcome::VoteRecorded
    );
    let d = store.get(&id).unwrap().unwrap().decision;
    assert_eq!(d.state, RequestState::Pending, "one vote of two keeps it pending");
    assert_eq!(d.votes.len(), 1);
    assert_eq!((d.votes[0].actor.as_str(), d.votes[0].approve), ("alice", true));
    assert_eq!(d.votes[0].note.as_deref(), Some("looks right"));
    assert_eq!(
        quorum.progress(&d.votes, parked.request.excluded()).to_string(),
        "1 of 2 approvals, waiting for bob or carol"
    );
    assert_eq!(store.pending().unwrap().len(), 1, "still listed as pending");
    assert_eq!(vote(Some("alice")), ResolveOutcome::AlreadyVoted);
    assert_eq!(parked.ran.load(Ordering::SeqCst), 0, "nothing ran on one vote");

    assert_eq!(
        vote(Some("bob")),
        ResolveOutcome::Resolved,
        "the second approval decides"
    );
    assert_eq!(vote(Some("carol")), ResolveOutcome::AlreadyResolved);
    let ran = parked.ran.clone();
    assert_eq!(parked.result().unwrap(), json!({"row": 5}));
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    let d = store.get(&id).unwrap().unwrap().decision;
    assert_eq!(d.state, RequestState::Executed);
    assert_eq!(d.actor.as_deref(), Some("alice, bob"));
    assert_eq!(
        d.votes
            .iter()
            .map(|v| (v.actor.as_str(), v.approve))
            .collect::<Vec<_>>(),
        [("alice", true), ("bob", true)]
    );
    // The agent's process audits each vote, then the verdict.
    let lines = common::audit_lines(&env.audit());
    let votes: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l["event"] == "vote")
        .map(|l| (l["actor"].as_str().unwrap(), l["detail"].as_str().unwrap()))
        .collect();
    assert_eq!(votes, [("alice", "approve"), ("bob", "approve")], "{lines:#?}");
    assert_eq!(lines.last().unwrap()["decision"], "approved", "{lines:#?}");
}

fn one_denial_ends_a_quorum_request(env: &Env) {
    let store = env.store();
    let (guard, rx) = guard(store.clone(), Some(QUORUM_POLICY), None);
    let parked = park_on(&guard, &rx, delete_row(8));
    let id = parked.id();
    assert_eq!(
        store.resolve(&Resolution::approve(id.clone()).actor("alice")).unwrap(),
        ResolveOutcome::VoteRecorded
    );
    assert_eq!(
        store
            .resolve(&Resolution::deny(id.clone()).actor("carol").note("no"))
            .unwrap(),
        ResolveOutcome::Resolved
    );
    let ran = parked.ran.clone();
    assert_eq!(parked.result().unwrap_err().reason(), DenyReason::UserDenied);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    let d = store.get(&id).unwrap().unwrap().decision;
    assert_eq!((d.state, d.actor.as_deref()), (RequestState::Denied, Some("carol")));
    assert_eq!(d.votes.len(), 2);
}

/// Approves `parked` asking to remember it as `spec`; returns the grant's id.
fn approve_remembering(store: &Arc<dyn ApprovalStore>, parked: Parked, spec: GrantSpec) -> String {
    let id = parked.id();
    let answer = Resolution::approve(id.clone()).actor("alice").remember(spec);
    assert_eq!(store.resolve(&answer).unwrap(), ResolveOutcome::Resolved);
    parked.result().unwrap();
    let d = store.get(&id).unwrap().unwrap().decision;
    d.grant.expect("the decision names the grant it made")
}

fn an_approval_asking_to_be_remembered_makes_a_grant_that_lets_the_next_call_run(env: &Env) {
    let store = env.store();
    let (guard, rx) = guard(store.clone(), None, Some(env.audit()));
    let first = park_on(&guard, &rx, delete_row(1));
    let from = first.id();
    let spec = GrantSpec::new(GrantScope::Agent).uses(2).ttl(Duration::from_secs(3600));
    let grant_id = approve_remembering(&store, first, spec);

    let grants = store.grants().unwrap();
    assert_eq!(grants.len(), 1);
    let g = &grants[0];
    assert_eq!(g.id, grant_id);
    assert_eq!(
        (g.tool.as_str(), g.scope, g.agent_id.as_deref()),
        ("delete_row", GrantScope::Agent, Some("bot"))
    );
    assert_eq!((g.created_by.as_deref(), &g.from_request), (Some("alice"), &from));
    assert_eq!((g.uses_left, g.used, g.revoked_at_ms), (Some(2), 0, None));
    assert!(g.expires_at_ms.is_some_and(|t| t > g.created_at_ms));
    assert_eq!(store.grants_for("delete_row").unwrap(), grants);
    assert!(store.grants_for("drop_table").unwrap().is_empty());

    // The same agent's next call runs without asking; another agent's call is asked.
    let out = guard.execute(delete_row(2), |_, p| p).unwrap();
    assert_eq!(out, json!({"row": 2}));
    assert!(rx.try_recv().is_err(), "nobody was asked");
    let g = store.grants().unwrap().remove(0);
    assert_eq!((g.used, g.uses_left), (1, Some(1)));
    let other = park_on(
        &guard,
        &rx,
        ToolCall::new("delete_row", json!({"row": 3})).agent_id("other-bot"),
    );
    assert_eq!(
        store.resolve(&Resolution::deny(other.id())).unwrap(),
        ResolveOutcome::Resolved
    );
    other.result().unwrap_err();

    let lines = common::audit_lines(&env.audit());
    let made: Vec<&Value> = lines.iter().filter(|l| l["grant"]["made"] == true).collect();
    assert_eq!(made.len(), 1, "{lines:#?}");
    assert_eq!(made[0]["grant"]["id"], grant_id.as_str());
    let through: Vec<&Value> = lines.iter().filter(|l| l["grant"]["by"] == "alice").collect();
    assert_eq!(through.len(), 1, "{lines:#?}");
    assert_eq!(through[0]["grant"]["id"], grant_id.as_str());
    assert_eq!(through[0]["decision"], "allowed");
}

fn a_grant_is_used_once_per_call_until_its_uses_are_gone(env: &Env) {
    let store = env.store();
    let grant = approve_remembering(
        &store,
        park(store.clone(), delete_row(1)),
        GrantSpec::new(GrantScope::Everyone).uses(3),
    );
    for _ in 0..3 {
        assert!(store.use_grant(&grant).unwrap());
    }
    assert!(!store.use_grant(&grant).unwrap(), "no use left");
    let g = store.grants().unwrap().remove(0);
    assert_eq!((g.used, g.uses_left), (3, Some(0)));
    assert_eq!(g.expires_at_ms, None, "bounded by uses, not time");
    assert_eq!(g.status(now_ms()), "used up");
    assert!(store.grants_for("delete_row").unwrap().is_empty());
    assert!(!store.use_grant("no-such-grant").unwrap());
}

fn a_revoked_grant_lets_nothing_through_and_keeps_its_first_revocation(env: &Env) {
    let store = env.store();
    let grant = approve_remembering(
        &store,
        park(store.clone(), delete_row(1)),
        GrantSpec::new(GrantScope::Everyone),
    );
    assert!(store.use_grant(&grant).unwrap());
    assert!(store.use_grant(&grant).unwrap());
    let revoked = store.revoke_grant(&grant, Some("carol")).unwrap().unwrap();
    assert_eq!(revoked.used, 2, "the final count");
    assert_eq!(revoked.revoked_by.as_deref(), Some("carol"));
    let at = revoked.revoked_at_ms.unwrap();
    assert_eq!(revoked.status(now_ms()), "revoked");
    assert!(!store.use_grant(&grant).unwrap(), "a revoked grant is not used");
    assert!(store.grants_for("delete_row").unwrap().is_empty());
    let again = store.revoke_grant(&grant, Some("dave")).unwrap().unwrap();
    assert_eq!(
        (again.revoked_by.as_deref(), again.revoked_at_ms, again.used),
        (Some("carol"), Some(at), 2)
    );
    assert_eq!(store.grants().unwrap(), vec![again], "still listed, as revoked");
    assert!(store.revoke_grant("no-such-grant", Some("carol")).unwrap().is_none());
}

fn an_expired_grant_is_neither_offered_nor_usable(env: &Env) {
    let store = env.store();
    let grant = approve_remembering(
        &store,
        park(store.clone(), delete_row(1)),
        GrantSpec::new(GrantScope::Everyone).ttl(Duration::from_secs(1)),
    );
    assert_eq!(store.grants_for("delete_row").unwrap().len(), 1);
    let until = Instant::now() + Duration::from_secs(10);
    while !store.grants_for("delete_row").unwrap().is_empty() {
        assert!(Instant::now() < until, "the grant outlived its ttl");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!store.use_grant(&grant).unwrap());
    let g = store.grants().unwrap().remove(0);
    assert_eq!((g.used, g.status(now_ms())), (0, "expired"));
}

fn a_grant_ended_longer_than_the_retention_ago_is_dropped(env: &Env) {
    let store = env.open(Some(Duration::ZERO));
    let ended = approve_remembering(
        &store,
        park(store.clone(), delete_row(1)),
        GrantSpec::new(GrantScope::Everyone),
    );
    let active = approve_remembering(
        &store,
        park(store.clone(), ToolCall::new("truncate_log", json!({}))),
        GrantSpec::new(GrantScope::Everyone),
    );
    store.revoke_grant(&ended, None).unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(5)); // the clock moves past the revocation
                                                  // The database stores sweep on insert; the in-memory store when its grants are read.
    let parked = park(store.clone(), ToolCall::new("drop_table", json!({"table": "t"})));
    store.resolve(&Resolution::deny(parked.id())).unwrap();
    parked.result().unwrap_err();
    let kept: Vec<String> = store.grants().unwrap().into_iter().map(|g| g.id).collect();
    assert_eq!(kept, [active], "the revoked grant was dropped, the active one kept");
}

fn a_grant_that_cannot_be_honoured_is_refused_and_nothing_is_decided(env: &Env) {
    let store = env.store();
    // Scope `session` for a call without a session; a quorum request; uses = 0.
    let parked = park(store.clone(), delete_row(1));
    let id = parked.id();
    for spec in [
        GrantSpec::new(GrantScope::Session),
        GrantSpec::new(GrantScope::Everyone).uses(0),
    ] {
        let answer = Resolution::approve(id.clone()).actor("alice").remember(spec);
        assert_eq!(store.resolve(&answer).unwrap(), ResolveOutcome::NotAllowedHere);
    }
    assert_eq!(store.get(&id).unwrap().unwrap().decision.state, RequestState::Pending);
    assert!(store.grants().unwrap().is_empty());
    store.resolve(&Resolution::deny(id)).unwrap();
    parked.result().unwrap_err();

    let (guard, rx) = guard(store.clone(), Some(QUORUM_POLICY), None);
    let quorum = park_on(&guard, &rx, delete_row(2));
    let answer = Resolution::approve(quorum.id())
        .actor("alice")
        .remember(GrantSpec::new(GrantScope::Everyone));
    assert_eq!(store.resolve(&answer).unwrap(), ResolveOutcome::NotAllowedHere);
    assert!(store.get(&quorum.id()).unwrap().unwrap().decision.votes.is_empty());
    store.resolve(&Resolution::deny(quorum.id()).actor("bob")).unwrap();
    quorum.result().unwrap_err();
    assert!(store.grants().unwrap().is_empty());
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
