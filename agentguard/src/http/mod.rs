//! Web approvals (feature `http`): the approval API and the built-in approval page, as an axum [`Router`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use agentguard::http::{ApprovalApi, ServeLimits};
//! use agentguard::AgentGuard;
//!
//! let guard = AgentGuard::external().build();
//! let app = ApprovalApi::for_guard(&guard)
//!     .token(std::env::var("AGENTGUARD_TOKEN")?, "alice") // the token the page asks for; "alice" goes into the audit
//!     .router()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8787").await?;
//! agentguard::http::serve(listener, app, ServeLimits::default()).await; // or merge `app` into your own router
//! # Ok(()) }
//! ```
//!
//! | route | what |
//! |---|---|
//! | `GET /agentguard/` | the approval page: one self-contained HTML file, no CDN, works offline |
//! | `GET /agentguard/pending?limit=&after=` | JSON list of live requests, oldest first (redacted params, digest, deadline): at most `limit` (1–1,000, default 1,000); when more follow, header `x-agentguard-next` holds the cursor to pass as `after` for the next page (and `Link: <…>; rel="next"` the URL). Header `x-agentguard-unreadable`: how many pending rows of the page the store could not read back |
//! | `POST /agentguard/resolve` | `{request_id, approved \| kind, params?, response?, params_digest?, reason?, remember?}` → `{outcome, kind, message, quorum_progress?}` |
//! | `GET /agentguard/events` | Server-Sent Events: `snapshot`, then `parked`, `resolved`, `expired`, `progress` (votes on a quorum request), `grants` (the grant list, when it changes); `unreadable` names pending rows the store cannot read back |
//! | `GET /agentguard/grants` | JSON list of the standing grants the store keeps, newest first, each with `status`, `active`, `remaining_secs`, `used`, `uses_left` |
//! | `POST /agentguard/grants/{id}/revoke` | revokes a grant (the token's actor is recorded) → `{outcome: "REVOKED", grant, message}`; 404 unknown, 409 already revoked |
//!
//! # Answers
//!
//! `approved: true` approves and `approved: false` denies, as before. `kind` says the same and more:
//!
//! - `"kind": "approve"` / `"deny"`;
//! - `"kind": "edit", "params": {…}`: approve with these params instead (a JSON object; a value left as
//!   `[REDACTED]` keeps the real secret); the agent validates them, and the policy judges them again;
//! - `"kind": "respond", "response": "…"`: the tool does not run and the agent reads the text as its result (at most
//!   [`Resolution::MAX_RESPONSE_CHARS`] characters, plain text as a `reason`).
//!
//! With an approve or an edit, `"remember": {"scope": "session" | "agent" | "everyone" | "call", "for": "2h" | 7200,
//! "uses": 20, "when": "path = { under = \"./reports\" }"}` also makes a standing grant
//! ([`GrantSpec`](crate::answer::GrantSpec)): later calls of the same tool within the scope run without asking, for
//! that time (`s`, `m`, `h`, `d`, combined as `1h30m`, or seconds; at most 30 days) and/or that many uses, if their
//! arguments pass `when` (the body of a policy rule's `when` table). `call` (this call only) makes none. A pending
//! request says which answers it takes: `edit_refused` and `remember_refused` give the reason an edit or a grant
//! would be refused, and a quorum request carries `quorum` and `quorum_progress`
//! (`{approvals, denials, needed, waiting_for, votes, text}`, `text` reading "1 of 2 approvals, waiting for bob or
//! carol").
//!
//! `resolve` answers 200 resolved, 202 vote recorded (a quorum request needs more approvals), 404 unknown, 409
//! already resolved or already voted, 410 expired, 403 not an approver of this request or its own requester (the
//! agent, or a person mapped to it), 422 digest mismatch, an answer this request does not take (`NOT_ALLOWED_HERE`:
//! the message says why) or a malformed body (a `reason` with a control character other than newline and tab is
//! one, as is a `remember` whose `uses`, `for` or `when` is wrong; the message names the field), each answer as
//! `{outcome, request_id, kind, message}` with an `error` code when not 2xx; 413 a body over the limit, 408 a body
//! that did not arrive within the body timeout, 415 a body that is not JSON, 401 no or a wrong token, 429 too many
//! wrong tokens from the client's address, 403 a cross-origin request, 503 a store that cannot be reached. Every
//! error response of the router, whatever produced it (a handler, axum's routing, a layer), has a JSON body
//! `{"error": <code>, "message": <what to do>}`.
//!
//! Security: every API route needs `Authorization: Bearer <token>`; each token names an actor, recorded as who
//! decided. Tokens are compared in constant time and never echoed. State changes only by `POST` with
//! `Content-Type: application/json` and, from a browser, an `Origin` that is this server's own, so a page on another
//! site cannot approve anything. The page keeps the token in the tab's `sessionStorage` and sends it in a header:
//! never in a URL, so never in a log. It is served with a strict Content-Security-Policy. Bind to `127.0.0.1`
//! unless a TLS-terminating proxy is in front.
//!
//! Limits: [`serve`] closes connections that stall or idle ([`ServeLimits`]: a request head within 5 s, no
//! connection silent for 60 s, at most 256 at once); the router caps open event streams (64, then 503), gives a
//! client address that sent 10 wrong tokens within a minute 429 for a minute, and wants a resolve body within 10 s.
//! Each is configurable; the defaults are the `DEFAULT_*` constants.

