//! Hosts: many agent and approver processes sharing one PostgreSQL store (issue 16, item 4).
//!
//! ```text
//! cargo run --release -p agentguard-bench --bin hosts
//! cargo run --release -p agentguard-bench --bin hosts -- --agents 50 --calls 200 --approvers 4 --json out.json
//! ```
//!
//! This process is the coordinator: it re-executes itself as `--agents` agent processes (`hosts __agent …`, each
//! with its own `PostgresStore`, parking `--calls` calls at once through `aexecute` on an external guard) and
//! `--approvers` approver processes (`hosts __approver …`, each with its own store, listing pending requests and
//! approving its share, with some overlap so that answers race; the first wins). Once every call is parked, the
//! approvers start. Reported per phase: decisions/s over the window from the first decision to the last (and its
//! slowest whole second), wake-up latency per call (from just before the deciding `resolve` to the executor's first
//! line, wall clock, same host), double executions and double decisions, stranded requests (rows left `pending`,
//! or `approved` and never run), and the run's PostgreSQL backends sampled from `pg_stat_activity` every 100 ms
//! (total, LISTEN, query, decide), against the number of processes; the machine's load average at start and end.
//!
//! Before the phases, a probe of the server itself: as many connections as approvers, each committing one-row
//! updates for `--probe-s` seconds (2; 0 skips it), plain, with `pg_notify` inside the transaction, and with
//! `pg_notify` after the commit (what a decision costs the server without agentguard around it). Each phase also
//! reports the transactions/s committed in the database while the calls are parked and unanswered (2 s: the
//! waiters' re-reads; read 11 s after the last call parked, since PostgreSQL 15 backends report their counts to
//! `pg_stat_database` up to 10 s after they go idle) and while they are decided (read once the children's backends
//! have exited, which reports the rest).
//!
//! Phases: `notify` (LISTEN/NOTIFY wakes the agents), then `killed` (the same, while every LISTEN backend of the
//! run is terminated each second; `--no-kill` skips it).
//!
//! The children connect as a login role made for the run (`ag_hosts_<pid>`), so the counts and the kills touch this
//! run's backends only; each phase has a fresh schema. Role and schemas are dropped at the end. A configuration
//! whose connections do not fit the server's `max_connections` is said to not fit, and the largest number of agents
//! that fits runs instead. The full size needs 112 connections, more than PostgreSQL's default 100:
//! `bash bench/hosts-pg.sh start` starts a private server on 127.0.0.1:5433 with `max_connections` 300 and otherwise
//! the defaults, and prints the URL to pass as `--pg-url`.
//!
//! Wake-up is reported twice: from the start of the deciding `resolve` (what the approver saw, including the time the
//! answer waited in its approver's queue and batch) and from its return (the decision committed).
//!
//! Options: `--agents N` (50), `--calls N` (200), `--approvers N` (4), `--timeout-s S` (each call's timeout, 60),
//! `--probe-s S` (2), `--deadline-s S` (each phase's, 180), `--pg-url URL` (default `$AGENTGUARD_TEST_POSTGRES_URL`, else
//! `postgres://postgres@127.0.0.1:5432/test`; a superuser, to make the role and terminate backends), `--no-kill`,
//! `--async-commit` (a diagnostic: the run's role commits without waiting for the WAL flush), `--json PATH`. Every
//! wait has a deadline; a phase that misses one reports what it gathered, and the program exits non-zero, as it does
//! when any call was executed twice, decided twice, not decided, or left stranded, or the requested size did not
//! fit.

mod child;
mod pg;
mod report;
mod run;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use pg::Monitor;
use run::{run_phase, Plan};

/// Connections a `PostgresStore` opens, read from `agentguard/src/store/postgres/`: the query connection and the
/// LISTEN connection when it is opened; the decide connection at its first `resolve`.
const AGENT_CONNECTIONS: i64 = 2;
/// An approver resolves, so it also has the decide connection.
const APPROVER_CONNECTIONS: i64 = 3;
/// Slots left free for anyone else on the server (a `psql`, another test).
const SPARE_CONNECTIONS: i64 = 2;

