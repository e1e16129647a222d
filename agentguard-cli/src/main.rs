//! `agentguard`: answer and inspect parked approval requests in a shared store, and verify audit logs.
//!
//! ```text
//! agentguard --store sqlite:/tmp/agentguard.db pending
//! agentguard --store sqlite:/tmp/agentguard.db approve 3f9c2b1e-8d4a-4f7b-9c1d-2e5f6a7b8c9d --actor alice
//! agentguard --store sqlite:/tmp/agentguard.db approve 3f9c2b1e-… --edit '{"to": "bob@example.com"}'
//! agentguard --store sqlite:/tmp/agentguard.db approve 3f9c2b1e-… --remember session --for 2h --uses 20 \
//!     --when 'path = { under = "./reports" }'
//! agentguard --store sqlite:/tmp/agentguard.db respond 3f9c2b1e-… "the refund was already made on Monday"
//! agentguard --store sqlite:/tmp/agentguard.db grants list --all
//! agentguard --store sqlite:/tmp/agentguard.db grants revoke 6d0f5c4a-1b2e-4c3d-9e8f-7a6b5c4d3e2f
//! agentguard audit verify agentguard.log
//! agentguard mcp --store sqlite:/tmp/agentguard.db -- npx -y @modelcontextprotocol/server-filesystem ~/notes
//! agentguard policy check agentguard.toml
//! agentguard policy explain agentguard.toml --tool refund_order --params '{"amount_eur": 250}'
//! agentguard audit verify /var/log/agentguard/agentguard.log --key-file /etc/agentguard/audit.key \
//!     --checkpoint /var/lib/agentguard/agentguard.log.checkpoint
//! AGENTGUARD_TOKENS=alice=$(openssl rand -hex 16) agentguard --store sqlite:/tmp/agentguard.db serve
//! ```
//!
//! Exit codes: 0 done (resolved, or a quorum vote recorded); 1 other error; 2 bad usage, a malformed id or store URL,
//! bad `--edit` JSON, a bad `--for`/`--uses`/`--when`/`--remember`, an empty response; 3 unknown request or grant;
//! 4 already resolved; 5 expired; 6 digest mismatch; 7 store unreachable, unusable or not there (commands open an
//! existing store only: the agents' guard creates it); 8 audit chain broken (edited, forged or truncated); 9 audit log
//! ends in a torn write (a crash or a full disk; removed newest lines show against the checkpoints); 10 already voted
//! on this quorum request; 11 not an approver of this request (or no actor given); 12 own request (the actor is the
//! requesting agent or mapped to it); 13 not allowed for this request (an edit of a tool that takes none, an edit or a
//! response on a quorum request, a standing grant its rule forbids or a scope it lacks). Nothing is decided by an
//! answer that exits 3–7 or 10–13.

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
use agentguard::store::{ApprovalStore, PageCursor, PendingList, StoreError, StoreUrl, UnreadableRow};
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

mod answer;
mod audit;
mod grants;
mod mcp;
mod policy;
mod requests;
mod serve;

use answer::{ApproveArgs, RespondArgs};
use audit::{audit_keys, verify, CheckpointArg};
use requests::{answer_request, pending, show, watch};
use serve::serve;

