//! One phase: the agent and approver processes started, every call parked, decided and run (or not), and the
//! figures of it, from the children's lines and the table's rows.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::child::{Children, Event, Who};
use super::pg::{child_url, Monitor, Sample};
use super::{load_average, ms, quantile, Figures};

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
struct Answer {
    id: String,
    start: u64,
    end: u64,
    outcome: String,
}

/// Everything the children have said so far.
#[derive(Default)]
struct Tally {
    ready: HashSet<Who>,
    parked: usize,
    done: HashSet<Who>,
    closed: HashSet<Who>,
    /// Request id and wall clock at its executor's first line.
    ran: Vec<(String, u64)>,
    denied: Vec<String>,
    answers: Vec<Answer>,
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

/// Runs one phase against `server`; its figures go into `figures` under `plan.label`. Whether it completed.
pub(super) fn run_phase(plan: &Plan, monitor: &Monitor, server: &str, figures: &mut Figures) -> bool {
    let key = |k: &str| format!("{}.{k}", plan.label);
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
    let (mut park_s, mut commits_per_s, mut phase_error) = (f64::NAN, f64::NAN, None);

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
            deciding.store(true, Ordering::SeqCst);
            let commits_before = monitor.commits()?;
            let t = Instant::now();
            children.tell(|w| matches!(w, Who::Approver(_)), "go");
            let ended = pump(&rx, &mut tally, deadline, "every agent's calls to end", |t| {
                t.done.len() == agents
            });
            commits_per_s = (monitor.commits()? - commits_before) as f64 / t.elapsed().as_secs_f64();
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
    let load_end = load_average();

    // Decisions: the answers that decided, by request id.
    let calls_total = plan.agents * plan.calls;
    let mut decided_at: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut double_decisions = 0usize;
    let mut outcomes: HashMap<&str, usize> = HashMap::new();
    for a in &tally.answers {
        *outcomes.entry(a.outcome.as_str()).or_default() += 1;
        if a.outcome == "resolved" && decided_at.insert(&a.id, (a.start, a.end)).is_some() {
            double_decisions += 1;
        }
    }
    let decided = decided_at.len();
    let first = decided_at.values().map(|d| d.0).min().unwrap_or(0);
    let last = decided_at.values().map(|d| d.1).max().unwrap_or(0);
    let window_s = last.saturating_sub(first) as f64 / 1e9;
    let per_s = if window_s > 0.0 {
        decided as f64 / window_s
    } else {
        f64::NAN
    };
    // The slowest whole second of the window: "sustained", not just on average.
    let mut buckets = vec![0usize; window_s as usize];
    for (start, _) in decided_at.values() {
        if let Some(b) = buckets.get_mut(((start - first) / 1_000_000_000) as usize) {
            *b += 1;
        }
    }
    let slowest_second = buckets.iter().min().copied();
    let mut resolve_took: Vec<Duration> = decided_at
        .values()
        .map(|(s, e)| Duration::from_nanos(e.saturating_sub(*s)))
        .collect();
    resolve_took.sort();

    // Executions: each id once, each woken some time after its deciding answer began.
    let mut runs: HashMap<&str, usize> = HashMap::new();
    let (mut wake, mut unmatched) = (Vec::new(), 0usize);
    for (id, ran_at) in &tally.ran {
        *runs.entry(id.as_str()).or_default() += 1;
        match decided_at.get(id.as_str()) {
            Some((start, _)) => wake.push(Duration::from_nanos(ran_at.saturating_sub(*start))),
            None => unmatched += 1,
        }
    }
    wake.sort();
    let double_executions: usize = runs.values().map(|n| n - 1).sum();
    let (states, stranded) = match monitor.states(&schema) {
        Ok(rows) => {
            let stranded: i64 = rows
                .iter()
                .filter(|(s, _)| s == "pending" || s == "approved")
                .map(|r| r.1)
                .sum();
            (rows, Some(stranded))
        }
        Err(e) => {
            println!("  cannot read the request rows: {e}");
            (Vec::new(), None)
        }
    };
    let samples = samples.into_inner().expect("samples");
    let peak = |f: fn(&Sample) -> i64| samples.iter().map(f).max().unwrap_or(0);
    let processes = plan.agents + plan.approvers;

    // The report.
    if let Some(e) = &phase_error {
        println!("  INCOMPLETE: {e}; the figures below are what was gathered");
    }
    println!("  load average at start {load_start}, at end {load_end}");
    println!("  parked {} calls in {park_s:.2} s", tally.parked * plan.calls);
    println!(
        "  decided {decided} of {calls_total} in {window_s:.2} s: {per_s:.0} decisions/s (slowest whole second: {}) \
         — target ≥ 5,000/s: {}",
        slowest_second.map_or("none, the window is under 1 s".to_owned(), |n| format!("{n}")),
        verdict(per_s >= 5000.0)
    );
    let mut outcome_list: Vec<_> = outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    outcome_list.sort();
    println!(
        "  answers {} ({}); two answers that both decided one request: {double_decisions}",
        tally.answers.len(),
        outcome_list.join(", ")
    );
    println!("  transactions committed in the database while deciding: {commits_per_s:.0}/s (every session's)");
    if !resolve_took.is_empty() {
        println!(
            "  one resolve (its transaction) took p50 {:.2} ms, p99 {:.2} ms",
            ms(quantile(&resolve_took, 0.5)),
            ms(quantile(&resolve_took, 0.99))
        );
    }
    if wake.is_empty() {
        println!("  wake-up: no samples");
    } else {
        println!(
            "  wake-up (resolve start → executor start, n={}): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms — target p99 < \
             20 ms: {}",
            wake.len(),
            ms(quantile(&wake, 0.5)),
            ms(quantile(&wake, 0.99)),
            ms(*wake.last().expect("not empty")),
            verdict(ms(quantile(&wake, 0.99)) < 20.0)
        );
    }
    println!(
        "  executors run {}, double executions {double_executions}, denied {}, runs with no deciding answer \
         {unmatched}",
        tally.ran.len(),
        tally.denied.len()
    );
    for d in tally.denied.iter().take(3) {
        println!("    e.g. {d}");
    }
    let state_list: Vec<String> = states.iter().map(|(s, n)| format!("{s} {n}")).collect();
    println!(
        "  rows after the run: {}; stranded (pending, or approved and never run): {}",
        state_list.join(", "),
        stranded.map_or("unknown".to_owned(), |n| n.to_string())
    );
    println!(
        "  connections of the run's {processes} processes: at rest {} (LISTEN {}, query {}, decide {}); peak {} \
         (LISTEN {}, query {}, decide {}); whole server at peak {} of its max_connections",
        at_rest.total,
        at_rest.listen,
        at_rest.query,
        at_rest.decide,
        peak(|s| s.total),
        peak(|s| s.listen),
        peak(|s| s.query),
        peak(|s| s.decide),
        peak(|s| s.server)
    );
    if plan.kill {
        println!("  LISTEN backends terminated: {}", killed.load(Ordering::SeqCst));
    }

    let mut put = |k: &str, v: Value| {
        figures.insert(key(k), v);
    };
    put("complete", Value::from(phase_error.is_none()));
    if let Some(e) = &phase_error {
        put("error", Value::from(e.clone()));
    }
    put("agents", Value::from(plan.agents));
    put("calls_per_agent", Value::from(plan.calls));
    put("approvers", Value::from(plan.approvers));
    put("calls_total", Value::from(calls_total));
    put("load_average_start", Value::from(load_start));
    put("load_average_end", Value::from(load_end));
    put("park_s", Value::from(park_s));
    put("decided", Value::from(decided));
    put("decision_window_s", Value::from(window_s));
    put("decisions_per_s", Value::from(per_s));
    put("decisions_slowest_second", Value::from(slowest_second));
    put("server_commits_per_s", Value::from(commits_per_s));
    put("answers", Value::from(tally.answers.len()));
    put(
        "answers_already_decided",
        Value::from(outcomes.get("already").copied().unwrap_or(0)),
    );
    put("double_decisions", Value::from(double_decisions));
    if !resolve_took.is_empty() {
        put("resolve_p50_ms", Value::from(ms(quantile(&resolve_took, 0.5))));
        put("resolve_p99_ms", Value::from(ms(quantile(&resolve_took, 0.99))));
    }
    put("wake_n", Value::from(wake.len()));
    if !wake.is_empty() {
        put("wake_p50_ms", Value::from(ms(quantile(&wake, 0.5))));
        put("wake_p99_ms", Value::from(ms(quantile(&wake, 0.99))));
        put("wake_max_ms", Value::from(ms(*wake.last().expect("not empty"))));
    }
    put("executed", Value::from(tally.ran.len()));
    put("double_executions", Value::from(double_executions));
    put("denied", Value::from(tally.denied.len()));
    put("runs_without_decision", Value::from(unmatched));
    put("stranded", Value::from(stranded));
    put(
        "rows",
        Value::Object(states.iter().map(|(s, n)| (s.clone(), Value::from(*n))).collect()),
    );
    put("processes", Value::from(processes));
    put("connections_at_rest", Value::from(at_rest.total));
    put("connections_at_rest_listen", Value::from(at_rest.listen));
    put("connections_peak", Value::from(peak(|s| s.total)));
    put("connections_peak_listen", Value::from(peak(|s| s.listen)));
    put("connections_peak_query", Value::from(peak(|s| s.query)));
    put("connections_peak_decide", Value::from(peak(|s| s.decide)));
    put("connections_server_peak", Value::from(peak(|s| s.server)));
    put("connection_samples", Value::from(samples.len()));
    if plan.kill {
        put("listen_backends_killed", Value::from(killed.load(Ordering::SeqCst)));
    }
    phase_error.is_none()
        && double_executions == 0
        && double_decisions == 0
        && stranded == Some(0)
        && decided == calls_total
        && tally.ran.len() == calls_total
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}
