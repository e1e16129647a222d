//! One phase: the agent and approver processes started, every call parked, decided and run (or not), and the
//! figures of it, from the children's lines and the table's rows.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use super::child::{Children, Event, Who};
use super::pg::{child_url, Monitor, Sample};
use super::report::report;
use super::{load_average, Figures};

/// What one phase runs.
#[derive(Debug)]
pub(super) struct Plan {
    /// The figures' key prefix and the report's heading: `notify` or `killed`.
    pub(super) label: &'static str,
    pub(super) agents: usize,
    pub(super) calls: usize,
    pub(super) approvers: usize,
    /// Each call's timeout in the agents' guards.
    pub(super) timeout_s: u64,
    /// The whole phase's deadline, from the first child started.
    pub(super) deadline: Duration,
    /// Terminate the run's LISTEN backends every second while calls are being decided.
    pub(super) kill: bool,
}

/// One answer an approver gave: request id, wall clock just before and after `resolve`, outcome.
pub(super) struct Answer {
    pub(super) id: String,
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) outcome: String,
}

/// Everything the children have said so far.
#[derive(Default)]
pub(super) struct Tally {
    ready: HashSet<Who>,
    /// Agents that have parked all their calls.
    pub(super) parked: usize,
    done: HashSet<Who>,
    closed: HashSet<Who>,
    /// Request id and wall clock at its executor's first line.
    pub(super) ran: Vec<(String, u64)>,
    /// The `denied …` lines.
    pub(super) denied: Vec<String>,
    pub(super) answers: Vec<Answer>,
    errors: Vec<String>,
    /// The approvers were told to stop, so their exit is expected.
    stopping: bool,
}

impl Tally {
    fn take(&mut self, (who, line): Event) {
        let Some(line) = line else {
            self.closed.insert(who);
            let expected = match who {
                Who::Agent(_) => self.done.contains(&who),
                Who::Approver(_) => self.stopping,
            };
            if !expected {
                self.errors.push(format!("{who:?} exited early (its stderr is above)"));
            }
            return;
        };
        let mut words = line.splitn(5, ' ');
        match (words.next(), words.next(), words.next(), words.next(), words.next()) {
            (Some("ready"), ..) => {
                self.ready.insert(who);
            }
            (Some("parked"), ..) => self.parked += 1,
            (Some("done"), ..) => {
                self.done.insert(who);
            }
            (Some("ran"), Some(id), Some(ns), ..) => self.ran.push((id.to_owned(), ns.parse().unwrap_or(0))),
            (Some("denied"), ..) => self.denied.push(line.clone()),
            (Some("res"), Some(id), Some(start), Some(end), Some(outcome)) => self.answers.push(Answer {
                id: id.to_owned(),
                start: start.parse().unwrap_or(0),
                end: end.parse().unwrap_or(0),
                outcome: outcome.to_owned(),
            }),
            _ => self.errors.push(format!("{who:?}: {line}")),
        }
    }
}

/// Takes the children's lines until `done` holds; an error when a child failed or the deadline passed first.
fn pump(
    rx: &mpsc::Receiver<Event>,
    tally: &mut Tally,
    deadline: Instant,
    what: &str,
    done: impl Fn(&Tally) -> bool,
) -> Result<(), String> {
    loop {
        if done(tally) {
            return Ok(());
        }
        if let Some(e) = tally.errors.first() {
            return Err(format!("while waiting for {what}: {e}"));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("the deadline passed while waiting for {what}"));
        }
        if let Ok(event) = rx.recv_timeout(left) {
            tally.take(event);
        }
    }
}

/// How long to wait before reading `pg_stat_database`'s transaction count: PostgreSQL 15 backends that go idle
/// report their counts up to 10 s later (`PGSTAT_IDLE_INTERVAL`); a count read at once shows the work of 10 s before.
const STATS_SETTLE: Duration = Duration::from_secs(11);

/// What a phase gathered, for [`report`].
pub(super) struct Gathered {
    pub(super) tally: Tally,
    /// The run's backends once every child was up, before any call.
    pub(super) at_rest: Sample,
    /// Every 100 ms from the first child started to the last stopped.
    pub(super) samples: Vec<Sample>,
    pub(super) park_s: f64,
    /// Transactions/s committed in the database while the calls were parked and nobody answered.
    pub(super) idle_commits_per_s: f64,
    /// The same while they were being decided and run.
    pub(super) commits_per_s: f64,
    /// LISTEN backends terminated.
    pub(super) killed: i64,
    pub(super) load_start: String,
    pub(super) load_end: String,
    /// Why the phase did not complete.
    pub(super) error: Option<String>,
}

