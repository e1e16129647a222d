//! Properties of `POST /agentguard/resolve`, driven through the router in memory (`tower::ServiceExt::oneshot`) over
//! a store that records what it is asked: whatever bytes arrive as the body, the answer is a 2xx, or a 4xx whose JSON
//! body has an `error` code, never a 5xx or a panic; and every well-formed body reaches the store exactly as sent.

use std::sync::{Arc, Mutex};

use agentguard::http::ApprovalApi;
use agentguard::store::{ApprovalStore, Decision, StoreError, StoredRequest, WaitFuture};
use agentguard::{ApprovalRequest, RequestId, Resolution, ResolveOutcome};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tower::ServiceExt as _;

const TOKEN: &str = "alice-token-0123456789abcdef";

/// A store that accepts every answer and remembers the last one.
#[derive(Debug, Default)]
struct Recording {
    last: Mutex<Option<Resolution>>,
}

impl ApprovalStore for Recording {
    fn insert(&self, _: &ApprovalRequest) -> Result<(), StoreError> {
        Ok(())
    }
    fn resolve(&self, resolution: &Resolution) -> Result<ResolveOutcome, StoreError> {
        *self.last.lock().unwrap() = Some(resolution.clone());
        Ok(ResolveOutcome::Resolved)
    }
    fn expire(&self, _: &RequestId) -> Result<Option<Decision>, StoreError> {
        Ok(None)
    }
    fn claim(&self, _: &RequestId) -> Result<bool, StoreError> {
        Ok(false)
    }
    fn get(&self, _: &RequestId) -> Result<Option<StoredRequest>, StoreError> {
        Ok(None)
    }
    fn pending(&self) -> Result<Vec<ApprovalRequest>, StoreError> {
        Ok(Vec::new())
    }
    fn wait<'a>(&'a self, _: &'a RequestId) -> WaitFuture<'a> {
        Box::pin(std::future::pending())
    }
    fn wait_blocking(&self, _: &RequestId, _: std::time::Instant) -> Result<Option<Decision>, StoreError> {
        Ok(None)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Posts `body` as a resolve with Alice's token; returns the status and the body parsed as JSON.
fn post(rt: &tokio::runtime::Runtime, store: &Arc<Recording>, body: Vec<u8>) -> (StatusCode, Value) {
    let app = ApprovalApi::new(store.clone()).token(TOKEN, "alice").router().unwrap();
    let request = Request::post("/agentguard/resolve")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    rt.block_on(async {
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{status}: {:?} is not JSON: {e}", String::from_utf8_lossy(&bytes)));
        (status, value)
    })
}

fn uuid_text() -> impl Strategy<Value = String> {
    any::<[u8; 16]>().prop_map(|b| {
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    })
}

fn digest_text() -> impl Strategy<Value = String> {
    any::<[u8; 32]>().prop_map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Any string, control characters and astral planes included, up to a little over the reason limit.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        vec(any::<char>(), 0..40).prop_map(|c| c.into_iter().collect()),
        (0usize..1100, any::<char>()).prop_map(|(n, c)| std::iter::repeat_n(c, n).collect()),
    ]
}

/// Short lower-case keys.
fn key_text() -> impl Strategy<Value = String> {
    vec(prop::char::range('a', 'z'), 0..12).prop_map(|c| c.into_iter().collect())
}

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any_text().prop_map(Value::from),
        uuid_text().prop_map(Value::from),
        digest_text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::from),
            vec((key_text(), inner), 0..4).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Objects with the resolve fields (and strangers) holding any values: most are refused, some are answers.
fn resolve_shaped() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("request_id".to_owned()),
        Just("approved".to_owned()),
        Just("params_digest".to_owned()),
        Just("reason".to_owned()),
        any_text(),
    ];
    vec((key, any_json()), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()))
}

/// Near-answers: each field present or not, and of the right type and form or any other value, so bodies that
/// pass, and bodies refused for one field only (a reason with control characters, too long; a bad digest), both come.
fn near_answer() -> impl Strategy<Value = Value> {
    let field = |right: BoxedStrategy<Value>| prop::option::of(prop_oneof![3 => right, 1 => any_json()]);
    (
        field(uuid_text().prop_map(Value::from).boxed()),
        field(any::<bool>().prop_map(Value::from).boxed()),
        field(digest_text().prop_map(Value::from).boxed()),
        field(any_text().prop_map(Value::from).boxed()),
    )
        .prop_map(|(id, approved, digest, reason)| {
            let mut body = Map::new();
            for (k, v) in [
                ("request_id", id),
                ("approved", approved),
                ("params_digest", digest),
                ("reason", reason),
            ] {
                if let Some(v) = v {
                    body.insert(k.to_owned(), v);
                }
            }
            Value::Object(body)
        })
}

