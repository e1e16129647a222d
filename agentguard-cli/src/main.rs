//! `agentguard`: answer and inspect parked approval requests in a shared store, and verify audit logs.
//!
//! ```text
//! agentguard --store sqlite:/tmp/agentguard.db pending
//! agentguard --store sqlite:/tmp/agentguard.db approve 3f9c2b1e-8d4a-4f7b-9c1d-2e5f6a7b8c9d --actor alice
//! agentguard audit verify agentguard.log
//! agentguard audit verify /var/log/agentguard/agentguard.log --key-file /etc/agentguard/audit.key \
//!     --checkpoint /var/lib/agentguard/agentguard.log.checkpoint
//! AGENTGUARD_TOKENS=alice=$(openssl rand -hex 16) agentguard --store sqlite:/tmp/agentguard.db serve
//! ```
//!
//! Exit codes: 0 done (resolved); 1 other error; 2 bad usage, a malformed id or store URL; 3 unknown request; 4 already
//! resolved; 5 expired; 6 digest mismatch; 7 store unreachable, unusable or not there (commands open an existing store
//! only: the agents' guard creates it); 8 audit chain broken (edited, forged or truncated); 9 audit log ends in a torn
//! write (a crash or a full disk, not an edit).

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agentguard::audit::{default_log_path, AuditKey, Verify, VerifyError, VerifyErrorKind, VerifyReport, KEY_FILE_ENV};
use agentguard::http::{ApprovalApi, ServeLimits, MIN_TOKEN_LEN};
use agentguard::params::ParamsDigest;
use agentguard::store::{ApprovalStore, StoreError, StoreUrl, UnreadableRow};
use agentguard::text::{escape_hidden, is_hidden};
use agentguard::{ApprovalRequest, RequestId, Resolution, ResolveOutcome};
use clap::{Parser, Subcommand};

/// `println!` that ends the process quietly (exit 0) when stdout is closed, as in `agentguard show ID | head -1`,
/// instead of panicking on the broken pipe.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, $($arg)*).and_then(|()| out.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("agentguard: cannot write to stdout: {e}");
            std::process::exit(EXIT_ERROR.into());
        }
    }};
}

const EXIT_ERROR: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_UNKNOWN: u8 = 3;
const EXIT_ALREADY: u8 = 4;
const EXIT_EXPIRED: u8 = 5;
const EXIT_DIGEST: u8 = 6;
const EXIT_STORE: u8 = 7;
const EXIT_AUDIT: u8 = 8;
const EXIT_TORN: u8 = 9;