/// Runs one phase against `server`; its figures go into `figures` under `plan.label`. Whether it completed.
pub(super) fn run_phase(plan: &Plan, monitor: &Monitor, server: &str, figures: &mut Figures) -> bool {
    println!(
        "\n== {}: {} agent processes × {} parked calls, {} approver processes{}",
        plan.label,
        plan.agents,
        plan.calls,
        plan.approvers,
        if plan.kill {
            ", every LISTEN backend terminated each second"
        } else {
            " (LISTEN/NOTIFY)"
        }
    );
    let load_start = load_average();
    let schema = monitor.new_schema(plan.label);
    let url = child_url(server, &monitor.role, &schema);
    let deadline = Instant::now() + plan.deadline;
    let (mut children, rx) = Children::new();
    let mut tally = Tally::default();
    let (stop, killed) = (AtomicBool::new(false), AtomicI64::new(0));
    let deciding = AtomicBool::new(false);
    let samples: Mutex<Vec<Sample>> = Mutex::default();
    let mut at_rest = Sample::default();
    let (mut park_s, mut idle_commits_per_s, mut commits_per_s) = (f64::NAN, f64::NAN, f64::NAN);
    let (mut commits_before, mut decide_s) = (None, f64::NAN);
    let mut phase_error = None;

    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                if let Ok(x) = monitor.sample() {
                    samples.lock().expect("samples").push(x);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        if plan.kill {
            s.spawn(|| {
                let mut next = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    if deciding.load(Ordering::SeqCst) && Instant::now() >= next {
                        killed.fetch_add(monitor.kill_listeners().unwrap_or(0), Ordering::SeqCst);
                        next += Duration::from_secs(1);
                    } else if !deciding.load(Ordering::SeqCst) {
                        next = Instant::now();
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
        let (agents, approvers) = (plan.agents, plan.approvers);
        let result = (|| -> Result<(), String> {
            for i in 0..agents {
                let args = [
                    "__agent".into(),
                    url.clone(),
                    plan.calls.to_string(),
                    plan.timeout_s.to_string(),
                ];
                children.spawn(Who::Agent(i), &args)?;
            }
            pump(&rx, &mut tally, deadline, "the agents' stores to open", |t| {
                t.ready.len() == agents
            })?;
            for j in 0..approvers {
                let args = ["__approver".into(), url.clone(), j.to_string(), approvers.to_string()];
                children.spawn(Who::Approver(j), &args)?;
            }
            pump(&rx, &mut tally, deadline, "the approvers' stores to open", |t| {
                t.ready.len() == agents + approvers
            })?;
            at_rest = monitor.sample()?;
            let t = Instant::now();
            children.tell(|w| matches!(w, Who::Agent(_)), "go");
            pump(&rx, &mut tally, deadline, "every call to be parked", |t| {
                t.parked == agents
            })?;
            park_s = t.elapsed().as_secs_f64();
            // What the parked calls cost the server while nobody answers (their waits' re-reads): 2 s of it, once
            // the parking's own transactions have reached the counter.
            std::thread::sleep(STATS_SETTLE);
            let (before, t) = (monitor.commits()?, Instant::now());
            std::thread::sleep(Duration::from_secs(2));
            idle_commits_per_s = (monitor.commits()? - before) as f64 / t.elapsed().as_secs_f64();
            deciding.store(true, Ordering::SeqCst);
            commits_before = Some(monitor.commits()?);
            let t = Instant::now();
            children.tell(|w| matches!(w, Who::Approver(_)), "go");
            let ended = pump(&rx, &mut tally, deadline, "every agent's calls to end", |t| {
                t.done.len() == agents
            });
            decide_s = t.elapsed().as_secs_f64();
            ended
        })();
        tally.stopping = true;
        children.tell(|w| matches!(w, Who::Approver(_)), "stop");
        let soon = deadline.min(Instant::now() + Duration::from_secs(10));
        let started = children.started(|w| matches!(w, Who::Approver(_)));
        let approvers_out = pump(&rx, &mut tally, soon, "the approvers to stop", |t| {
            t.closed.iter().filter(|w| matches!(w, Who::Approver(_))).count() == started
        });
        phase_error = result.err().or(approvers_out.err());
        stop.store(true, Ordering::SeqCst);
    });
    drop(children);
    // Late lines (the children are gone now) still count.
    while let Ok(event) = rx.try_recv() {
        tally.take(event);
    }
    // The deciding's transactions: a backend reports its count when it exits, so once the children's backends are
    // gone (up to 5 s) every one of them is in (with the approvers' last page reads after the agents ended).
    let gone = Instant::now() + Duration::from_secs(5);
    while Instant::now() < gone && monitor.sample().is_ok_and(|x| x.total > 0) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if let (Some(before), Ok(after)) = (commits_before, monitor.commits()) {
        commits_per_s = (after - before) as f64 / decide_s;
    }
    let load_end = load_average();

    let gathered = Gathered {
        tally,
        at_rest,
        samples: samples.into_inner().expect("samples"),
        park_s,
        idle_commits_per_s,
        commits_per_s,
        killed: killed.load(Ordering::SeqCst),
        load_start,
        load_end,
        error: phase_error,
    };
    report(plan, monitor, &schema, &gathered, figures)
}
