//! The hand-written body against serde's serialization of the same record (the reference: the record's derived
//! `Serialize`, flattened after `ts`, as the body was made before).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use serde::Serialize;
use serde_json::{json, Value};

use super::*;
use crate::audit::AuditDecision;
use crate::params::tests::properties::json;
use crate::params::ParamsDigest;
use crate::policy::PolicyStamp;
use crate::{RequestId, Risk};

#[derive(Serialize)]
struct LineBody<'a> {
    ts: Timestamp,
    #[serde(flatten)]
    record: &'a AuditRecord<'a>,
}

fn by_serde(record: &AuditRecord<'_>, now: SystemTime) -> String {
    String::from_utf8(
        serde_json::to_vec(&LineBody {
            ts: Timestamp(now),
            record,
        })
        .unwrap(),
    )
    .unwrap()
}

fn by_hand(record: &AuditRecord<'_>, now: SystemTime) -> String {
    let mut out = b"left alone".to_vec();
    body_at(&mut out, record, now).unwrap();
    assert!(out.starts_with(b"left alone"), "appends to what the buffer holds");
    String::from_utf8(out.split_off(10)).unwrap()
}

const DECISIONS: [AuditDecision; 11] = [
    AuditDecision::Allowed,
    AuditDecision::Approved,
    AuditDecision::Denied,
    AuditDecision::Blocked,
    AuditDecision::Expired,
    AuditDecision::NotifierError,
    AuditDecision::PolicyLoaded,
    AuditDecision::PolicyRejected,
    AuditDecision::Edited,
    AuditDecision::Responded,
    AuditDecision::Vote,
];

#[test]
fn a_bare_record_has_every_unskipped_field_as_null() {
    let record = AuditRecord::new("send_email", AuditDecision::Allowed);
    let expected = r#"{"ts":"1970-01-01T00:00:00.000Z","event":"call","tool":"send_email","decision":"allowed","reason":null,"risk":null,"params":null,"params_digest":null,"agent_id":null,"session_id":null,"request_id":null,"actor":null,"detail":null}"#;
    assert_eq!(by_hand(&record, UNIX_EPOCH), expected);
    assert_eq!(by_serde(&record, UNIX_EPOCH), expected);
}

#[test]
fn a_full_record_with_text_to_escape_is_what_serde_writes() {
    let params = json!({"to": "a\"b\\c\n\u{1}é\u{7f}\u{2028}", "n": [1, 2.5, -3, null, true], "z": {}});
    let digest = ParamsDigest::of(b"x");
    let id = RequestId::new();
    let stamp = PolicyStamp {
        rule: Some("r\"ule".into()),
        action: Some("ask"),
        version: "v1\t".into(),
    };
    let grant = json!({"id": "g1", "made": true});
    let edit = json!({"params_digest": digest.as_str(), "params": {"a": 1}});
    let record = AuditRecord {
        event: "call",
        tool: "delete\u{0}_file",
        decision: AuditDecision::Edited,
        reason: Some("timeout"),
        risk: Some(Risk::Irreversible),
        params: Some(&params),
        params_digest: Some(&digest),
        agent_id: Some("agent \"7\""),
        session_id: Some("s\\1"),
        server: Some("fs"),
        request_id: Some(&id),
        actor: Some("jane\r"),
        detail: Some("ok\u{1f}"),
        policy: Some(&stamp),
        grant: Some(&grant),
        edit: Some(&edit),
    };
    for now in [
        UNIX_EPOCH,
        UNIX_EPOCH + Duration::from_millis(1_709_210_096_789),
        // Past 9999-12-31: the fallback text.
        UNIX_EPOCH + Duration::from_secs(253_402_300_800 + 86_400 * 400),
    ] {
        let hand = by_hand(&record, now);
        assert_eq!(hand, by_serde(&record, now));
        let parsed: Value = serde_json::from_str(&hand).unwrap();
        assert_eq!(parsed["tool"], "delete\u{0}_file");
        assert_eq!(parsed["params"], params);
    }
}

/// Strings that are mostly plain, sometimes anything (quotes, backslashes, control characters, any Unicode).
fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z_0-9]{0,12}", any::<String>(), "[\"\\\\\u{0}-\u{1f}\u{7f}é]{0,6}"]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_record_is_written_as_serde_writes_it(
        event in text(), tool in text(), decision in 0..DECISIONS.len(),
        reason in prop::option::of(text()), risk in prop::option::of(0..Risk::ALL.len()),
        params in prop::option::of(json()), digest in any::<Option<[u8; 4]>>(),
        agent in prop::option::of(text()), session in prop::option::of(text()), server in prop::option::of(text()),
        request in any::<bool>(), actor in prop::option::of(text()), detail in prop::option::of(text()),
        policy in prop::option::of((prop::option::of(text()), any::<bool>(), text())),
        grant in prop::option::of(json()), edit in prop::option::of(json()),
        millis in prop_oneof![0u64..4_102_444_800_000, any::<u32>().prop_map(|n| 253_402_300_800_000 + u64::from(n))],
    ) {
        let digest = digest.map(|b| ParamsDigest::of(&b));
        let id = request.then(RequestId::new);
        let stamp = policy.map(|(rule, ask, version)| PolicyStamp { rule, action: ask.then_some("ask"), version });
        let record = AuditRecord {
            event: &event,
            tool: &tool,
            decision: DECISIONS[decision],
            reason: reason.as_deref(),
            risk: risk.map(|i| Risk::ALL[i]),
            params: params.as_ref(),
            params_digest: digest.as_ref(),
            agent_id: agent.as_deref(),
            session_id: session.as_deref(),
            server: server.as_deref(),
            request_id: id.as_ref(),
            actor: actor.as_deref(),
            detail: detail.as_deref(),
            policy: stamp.as_ref(),
            grant: grant.as_ref(),
            edit: edit.as_ref(),
        };
        let now = UNIX_EPOCH + Duration::from_millis(millis);
        prop_assert_eq!(by_hand(&record, now), by_serde(&record, now));
    }
}
