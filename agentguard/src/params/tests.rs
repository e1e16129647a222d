//! Tests of the params snapshot: canonical JSON, digests, intake limits, redaction.

use super::canonical::in_byte_order;
use super::*;
use serde_json::json;

#[test]
fn canonical_json_sorts_keys_at_every_depth() {
    let a = json!({"b": 1, "a": {"z": [1, {"y": 2, "x": 3}], "c": "é\n"}});
    let text = canonical_json(&a, usize::MAX).unwrap();
    assert_eq!(text, r#"{"a":{"c":"é\n","z":[1,{"x":3,"y":2}]},"b":1}"#);
    // Round trip: the canonical text parses back to the same value.
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), a);
}

#[test]
fn canonical_strings_and_numbers_are_serde_jsons_own_text() {
    let mut text: String = (0u8..0x80).map(char::from).collect();
    text.push_str("é€😀\u{2028}\u{200b}");
    let v = json!({"k\"\n": text, "n": [0, -1, 1.5, 1e300, u64::MAX, i64::MIN], "b": [true, false, null]});
    let canonical = canonical_json(&v, usize::MAX).unwrap();
    assert_eq!(canonical, serde_json::to_string(&v).unwrap()); // a BTreeMap already sorts keys bytewise
    assert_eq!(serde_json::from_str::<Value>(&canonical).unwrap(), v);
}

#[test]
fn key_order_check_catches_maps_kept_in_insertion_order() {
    let keys = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    assert!(in_byte_order(keys(&[]).iter()));
    assert!(in_byte_order(keys(&["a", "b", "é"]).iter()));
    assert!(!in_byte_order(keys(&["b", "a"]).iter()));
    assert!(!in_byte_order(keys(&["é", "z"]).iter())); // é is 0xC3 0xA9: after z in byte order
}

