//! Unit tests of the in-memory store: eviction, abandonment, deadlines, the lazy pending order.

use super::*;
use crate::params::ParamsDigest;
use agentguard_classify::Risk;
use std::time::SystemTime;

fn request(timeout: Duration) -> ApprovalRequest {
    let now = SystemTime::now();
    ApprovalRequest::new(
        RequestId::new(),
        "delete_row".into(),
        serde_json::json!({}),
        ParamsDigest::of(b"{}"),
        Risk::Irreversible,
        None,
        None,
        None,
        now,
        now + timeout,
    )
}

#[test]
fn decided_requests_leave_the_order_lazily_and_it_stays_bounded() {
    let store = InMemoryStore::new();
    // An old request that stays pending keeps the decided ones behind it from leaving at the front.
    let old = request(Duration::from_secs(60));
    store.insert(&old).unwrap();
    for _ in 0..5000 {
        let r = request(Duration::from_secs(60));
        store.insert(&r).unwrap();
        store.resolve(&Resolution::deny(r.request_id().clone())).unwrap();
    }
    let listed = store.pending().unwrap();
    assert_eq!(listed.len(), 1, "decided requests are never listed");
    assert_eq!(listed[0].request_id(), old.request_id());
    let inner = store.lock();
    assert_eq!(inner.pending, 1);
    assert!(
        inner.order.len() <= 2 * inner.pending + 1024 + 1,
        "{}",
        inner.order.len()
    );
}

#[test]
fn eviction_never_drops_an_approval_its_waiter_has_not_claimed() {
    let store = InMemoryStore::with_retention(Duration::ZERO);
    let req = request(Duration::from_secs(60));
    let id = req.request_id().clone();
    store.insert(&req).unwrap();
    assert_eq!(
        store.resolve(&Resolution::approve(id.clone())).unwrap(),
        ResolveOutcome::Resolved
    );
    // Operations that evict run before the waiter claims.
    store.pending().unwrap();
    store.insert(&request(Duration::from_secs(60))).unwrap();
    assert!(store.claim(&id).unwrap(), "the approval survived eviction");
    assert!(!store.claim(&id).unwrap(), "and is claimed once only");
    store.pending().unwrap();
    store.pending().unwrap();
    assert!(store.get(&id).unwrap().is_none(), "evicted once executed");
}

#[test]
fn abandoned_approval_expires_and_can_never_be_claimed() {
    let store = InMemoryStore::new();
    let req = request(Duration::from_secs(60));
    let id = req.request_id().clone();
    store.insert(&req).unwrap();
    store.resolve(&Resolution::approve(id.clone())).unwrap();
    store.abandon(&id).unwrap();
    assert!(!store.claim(&id).unwrap());
    assert_eq!(store.get(&id).unwrap().unwrap().decision.state, RequestState::Expired);
}

#[test]
fn resolve_after_the_deadline_expires_the_request() {
    let store = InMemoryStore::new();
    let req = request(Duration::ZERO);
    let id = req.request_id().clone();
    store.insert(&req).unwrap();
    assert_eq!(
        store.resolve(&Resolution::approve(id.clone())).unwrap(),
        ResolveOutcome::Expired
    );
    assert_eq!(
        store.resolve(&Resolution::approve(id.clone())).unwrap(),
        ResolveOutcome::Expired
    );
    assert!(store.pending().unwrap().is_empty());
}