#[derive(Parser, Debug)]
#[command(
    name = "agentguard",
    version,
    about = "Answer and inspect agentguard approval requests"
)]
struct Cli {
    /// Where parked requests are: sqlite:PATH or postgres://user@host/db (optionally ?schema=NAME, ?sslmode=verify-full
    /// &sslrootcert=PATH). It must exist: the agents' guard creates it; commands never do.
    #[arg(
        long,
        env = "AGENTGUARD_STORE",
        hide_env_values = true,
        global = true,
        value_name = "URL"
    )]
    store: Option<String>,
    /// Print JSON instead of human-readable text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the requests waiting for an answer.
    Pending,
    /// Show one request and what became of it.
    Show {
        /// The request id (from `pending`).
        id: String,
    },
    /// Approve a request: the agent's call runs.
    Approve {
        /// The request id (from `pending`).
        id: String,
        /// Who approves (recorded in the audit).
        #[arg(long, env = "USER")]
        actor: Option<String>,
        /// Approve only if the params still have this digest (from `show`).
        #[arg(long)]
        digest: Option<String>,
    },
    /// Deny a request: the agent gets ActionDenied.
    Deny {
        /// The request id (from `pending`).
        id: String,
        /// Who denies (recorded in the audit).
        #[arg(long, env = "USER")]
        actor: Option<String>,
        /// Why; given to the agent.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Print requests as they are parked and as they leave, until interrupted.
    Watch {
        /// How often to look, in milliseconds.
        #[arg(long, default_value_t = 250)]
        interval_ms: u64,
    },
    /// Serve the approval API and web page over the store, at http://127.0.0.1:8787/agentguard/ by default. The
    /// store must exist (the agents' guard creates it): start an agent first.
    Serve {
        /// The address to listen on. Keep a loopback address unless a TLS-terminating proxy is in front: the
        /// server speaks plain HTTP.
        #[arg(long, default_value = "127.0.0.1:8787", value_name = "ADDR")]
        bind: SocketAddr,
        /// An API token and who holds it, as ACTOR=TOKEN (repeatable, or comma-separated in AGENTGUARD_TOKENS,
        /// which keeps tokens out of the process list). Tokens need 16+ characters. Without any, a random token is
        /// made for actor `web` and printed once on stderr.
        #[arg(
            long = "token",
            env = "AGENTGUARD_TOKENS",
            hide_env_values = true,
            value_delimiter = ',',
            value_name = "ACTOR=TOKEN"
        )]
        tokens: Vec<String>,
        /// Also accept answers from pages served at this origin (e.g. https://approvals.example.com behind a
        /// proxy). Repeatable.
        #[arg(long = "allow-origin", value_name = "ORIGIN")]
        allow_origins: Vec<String>,
        /// Connections open at once at most; at the cap the oldest idle one is closed to make room, and when all are
        /// busy a new one is answered 503.
        #[arg(long, default_value_t = agentguard::http::DEFAULT_MAX_CONNECTIONS, value_name = "N")]
        max_connections: usize,
        /// Event streams (open pages) at once at most; one more is answered 503 and the page retries.
        #[arg(long, default_value_t = agentguard::http::DEFAULT_MAX_EVENT_STREAMS, value_name = "N")]
        max_event_streams: usize,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Check the hash chain of an audit log (and its rotated files), or with --store postgres://… the store's
    /// audit table.
    ///
    /// Exit 0 intact; 8 edited, forged or truncated; 9 the last line is a torn write (a crash or a full disk, not an
    /// edit: the next write repairs it); 2 a keyed log and no key given.
    Verify {
        /// The log file (agentguard.log, or $AGENTGUARD_LOG).
        file: Option<PathBuf>,
        /// The audit key file of a keyed log (default: $AGENTGUARD_AUDIT_KEY_FILE). Repeat it for a log whose key
        /// was changed.
        #[arg(long = "key-file", value_name = "K")]
        key_files: Vec<PathBuf>,
        /// The checkpoint file, when it is not FILE.checkpoint (which is checked when it exists).
        #[arg(long, value_name = "FILE", conflicts_with = "no_checkpoint")]
        checkpoint: Option<PathBuf>,
        /// Do not check checkpoints.
        #[arg(long)]
        no_checkpoint: bool,
    },
}

/// A failure with the exit code that says which.
struct Failure {
    code: u8,
    message: String,
}

fn fail(code: u8, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("agentguard: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Audit {
            command:
                AuditCommand::Verify {
                    file,
                    key_files,
                    checkpoint,
                    no_checkpoint,
                },
        } => {
            let keys = audit_keys(key_files)?;
            let checkpoint = match (checkpoint, no_checkpoint) {
                (_, true) => CheckpointArg::Off,
                (Some(c), false) => CheckpointArg::File(c.clone()),
                (None, false) => CheckpointArg::Default,
            };
            verify(cli, file.clone(), &keys, checkpoint)
        }
        Command::Pending => pending(cli, &*open(cli)?),
        Command::Show { id } => show(cli, &*open(cli)?, &parse_id(id)?),
        Command::Approve { id, actor, digest } => {
            let mut answer = Resolution::approve(parse_id(id)?);
            if let Some(actor) = actor {
                answer = answer.actor(actor);
            }
            if let Some(d) = digest {
                answer = answer.params_digest(d.parse::<ParamsDigest>().map_err(|e| fail(EXIT_USAGE, e.to_string()))?);
            }
            answer_request(cli, &*open(cli)?, &answer)
        }
        Command::Deny { id, actor, reason } => {
            let mut answer = Resolution::deny(parse_id(id)?);
            if let Some(actor) = actor {
                answer = answer.actor(actor);
            }
            if let Some(reason) = reason.as_deref().filter(|r| !r.trim().is_empty()) {
                let chars = reason.chars().count();
                if chars > Resolution::MAX_NOTE_CHARS {
                    return Err(fail(
                        EXIT_USAGE,
                        format!(
                            "--reason: {chars} characters; at most {} (it goes to the agent and into the audit)",
                            Resolution::MAX_NOTE_CHARS
                        ),
                    ));
                }
                answer = answer.note(reason);
            }
            answer_request(cli, &*open(cli)?, &answer)
        }
        Command::Watch { interval_ms } => watch(cli, &*open(cli)?, Duration::from_millis((*interval_ms).max(10))),
        Command::Serve {
            bind,
            tokens,
            allow_origins,
            max_connections,
            max_event_streams,
        } => {
            let limits = ServeLimits::default().max_connections(*max_connections);
            serve(cli, *bind, tokens, allow_origins, limits, *max_event_streams)
        }
    }
}

