//! Web approvals (feature `http`): the approval API and the built-in approval page, as an axum [`Router`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use agentguard::http::ApprovalApi;
//! use agentguard::AgentGuard;
//!
//! let guard = AgentGuard::external().build();
//! let app = ApprovalApi::for_guard(&guard)
//!     .token(std::env::var("AGENTGUARD_TOKEN")?, "alice") // the token the page asks for; "alice" goes into the audit
//!     .router()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8787").await?;
//! axum::serve(listener, app).await?;
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
//! `resolve` answers 200 resolved, 404 unknown, 409 already resolved, 410 expired, 422 digest mismatch or a
//! malformed body, 413 a body over the limit, 415 a body that is not JSON, 401 no or a wrong token, 403 a
//! cross-origin request, 503 a store that cannot be reached. Every error has a JSON body
//! `{"error": <code>, "message": <what to do>}`.
//!
//! Security: every API route needs `Authorization: Bearer <token>`; each token names an actor, recorded as who
//! decided. Tokens are compared in constant time and never echoed. State changes only by `POST` with
//! `Content-Type: application/json` and, from a browser, an `Origin` that is this server's own, so a page on another
//! site cannot approve anything. The page keeps the token in the tab's `sessionStorage` and sends it in a header:
//! never in a URL, so never in a log. It is served with a strict Content-Security-Policy. Bind to `127.0.0.1`
//! unless a TLS-terminating proxy is in front.

mod auth;
mod events;

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use crate::guard::AgentGuard;
use crate::params::ParamsDigest;
use crate::request::{RequestId, Resolution, ResolveOutcome};
use crate::store::{ApprovalStore, StoreError};
use auth::TokenEntry;
pub use auth::MIN_TOKEN_LEN;

/// Largest `POST /agentguard/resolve` body accepted by default: 16 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;

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
        let state = Arc::new(Shared {
            store: self.store,
            tokens,
            allowed_origins: self.allowed_origins,
            poll_interval: self.poll_interval,
            max_body_bytes: self.max_body_bytes,
        });
        Ok(Router::new()
            .route("/agentguard", get(|| async { Redirect::permanent("agentguard/") }))
            .route("/agentguard/", get(page))
            .route("/agentguard/pending", get(pending))
            .route("/agentguard/resolve", post(resolve))
            .route("/agentguard/events", get(events))
            .route("/agentguard/{*rest}", axum::routing::any(not_found))
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(state))
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
}

/// An error response: a status and `{"error", "message"}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
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
        response
    }
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
    let bytes = read_limited(body, s.max_body_bytes).await?;
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
        let chars = reason.chars().count();
        if chars > Resolution::MAX_NOTE_CHARS {
            return Err(ApiError::malformed(format!(
                "reason: {chars} characters; at most {}",
                Resolution::MAX_NOTE_CHARS
            )));
        }
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
    let body = json!({ "outcome": outcome.as_str(), "request_id": request_id, "message": message });
    Ok((status, no_store(), Json(body)).into_response())
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
    let stream = events::stream(s.store.clone(), s.poll_interval);
    let mut response = (no_store(), Sse::new(stream).keep_alive(KeepAlive::default())).into_response();
    // Tell proxies such as nginx not to buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
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
