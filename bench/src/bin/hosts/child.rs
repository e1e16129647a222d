//! The two kinds of child process (this binary re-executed), and the coordinator's side of their pipes.
//!
//! - `hosts __agent URL CALLS TIMEOUT_S`: opens its own store, says `ready`, and on `go` parks CALLS calls at once
//!   through `aexecute` on an external guard. It says `parked N` once all are in the store (or were refused by
//!   it), `ran ID NS` for each call whose executor ran (NS: wall clock at the executor's first line), `denied CALL
//!   REASON` for each that did not, then `done`.
//! - `hosts __approver URL INDEX COUNT`: opens its own store, says `ready`, and on `go` lists the pending requests
//!   (a page at a time) and approves its share, 64 answers in flight, again and again until `stop`: the requests
//!   whose id hashes to INDEX, and one in eight of the next approver's, so that some answers race (the first wins). For each answer: `res ID START END
//!   OUTCOME` (wall clock just before and after `resolve`).
//!
//! A child whose stdin closes (the coordinator is gone) exits at once; `error …` is a child that could not start.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use agentguard::store::open_store;
use agentguard::{AgentGuard, RequestId, Resolution, ResolveOutcome, ToolCall};
use serde_json::json;

use super::wall_ns;

/// Prints one line to stdout, whole, and flushes it.
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Blocks until the coordinator writes `go`; stdin is read on a thread, which sets `stop` on `stop` and exits the
/// process when stdin closes.
fn wait_for_go(stop: Arc<AtomicBool>) {
    let (go_tx, go) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            match line.as_deref() {
                Ok("go") => {
                    let _ = go_tx.send(());
                }
                Ok("stop") => stop.store(true, Ordering::SeqCst),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        std::process::exit(3);
    });
    let _ = go.recv();
}

/// An agent process: see the module docs.
pub(super) fn agent_process(args: &[String]) {
    let [url, calls, timeout_s] = args else {
        say(format_args!("error usage: hosts __agent URL CALLS TIMEOUT_S"));
        std::process::exit(2);
    };
    let calls: usize = calls.parse().expect("CALLS");
    let timeout = Duration::from_secs(timeout_s.parse().expect("TIMEOUT_S"));
    let store = open_store(url).unwrap_or_else(|e| {
        say(format_args!("error cannot open the store: {e}"));
        std::process::exit(1)
    });
    say(format_args!("ready"));
    wait_for_go(Arc::new(AtomicBool::new(false)));
    // Request ids by call number, filled in as each call is parked.
    let ids: Arc<Mutex<HashMap<u64, String>>> = Arc::default();
    // Calls parked, or denied before they could be (the store refused the insert): `parked` is said when all are
    // one or the other, so the coordinator never waits for a call that will not come.
    let settled = Arc::new(AtomicUsize::new(0));
    let settle = move || {
        if settled.fetch_add(1, Ordering::SeqCst) + 1 == calls {
            say(format_args!("parked {calls}"));
        }
    };
    let guard = {
        let (ids, settle) = (ids.clone(), settle.clone());
        AgentGuard::external()
            .shared_store(store)
            .on_request(move |req| {
                let call = req.params()["call"].as_u64().unwrap_or(u64::MAX);
                ids.lock().expect("ids").insert(call, req.request_id().to_string());
                settle();
            })
            .timeout(timeout)
            .no_audit()
            .build()
    };
    let rt = super::runtime();
    rt.block_on(async {
        let tasks: Vec<_> = (0..calls as u64)
            .map(|call| {
                let (g, ids, settle) = (guard.clone(), ids.clone(), settle.clone());
                tokio::spawn(async move {
                    let call_args = json!({ "call": call });
                    let out = g
                        .aexecute(ToolCall::new("delete_row", call_args), |_, _| async { wall_ns() })
                        .await;
                    if out.is_err() && !ids.lock().expect("ids").contains_key(&call) {
                        settle();
                    }
                    (call, out)
                })
            })
            .collect();
        for task in tasks {
            let (call, out) = task.await.expect("an agent task panicked");
            match out {
                Ok(ran_at) => {
                    let id = ids.lock().expect("ids").get(&call).cloned().unwrap_or_default();
                    say(format_args!("ran {id} {ran_at}"));
                }
                Err(d) => say(format_args!("denied {call} {}", d.to_string().replace('\n', " "))),
            }
        }
    });
    say(format_args!("done"));
}

/// Whether approver `index` of `count` answers request `id`: its own share, and one in eight of the next one's.
fn takes(id: &str, index: u64, count: u64) -> bool {
    // FNV-1a: the same on every process, unlike std's randomly seeded hasher.
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let part = h % count;
    part == index || (count > 1 && part == (index + 1) % count && (h / count).is_multiple_of(8))
}

