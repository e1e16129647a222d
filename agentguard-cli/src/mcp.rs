//! `agentguard mcp`: the MCP gateway (agentguard-mcp) in front of one server or several.

use super::*;
use agentguard_mcp::{Config, GatewayOptions, RunOptions, ServerSpec, UpstreamSpec};

/// The `mcp` subcommand's arguments.
#[derive(clap::Args, Debug)]
pub(super) struct McpArgs {
    /// A streamable-HTTP MCP server to front, instead of a command after `--`.
    #[arg(long, value_name = "URL", conflicts_with = "config")]
    upstream: Option<String>,
    /// A TOML file of several servers: `[server.NAME]` tables with `command` (+ `args`, `env`) or `url`. Tool
    /// names are then prefixed `NAME__tool`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The server's name (audit, approval page, policy `servers = [...]`) with a single server. Default: the
    /// command's file name or the URL's host.
    #[arg(long, value_name = "NAME", conflicts_with = "config")]
    name: Option<String>,
    /// A policy file (allow / ask / deny rules; rules can match `servers = [...]`).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Also serve the approval page and API at this address (needs --token or AGENTGUARD_TOKENS).
    #[arg(long, value_name = "ADDR")]
    serve: Option<SocketAddr>,
    /// An API token for --serve, as ACTOR=TOKEN (repeatable, or comma-separated in AGENTGUARD_TOKENS).
    #[arg(
        long = "token",
        env = "AGENTGUARD_TOKENS",
        hide_env_values = true,
        value_delimiter = ',',
        value_name = "ACTOR=TOKEN"
    )]
    tokens: Vec<String>,
    /// Serve MCP over streamable HTTP at http://ADDR/mcp instead of over stdio.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// With --listen: also accept requests whose Host is HOST (repeatable; default loopback names only, against DNS
    /// rebinding). For a gateway behind a proxy or reached by name.
    #[arg(long = "allow-host", value_name = "HOST", requires = "listen")]
    allowed_hosts: Vec<String>,
    /// How long a call waits for a person before it is denied: seconds, or with a unit (500ms, 90s, 5m, 1h).
    #[arg(long, default_value = "300s", value_name = "DURATION", value_parser = parse_duration)]
    timeout: Duration,
    /// The audit file (default: agentguard.log, or $AGENTGUARD_LOG).
    #[arg(long, value_name = "FILE")]
    audit: Option<PathBuf>,
    /// How long a server gets to answer initialize and tools/list at start.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    list_timeout: Duration,
    /// How often a waiting call sends a progress notification (to a client that asked for progress).
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = parse_duration)]
    progress_interval: Duration,
    /// The server to start, and its arguments (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// `mcp`: runs the gateway until the client closes stdio (or, with --listen, until interrupted).
pub(super) fn mcp(cli: &Cli, args: &McpArgs) -> Result<(), Failure> {
    let servers = servers(args)?;
    let mut tokens = Vec::new();
    for (i, spec) in args.tokens.iter().enumerate() {
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
        tokens.push((actor.to_owned(), token.to_owned()));
    }
    let options = RunOptions {
        servers,
        store: cli.store.clone(),
        policy: args.policy.clone(),
        serve: args.serve,
        tokens,
        listen: args.listen,
        allowed_hosts: args.allowed_hosts.clone(),
        timeout: args.timeout,
        audit: args.audit.clone(),
        gateway: GatewayOptions {
            list_timeout: args.list_timeout,
            progress_interval: args.progress_interval,
            prefix: None,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(EXIT_ERROR, format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(agentguard_mcp::run(options));
    // Do not wait for a blocked stdin read: the client is gone.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result.map_err(|e| fail(EXIT_ERROR, e.to_string()))
}

fn servers(args: &McpArgs) -> Result<Vec<ServerSpec>, Failure> {
    let given = usize::from(!args.command.is_empty())
        + usize::from(args.upstream.is_some())
        + usize::from(args.config.is_some());
    if given != 1 {
        return Err(fail(
            EXIT_USAGE,
            "give one upstream: `agentguard mcp -- COMMAND ARGS…`, `--upstream URL`, or `--config FILE`",
        ));
    }
    if let Some(path) = &args.config {
        return Config::from_file(path)
            .map(|c| c.servers)
            .map_err(|e| fail(EXIT_USAGE, e.to_string()));
    }
    let upstream = match &args.upstream {
        Some(url) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(fail(
                    EXIT_USAGE,
                    format!("--upstream `{url}`: give an http:// or https:// URL"),
                ));
            }
            UpstreamSpec::Url(url.clone())
        }
        None => UpstreamSpec::command(args.command[0].clone(), args.command[1..].iter().cloned()),
    };
    let name = args.name.clone().unwrap_or_else(|| upstream.default_name());
    Ok(vec![ServerSpec { name, upstream }])
}