mod answer;
mod auth;
mod errors;
mod events;
pub use events::WINDOW as EVENTS_WINDOW;
mod grants;
mod routes;
mod serve;
mod throttle;

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::guard::AgentGuard;
use crate::params::ParamsDigest;
use crate::request::{ApprovalRequest, RequestId, Resolution, ResolveOutcome};
use crate::store::{ApprovalStore, PageCursor, StoreError, MAX_PAGE};
use auth::TokenEntry;
pub use auth::MIN_TOKEN_LEN;
pub(crate) use errors::ApiError;
use errors::{json_errors, no_store};
use routes::{blocking, body_timeout, events, method_not_allowed, not_found, page, pending, read_limited, resolve};
pub use serve::{serve, ServeLimits, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS};
use throttle::Throttle;
pub use throttle::{DEFAULT_AUTH_BLOCK, DEFAULT_AUTH_FAILURE_WINDOW, DEFAULT_MAX_AUTH_FAILURES};

/// Largest `POST /agentguard/resolve` body accepted by default: 128 KiB (an edit carries the call's params, a
/// response up to 20,000 characters).
pub const DEFAULT_MAX_BODY_BYTES: usize = 128 * 1024;

/// How long a `POST /agentguard/resolve` body may take to arrive in full by default: 10 s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many event streams (`GET /agentguard/events`) may be open at once by default: 64. Each open page holds one.
pub const DEFAULT_MAX_EVENT_STREAMS: usize = 64;

/// How often the event stream re-reads a store that cannot signal changes (SQLite, PostgreSQL) by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The approval page, compiled into the binary, with the hidden-character class filled in from the same table the
/// terminal and the CLI use.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    include_str!("page.html").replacen("AGENTGUARD_HIDDEN_CLASS", &agentguard_classify::hidden_js_class(), 1)
});

/// Configures the approval API and page over a store. Build the axum router with [`router`](Self::router).
#[derive(Clone)]
pub struct ApprovalApi {
    store: Arc<dyn ApprovalStore>,
    tokens: Vec<(String, String)>,
    allowed_origins: Vec<String>,
    poll_interval: Duration,
    max_body_bytes: usize,
    body_timeout: Duration,
    max_event_streams: usize,
    auth_limit: (u32, Duration, Duration),
    standalone: bool,
}

