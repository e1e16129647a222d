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
//! | `GET /agentguard/pending` | JSON list of live requests (redacted params, digest, deadline); header `x-agentguard-unreadable`: how many pending rows the store could not read back |
//! | `POST /agentguard/resolve` | `{request_id, approved, params_digest?, reason?}` → `{outcome}` |
//! | `GET /agentguard/events` | Server-Sent Events: `snapshot`, then `parked`, `resolved`, `expired`; `unreadable` names pending rows the store cannot read back |
//!
//! `resolve` answers 200 resolved, 404 unknown, 409 already resolved, 410 expired, 422 digest mismatch (each as
//! `{outcome, request_id, message}`, with an `error` code when not 200) or a malformed body (a `reason` with a
//! control character other than newline and tab is one), 413 a body over the limit, 408 a body that did not arrive
//! within the body timeout, 415 a body that is not JSON, 401 no or a wrong token, 429 too many wrong tokens from the
//! client's address, 403 a cross-origin request, 503 a store that cannot be reached. Every error response of the
//! router, whatever produced it (a handler, axum's routing, a layer), has a JSON body
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

mod auth;
mod events;
mod serve;
mod throttle;

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::guard::AgentGuard;
use crate::params::ParamsDigest;
use crate::request::{RequestId, Resolution, ResolveOutcome};
use crate::store::{ApprovalStore, StoreError};
use auth::TokenEntry;
pub use auth::MIN_TOKEN_LEN;
pub use serve::{serve, ServeLimits, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS};
use throttle::Throttle;
pub use throttle::{DEFAULT_AUTH_BLOCK, DEFAULT_AUTH_FAILURE_WINDOW, DEFAULT_MAX_AUTH_FAILURES};

/// Largest `POST /agentguard/resolve` body accepted by default: 16 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;

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

    /// The largest resolve body accepted (default [`DEFAULT_MAX_BODY_BYTES`]).
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
        });
        let api = Router::new()
            .route("/agentguard/pending", get(pending))
            .route("/agentguard/resolve", post(resolve))
            .route("/agentguard/events", get(events))
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
}

/// An error response: a status and `{"error", "message"}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub(crate) fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message)
    }
    fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "malformed_body", message)
    }
    fn store(e: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("the approval store could not be reached: {e}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            no_store(),
            Json(json!({ "error": self.code, "message": self.message })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"agentguard\""),
            );
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The last layer of the router: an error response that is not JSON yet (axum's own rejections, a layer's error)
/// gets the `{"error", "message"}` body every other error has, keeping its status and headers.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "body_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "malformed_body",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "server_error",
        _ => "request_refused",
    };
    let message = format!("{} {}", status.as_str(), status.canonical_reason().unwrap_or("error"));
    let (mut parts, _) = response.into_parts();
    let body = json!({ "error": code, "message": message }).to_string();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Response::from_parts(parts, Body::from(body))
}

fn no_store() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}

/// The response header of `GET /agentguard/pending` that counts the pending rows the store could not read back
/// (each is named in the event stream's `unreadable` event and by `agentguard pending`).
pub const UNREADABLE_HEADER: &str = "x-agentguard-unreadable";

async fn pending(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Result<Response, ApiError> {
    auth::authenticate(&s.tokens, &headers)?;
    let store = s.store.clone();
    // One row that cannot be read back does not hide the others: they are listed, and the header counts it.
    let list = blocking(move || store.list_pending()).await.map_err(ApiError::store)?;
    let mut response = (no_store(), Json(list.requests)).into_response();
    response
        .headers_mut()
        .insert(UNREADABLE_HEADER, HeaderValue::from(list.unreadable.len()));
    Ok(response)
}

/// The body of `POST /agentguard/resolve`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    request_id: String,
    approved: bool,
    #[serde(default)]
    params_digest: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

async fn resolve(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let actor = auth::authenticate(&s.tokens, &headers)?.to_owned();
    auth::check_same_origin(&s.allowed_origins, &headers)?;
    auth::check_json_content_type(&headers)?;
    let bytes = tokio::time::timeout(s.body_timeout, read_limited(body, s.max_body_bytes))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the body did not arrive within {} s; send the whole body at once",
                    s.body_timeout.as_secs_f64()
                ),
            )
        })??;
    let parsed = parse_body(&bytes)?;
    let request_id: RequestId = parsed
        .request_id
        .parse()
        .map_err(|e| ApiError::malformed(format!("request_id: {e}")))?;
    let params_digest = parsed
        .params_digest
        .as_deref()
        .map(str::parse::<ParamsDigest>)
        .transpose()
        .map_err(|e| ApiError::malformed(format!("params_digest: {e}")))?;
    let mut resolution = Resolution::new(request_id.clone(), parsed.approved).actor(actor);
    if let Some(digest) = params_digest {
        resolution = resolution.params_digest(digest);
    }
    if let Some(reason) = parsed.reason.filter(|r| !r.trim().is_empty()) {
        check_reason(&reason)?;
        resolution = resolution.note(reason);
    }

    let store = s.store.clone();
    let outcome = blocking(move || store.resolve(&resolution))
        .await
        .map_err(ApiError::store)?;
    let status = match outcome {
        ResolveOutcome::Resolved => StatusCode::OK,
        ResolveOutcome::AlreadyResolved => StatusCode::CONFLICT,
        ResolveOutcome::Unknown => StatusCode::NOT_FOUND,
        ResolveOutcome::Expired => StatusCode::GONE,
        ResolveOutcome::DigestMismatch => StatusCode::UNPROCESSABLE_ENTITY,
        ResolveOutcome::Unavailable => return Err(ApiError::store("it did not answer")),
    };
    let message = outcome.explain(parsed.approved);
    let mut body = json!({ "outcome": outcome.as_str(), "request_id": request_id, "message": message });
    if status != StatusCode::OK {
        // Like every other error: an `error` code (the outcome in lower case) beside the outcome.
        body["error"] = json!(outcome.as_str().to_ascii_lowercase());
    }
    Ok((status, no_store(), Json(body)).into_response())
}

