//! Races of richer answers over real OS processes, on SQLite (a real file) and PostgreSQL (a real server): two
//! approver processes casting the last vote of a quorum at once run the call exactly once; a one-use grant claimed by
//! 32 agent processes at once lets exactly one run and the other 31 ask; a revocation racing uses counts exactly the
//! uses that happened (the store's final `used`, the audit lines and the executor runs agree). Every process waits
//! for "ready" lines before the start, every read is bounded. PostgreSQL needs `AGENTGUARD_TEST_POSTGRES_URL`
//! (`.ci/run` sets it); without it those tests say they were skipped and why.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentguard::answer::{GrantScope, GrantSpec};
use agentguard::store::{open_store, ApprovalStore, RequestState};
use agentguard::{AgentGuard, RequestId, Resolution, ResolveOutcome, ToolCall};
use common::HELPER;
use serde_json::{json, Value};

/// How long any one line from a helper process may take.
const LINE_TIMEOUT: Duration = Duration::from_secs(60);

fn trials(default: usize) -> usize {
    std::env::var("AGENTGUARD_ANSWER_RACE_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A helper process: its stdin, and its stdout lines through a channel, so every read is bounded.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    name: String,
}

impl Proc {
    fn start(name: &str, args: &[&str]) -> Proc {
        let mut child = Command::new(HELPER)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            stdin,
            lines,
            name: name.to_owned(),
        }
    }

    /// An agent process parking on `url`; its executor runs go to `dir/ran.txt`, its audit to `dir/<name>.log`.
    fn agent(url: &str, dir: &Path, name: &str, timeout_ms: u64, policy: Option<&Path>) -> Proc {
        let policy = policy.map_or("-".to_owned(), |p| p.display().to_string());
        Proc::start(
            name,
            &[
                "answers-agent",
                url,
                &timeout_ms.to_string(),
                &dir.join("ran.txt").display().to_string(),
                &dir.join(format!("{name}.log")).display().to_string(),
                &policy,
            ],
        )
    }

    fn voter(url: &str, actor: &str) -> Proc {
        Proc::start(actor, &["answers-voter", url, actor])
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(LINE_TIMEOUT)
            .unwrap_or_else(|e| panic!("{}: no line within {LINE_TIMEOUT:?}: {e}", self.name))
    }

    fn ready(&self) {
        assert_eq!(self.line(), "ready", "{}", self.name);
    }

    fn parked(&self) -> RequestId {
        let line = self.line();
        line.strip_prefix("parked ")
            .unwrap_or_else(|| panic!("{}: expected a parked line, got {line:?}", self.name))
            .parse()
            .unwrap()
    }

    fn json(&self) -> Value {
        let line = self.line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}: {line:?}: {e}", self.name))
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Closes stdin and waits (bounded) for a successful exit.
    fn finish(mut self) {
        drop(self.stdin.take());
        let until = Instant::now() + LINE_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{} exited with {status}", self.name);
                return;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!("{} did not exit", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A failed test leaves no process behind.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn ran_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("ran.txt"))
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Every audit line of every process in `dir`.
fn audit(dir: &Path) -> Vec<Value> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            lines.extend(common::audit_lines(&path));
        }
    }
    lines
}

/// The audit lines of calls grant `id` let through.
fn grant_uses(lines: &[Value], id: &str) -> usize {
    lines
        .iter()
        .filter(|l| l["grant"]["id"] == id && l["grant"]["made"] != true)
        .count()
}

/// Makes a grant the way a person does: an agent thread (in this process) parks a call of `tool`, and it is
/// approved asking to remember it as `spec`. Returns the grant's id.
fn make_grant(store: &Arc<dyn ApprovalStore>, tool: &str, spec: GrantSpec) -> String {
    let (tx, rx) = mpsc::channel();
    let guard = AgentGuard::external()
        .shared_store(store.clone())
        .on_request(move |req| {
            let _ = tx.send(req.request_id().clone());
        })
        .timeout(Duration::from_secs(60))
        .no_audit()
        .build();
    let call = ToolCall::new(tool, json!({"first": true}));
    let agent = std::thread::spawn(move || guard.execute(call, |_, _| ()));
    let id = rx.recv_timeout(LINE_TIMEOUT).unwrap();
    let answer = Resolution::approve(id.clone()).actor("alice").remember(spec);
    assert_eq!(store.resolve(&answer).unwrap(), ResolveOutcome::Resolved);
    agent.join().unwrap().unwrap();
    store
        .get(&id)
        .unwrap()
        .unwrap()
        .decision
        .grant
        .expect("a grant was made")
}