/// The command line, parsed.
#[derive(Debug)]
struct Options {
    agents: usize,
    calls: usize,
    approvers: usize,
    timeout_s: u64,
    deadline_s: u64,
    pg_url: String,
    kill: bool,
    async_commit: bool,
    probe_s: u64,
    json: Option<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            agents: 50,
            calls: 200,
            approvers: 4,
            timeout_s: 60,
            deadline_s: 180,
            pg_url: std::env::var("AGENTGUARD_TEST_POSTGRES_URL")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
            kill: true,
            async_commit: false,
            probe_s: 2,
            json: None,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
            let number = |name: &str, v: String| v.parse::<usize>().map_err(|e| format!("{name} {v:?}: {e}"));
            match arg.as_str() {
                "--agents" => o.agents = number(arg, value(arg)?)?,
                "--calls" => o.calls = number(arg, value(arg)?)?,
                "--approvers" => o.approvers = number(arg, value(arg)?)?,
                "--timeout-s" => o.timeout_s = number(arg, value(arg)?)? as u64,
                "--deadline-s" => o.deadline_s = number(arg, value(arg)?)? as u64,
                "--pg-url" => o.pg_url = value(arg)?,
                "--no-kill" => o.kill = false,
                "--async-commit" => o.async_commit = true,
                "--probe-s" => o.probe_s = number(arg, value(arg)?)? as u64,
                "--json" => o.json = Some(value(arg)?),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if o.agents == 0 || o.calls == 0 || o.approvers == 0 {
            return Err("--agents, --calls and --approvers must be at least 1".into());
        }
        Ok(o)
    }
}

/// Figures gathered for `--json`, keyed `phase.figure`.
type Figures = BTreeMap<String, Value>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("__agent") => return child::agent_process(&args[1..]),
        Some("__approver") => return child::approver_process(&args[1..]),
        _ => {}
    }
    let opts = Options::parse(&args).unwrap_or_else(|e| {
        eprintln!(
            "hosts: {e}\nusage: hosts [--agents N] [--calls N] [--approvers N] [--timeout-s S] [--deadline-s S] \
             [--pg-url URL] [--no-kill] [--async-commit] [--probe-s S] [--json PATH]"
        );
        std::process::exit(2)
    });
    let ok = coordinate(&opts);
    std::process::exit(if ok { 0 } else { 1 });
}