impl fmt::Debug for ApprovalApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens are secrets: show only who has one.
        let actors: Vec<&str> = self.tokens.iter().map(|(_, a)| a.as_str()).collect();
        f.debug_struct("ApprovalApi")
            .field("store", &self.store)
            .field("actors", &actors)
            .field("allowed_origins", &self.allowed_origins)
            .field("poll_interval", &self.poll_interval)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("body_timeout", &self.body_timeout)
            .field("max_event_streams", &self.max_event_streams)
            .field("auth_limit", &self.auth_limit)
            .field("standalone", &self.standalone)
            .finish()
    }
}

impl ApprovalApi {
    /// An API over `store`, e.g. a [`SqliteStore`](crate::store::SqliteStore) or
    /// [`PostgresStore`](crate::store::PostgresStore) that agents in other processes park their requests in.
    pub fn new(store: Arc<dyn ApprovalStore>) -> Self {
        ApprovalApi {
            store,
            tokens: Vec::new(),
            allowed_origins: Vec::new(),
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_event_streams: DEFAULT_MAX_EVENT_STREAMS,
            auth_limit: (
                DEFAULT_MAX_AUTH_FAILURES,
                DEFAULT_AUTH_FAILURE_WINDOW,
                DEFAULT_AUTH_BLOCK,
            ),
            standalone: false,
        }
    }

    /// An API over the store of `guard` (an [`external`](AgentGuard::external) guard in this process).
    pub fn for_guard(guard: &AgentGuard) -> Self {
        Self::new(guard.store().clone())
    }

    /// Accepts `token` as a bearer token; answers given with it are recorded as made by `actor`. Give one token per
    /// person. Tokens need at least [`MIN_TOKEN_LEN`] characters; [`router`](Self::router) says if one is unfit.
    pub fn token(mut self, token: impl Into<String>, actor: impl Into<String>) -> Self {
        self.tokens.push((token.into(), actor.into()));
        self
    }