/// A reason is text for a person and the audit: at most [`Resolution::MAX_NOTE_CHARS`] characters, and no control
/// characters but newline and tab. NUL in particular cannot be stored (PostgreSQL refuses it in text), and the others
/// (escape sequences, carriage return, C1 controls) have no place in a note someone reads in a terminal.
fn check_reason(reason: &str) -> Result<(), ApiError> {
    let chars = reason.chars().count();
    if chars > Resolution::MAX_NOTE_CHARS {
        return Err(ApiError::malformed(format!(
            "reason: {chars} characters; at most {}",
            Resolution::MAX_NOTE_CHARS
        )));
    }
    if let Some((at, c)) = reason
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return Err(ApiError::malformed(format!(
            "reason: a control character (U+{:04X}) at character {}; send plain text (newline and tab are the only \
             control characters allowed)",
            u32::from(c),
            at + 1
        )));
    }
    Ok(())
}

/// What a resolve body looks like, for error messages.
const RESOLVE_SHAPE: &str = r#"send {"request_id": "<id>", "approved": true|false, "params_digest": "<hex>" (optional), "reason": "…" (optional)}"#;

/// Parses a resolve body; an error names the field that is wrong and shows the expected shape.
fn parse_body(bytes: &[u8]) -> Result<ResolveBody, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = match inner.classify() {
            serde_json::error::Category::Data if path != "." => format!("{path}: {inner}"),
            serde_json::error::Category::Data => inner.to_string(),
            _ => format!("the body is not valid JSON: {inner}"),
        };
        ApiError::malformed(format!("{what} — {RESOLVE_SHAPE}"))
    })
}

/// Runs a store call off the async workers (stores may block on files or sockets). A panic in the store becomes a
/// store error.
async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::new(format!("the store failed: {e}"))),
    }
}

/// Reads at most `limit` bytes of body; more is a 413, a broken body a 400.
async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_body", format!("{e}")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is over {limit} bytes; a resolve body is a few hundred"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

async fn events(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Result<Response, ApiError> {
    auth::authenticate(&s.tokens, &headers)?;
    let Ok(slot) = s.event_streams.clone().try_acquire_owned() else {
        return Err(too_many_streams());
    };
    // The stream owns the slot, so the slot frees when the stream is dropped: when the client goes away.
    let stream = events::stream(s.store.clone(), s.poll_interval).map(move |event| {
        let _slot = &slot;
        event
    });
    let mut response = (no_store(), Sse::new(stream).keep_alive(KeepAlive::default())).into_response();
    // Tell proxies such as nginx not to buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn too_many_streams() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_streams",
        "the server has as many event streams open as it allows: close a page, or try again shortly",
    )
    .retry_after(5)
}

/// The page's Content-Security-Policy: only its own inline script and style (by hash), requests to itself only.
static PAGE_CSP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        inline_hash(&PAGE, "script"),
        inline_hash(&PAGE, "style"),
    )
});

/// `sha256-<base64>` of the text inside the first `<tag>…</tag>` of `html`.
fn inline_hash(html: &str, tag: &str) -> String {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let body = html
        .split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&close))
        .map_or("", |(inner, _)| inner);
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body.as_bytes()))
    )
}

async fn page() -> Response {
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ];
    let mut response = (headers, PAGE.as_str()).into_response();
    if let Ok(csp) = HeaderValue::from_str(&PAGE_CSP) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route: the API has GET /agentguard/pending, POST /agentguard/resolve, GET /agentguard/events and \
         the page at /agentguard/",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "wrong method: resolve is POST, pending, events and the page are GET",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_hashes_cover_its_inline_script_and_style() {
        for tag in ["script", "style"] {
            assert!(
                PAGE.matches(&format!("<{tag}>")).count() == 1,
                "one inline <{tag}> in page.html"
            );
            assert!(inline_hash(&PAGE, tag).len() > "sha256-".len() + 40);
        }
        assert!(
            !PAGE.contains("http://") && !PAGE.contains("https://"),
            "the page loads nothing from elsewhere"
        );
        assert!(
            PAGE.contains("const HIDDEN = /[\\u{0}-\\u{1F}") && !PAGE.contains("AGENTGUARD_HIDDEN_CLASS"),
            "the page's hidden-character class is filled in"
        );
    }

    #[test]
    fn a_router_without_tokens_is_refused() {
        let store: Arc<dyn ApprovalStore> = Arc::new(crate::store::InMemoryStore::new());
        let e = ApprovalApi::new(store.clone()).router().unwrap_err();
        assert!(e.to_string().contains("no API token"), "{e}");
        let e = ApprovalApi::new(store.clone())
            .token("0123456789abcdef", "alice")
            .allow_origin("approvals.example.com")
            .router()
            .unwrap_err();
        assert!(e.to_string().contains("scheme://host"), "{e}");
        let e = ApprovalApi::new(store.clone())
            .token("0123456789abcdef", "alice")
            .token("0123456789abcdef", "bob")
            .router()
            .unwrap_err();
        assert!(e.to_string().contains("tokens 1 and 2 are the same"), "{e}");
    }
}
