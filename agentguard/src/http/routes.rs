//! The route handlers: the page, `pending`, `resolve` and the event stream.

use super::*;

pub(super) async fn pending(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Result<Response, ApiError> {
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

pub(super) async fn resolve(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
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
        ResolveOutcome::VoteRecorded => StatusCode::ACCEPTED,
        ResolveOutcome::AlreadyVoted => StatusCode::CONFLICT,
        ResolveOutcome::NotAnApprover | ResolveOutcome::OwnRequest => StatusCode::FORBIDDEN,
        ResolveOutcome::NotAllowedHere => StatusCode::UNPROCESSABLE_ENTITY,
        ResolveOutcome::Unavailable => return Err(ApiError::store("it did not answer")),
    };
    let message = outcome.explain(if parsed.approved {
        crate::request::AnswerKind::Approve
    } else {
        crate::request::AnswerKind::Deny
    });
    let mut body = json!({ "outcome": outcome.as_str(), "request_id": request_id, "message": message });
    if !status.is_success() {
        // Like every other error: an `error` code (the outcome in lower case) beside the outcome.
        body["error"] = json!(outcome.as_str().to_ascii_lowercase());
    }
    Ok((status, no_store(), Json(body)).into_response())
}

/// A reason is text for a person and the audit: at most [`Resolution::MAX_NOTE_CHARS`] characters, and no control
/// characters but newline and tab. NUL in particular cannot be stored (PostgreSQL refuses it in text), and the others
/// (escape sequences, carriage return, C1 controls) have no place in a note someone reads in a terminal.
pub(super) fn check_reason(reason: &str) -> Result<(), ApiError> {
    Resolution::check_note(reason).map_err(|problem| ApiError::malformed(format!("reason: {problem}")))
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
pub(super) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
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
pub(super) async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
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

pub(super) async fn events(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Result<Response, ApiError> {
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

pub(super) fn too_many_streams() -> ApiError {
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
pub(super) fn inline_hash(html: &str, tag: &str) -> String {
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

pub(super) async fn page() -> Response {
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

pub(super) async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route: the API has GET /agentguard/pending, POST /agentguard/resolve, GET /agentguard/events and \
         the page at /agentguard/",
    )
}

pub(super) async fn method_not_allowed() -> ApiError {
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
