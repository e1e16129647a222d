//! The route handlers: the page, `pending`, `resolve` and the event stream (the grants' are in `grants.rs`).

use super::*;

/// The query of `GET /agentguard/pending`: `limit` (1 to [`MAX_PAGE`], default [`MAX_PAGE`]) and `after` (a
/// page's `next` cursor).
fn page_query(query: Option<&str>) -> Result<(usize, Option<PageCursor>), ApiError> {
    let mut limit = MAX_PAGE;
    let mut after = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_query(format!(
                            "limit={value:?}: give a whole number of requests from 1 to {MAX_PAGE}"
                        ))
                    })?;
            }
            "after" => {
                after = Some(
                    value
                        .parse::<PageCursor>()
                        .map_err(|e| ApiError::bad_query(format!("after: {e}")))?,
                )
            }
            other => {
                return Err(ApiError::bad_query(format!(
                    "unknown query parameter {:?}: pending takes limit and after",
                    other.chars().take(40).collect::<String>()
                )))
            }
        }
    }
    Ok((limit, after))
}

/// `%XX` escapes and `+` decoded (a cursor is ASCII; anything else is kept as it is and refused by its parser).
fn percent_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push(high << 4 | low);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) async fn pending(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    auth::authenticate(&s.tokens, &headers)?;
    let (limit, after) = page_query(query.as_deref())?;
    let store = s.store.clone();
    // One row that cannot be read back does not hide the others: they are listed, and the header counts it.
    let (list, unreadable, next) = blocking(move || {
        let page = store.pending_page(limit, after.as_ref())?;
        Ok((
            answer::requests_json(&*store, &page.requests),
            page.unreadable.len(),
            page.next,
        ))
    })
    .await
    .map_err(ApiError::store)?;
    let mut response = (no_store(), Json(list)).into_response();
    let h = response.headers_mut();
    h.insert(UNREADABLE_HEADER, HeaderValue::from(unreadable));
    if let Some(next) = next {
        // A cursor is digits, `_` and the id: a valid header value; one that is not (a foreign row's id) is sent
        // percent-encoded in the link only.
        let encoded: String = next
            .to_string()
            .bytes()
            .map(|b| match b {
                b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                b => format!("%{b:02X}"),
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&encoded) {
            h.insert(NEXT_HEADER, v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!(
            "</agentguard/pending?limit={limit}&after={encoded}>; rel=\"next\""
        )) {
            h.insert(header::LINK, v);
        }
    }
    Ok(response)
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
        .map_err(|_| body_timeout(s.body_timeout))??;
    let resolution = answer::parse_body(&bytes)?.into_resolution(actor)?;
    let request_id = resolution.request_id().clone();
    let kind = resolution.kind();

    let store = s.store.clone();
    let (outcome, stored) = blocking(move || {
        let outcome = store.resolve(&resolution)?;
        // A refusal that depends on the request, and a vote, are explained with the request as it stands now. A
        // failed read only costs the detail.
        let stored = match outcome {
            ResolveOutcome::NotAllowedHere
            | ResolveOutcome::NotAnApprover
            | ResolveOutcome::AlreadyVoted
            | ResolveOutcome::VoteRecorded => store.get(resolution.request_id()).ok().flatten(),
            _ => None,
        };
        let detail = stored
            .as_ref()
            .and_then(|st| answer::outcome_detail(outcome, &resolution, st));
        Ok((outcome, stored.map(|st| (st, detail))))
    })
    .await
    .map_err(ApiError::store)?;
    let Some(status) = answer::status_of(outcome) else {
        return Err(ApiError::store("it did not answer"));
    };
    let mut message = outcome.explain(kind).to_owned();
    let mut body = json!({ "outcome": outcome.as_str(), "request_id": request_id, "kind": kind });
    if let Some((stored, detail)) = stored {
        if let Some(detail) = detail {
            message = format!("{message} — {detail}");
        }
        if let Some(progress) = answer::progress_json(&stored) {
            body["quorum_progress"] = progress;
        }
    }
    body["message"] = json!(message);
    if !status.is_success() {
        // Like every other error: an `error` code (the outcome in lower case) beside the outcome.
        body["error"] = json!(outcome.as_str().to_ascii_lowercase());
    }
    Ok((status, no_store(), Json(body)).into_response())
}

/// A body that did not arrive in time: 408.
pub(super) fn body_timeout(limit: Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        format!(
            "the body did not arrive within {} s; send the whole body at once",
            limit.as_secs_f64()
        ),
    )
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
                format!(
                    "the body is over {limit} bytes; an answer is a few hundred (an edit or a response more): send \
                     less, or raise ApprovalApi::max_body_bytes"
                ),
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
    let stream = events::stream(s.store.clone(), s.poll_interval, s.local_change.subscribe()).map(move |event| {
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
        "no such route: the API has GET /agentguard/pending, POST /agentguard/resolve, GET /agentguard/events, GET \
         /agentguard/grants, POST /agentguard/grants/{id}/revoke and the page at /agentguard/",
    )
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "wrong method: resolve and revoke are POST; pending, events, grants and the page are GET",
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