/// `serve`: the approval API and page over the shared store, until the process is stopped.
fn serve(
    cli: &Cli,
    bind: SocketAddr,
    tokens: &[String],
    allow_origins: &[String],
    limits: ServeLimits,
    max_event_streams: usize,
) -> Result<(), Failure> {
    let url = store_url(cli)?;
    let mut api = ApprovalApi::new(open_url(&url)?)
        .standalone()
        .max_event_streams(max_event_streams);
    if tokens.is_empty() {
        // A made-up token is shown once, to the person at the terminal. Where stderr is not a terminal it would land
        // in a log (journald, docker), so there the server refuses to start instead.
        if !std::io::stderr().is_terminal() {
            return Err(fail(
                EXIT_USAGE,
                "no API token: pass --token ACTOR=TOKEN or set AGENTGUARD_TOKENS, e.g. \
                 AGENTGUARD_TOKENS=alice=$(openssl rand -hex 16)",
            ));
        }
        // A v4 UUID's 122 random bits, as 32 hex characters.
        let token = RequestId::new().as_str().replace('-', "");
        eprintln!(
            "agentguard: no --token given; made one for actor `web` (paste it into the page; it is kept nowhere):\n  \
             {token}"
        );
        api = api.token(token, "web");
    }
    for (i, spec) in tokens.iter().enumerate() {
        // Messages never quote the spec: it holds a secret.
        let (actor, token) = spec.split_once('=').ok_or_else(|| {
            fail(
                EXIT_USAGE,
                format!(
                    "token {}: --token takes ACTOR=TOKEN, e.g. --token alice=$(openssl rand -hex 16)",
                    i + 1
                ),
            )
        })?;
        if actor.chars().count() >= MIN_TOKEN_LEN && token.chars().count() < MIN_TOKEN_LEN {
            return Err(fail(
                EXIT_USAGE,
                format!(
                    "token {}: did you write TOKEN=ACTOR? The form is ACTOR=TOKEN, e.g. --token alice=$(openssl rand \
                     -hex 16)",
                    i + 1
                ),
            ));
        }
        api = api.token(token, actor);
    }
    for origin in allow_origins {
        api = api.allow_origin(origin.as_str());
    }
    let app = api.router().map_err(|e| fail(EXIT_USAGE, e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(EXIT_ERROR, format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| {
            fail(
                EXIT_ERROR,
                format!("cannot listen on {bind}: {e} (pick another address with --bind)"),
            )
        })?;
        let addr = listener.local_addr().unwrap_or(bind);
        if !addr.ip().is_loopback() {
            eprintln!(
                "agentguard: warning: listening on {addr}, reachable from other machines over plain HTTP; put a \
                 TLS-terminating proxy in front"
            );
        }
        // The address line is printed on stdout, flushed, so scripts (and tests) can read where to connect.
        outln!("serving the approval page at http://{addr}/agentguard/ over {url}");
        let _ = std::io::stdout().flush();
        agentguard::http::serve(listener, app, limits).await;
        Ok(())
    })
}

/// The `--store` URL, parsed (its Display masks a password).
fn store_url(cli: &Cli) -> Result<StoreUrl, Failure> {
    let url = cli.store.as_deref().ok_or_else(|| {
        fail(
            EXIT_USAGE,
            "no store given: pass --store sqlite:PATH or set AGENTGUARD_STORE (the agent's guard must use the same store)",
        )
    })?;
    StoreUrl::parse(url).map_err(|e| fail(EXIT_USAGE, e.to_string()))
}

