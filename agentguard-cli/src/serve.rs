//! `agentguard serve`: the approval API and page over the shared store.

use super::*;

/// `serve`: the approval API and page over the shared store, until the process is stopped.
pub(super) fn serve(
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