#[test]
fn digest_is_sha256_of_canonical_text() {
    let frozen = FrozenParams::freeze(json!({"path": "notes.txt"}), 1024).unwrap();
    assert_eq!(frozen.canonical(), r#"{"path":"notes.txt"}"#);
    // sha256('{"path":"notes.txt"}'), computed with `printf '%s' '{"path":"notes.txt"}' | sha256sum`.
    assert_eq!(
        frozen.digest().as_str(),
        "327e09780c8ca587a9edeb9d363553cc8b785fea45069b53e00cbf802c0ee078"
    );
    assert_eq!(frozen.digest(), &ParamsDigest::of(br#"{"path":"notes.txt"}"#));
    assert_eq!(frozen.digest().as_str().len(), 64);
}

#[test]
fn snapshots_of_equal_params_are_equal_whether_or_not_their_text_was_written() {
    let a = FrozenParams::freeze(json!({"b": [1, {"c": "é"}], "a": null}), 1024).unwrap();
    let b = FrozenParams::freeze(json!({"a": null, "b": [1, {"c": "é"}]}), 1024).unwrap();
    assert_eq!(a.canonical(), r#"{"a":null,"b":[1,{"c":"é"}]}"#);
    assert_eq!(a, b, "one has its text, the other not yet");
    assert_eq!(b.canonical(), a.canonical());
    assert_eq!(a.digest(), &ParamsDigest::of(a.canonical().as_bytes()));
    assert_eq!(a.clone().canonical(), a.canonical());
    let other = FrozenParams::freeze(json!({"a": 1}), 1024).unwrap();
    assert_ne!(a, other);
    // Equal values, different texts: not the same snapshot.
    let zero = FrozenParams::freeze(json!({"x": 0.0}), 1024).unwrap();
    let minus_zero = FrozenParams::freeze(json!({"x": -0.0}), 1024).unwrap();
    assert_eq!(zero.value(), minus_zero.value());
    assert_ne!(zero.canonical(), minus_zero.canonical());
    assert_ne!(zero, minus_zero);
}

#[test]
fn freeze_rejects_params_over_the_limit_without_building_them_whole() {
    let big = json!({"data": "x".repeat(2000)});
    let err = FrozenParams::freeze(big, 1000).unwrap_err();
    assert_eq!(err, ParamsRejected::TooLarge { limit: 1000 });
    assert!(err.to_string().contains("max_params_bytes"));
    assert!(FrozenParams::freeze(json!({"data": "x"}), 1000).is_ok());
}

/// `[[[…]]]`, `levels` deep, built without recursion.
fn nested(levels: usize) -> Value {
    let mut v = json!("bottom");
    for i in 0..levels {
        // Not json!([v]): json! serializes an expression, which would recurse.
        v = if i % 2 == 0 {
            Value::Array(vec![v])
        } else {
            Value::Object([("k".to_owned(), v)].into_iter().collect())
        };
    }
    v
}

#[test]
fn params_nested_past_the_limit_are_refused_at_any_depth_without_overflowing_the_stack() {
    assert!(FrozenParams::freeze(nested(MAX_PARAMS_DEPTH), usize::MAX).is_ok());
    for levels in [MAX_PARAMS_DEPTH + 1, 127, 2_000, 200_000] {
        let err = FrozenParams::freeze(nested(levels), usize::MAX).unwrap_err();
        assert_eq!(
            err,
            ParamsRejected::TooDeep {
                limit: MAX_PARAMS_DEPTH
            },
            "{levels}"
        );
        assert_eq!(err.deny_reason(), crate::DenyReason::ParamsTooDeep);
    }
}

#[test]
fn params_with_more_steps_than_the_inline_stack_are_written_in_order() {
    // 40 fields, each holding an array of objects: far more pending steps than the 16 kept on the stack, pushed
    // and popped across the boundary many times.
    let mut map = serde_json::Map::new();
    for i in 0..40 {
        map.insert(
            format!("k{i:02}"),
            json!([{"a": i, "b": [i, {"c": null}]}, "x", [[], {}]]),
        );
    }
    let v = Value::Object(map);
    let text = canonical_json(&v, usize::MAX).unwrap();
    assert_eq!(text, serde_json::to_string(&v).unwrap());
    assert_eq!(
        canonical_sha256(&v, usize::MAX).map(|h| ParamsDigest::from_sha256(&h)),
        Some(ParamsDigest::of(text.as_bytes()))
    );
}

#[test]
fn canonical_json_and_redaction_are_stack_safe_at_any_depth() {
    // Run on a small stack, so a recursive walk would overflow it at these depths.
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let deep = nested(100_000);
            let text = canonical_json(&deep, usize::MAX).unwrap();
            assert!(text.starts_with("{\"k\":[{\"k\":[") && text.ends_with("]}]}"));
            assert_eq!(text.matches("bottom").count(), 1);
            let shown = Redactor::new().redact(&deep);
            assert!(
                shown.as_str().unwrap().contains("nested deeper than 64 levels"),
                "{shown}"
            );
            drop_flat(deep);
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn digest_parses_only_64_lowercase_hex() {
    assert!("a".repeat(64).parse::<ParamsDigest>().is_ok());
    assert!("A".repeat(64).parse::<ParamsDigest>().is_err());
    assert!("abc".parse::<ParamsDigest>().is_err());
    let err = serde_json::from_str::<ParamsDigest>("\"zz\"").unwrap_err().to_string();
    assert!(err.contains("64 lowercase hex"), "{err}");
}

#[test]
fn redactor_masks_secret_keys_by_words_at_any_depth() {
    let r = Redactor::new().with_keys(["customerNote"]);
    let v = json!({
        "user": "bob",
        "password": "hunter2",
        "apiKey": "k1",
        "API-KEY": "k2",
        "headers": {"Authorization": "Bearer t", "Accept": "json"},
        "items": [{"client_secret": "s"}, {"name": "ok"}],
        "customer_note": "private",
        "max_tokens": 100,
        "author": "alice",
        "key": "id-7"
    });
    let shown = r.redact(&v);
    let text = shown.to_string();
    for secret in ["hunter2", "k1", "k2", "Bearer t", "\"s\"", "private"] {
        assert!(!text.contains(secret), "{secret} leaked in {text}");
    }
    assert_eq!(shown["user"], "bob");
    assert_eq!(shown["headers"]["Accept"], "json");
    assert_eq!(shown["max_tokens"], 100);
    assert_eq!(shown["author"], "alice");
    assert_eq!(shown["key"], "id-7");
    assert_eq!(shown["password"], REDACTED);
}
#[test]
fn run_together_secret_keys_are_redacted_and_ordinary_words_are_not() {
    let r = Redactor::new();
    for key in [
        "accesstoken",
        "ACCESSTOKEN",
        "clientsecret",
        "dbpassword",
        "DbPassword",
        "jwt",
        "user_jwt",
        "authtoken",
        "refreshtoken",
        "githubPersonalAccessToken",
        "awssecretaccesskey",
        "sshprivatekey",
    ] {
        assert!(r.is_secret_key(key), "{key} should be secret");
    }
    for key in [
        "max_tokens",
        "tokens",
        "spin",
        "oauth_provider",
        "hotp_digits",
        "path",
        "id",
        "tokenizer",
    ] {
        assert!(!r.is_secret_key(key), "{key} should not be secret");
    }
}

pub(crate) mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Any JSON value, a few levels deep, with keys and strings that need escaping (the audit body's tests use it
    /// too).
    pub(crate) fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,8}|[\\x00-\\x1f\"\\\\é😀\u{2028}]{0,4}".prop_map(Value::from),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("\\PC{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Keys that are secret, listed or neither, for the redaction properties.
    const KEYS: &[&str] = &[
        "id",
        "note",
        "token",
        "apiKey",
        "customerNote",
        "password_hash",
        "spin",
        "a",
    ];

    /// JSON whose object keys come from [`KEYS`], so some are masked and some are not.
    fn keyed_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            "[a-z]{0,4}".prop_map(Value::from)
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(prop::sample::select(KEYS).prop_map(str::to_owned), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Every leaf of `v`, by position.
    fn leaves(v: &Value) -> usize {
        match v {
            Value::Array(a) => a.iter().map(leaves).sum(),
            Value::Object(m) => m.values().map(leaves).sum(),
            _ => 1,
        }
    }

    /// `a` and `b` are the same JSON: `Value`'s equality, except that `0.0` and `-0.0` differ (they are equal
    /// numbers with different texts, `0.0` and `-0.0`, so different params for an approver and for the digest).
    fn identical(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                x == y && x.as_f64().map(f64::to_bits) == y.as_f64().map(f64::to_bits)
            }
            (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| identical(x, y)),
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, x)| y.get(k).is_some_and(|y| identical(x, y)))
            }
            _ => a == b,
        }
    }

    /// `v` with its `n`th leaf replaced by `with`.
    fn replace_leaf(v: &mut Value, n: &mut usize, with: &Value) -> bool {
        match v {
            Value::Array(a) => a.iter_mut().any(|x| replace_leaf(x, n, with)),
            Value::Object(m) => m.values_mut().any(|x| replace_leaf(x, n, with)),
            leaf => {
                if *n == 0 {
                    *leaf = with.clone();
                    true
                } else {
                    *n -= 1;
                    false
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn canonical_json_parses_back_to_the_value_and_is_stable(v in json()) {
            let text = canonical_json(&v, usize::MAX).unwrap();
            let back: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&back, &v);
            prop_assert_eq!(canonical_json(&back, usize::MAX).unwrap(), text);
            // Equal to serde_json's compact text, since its default map sorts keys bytewise.
            prop_assert_eq!(serde_json::to_string(&v).unwrap(), canonical_json(&v, usize::MAX).unwrap());
        }

        #[test]
        fn the_digest_changes_when_any_value_changes(v in json(), pick in any::<prop::sample::Index>(), with in json()) {
            let count = leaves(&v);
            prop_assume!(count > 0);
            let n = pick.index(count);
            let mut changed = v.clone();
            replace_leaf(&mut changed, &mut n.clone(), &with);
            let digest = |v: &Value| ParamsDigest::of(canonical_json(v, usize::MAX).unwrap().as_bytes());
            prop_assert_eq!(identical(&changed, &v), digest(&changed) == digest(&v));
        }

        #[test]
        fn the_size_limit_is_exact(v in json()) {
            let text = canonical_json(&v, usize::MAX).unwrap();
            prop_assert_eq!(canonical_json(&v, text.len()), Some(text.clone()));
            if !text.is_empty() {
                prop_assert_eq!(canonical_json(&v, text.len() - 1), None);
            }
        }

        #[test]
        fn hashing_as_written_gives_the_digest_of_the_text_and_keeps_its_limit(v in json()) {
            let text = canonical_json(&v, usize::MAX).unwrap();
            let hashed = canonical_sha256(&v, usize::MAX).map(|h| ParamsDigest::from_sha256(&h));
            prop_assert_eq!(hashed, Some(ParamsDigest::of(text.as_bytes())));
            prop_assert!(canonical_sha256(&v, text.len()).is_some());
            if !text.is_empty() {
                prop_assert!(canonical_sha256(&v, text.len() - 1).is_none());
            }
        }

        #[test]
        fn what_is_shown_is_the_redacted_copy_and_is_borrowed_only_when_that_changes_nothing(
            v in keyed_json(),
            listed in prop::collection::vec(prop::sample::select(KEYS), 0..2),
        ) {
            let listed: Vec<String> = listed.into_iter().map(str::to_owned).collect();
            let redactor = Redactor::new().with_keys(["customer_note"]);
            let shown = redactor.shown(&v, &listed);
            prop_assert_eq!(&*shown, &redactor.redact_with(&v, &listed));
            if let std::borrow::Cow::Borrowed(same) = shown {
                prop_assert!(std::ptr::eq(same, &v));
            }
        }

        #[test]
        fn depth_is_measured_exactly_through_objects_and_arrays(levels in 0usize..200, objects in any::<u64>()) {
            // `levels` containers, each an object or an array by a bit of `objects`, around a scalar, beside scalars.
            let mut v = json!("leaf");
            for level in 0..levels {
                v = if objects >> (level % 64) & 1 == 1 {
                    json!({"a": 1, "b": v, "c": "x"})
                } else {
                    json!([1, v, "x"])
                };
            }
            for limit in [0, levels.saturating_sub(1), levels, levels + 1, MAX_PARAMS_DEPTH] {
                prop_assert_eq!(deeper_than(&v, limit), levels > limit, "levels {} limit {}", levels, limit);
            }
        }

        #[test]
        fn freezing_is_stack_safe_and_refuses_exactly_past_the_depth_limit(levels in 0usize..20_000) {
            let mut v = Value::Null;
            for _ in 0..levels {
                v = Value::Array(vec![v]);
            }
            let frozen = FrozenParams::freeze(v, usize::MAX);
            prop_assert_eq!(frozen.is_ok(), levels <= MAX_PARAMS_DEPTH);
        }
    }
}