fn open(cli: &Cli) -> Result<Arc<dyn ApprovalStore>, Failure> {
    open_url(&store_url(cli)?)
}

/// Every command opens an agentguard store that exists, never creates one: the agents' guard creates it, and a
/// mistyped path or schema must not become a new, empty store that no agent uses (nor add tables to a foreign
/// SQLite file).
fn open_url(url: &StoreUrl) -> Result<Arc<dyn ApprovalStore>, Failure> {
    url.open_existing()
        .map_err(|e| fail(EXIT_STORE, format!("store {url}: {e}")))
}

/// A warning on stderr for each pending row the store cannot read back: which, why, and what to do.
fn warn_unreadable(rows: &[UnreadableRow]) {
    for row in rows {
        let row = UnreadableRow {
            id: shown(&row.id),
            problem: shown(&row.problem),
        };
        eprintln!("agentguard: warning: {}", row.advice());
    }
}

fn parse_id(id: &str) -> Result<RequestId, Failure> {
    id.parse()
        .map_err(|e: agentguard::error::ParseRequestIdError| fail(EXIT_USAGE, e.to_string()))
}

fn store_error(e: StoreError) -> Failure {
    fail(EXIT_STORE, format!("store unreachable: {e}"))
}

/// Prints JSON with every hidden character (bidi controls, zero-width, tags, …) written as a `\uXXXX` escape: the
/// same data for a program, nothing that reorders or hides text on a terminal.
fn print_json(value: &impl serde::Serialize) {
    let text = serde_json::to_string(value).unwrap_or_default();
    outln!("{}", json_escape_hidden(&text));
}

