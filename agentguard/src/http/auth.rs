//! Who may call the API: bearer tokens mapped to actor names, and the same-origin check for state changes.

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, HttpConfigError};

/// Shortest token accepted, in characters.
pub const MIN_TOKEN_LEN: usize = 16;

/// One configured token, kept only as its SHA-256 so every comparison has the same length and takes the same time.
#[derive(Clone)]
pub(crate) struct TokenEntry {
    hash: [u8; 32],
    actor: String,
}

impl TokenEntry {
    /// Checks one configured token; `n` is its position (1-based) for messages. Neither the token nor the actor name
    /// is ever put in a message: a token given in the actor's place would end up in a log.
    pub(crate) fn new(n: usize, token: &str, actor: &str) -> Result<Self, HttpConfigError> {
        let actor = actor.trim();
        if actor.is_empty() || actor.chars().count() > 64 || actor.chars().any(char::is_control) {
            return Err(HttpConfigError::new(format!(
                "token {n}: the actor name must be 1 to 64 printable characters"
            )));
        }
        let len = token.chars().count();
        if len < MIN_TOKEN_LEN {
            return Err(HttpConfigError::new(format!(
                "token {n}: it has {len} characters; use at least {MIN_TOKEN_LEN} (e.g. the output of `openssl rand \
                 -hex 16`)"
            )));
        }
        if !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(HttpConfigError::new(format!(
                "token {n}: it must be printable ASCII without spaces, to fit in an `Authorization: Bearer` header"
            )));
        }
        Ok(TokenEntry {
            hash: Sha256::digest(token.as_bytes()).into(),
            actor: actor.to_owned(),
        })
    }

    /// `true` when both entries hold the same token.
    pub(crate) fn same_token(&self, other: &TokenEntry) -> bool {
        bool::from(self.hash.ct_eq(&other.hash))
    }
}

/// The actor whose token the request carries, or 401.
///
/// Every configured token is compared, in constant time, whatever matched first, so timing reveals neither which
/// token nor how much of it was right.
pub(crate) fn authenticate<'a>(tokens: &'a [TokenEntry], headers: &HeaderMap) -> Result<&'a str, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "missing credentials: send the API token as `Authorization: Bearer <token>`",
        ));
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))?;
    let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut found: Option<&'a str> = None;
    for entry in tokens {
        if bool::from(entry.hash.ct_eq(&hash)) {
            found = Some(&entry.actor);
        }
    }
    found.ok_or_else(|| {
        if tokens.is_empty() {
            ApiError::unauthorized("this server has no API tokens configured, so it accepts no requests")
        } else {
            ApiError::unauthorized("the API token was not accepted")
        }
    })
}

/// Refuses a state change that a browser sent from another site.
///
/// A browser always sends `Origin` on a POST made by `fetch`; it must be this server's own origin (scheme + the
/// `Host` the request was sent to) or one listed with [`allow_origin`](super::ApprovalApi::allow_origin).
/// `Sec-Fetch-Site` other than `same-origin` or `none` is refused too. A request with neither header is not from a
/// browser (curl, the CLI, a script) and passes: it has to carry the token anyway.
pub(crate) fn check_same_origin(allowed: &[String], headers: &HeaderMap) -> Result<(), ApiError> {
    let origin = headers.get(header::ORIGIN).map(|v| v.to_str().unwrap_or("<not ASCII>"));
    if let Some(origin) = origin {
        if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
            return Ok(());
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let same = !host.is_empty()
            && origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|rest| rest.eq_ignore_ascii_case(host));
        if !same {
            return Err(ApiError::forbidden(format!(
                "cross-origin request refused: Origin {origin:?} is not this server's; add it with allow_origin \
                 (or `agentguard serve --allow-origin`) if a proxy serves the page from there"
            )));
        }
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") && origin.is_none() {
            return Err(ApiError::forbidden(format!(
                "cross-site request refused (Sec-Fetch-Site: {site})"
            )));
        }
    }
    Ok(())
}

/// Accepts `application/json` (any parameters, e.g. `; charset=utf-8`), refuses every other body type with 415.
pub(crate) fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let essence = value.map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") => Ok(()),
        Some(other) => Err(ApiError::unsupported_media_type(format!(
            "body of type {other:?} refused: send JSON with `Content-Type: application/json`"
        ))),
        None => Err(ApiError::unsupported_media_type(
            "missing Content-Type: send JSON with `Content-Type: application/json`",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn short_tokens_and_blank_actors_are_refused_with_advice() {
        let e = TokenEntry::new(1, "short", "alice").err().unwrap().to_string();
        assert!(e.contains("at least 16"), "{e}");
        assert!(TokenEntry::new(1, "0123456789abcdef", " ").is_err());
        assert!(TokenEntry::new(1, "0123456789 abcdef", "alice").is_err());
        assert!(
            TokenEntry::new(1, "0123456789abcdéf", "alice").is_err(),
            "not sendable in a header"
        );
        // Swapped by mistake: the secret, now in the actor's place, is not echoed.
        let e = TokenEntry::new(2, "alice", "9f8e7d6c5b4a39281706f5e4d3c2b1a0")
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("token 2:") && !e.contains("9f8e7d6c"), "{e}");
    }

    #[test]
    fn the_matching_token_names_its_actor() {
        let tokens = vec![
            TokenEntry::new(1, "aaaaaaaaaaaaaaaaaaaa", "alice").unwrap(),
            TokenEntry::new(2, "bbbbbbbbbbbbbbbbbbbb", "bob").unwrap(),
        ];
        let h = headers(&[("authorization", "Bearer bbbbbbbbbbbbbbbbbbbb")]);
        assert_eq!(authenticate(&tokens, &h).unwrap(), "bob");
        let h = headers(&[("authorization", "bearer aaaaaaaaaaaaaaaaaaaa")]);
        assert_eq!(authenticate(&tokens, &h).unwrap(), "alice");
        let h = headers(&[("authorization", "Bearer aaaaaaaaaaaaaaaaaaa")]);
        assert!(authenticate(&tokens, &h).is_err());
        let h = headers(&[("authorization", "Basic YWxpY2U6eA==")]);
        assert!(authenticate(&tokens, &h).is_err());
    }

    #[test]
    fn origin_must_be_the_host_or_listed() {
        let same = headers(&[("origin", "http://127.0.0.1:8787"), ("host", "127.0.0.1:8787")]);
        assert!(check_same_origin(&[], &same).is_ok());
        let other = headers(&[("origin", "https://evil.example"), ("host", "127.0.0.1:8787")]);
        assert!(check_same_origin(&[], &other).is_err());
        assert!(check_same_origin(&["https://evil.example".into()], &other).is_ok());
        let null = headers(&[("origin", "null"), ("host", "127.0.0.1:8787")]);
        assert!(check_same_origin(&[], &null).is_err());
        let cross = headers(&[("sec-fetch-site", "cross-site")]);
        assert!(check_same_origin(&[], &cross).is_err());
        assert!(
            check_same_origin(&[], &HeaderMap::new()).is_ok(),
            "curl and the CLI send neither"
        );
    }

    #[test]
    fn only_json_bodies_pass() {
        assert!(check_json_content_type(&headers(&[("content-type", "application/json; charset=utf-8")])).is_ok());
        for t in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            let mut h = HeaderMap::new();
            h.insert("content-type", HeaderValue::from_str(t).unwrap());
            assert!(check_json_content_type(&h).is_err(), "{t}");
        }
        assert!(check_json_content_type(&HeaderMap::new()).is_err());
    }
}
