//! A phase's figures: decisions, wake-ups, executions, rows left, connections; printed and put in the JSON.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::pg::{Monitor, Sample};
use super::run::{Gathered, Plan};
use super::{ms, quantile, Figures};

/// Reports what phase `plan` gathered (and the rows left in `schema`); whether it completed with every call decided
/// and run exactly once and none stranded.
pub(super) fn report(plan: &Plan, monitor: &Monitor, schema: &str, g: &Gathered, figures: &mut Figures) -> bool {
    let key = |k: &str| format!("{}.{k}", plan.label);
    let (tally, at_rest, samples) = (&g.tally, &g.at_rest, &g.samples);
    let (park_s, idle_commits_per_s, commits_per_s) = (g.park_s, g.idle_commits_per_s, g.commits_per_s);
    let (load_start, load_end, phase_error) = (&g.load_start, &g.load_end, &g.error);
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
    // The same from the moment the deciding `resolve` returned (its transaction committed): without the time the
    // answer waited in its approver's queue and batch. Milliseconds, signed: an agent can start before the
    // approver's process has read its reply.
    let mut after_commit: Vec<f64> = Vec::new();
    for (id, ran_at) in &tally.ran {
        *runs.entry(id.as_str()).or_default() += 1;
        match decided_at.get(id.as_str()) {
            Some((start, end)) => {
                wake.push(Duration::from_nanos(ran_at.saturating_sub(*start)));
                after_commit.push((*ran_at as f64 - *end as f64) / 1e6);
            }
            None => unmatched += 1,
        }
    }
    wake.sort();
    after_commit.sort_by(f64::total_cmp);
    let commit_q = |q: f64| after_commit[((after_commit.len() - 1) as f64 * q).round() as usize];
    let double_executions: usize = runs.values().map(|n| n - 1).sum();
    let (states, stranded) = match monitor.states(schema) {
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
    println!(
        "  transactions committed in the database (every session's): {idle_commits_per_s:.0}/s while the calls \
         were parked and unanswered (2 s, after 11 s for the counter to settle), {commits_per_s:.0}/s while deciding"
    );
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
        println!(
            "  wake-up after the decision committed (resolve returned → executor start): p50 {:.2} ms, p99 {:.2} ms, \
             max {:.2} ms — against the same target: {}",
            commit_q(0.5),
            commit_q(0.99),
            commit_q(1.0),
            verdict(commit_q(0.99) < 20.0)
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
        println!("  LISTEN backends terminated: {}", g.killed);
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
    put("load_average_start", Value::from(load_start.clone()));
    put("load_average_end", Value::from(load_end.clone()));
    put("park_s", Value::from(park_s));
    put("decided", Value::from(decided));
    put("decision_window_s", Value::from(window_s));
    put("decisions_per_s", Value::from(per_s));
    put("decisions_slowest_second", Value::from(slowest_second));
    put("server_commits_per_s_parked", Value::from(idle_commits_per_s));
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
        put("wake_after_commit_p50_ms", Value::from(commit_q(0.5)));
        put("wake_after_commit_p99_ms", Value::from(commit_q(0.99)));
        put("wake_after_commit_max_ms", Value::from(commit_q(1.0)));
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
        put("listen_backends_killed", Value::from(g.killed));
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
