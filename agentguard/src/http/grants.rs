//! `GET /agentguard/grants` and `POST /agentguard/grants/{id}/revoke`: the standing grants the store keeps, and
//! taking one back.

use axum::extract::Path;

use super::*;
use crate::store::{now_ms, Grant};

/// The longest grant id looked up; a longer one is unknown without asking the store.
const MAX_GRANT_ID_CHARS: usize = 100;

/// A grant as the API shows it: its stored fields, plus `status` (`active`, `expired`, `used up`, `revoked`),
/// `active`, and `remaining_secs` (time left, `null` when bounded by uses only).
pub(super) fn grant_json(grant: &Grant, now_ms: u64) -> Value {
    let mut value = json!(grant);
    if let Some(object) = value.as_object_mut() {
        object.insert("status".to_owned(), json!(grant.status(now_ms)));
        object.insert("active".to_owned(), json!(grant.is_active(now_ms)));
        object.insert(
            "remaining_secs".to_owned(),
            json!(grant
                .is_active(now_ms)
                .then(|| grant.remaining(now_ms).map(|d| d.as_secs()))
                .flatten()),
        );
    }
    value
}

/// What of a grant list the page shows that can change, per grant: id, status, uses made, uses left.
pub(super) type Fingerprint = Vec<(String, &'static str, u32, Option<u32>)>;

/// The [`Fingerprint`] of a grant list, for the event stream to tell when to send it again.
pub(super) fn fingerprint(grants: &[Grant], now_ms: u64) -> Fingerprint {
    grants
        .iter()
        .map(|g| (g.id.clone(), g.status(now_ms), g.used, g.uses_left))
        .collect()
}

pub(super) async fn list(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Result<Response, ApiError> {
    auth::authenticate(&s.tokens, &headers)?;
    let store = s.store.clone();
    let grants = blocking(move || store.grants()).await.map_err(ApiError::store)?;
    let now = now_ms();
    let list: Vec<Value> = grants.iter().map(|g| grant_json(g, now)).collect();
    Ok((no_store(), Json(list)).into_response())
}

/// The body of a revoke: nothing needed (`{}` or empty).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {}

pub(super) async fn revoke(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let actor = auth::authenticate(&s.tokens, &headers)?.to_owned();
    auth::check_same_origin(&s.allowed_origins, &headers)?;
    auth::check_json_content_type(&headers)?;
    let bytes = tokio::time::timeout(s.body_timeout, read_limited(body, s.max_body_bytes))
        .await
        .map_err(|_| body_timeout(s.body_timeout))??;
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_slice::<RevokeBody>(&bytes).map_err(|e| {
            ApiError::malformed(format!(
                "a revoke takes no fields: send {{}} or an empty body (the grant's id is in the URL): {e}"
            ))
        })?;
    }
    if id.is_empty() || id.chars().count() > MAX_GRANT_ID_CHARS || id.chars().any(char::is_control) {
        return Err(unknown_grant(&id));
    }
    let store = s.store.clone();
    let lookup = id.clone();
    let by = actor.clone();
    let (before, after) = blocking(move || {
        // Read first only to tell "you revoked it" from "it was revoked already"; the revocation itself is atomic.
        let before = store.grants()?.into_iter().find(|g| g.id == lookup);
        let after = match &before {
            Some(_) => store.revoke_grant(&lookup, Some(&by))?,
            None => None,
        };
        Ok((before, after))
    })
    .await
    .map_err(ApiError::store)?;
    let (Some(before), Some(grant)) = (before, after) else {
        return Err(unknown_grant(&id));
    };
    s.local_change.send_modify(|n| *n = n.wrapping_add(1));
    let now = now_ms();
    if before.revoked_at_ms.is_some() {
        let by = grant.revoked_by.as_deref().unwrap_or("someone");
        let body = json!({
            "outcome": "ALREADY_REVOKED",
            "error": "already_revoked",
            "grant": grant_json(&grant, now),
            "message": format!("already revoked by {by}: it lets nothing through; this revocation changed nothing"),
        });
        return Ok((StatusCode::CONFLICT, no_store(), Json(body)).into_response());
    }
    let body = json!({
        "outcome": "REVOKED",
        "grant": grant_json(&grant, now),
        "message": format!(
            "revoked: from now on it lets nothing through (it let {} call{} through)",
            grant.used,
            if grant.used == 1 { "" } else { "s" }
        ),
    });
    Ok((no_store(), Json(body)).into_response())
}

fn unknown_grant(id: &str) -> ApiError {
    let shown: String = id
        .chars()
        .take(MAX_GRANT_ID_CHARS)
        .filter(|c| !c.is_control())
        .collect();
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_grant",
        format!("no grant {shown:?} in the store: check the id (GET /agentguard/grants lists them)"),
    )
}