/// The whole run; whether every phase completed and every call was decided and run exactly once.
fn coordinate(opts: &Options) -> bool {
    let mut figures = Figures::new();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("agentguard hosts: {cores} cores, load average {}", load_average());
    let role = format!("ag_hosts_{}", std::process::id());
    let monitor = match Monitor::connect(&opts.pg_url, &role, opts.async_commit) {
        Ok(m) => m,
        Err(e) => {
            println!(
                "no usable PostgreSQL at {} ({e}); a superuser URL is needed (--pg-url)",
                opts.pg_url
            );
            return false;
        }
    };
    let budget = match monitor.budget() {
        Ok(b) => b,
        Err(e) => {
            println!("cannot read the server's connection settings: {e}");
            return false;
        }
    };
    let approvers = opts.approvers as i64;
    let need = |agents: i64| agents * AGENT_CONNECTIONS + approvers * APPROVER_CONNECTIONS;
    let free = budget.free() - SPARE_CONNECTIONS;
    let fits = need(opts.agents as i64) <= free;
    let agents = if fits {
        opts.agents
    } else {
        ((free - need(0)) / AGENT_CONNECTIONS).max(0) as usize
    };
    println!(
        "connections: a PostgresStore opens 2 when opened (queries, LISTEN) and a third at its first decision; \
         {} agents × {AGENT_CONNECTIONS} + {} approvers × {APPROVER_CONNECTIONS} = {}; the server has \
         max_connections {}, {} reserved for superusers, {} in use, so {free} are free for this run (keeping \
         {SPARE_CONNECTIONS} spare)",
        opts.agents,
        opts.approvers,
        need(opts.agents as i64),
        budget.max,
        budget.reserved,
        budget.in_use
    );
    if !fits {
        println!(
            "DOES NOT FIT: {} agent processes × {AGENT_CONNECTIONS} connections + {} approvers × \
             {APPROVER_CONNECTIONS} need {}, {} more than are free. Running the largest that fits: {agents} agents \
             × {} calls ({} calls).",
            opts.agents,
            opts.approvers,
            need(opts.agents as i64),
            need(opts.agents as i64) - free,
            opts.calls,
            agents * opts.calls
        );
    }
    if opts.async_commit {
        println!(
            "--async-commit: the run's role commits without waiting for the WAL flush (a diagnostic, not a setting \
             to run with)"
        );
    }
    let mut put = |k: &str, v: Value| {
        figures.insert(format!("config.{k}"), v);
    };
    put("async_commit", Value::from(opts.async_commit));
    put("cores", Value::from(cores));
    put("agents_requested", Value::from(opts.agents));
    put("agents", Value::from(agents));
    put("calls_per_agent", Value::from(opts.calls));
    put("approvers", Value::from(opts.approvers));
    put("max_connections", Value::from(budget.max));
    put("reserved_connections", Value::from(budget.reserved));
    put("connections_in_use_before", Value::from(budget.in_use));
    put("connections_needed_requested", Value::from(need(opts.agents as i64)));
    put("connections_free", Value::from(free));
    put("fits", Value::from(fits));
    if agents == 0 {
        println!(
            "not even one agent fits beside {} approvers: nothing run",
            opts.approvers
        );
        return false;
    }
    // What one decision-sized transaction costs this server, with and without NOTIFY, as many at once as there
    // are approvers: the ceiling the phases below run under.
    let probe = Duration::from_secs(opts.probe_s);
    let result = match opts.probe_s {
        0 => Err("skipped (--probe-s 0)".to_owned()),
        _ => monitor.commit_probe(&opts.pg_url, &monitor.new_schema("probe"), opts.approvers, probe),
    };
    match result {
        Ok([plain, notify, after]) => {
            println!(
                "server probe, {} connections each updating one row per transaction for {} s (superuser, \
                 synchronous_commit as configured): {plain:.0}/s plain, {notify:.0}/s with pg_notify in the \
                 transaction, {after:.0}/s with pg_notify after the commit",
                opts.approvers, opts.probe_s
            );
            figures.insert("probe.plain_per_s".into(), Value::from(plain));
            figures.insert("probe.notify_in_tx_per_s".into(), Value::from(notify));
            figures.insert("probe.notify_after_commit_per_s".into(), Value::from(after));
        }
        Err(e) => println!("server probe: {e}"),
    }
    let mut ok = true;
    for (label, kill) in [("notify", false), ("killed", true)] {
        if kill && !opts.kill {
            continue;
        }
        let plan = Plan {
            label,
            agents,
            calls: opts.calls,
            approvers: opts.approvers,
            timeout_s: opts.timeout_s,
            deadline: Duration::from_secs(opts.deadline_s),
            kill,
        };
        ok &= run_phase(&plan, &monitor, &opts.pg_url, &mut figures);
    }
    ok &= fits;
    drop(monitor); // drops the schemas and the role
    if let Some(path) = &opts.json {
        let text = serde_json::to_string_pretty(&figures).expect("figures are JSON");
        match std::fs::write(path, text) {
            Ok(()) => println!("\nfigures written to {path}"),
            Err(e) => {
                println!("\ncannot write {path}: {e}");
                ok = false;
            }
        }
    }
    ok
}

/// `/proc/loadavg`'s three load averages, or `unknown`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The `p`-quantile (0..=1) of sorted values.
fn quantile<T: Copy>(sorted: &[T], p: f64) -> T {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// A duration in milliseconds.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A two-worker runtime, as an agent on a small host would have.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Wall-clock nanoseconds since the epoch: comparable between processes on one host.
fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}