const QUORUM_POLICY: &str = r#"
[[rule]]
name = "two people approve deletions"
tools = ["delete_row"]
action = "ask"
approvers = ["alice", "bob", "carol"]
quorum = 2
"#;

/// (a) Alice votes first; then bob and carol, in two processes, cast the last vote at the same moment: exactly one
/// of them decides, the other is told it was already decided, and the agent process runs the call exactly once.
fn two_approvers_casting_the_last_vote_at_once_run_the_call_exactly_once(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, QUORUM_POLICY).unwrap();
    let mut agent = Proc::agent(url, dir.path(), "agent", 60_000, Some(&policy));
    let mut voters = [Proc::voter(url, "bob"), Proc::voter(url, "carol")];
    agent.ready();
    voters.iter().for_each(Proc::ready);
    let store = open_store(url).unwrap();
    let trials = trials(20);
    let mut wins = [0usize; 2];
    for trial in 0..trials {
        agent.send(&json!({"tool": "delete_row", "agent": "bot", "params": {"trial": trial}}).to_string());
        let id = agent.parked();
        assert_eq!(
            store.resolve(&Resolution::approve(id.clone()).actor("alice")).unwrap(),
            ResolveOutcome::VoteRecorded
        );
        for v in &mut voters {
            v.send(id.as_str());
        }
        let outcomes: Vec<String> = voters.iter().map(Proc::line).collect();
        let winner = outcomes
            .iter()
            .position(|o| o == "RESOLVED")
            .unwrap_or_else(|| panic!("trial {trial}: nobody decided: {outcomes:?}"));
        assert_eq!(outcomes[1 - winner], "ALREADY_RESOLVED", "trial {trial}: {outcomes:?}");
        wins[winner] += 1;
        assert_eq!(agent.json(), json!({"ok": {"trial": trial}}), "trial {trial}");
        let d = store.get(&id).unwrap().unwrap().decision;
        assert_eq!(d.state, RequestState::Executed, "trial {trial}");
        let deciders = format!("alice, {}", ["bob", "carol"][winner]);
        assert_eq!(d.actor.as_deref(), Some(deciders.as_str()), "trial {trial}");
        assert_eq!(d.votes.len(), 2, "trial {trial}: the late vote was not counted");
    }
    agent.finish();
    voters.into_iter().for_each(Proc::finish);
    let ran = ran_lines(dir.path());
    assert_eq!(ran.len(), trials, "each call ran exactly once: {ran:?}");
    for trial in 0..trials {
        assert_eq!(
            ran.iter()
                .filter(|l| **l == format!("ran delete_row {{\"trial\":{trial}}}"))
                .count(),
            1,
            "trial {trial}"
        );
    }
    let lines = audit(dir.path());
    assert_eq!(lines.iter().filter(|l| l["event"] == "vote").count(), 2 * trials);
    assert_eq!(lines.iter().filter(|l| l["decision"] == "approved").count(), trials);
    println!("bob decided {} times, carol {} times", wins[0], wins[1]);
}

/// (b) A one-use grant (made by an approval with remember = everyone, uses = 1), and 32 agent processes making the
/// same call at once: exactly one runs without asking, the other 31 park a request.
fn a_one_use_grant_claimed_by_32_agents_at_once_lets_exactly_one_run(url: &str) {
    const AGENTS: usize = 32;
    let store = open_store(url).unwrap();
    for trial in 0..trials(3) {
        let dir = tempfile::tempdir().unwrap();
        let mut agents: Vec<Proc> = (0..AGENTS)
            .map(|i| Proc::agent(url, dir.path(), &format!("agent-{i}"), 60_000, None))
            .collect();
        agents.iter().for_each(Proc::ready);
        let grant = make_grant(&store, "delete_row", GrantSpec::new(GrantScope::Everyone).uses(1));
        let call = json!({"tool": "delete_row", "agent": "worker", "params": {"trial": trial}}).to_string();
        for a in &mut agents {
            a.send(&call);
        }
        let (mut ran, mut asked) = (0, Vec::new());
        for (i, a) in agents.iter().enumerate() {
            let line = a.line();
            match line.strip_prefix("parked ") {
                Some(id) => asked.push((i, id.parse::<RequestId>().unwrap())),
                None => {
                    assert_eq!(
                        serde_json::from_str::<Value>(&line).unwrap(),
                        json!({"ok": {"trial": trial}})
                    );
                    ran += 1;
                }
            }
        }
        assert_eq!(
            (ran, asked.len()),
            (1, AGENTS - 1),
            "trial {trial}: exactly one ran, the rest asked"
        );
        for (i, id) in &asked {
            assert_eq!(
                store.resolve(&Resolution::deny(id.clone()).actor("bob")).unwrap(),
                ResolveOutcome::Resolved
            );
            let d = agents[*i].json();
            assert_eq!(d["reason"], "user_denied", "trial {trial}: {d}");
        }
        agents.into_iter().for_each(Proc::finish);
        assert_eq!(ran_lines(dir.path()).len(), 1, "trial {trial}: one executor run");
        let g = store.grants().unwrap().into_iter().find(|g| g.id == grant).unwrap();
        assert_eq!((g.used, g.uses_left), (1, Some(0)), "trial {trial}");
        assert_eq!(
            grant_uses(&audit(dir.path()), &grant),
            1,
            "trial {trial}: one audited grant use"
        );
    }
}