/// An approver process: see the module docs.
pub(super) fn approver_process(args: &[String]) {
    let [url, index, count] = args else {
        say(format_args!("error usage: hosts __approver URL INDEX COUNT"));
        std::process::exit(2);
    };
    let (index, count): (u64, u64) = (index.parse().expect("INDEX"), count.parse().expect("COUNT"));
    let store = open_store(url).unwrap_or_else(|e| {
        say(format_args!("error cannot open the store: {e}"));
        std::process::exit(1)
    });
    say(format_args!("ready"));
    let stop = Arc::new(AtomicBool::new(false));
    wait_for_go(stop.clone());
    let actor = format!("approver-{index}");
    let mut answered: HashSet<RequestId> = HashSet::new();
    while !stop.load(Ordering::SeqCst) {
        let mine = match my_pending(store.as_ref(), index, count, &answered) {
            Ok(mine) => mine,
            Err(e) => {
                eprintln!("approver {index}: cannot list pending requests: {e}");
                Vec::new()
            }
        };
        if mine.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        // ANSWERS_IN_FLIGHT answers at once, as a busy approval service gives them: the store does concurrent answers
        // in one transaction.
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..ANSWERS_IN_FLIGHT.min(mine.len()) {
                scope.spawn(|| {
                    while !stop.load(Ordering::SeqCst) {
                        let Some(id) = mine.get(next.fetch_add(1, Ordering::SeqCst)) else {
                            break;
                        };
                        let start = wall_ns();
                        let outcome = store.resolve(&Resolution::approve(id.clone()).actor(actor.as_str()));
                        let end = wall_ns();
                        let word = match outcome {
                            Ok(ResolveOutcome::Resolved) => "resolved".to_owned(),
                            Ok(ResolveOutcome::AlreadyResolved) => "already".to_owned(),
                            Ok(other) => format!("{other:?}").to_lowercase(),
                            Err(_) => "error".to_owned(),
                        };
                        say(format_args!("res {id} {start} {end} {word}"));
                    }
                });
            }
        });
        answered.extend(mine);
    }
}

/// How many answers one approver process has in flight.
const ANSWERS_IN_FLIGHT: usize = 64;

/// The pending requests approver `index` of `count` takes and has not answered, read a page at a time.
fn my_pending(
    store: &dyn agentguard::store::ApprovalStore,
    index: u64,
    count: u64,
    answered: &HashSet<RequestId>,
) -> Result<Vec<RequestId>, agentguard::store::StoreError> {
    let mut mine = Vec::new();
    let mut after = None;
    loop {
        let page = store.pending_page(agentguard::store::MAX_PAGE, after.as_ref())?;
        mine.extend(
            page.requests
                .iter()
                .map(|r| r.request_id().clone())
                .filter(|id| !answered.contains(id) && takes(id.as_str(), index, count)),
        );
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(mine),
        }
    }
}

/// Which child a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Who {
    /// Agent process number n.
    Agent(usize),
    /// Approver process number n.
    Approver(usize),
}

/// A line from a child, or `None` when its stdout closed.
pub(super) type Event = (Who, Option<String>);

/// The running children: their stdins (to say `go` and `stop`), killed and reaped when dropped.
pub(super) struct Children {
    procs: Vec<(Who, Child, Option<ChildStdin>)>,
    tx: mpsc::Sender<Event>,
}

impl Children {
    /// No children yet; their lines will arrive on the returned receiver.
    pub(super) fn new() -> (Children, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel();
        (Children { procs: Vec::new(), tx }, rx)
    }

    /// Starts this binary as `who` with `args`; a thread forwards each of its stdout lines.
    pub(super) fn spawn(&mut self, who: Who, args: &[String]) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {who:?}: {e}"))?;
        let out = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((who, Some(line))).is_err() {
                    return;
                }
            }
            let _ = tx.send((who, None));
        });
        self.procs.push((who, child, stdin));
        Ok(())
    }

    /// How many of the children `pick` selects were started.
    pub(super) fn started(&self, pick: impl Fn(Who) -> bool) -> usize {
        self.procs.iter().filter(|(who, ..)| pick(*who)).count()
    }

    /// Writes `line` to every child `pick` selects.
    pub(super) fn tell(&mut self, pick: impl Fn(Who) -> bool, line: &str) {
        for (who, _, stdin) in &mut self.procs {
            if let Some(w) = stdin.as_mut().filter(|_| pick(*who)) {
                let _ = writeln!(w, "{line}").and_then(|()| w.flush());
            }
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child, stdin) in &mut self.procs {
            drop(stdin.take());
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