fn json_escape_hidden(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if is_hidden(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Text from the agent or the model, as the CLI shows it: hidden characters as visible `\u{…}` marks.
fn shown(text: &str) -> String {
    escape_hidden(text).into_owned()
}

fn left(req: &ApprovalRequest) -> String {
    format!("{}s", req.remaining().as_secs())
}

fn pending(cli: &Cli, store: &dyn ApprovalStore) -> Result<(), Failure> {
    let found = store.list_pending().map_err(store_error)?;
    // A row that cannot be read back is named on stderr; the others are listed as usual.
    warn_unreadable(&found.unreadable);
    let list = found.requests;
    if cli.json {
        print_json(&list);
        return Ok(());
    }
    if list.is_empty() {
        outln!("no pending requests");
        return Ok(());
    }
    outln!(
        "{:<36}  {:<20}  {:<16}  {:<12}  {:>6}  PARAMS",
        "REQUEST",
        "TOOL",
        "RISK",
        "AGENT",
        "LEFT"
    );
    for req in &list {
        let risk = req.risk().key();
        let mut params = shown(&req.params().to_string());
        if params.chars().count() > 60 {
            params = params.chars().take(57).collect::<String>() + "...";
        }
        outln!(
            "{:<36}  {:<20}  {:<16}  {:<12}  {:>6}  {params}",
            req.request_id(),
            shown(req.tool()),
            risk,
            shown(req.agent_id().unwrap_or("-")),
            left(req)
        );
    }
    Ok(())
}

fn show(cli: &Cli, store: &dyn ApprovalStore, id: &RequestId) -> Result<(), Failure> {
    let stored = store.get(id).map_err(|e| {
        // A pending row that cannot be read back: say so, and what to do, rather than "unreachable".
        let unreadable = store
            .list_pending()
            .ok()
            .and_then(|list| list.unreadable.into_iter().find(|row| row.id == id.as_str()));
        match unreadable {
            Some(row) => fail(
                EXIT_STORE,
                UnreadableRow {
                    id: shown(&row.id),
                    problem: shown(&row.problem),
                }
                .advice(),
            ),
            None => store_error(e),
        }
    })?;
    let Some(stored) = stored else {
        return Err(fail(
            EXIT_UNKNOWN,
            format!("unknown request {id}: not in this store (check the id and --store)"),
        ));
    };
    if cli.json {
        print_json(&stored);
        return Ok(());
    }
    let req = &stored.request;
    let rows: [(&str, String); 13] = [
        ("Request", req.request_id().to_string()),
        ("State", stored.decision.state.as_str().to_owned()),
        ("Outcome", stored.outcome.clone().unwrap_or_else(|| "-".into())),
        ("Tool", req.tool().to_owned()),
        ("Risk", req.risk().label().to_owned()),
        ("Reason", req.reason().unwrap_or("-").to_owned()),
        ("Agent", req.agent_id().unwrap_or("-").to_owned()),
        ("Session", req.session_id().unwrap_or("-").to_owned()),
        ("Time left", left(req)),
        ("Actor", stored.decision.actor.clone().unwrap_or_else(|| "-".into())),
        ("Note", stored.decision.note.clone().unwrap_or_else(|| "-".into())),
        ("Digest", req.params_digest().to_string()),
        (
            "Parameters",
            serde_json::to_string_pretty(req.params()).unwrap_or_default(),
        ),
    ];
    for (k, v) in rows {
        // Every value may hold what the model wrote: an escape sequence or a newline must not redraw or fake the
        // lines around it. Only the pretty-printed params span lines, and their newlines are serde_json's own
        // (a newline inside a string is written as `\n`).
        let v = if k == "Parameters" {
            v.split('\n').map(shown).collect::<Vec<_>>().join("\n")
        } else {
            shown(&v)
        };
        outln!("{k:<10}: {v}");
    }
    Ok(())
}

fn answer_request(cli: &Cli, store: &dyn ApprovalStore, answer: &Resolution) -> Result<(), Failure> {
    let outcome = store.resolve(answer).map_err(store_error)?;
    let id = answer.request_id();
    if cli.json {
        print_json(&serde_json::json!({"request_id": id, "outcome": outcome}));
    }
    // The same words as the HTTP API's `message`.
    let explained = format!("request {id}: {}", outcome.explain(answer.is_approval()));
    let code = match outcome {
        ResolveOutcome::Resolved => {
            if !cli.json {
                let verb = if answer.is_approval() { "approved" } else { "denied" };
                outln!("{verb} {id}");
            }
            return Ok(());
        }
        ResolveOutcome::AlreadyResolved => EXIT_ALREADY,
        ResolveOutcome::Unknown => EXIT_UNKNOWN,
        ResolveOutcome::Expired => EXIT_EXPIRED,
        ResolveOutcome::DigestMismatch => EXIT_DIGEST,
        ResolveOutcome::Unavailable => EXIT_STORE,
        _ => EXIT_ERROR,
    };
    Err(fail(code, explained))
}

fn watch(cli: &Cli, store: &dyn ApprovalStore, interval: Duration) -> Result<(), Failure> {
    let mut known: BTreeMap<RequestId, ApprovalRequest> = BTreeMap::new();
    let mut unreadable: Vec<String> = Vec::new();
    if !cli.json {
        outln!("watching for requests (Ctrl-C to stop)");
    }
    loop {
        let found = store.list_pending().map_err(store_error)?;
        // Each unreadable row is named once, when first seen; the others are watched as usual.
        warn_unreadable(
            &found
                .unreadable
                .iter()
                .filter(|row| !unreadable.contains(&row.id))
                .cloned()
                .collect::<Vec<_>>(),
        );
        unreadable = found.unreadable.into_iter().map(|row| row.id).collect();
        let now: BTreeMap<RequestId, ApprovalRequest> = found
            .requests
            .into_iter()
            .map(|r| (r.request_id().clone(), r))
            .collect();
        for (id, req) in &now {
            if !known.contains_key(id) {
                if cli.json {
                    print_json(&serde_json::json!({"event": "parked", "request": req}));
                } else {
                    outln!(
                        "+ parked   {id}  {}  {}  {}",
                        shown(req.tool()),
                        req.risk().key(),
                        shown(&req.params().to_string())
                    );
                }
            }
        }
        for id in known.keys().filter(|id| !now.contains_key(*id)) {
            let state = store
                .get(id)
                .map_err(store_error)?
                .map_or("gone", |s| s.decision.state.as_str());
            if cli.json {
                print_json(&serde_json::json!({"event": state, "request_id": id}));
            } else {
                outln!("- {state:<8} {id}");
            }
        }
        known = now;
        std::thread::sleep(interval);
    }
}

/// The keys for `audit verify`: each --key-file, or else the one named by $AGENTGUARD_AUDIT_KEY_FILE.
fn audit_keys(files: &[PathBuf]) -> Result<Vec<AuditKey>, Failure> {
    if files.is_empty() {
        return AuditKey::from_env()
            .map(|key| key.into_iter().collect())
            .map_err(|e| fail(EXIT_USAGE, e.to_string()));
    }
    files
        .iter()
        .map(|f| AuditKey::from_file(f).map_err(|e| fail(EXIT_USAGE, format!("--key-file: {e}"))))
        .collect()
}

/// Which checkpoint file `audit verify` checks.
enum CheckpointArg {
    /// FILE.checkpoint, when it exists.
    Default,
    File(PathBuf),
    Off,
}

/// `audit verify --store postgres://…`: the audit table of a PostgreSQL store.
fn verify_store(cli: &Cli, url: &StoreUrl, keys: &[AuditKey]) -> Result<(), Failure> {
    let store = url
        .connect_postgres()
        .map_err(|e| fail(EXIT_STORE, format!("store {url}: {e}")))?;
    report_verify(cli, store.verify_audit_with_keys(keys))
}

fn verify(cli: &Cli, file: Option<PathBuf>, keys: &[AuditKey], checkpoint: CheckpointArg) -> Result<(), Failure> {
    let file = match file {
        Some(f) => f,
        None => match cli.store.as_deref().map(StoreUrl::parse) {
            Some(Ok(url)) if url.is_postgres() => return verify_store(cli, &url, keys),
            _ => default_log_path(),
        },
    };
    let mut check = Verify::new(&file);
    for key in keys {
        check = check.key(key.clone());
    }
    let checkpoint_exists = match &checkpoint {
        CheckpointArg::Default => {
            let mut name = file.clone().into_os_string();
            name.push(".checkpoint");
            PathBuf::from(name).exists()
        }
        CheckpointArg::File(_) => true,
        CheckpointArg::Off => false,
    };
    check = match checkpoint {
        CheckpointArg::Default => check,
        CheckpointArg::File(c) => check.checkpoint_file(c),
        CheckpointArg::Off => check.no_checkpoint(),
    };
    // A missing log whose checkpoint file remains is a removed log: verify reports that, as a truncation.
    if !file.exists() && !checkpoint_exists {
        return Err(fail(EXIT_ERROR, format!("no audit log at {}", file.display())));
    }
    report_verify(cli, check.run())
}

fn report_verify(cli: &Cli, result: Result<VerifyReport, VerifyError>) -> Result<(), Failure> {
    match result {
        Ok(report) => {
            if cli.json {
                print_json(&serde_json::json!({
                    "ok": true, "lines": report.lines, "first_seq": report.first_seq,
                    "last_seq": report.last_seq, "files": report.files, "keyed": report.keyed,
                    "repairs": report.repairs, "checkpoint": report.checkpoint,
                }));
            } else {
                let mut extra = String::new();
                if report.keyed {
                    extra.push_str("; keyed, every MAC checked");
                }
                if let Some(seq) = report.checkpoint {
                    extra.push_str(&format!("; reaches its last checkpoint (seq {seq})"));
                }
                if report.repairs > 0 {
                    extra.push_str(&format!(
                        "; {} repair(s) of a torn write (see the lines with \"event\":\"repair\")",
                        report.repairs
                    ));
                }
                outln!(
                    "chain intact: {} lines (seq {}..{}) in {} file(s){extra}",
                    report.lines,
                    report.first_seq.unwrap_or(0),
                    report.last_seq.unwrap_or(0),
                    report.files.len()
                );
            }
            Ok(())
        }
        Err(e) => {
            if cli.json {
                print_json(&serde_json::json!({
                    "ok": false, "kind": e.kind.as_str(), "file": e.file, "line": e.line, "problem": e.problem,
                }));
            }
            Err(match e.kind {
                VerifyErrorKind::TornTail => fail(EXIT_TORN, e.to_string()),
                VerifyErrorKind::KeyNeeded => fail(EXIT_USAGE, format!("{e} (--key-file K, or {KEY_FILE_ENV})")),
                VerifyErrorKind::Unreadable => fail(EXIT_ERROR, e.to_string()),
                _ => fail(EXIT_AUDIT, format!("chain broken at {e}")),
            })
        }
    }
}