/// (c) 8 agent processes use a grant in a loop while it is revoked: the revocation returns the final `used`, and the
/// audit's grant uses and the executor runs both equal it — a use happened before the revocation, or not at all.
fn a_revoke_racing_uses_counts_exactly_the_uses_that_happened(url: &str) {
    const AGENTS: usize = 8;
    let store = open_store(url).unwrap();
    for (trial, after) in [1u32, 10, 50].into_iter().enumerate().take(trials(3)) {
        let dir = tempfile::tempdir().unwrap();
        // A short timeout: once the grant is revoked, each loop's next call asks, nobody answers, and it ends.
        let mut agents: Vec<Proc> = (0..AGENTS)
            .map(|i| Proc::agent(url, dir.path(), &format!("agent-{i}"), 300, None))
            .collect();
        agents.iter().for_each(Proc::ready);
        let tool = format!("delete_row_{trial}");
        let grant = make_grant(&store, &tool, GrantSpec::new(GrantScope::Everyone));
        let call = json!({"tool": tool, "params": {}, "loop": true}).to_string();
        for a in &mut agents {
            a.send(&call);
        }
        // Revoke once the grant is in use (at least `after` uses).
        let until = Instant::now() + LINE_TIMEOUT;
        while store.grants().unwrap().iter().find(|g| g.id == grant).unwrap().used < after {
            assert!(Instant::now() < until, "trial {trial}: the grant was not used");
            std::thread::sleep(Duration::from_millis(2));
        }
        let revoked = store.revoke_grant(&grant, Some("carol")).unwrap().unwrap();
        assert!(revoked.used >= after);
        let mut runs = 0u64;
        for a in &agents {
            let mut line = a.line();
            if line.starts_with("parked ") {
                line = a.line();
            }
            let end: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(end["ended"]["reason"], "approval_timeout", "trial {trial}: {end}");
            runs += end["runs"].as_u64().unwrap();
        }
        agents.into_iter().for_each(Proc::finish);
        let used = u64::from(revoked.used);
        assert_eq!(runs, used, "trial {trial}: the agents' runs are the final count");
        assert_eq!(ran_lines(dir.path()).len() as u64, used, "trial {trial}: executor runs");
        assert_eq!(
            grant_uses(&audit(dir.path()), &grant) as u64,
            used,
            "trial {trial}: audited uses"
        );
        let after_all = store.grants().unwrap().into_iter().find(|g| g.id == grant).unwrap();
        assert_eq!(
            after_all.used, revoked.used,
            "trial {trial}: no use after the revocation"
        );
        println!("trial {trial}: revoked after {used} uses");
    }
}

macro_rules! on_sqlite_and_postgres {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() {
                let dir = tempfile::tempdir().unwrap();
                super::$name(&format!("sqlite:{}", dir.path().join("store.db").display()))
            } )*
        }
        mod postgres {
            $( #[test] fn $name() { if let Some(url) = super::postgres_url() { super::$name(&url) } } )*
        }
    };
}

on_sqlite_and_postgres!(
    two_approvers_casting_the_last_vote_at_once_run_the_call_exactly_once,
    a_one_use_grant_claimed_by_32_agents_at_once_lets_exactly_one_run,
    a_revoke_racing_uses_counts_exactly_the_uses_that_happened,
);

/// A store URL in a fresh schema of the test server, or `None` (and a message) when the tests are not configured.
fn postgres_url() -> Option<String> {
    match std::env::var("AGENTGUARD_TEST_POSTGRES_URL") {
        Ok(server) if !server.is_empty() => {
            let schema = format!("ag_{}", RequestId::new().as_str().replace('-', ""));
            let sep = if server.contains('?') { '&' } else { '?' };
            Some(format!("{server}{sep}schema={schema}"))
        }
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set AGENTGUARD_TEST_POSTGRES_URL (.ci/run does)"
            );
            eprintln!(
                "skipped: AGENTGUARD_TEST_POSTGRES_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}