/// Bytes of every kind: random, JSON of any shape, resolve-shaped JSON, near-answers, and such JSON cut short or
/// with a byte changed.
fn any_body() -> impl Strategy<Value = Vec<u8>> {
    let json_bytes = prop_oneof![any_json(), resolve_shaped(), near_answer(), near_answer()]
        .prop_map(|v| v.to_string().into_bytes());
    prop_oneof![
        vec(any::<u8>(), 0..256),
        vec(any::<u8>(), 16_000..17_000),
        json_bytes.clone(),
        (json_bytes, any::<prop::sample::Index>(), any::<u8>(), any::<bool>()).prop_map(|(mut b, at, byte, cut)| {
            if !b.is_empty() {
                let i = at.index(b.len());
                if cut {
                    b.truncate(i);
                } else {
                    b[i] = byte;
                }
            }
            b
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_body_gets_a_2xx_or_a_4xx_with_an_error_code_never_a_5xx(body in any_body()) {
        let rt = runtime();
        let store = Arc::new(Recording::default());
        let (status, out) = post(&rt, &store, body);
        prop_assert!(status.is_success() || status.is_client_error(), "{status}: {out}");
        if status.is_success() {
            prop_assert_eq!(&out["outcome"], "RESOLVED");
        } else {
            prop_assert!(out["error"].is_string() && out["message"].is_string(), "{}: {}", status, out);
            prop_assert!(store.last.lock().unwrap().is_none(), "a refused body reached the store");
        }
    }
}

/// A well-formed resolve body, as a person or a script would send it.
#[derive(Debug, Clone)]
struct Answer {
    request_id: String,
    approved: bool,
    params_digest: Option<String>,
    reason: Option<String>,
}

/// Text a reason may hold: printable characters of any script, newlines and tabs.
fn reason_text() -> impl Strategy<Value = String> {
    let printable = any::<char>().prop_filter("no control characters", |c| !c.is_control());
    let c = prop_oneof![8 => printable, 1 => Just('\n'), 1 => Just('\t'), 1 => Just(' ')];
    vec(c, 0..=1000).prop_map(|c| c.into_iter().collect())
}

fn answer() -> impl Strategy<Value = Answer> {
    (
        prop_oneof![uuid_text(), uuid_text().prop_map(|u| u.to_uppercase())],
        any::<bool>(),
        prop::option::of(digest_text()),
        prop::option::of(reason_text()),
    )
        .prop_map(|(request_id, approved, params_digest, reason)| Answer {
            request_id,
            approved,
            params_digest,
            reason,
        })
}

/// The body, its fields in the order `order` gives, absent optional fields sometimes sent as `null`.
fn encode(a: &Answer, order: &[usize], nulls: bool) -> Vec<u8> {
    let optional = |v: &Option<String>| match v {
        Some(s) => Some(json!(s)),
        None if nulls => Some(Value::Null),
        None => None,
    };
    let fields = [
        ("request_id", Some(json!(a.request_id))),
        ("approved", Some(json!(a.approved))),
        ("params_digest", optional(&a.params_digest)),
        ("reason", optional(&a.reason)),
    ];
    let parts: Vec<String> = order
        .iter()
        .filter_map(|&i| {
            let (k, v) = &fields[i];
            v.as_ref().map(|v| format!("{}: {v}", json!(k)))
        })
        .collect();
    format!("{{ {} }}", parts.join(", \n")).into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_well_formed_body_reaches_the_store_as_sent(
        a in answer(),
        order in Just(vec![0usize, 1, 2, 3]).prop_shuffle(),
        nulls in any::<bool>(),
    ) {
        let rt = runtime();
        let store = Arc::new(Recording::default());
        let (status, out) = post(&rt, &store, encode(&a, &order, nulls));
        prop_assert_eq!(status, StatusCode::OK, "{}", out);
        let got = store.last.lock().unwrap().clone().expect("the answer reached the store");
        let id: RequestId = a.request_id.parse().unwrap();
        prop_assert_eq!(got.request_id(), &id);
        prop_assert_eq!(&out["request_id"], &json!(id));
        prop_assert_eq!(got.is_approval(), a.approved);
        prop_assert_eq!(got.get_actor(), Some("alice"));
        prop_assert_eq!(got.get_params_digest().map(|d| d.to_string()), a.params_digest.clone());
        // A blank reason is no reason; any other arrives unchanged.
        let expected = a.reason.clone().filter(|r| !r.trim().is_empty());
        prop_assert_eq!(got.get_note(), expected.as_deref());
    }
}