    /// Also accepts state changes from pages served at `origin` (e.g. `https://approvals.example.com` behind a
    /// proxy). The server's own origin is always accepted.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.allowed_origins
            .push(origin.into().trim_end_matches('/').to_owned());
        self
    }

    /// How often the event stream re-reads a store that cannot signal its changes (default
    /// [`DEFAULT_POLL_INTERVAL`]). The in-memory store signals, so its events are immediate (and it is re-read only
    /// every 5 s besides).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every.max(Duration::from_millis(10));
        self
    }

    /// The largest resolve (or revoke) body accepted (default [`DEFAULT_MAX_BODY_BYTES`]).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// How long a resolve body may take to arrive in full (default [`DEFAULT_BODY_TIMEOUT`]); a slower one is
    /// answered 408.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// How many event streams may be open at once (default [`DEFAULT_MAX_EVENT_STREAMS`]); one more is answered 503
    /// with `Retry-After` (the page retries with back-off).
    pub fn max_event_streams(mut self, max: usize) -> Self {
        self.max_event_streams = max;
        self
    }

    /// Blocks a client address that sent `max_failures` wrong tokens within `window`: its API requests are answered
    /// 429 with `Retry-After` for `block`, whatever token they carry (a right token does not lift the block early, or
    /// a guesser could tell which guess was right). Requests without any token are not counted, nor are other
    /// addresses affected; IPv6 addresses count by /64. `max_failures` 0 turns the limit off. Default
    /// [`DEFAULT_MAX_AUTH_FAILURES`] within [`DEFAULT_AUTH_FAILURE_WINDOW`], blocked for [`DEFAULT_AUTH_BLOCK`].
    ///
    /// The client address comes from [`serve`] (or axum's `into_make_service_with_connect_info::<SocketAddr>()`);
    /// served otherwise, there is no address and no limit. Behind a proxy every client has the proxy's address.
    pub fn auth_failure_limit(mut self, max_failures: u32, window: Duration, block: Duration) -> Self {
        self.auth_limit = (max_failures, window, block);
        self
    }

    /// Also answers every path outside `/agentguard/` with a JSON 404, for a server that serves only the approval API
    /// and page (as `agentguard serve` does). Leave it off to merge the router into an app with its own fallback.
    pub fn standalone(mut self) -> Self {
        self.standalone = true;
        self
    }

    /// The axum router with the routes under `/agentguard/`. Mount it with `Router::merge` (or `nest`: the page uses
    /// relative URLs). Fails if no token is configured or one is unfit, so a misconfigured server never starts.
    pub fn router(self) -> Result<Router, HttpConfigError> {
        if self.tokens.is_empty() {
            return Err(HttpConfigError::new(
                "no API token configured: add one with ApprovalApi::token(token, actor) (or `agentguard serve \
                 --token actor=TOKEN`)",
            ));
        }
        let tokens = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, (t, a))| TokenEntry::new(i + 1, t, a))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, entry) in tokens.iter().enumerate() {
            if let Some(j) = tokens[..i].iter().position(|earlier| earlier.same_token(entry)) {
                return Err(HttpConfigError::new(format!(
                    "tokens {} and {} are the same: give each person a token of their own, so the audit says who \
                     decided",
                    j + 1,
                    i + 1
                )));
            }
        }
        for origin in &self.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(HttpConfigError::new(format!(
                    "allowed origin {origin:?} must be scheme://host[:port], e.g. https://approvals.example.com"
                )));
            }
        }
        let (max_failures, window, block) = self.auth_limit;
        let state = Arc::new(Shared {
            store: self.store,
            tokens,
            allowed_origins: self.allowed_origins,
            poll_interval: self.poll_interval,
            max_body_bytes: self.max_body_bytes,
            body_timeout: self.body_timeout,
            event_streams: Arc::new(Semaphore::new(self.max_event_streams.min(Semaphore::MAX_PERMITS))),
            throttle: Throttle::new(max_failures, window, block),
            local_change: tokio::sync::watch::Sender::new(0),
        });
        let api = Router::new()
            .route("/agentguard/pending", get(pending))
            .route("/agentguard/resolve", post(resolve))
            .route("/agentguard/events", get(events))
            .route("/agentguard/grants", get(grants::list))
            .route("/agentguard/grants/{id}/revoke", post(grants::revoke))
            .route_layer(middleware::from_fn_with_state(state.clone(), throttle::limit));
        let mut router = Router::new()
            .route("/agentguard", get(|| async { Redirect::permanent("agentguard/") }))
            .route("/agentguard/", get(page))
            .route("/agentguard/{*rest}", axum::routing::any(not_found))
            .merge(api)
            .method_not_allowed_fallback(method_not_allowed);
        if self.standalone {
            router = router.fallback(not_found);
        }
        Ok(router.layer(middleware::map_response(json_errors)).with_state(state))
    }
}

/// A configuration mistake found by [`ApprovalApi::router`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfigError {
    message: String,
}

impl HttpConfigError {
    fn new(message: impl Into<String>) -> Self {
        HttpConfigError {
            message: message.into(),
        }
    }
}

impl fmt::Display for HttpConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HttpConfigError {}

struct Shared {
    store: Arc<dyn ApprovalStore>,
    tokens: Vec<TokenEntry>,
    allowed_origins: Vec<String>,
    poll_interval: Duration,
    max_body_bytes: usize,
    body_timeout: Duration,
    /// One permit per open event stream.
    event_streams: Arc<Semaphore>,
    throttle: Throttle,
    /// Bumped by a change made through this router that the store may not signal (a revoked grant), so this
    /// server's event streams look again at once.
    local_change: tokio::sync::watch::Sender<u64>,
}

/// The response header of `GET /agentguard/pending` that holds the cursor of the next page (absent on the last
/// page): pass it back as `?after=`.
pub const NEXT_HEADER: &str = "x-agentguard-next";

/// The response header of `GET /agentguard/pending` that counts the pending rows the store could not read back
/// (each is named in the event stream's `unreadable` event and by `agentguard pending`).
pub const UNREADABLE_HEADER: &str = "x-agentguard-unreadable";