const EXIT_ERROR: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_UNKNOWN: u8 = 3;
const EXIT_ALREADY: u8 = 4;
const EXIT_EXPIRED: u8 = 5;
const EXIT_DIGEST: u8 = 6;
const EXIT_STORE: u8 = 7;
const EXIT_AUDIT: u8 = 8;
const EXIT_TORN: u8 = 9;
const EXIT_VOTED: u8 = 10;
const EXIT_NOT_APPROVER: u8 = 11;
const EXIT_OWN_REQUEST: u8 = 12;
const EXIT_NOT_ALLOWED: u8 = 13;

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
    /// List the requests waiting for an answer, oldest first.
    ///
    /// With --limit, one page: at most that many, then the command for the next page (with --json, an object
    /// `{"requests": [...], "next": CURSOR or null}` instead of the list).
    Pending {
        /// At most this many requests (1 to 1000): one page of a long list.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: Option<u16>,
        /// Start after this cursor: the `next` the previous page printed (needs --limit).
        #[arg(long, requires = "limit")]
        after: Option<String>,
    },
    /// Show one request and what became of it.
    Show {
        /// The request id (from `pending`).
        id: String,
    },
    /// Approve a request: the agent's call runs (with --edit, with your arguments; with --remember, later calls
    /// like it run without asking). On a quorum request, your approval is one vote.
    ///
    ///   agentguard approve ID --actor alice
    ///   agentguard approve ID --edit '{"to": "bob@example.com", "body": "hi"}'
    ///   agentguard approve ID --remember session --for 2h --uses 20 --when 'path = { under = "./reports" }'
    #[command(verbatim_doc_comment)]
    Approve(Box<ApproveArgs>),
    /// Deny a request: the agent gets ActionDenied. On a quorum request, your denial is one vote (one ends it by
    /// default).
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
    /// Answer for the tool: it does not run, and the agent reads TEXT as its result (not a denial).
    ///
    ///   agentguard respond ID "the refund was already made on Monday; nothing to do"
    ///   echo "..." | agentguard respond ID -
    #[command(verbatim_doc_comment)]
    Respond(RespondArgs),
    /// Standing grants ("remember this", made with `approve --remember`): list and revoke them.
    Grants {
        #[command(subcommand)]
        command: GrantsCommand,
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
    /// Run the MCP gateway: every tools/call of an MCP client goes through agentguard before it reaches the server.
    ///
    /// The gateway is the agents' guard: with --store it creates the store (other commands only open it).
    ///
    ///   agentguard mcp --store sqlite:/tmp/ag.db -- npx -y @modelcontextprotocol/server-filesystem ~/notes
    ///   agentguard mcp --upstream http://127.0.0.1:9000/mcp --listen 127.0.0.1:8788
    ///   agentguard mcp --config servers.toml --serve 127.0.0.1:8787
    #[command(verbatim_doc_comment)]
    Mcp(Box<mcp::McpArgs>),
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Policy file tools: check a file, explain a decision, run a table of expected decisions.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand, Debug)]
enum GrantsCommand {
    /// The active grants (with --all, also the expired, used up and revoked ones), newest first: id, tool, who
    /// they cover, uses, time left, who made them and from which request, status and condition.
    List {
        /// Also the grants that no longer let calls through.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a grant: from now on it lets nothing through. Prints how many calls it let through. Exit 3 for an
    /// unknown id.
    Revoke {
        /// The grant id (from `grants list`).
        id: String,
        /// Who revokes (recorded with the grant).
        #[arg(long, env = "USER")]
        actor: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Check a policy file. Exit 0 when it is valid (warnings on stderr); 2 with every error and its line.
    Check {
        /// The policy file (TOML).
        file: PathBuf,
    },
    /// Show how a policy decides one call: the decision, the rule that made it, and each test's result.
    ///
    /// With --json: {"decision":"allow"|"ask"|"deny","rule":NAME|null,"message":…, …}.
    Explain {
        /// The policy file (TOML).
        file: PathBuf,
        /// The tool's name.
        #[arg(long)]
        tool: String,
        /// The call's params, a JSON object (default {}).
        #[arg(long, value_name = "JSON")]
        params: Option<String>,
        /// The agent's id.
        #[arg(long, value_name = "ID")]
        agent: Option<String>,
        /// The session's id.
        #[arg(long, value_name = "ID")]
        session: Option<String>,
        /// The tool server's name (MCP gateway upstream).
        #[arg(long, value_name = "NAME")]
        server: Option<String>,
        /// The call's declared risk (irreversible, external_send, …, or none); default: what the tool's name
        /// classifies as.
        #[arg(long, value_name = "RISK")]
        risk: Option<String>,
    },
    /// Run a table of expected decisions ([[case]] tables in a TOML file). Exit 0 when all pass, 1 when one fails,
    /// 2 for a bad file.
    Test {
        /// The policy file (TOML).
        file: PathBuf,
        /// The cases: [[case]] with tool, params, agent, session, server, risk, expect, rule.
        cases: PathBuf,
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
        Command::Mcp(args) => mcp::mcp(cli, args),
        Command::Policy { command } => match command {
            PolicyCommand::Check { file } => policy::check(cli, file),
            PolicyCommand::Explain {
                file,
                tool,
                params,
                agent,
                session,
                server,
                risk,
            } => policy::explain(
                cli,
                file,
                &policy::CallArgs {
                    tool,
                    params: params.as_deref(),
                    agent: agent.as_deref(),
                    session: session.as_deref(),
                    server: server.as_deref(),
                    risk: risk.as_deref(),
                },
            ),
            PolicyCommand::Test { file, cases } => policy::test(cli, file, cases),
        },
        Command::Pending { limit, after } => pending(cli, &*open(cli)?, *limit, after.as_deref()),
        Command::Show { id } => show(cli, &*open(cli)?, &parse_id(id)?),
        Command::Approve(args) => {
            // Every flag is checked before the store is opened: bad input never reaches it.
            let answer = args.resolution()?;
            answer_request(cli, &*open(cli)?, &answer)
        }
        Command::Respond(args) => {
            let answer = args.resolution()?;
            answer_request(cli, &*open(cli)?, &answer)
        }
        Command::Grants { command } => match command {
            GrantsCommand::List { all } => grants::list(cli, &*open(cli)?, *all),
            GrantsCommand::Revoke { id, actor } => grants::revoke(cli, &*open(cli)?, id, actor.as_deref()),
        },
        Command::Deny { id, actor, reason } => {
            let mut answer = Resolution::deny(parse_id(id)?);
            if let Some(actor) = actor {
                answer = answer.actor(actor);
            }
            if let Some(reason) = reason.as_deref().filter(|r| !r.trim().is_empty()) {
                answer = answer.note(checked_note(reason)?);
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

/// A `--reason`, checked as the HTTP API checks it.
fn checked_note(reason: &str) -> Result<&str, Failure> {
    Resolution::check_note(reason).map_err(|problem| {
        fail(
            EXIT_USAGE,
            format!("--reason: {problem} (it goes to the agent and into the audit)"),
        )
    })?;
    Ok(reason)
}

/// A `--digest`, parsed.
fn parse_digest(digest: &str) -> Result<ParamsDigest, Failure> {
    digest
        .parse::<ParamsDigest>()
        .map_err(|e| fail(EXIT_USAGE, e.to_string()))
}

/// `500ms`, `90s`, `5m`, `1h`, `7d`, or bare seconds: the CLI's one way to write a duration.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: write e.g. 90s, 5m, 2h, 7d, 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        other => return Err(format!("unknown unit `{other}` in `{text}`: use ms, s, m, h or d")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("`{text}`: give a duration above zero"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{text}` is too long a duration"))
}

/// A duration for people: `1d 2h`, `1h 59m`, `4m 10s`, `12s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {mins}m")
    } else if mins > 0 {
        format!("{mins}m {secs}s")
    } else {
        format!("{secs}s")
    }
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
