//! Tests of sealing and checking lines.

use super::*;

#[test]
fn rfc3339_formats_known_instants() {
    assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    let t = UNIX_EPOCH + std::time::Duration::from_millis(1_709_210_096_789);
    assert_eq!(format_rfc3339(t), "2024-02-29T12:34:56.789Z");
}

#[test]
fn rfc3339_digit_by_digit_matches_the_formatted_text_up_to_year_9999_and_falls_back_after() {
    let formatted = |t: SystemTime| {
        let c = Civil::of(t);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            c.year, c.month, c.day, c.hour, c.minute, c.second, c.milli
        )
    };
    // 9999-12-31T23:59:59.999Z is the last instant with four year digits.
    let last = 253_402_300_799_999u64;
    // 200,000 instants spread over the whole range (a fixed LCG, so a failure repeats), and the range's ends.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in 0..200_000u64 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let ms = match i {
            0 => 0,
            1 => last,
            _ => (x >> 11) % (last + 1),
        };
        let t = UNIX_EPOCH + std::time::Duration::from_millis(ms);
        let fixed = rfc3339_fixed(t).expect("a four-digit year");
        assert_eq!(std::str::from_utf8(&fixed).unwrap(), formatted(t), "at {ms} ms");
    }
    let t = UNIX_EPOCH + std::time::Duration::from_millis(last);
    assert_eq!(format_rfc3339(t), "9999-12-31T23:59:59.999Z");
    let after = t + std::time::Duration::from_millis(1);
    assert!(rfc3339_fixed(after).is_none());
    assert_eq!(format_rfc3339(after), "10000-01-01T00:00:00.000Z");
}

#[test]
fn check_line_rejects_damaged_non_ascii_lines_without_panicking() {
    for n in 30..60 {
        let line = format!(
            "{{\"seq\":1,\"prev\":\"{GENESIS}\",\"hash\":\"{}\",\"x\":\"{}\"}}",
            "0".repeat(64),
            "é".repeat(n)
        );
        assert!(check_line(line.as_bytes(), None, &[]).is_err());
    }
}

#[test]
fn sealing_into_a_batch_buffer_gives_the_same_bytes_as_sealing_alone() {
    let key = AuditKey::new(&[9u8; 32]).unwrap();
    for (body, key, seq) in [
        (&br#"{"ts":"x","tool":"t"}"#[..], None, 12_345),
        (&br#"{"ts":"x","tool":"t"}"#[..], Some(&key), 12_345),
        (&b"{}"[..], None, 12_345),
        (&br#"{"ts":"x"}"#[..], None, 1),
        (&br#"{"ts":"x"}"#[..], None, 10),
        (&br#"{"ts":"x"}"#[..], None, u64::MAX),
    ] {
        let alone = seal(body, seq, GENESIS, key);
        let mut batch = b"earlier lines\n".to_vec();
        let link = seal_into(&mut batch, body, seq, GENESIS, key);
        assert_eq!(&batch[14..], alone.line.as_bytes());
        assert_eq!(link.as_str(), alone.link);
    }
}

#[test]
fn sealed_line_hash_covers_everything_but_itself() {
    let s = seal(br#"{"ts":"x","tool":"t"}"#, 3, GENESIS, None);
    assert!(s.line.starts_with(r#"{"seq":3,"ts":"x","tool":"t","prev":"000"#));
    assert!(s.line.ends_with(&format!(",\"hash\":\"{}\"}}\n", s.link)));
    let line = s.line.trim_end().as_bytes();
    assert_eq!(check_line(line, Some(&(2, GENESIS.to_owned())), &[]).unwrap().seq, 3);
}

fn key(byte: u8) -> AuditKey {
    AuditKey::new(&[byte; 32]).unwrap()
}

#[test]
fn a_keyed_line_carries_its_key_id_and_a_mac_that_only_its_key_checks() {
    let k = key(1);
    let s = seal(br#"{"ts":"x","tool":"t"}"#, 1, GENESIS, Some(&k));
    assert!(s
        .line
        .ends_with(&format!(",\"kid\":\"{}\",\"mac\":\"{}\"}}\n", k.id(), s.link)));
    let line = s.line.trim_end().as_bytes();
    assert_eq!(
        check_line(line, None, std::slice::from_ref(&k)).unwrap().kid.as_deref(),
        Some(k.id())
    );
    let err = check_line(line, None, &[]).unwrap_err();
    assert_eq!(err.kind, VerifyErrorKind::KeyNeeded, "{}", err.problem);
    let err = check_line(line, None, &[key(2)]).unwrap_err();
    assert_eq!(err.kind, VerifyErrorKind::Tampered, "{}", err.problem);
    assert!(err.problem.contains(k.id()), "{}", err.problem);
}

#[test]
fn a_keyed_line_edited_and_resealed_with_another_key_under_the_same_kid_fails_its_mac() {
    let (k, attacker) = (key(1), key(9));
    let forged = seal(br#"{"ts":"x","tool":"forged"}"#, 1, GENESIS, Some(&attacker))
        .line
        .replace(attacker.id(), k.id());
    let err = check_line(forged.trim_end().as_bytes(), None, &[k]).unwrap_err();
    assert_eq!(err.kind, VerifyErrorKind::Tampered);
    assert!(err.problem.contains("MAC"), "{}", err.problem);
}

#[test]
fn an_unkeyed_line_after_keyed_ones_is_tampering() {
    let k = key(1);
    let first = seal(br#"{"ts":"x"}"#, 1, GENESIS, Some(&k));
    let second = seal(br#"{"ts":"y"}"#, 2, &first.link, None);
    let keys = [k];
    let mut walker = ChainWalker::new(&keys);
    walker.step(first.line.trim_end().as_bytes(), true, "").unwrap();
    let err = walker.step(second.line.trim_end().as_bytes(), true, "").unwrap_err();
    assert!(err.problem.contains("unkeyed after keyed"), "{}", err.problem);
}

#[test]
fn a_key_given_for_a_log_with_no_keyed_line_is_an_error_after_the_walk() {
    let line = seal(br#"{"ts":"x"}"#, 1, GENESIS, None).line;
    let keys = [key(1)];
    let mut walker = ChainWalker::new(&keys);
    walker.step(line.trim_end().as_bytes(), true, "").unwrap();
    assert!(walker.finish().unwrap_err().problem.contains("no line carries a MAC"));
}

#[test]
fn line_link_reads_hash_or_mac_from_the_tail() {
    let plain = seal(br#"{"ts":"x"}"#, 1, GENESIS, None);
    assert_eq!(line_link(&plain.line), Some((plain.link.clone(), false)));
    let keyed = seal(br#"{"ts":"x"}"#, 1, GENESIS, Some(&key(3)));
    assert_eq!(line_link(&keyed.line), Some((keyed.link.clone(), true)));
    assert_eq!(line_link("{\"seq\":1}"), None);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// A record body as the writer makes one: JSON text of an object with a few fields of any content.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<String>(),
            prop::collection::vec((any::<String>(), any::<String>()), 0..4),
            any::<i64>(),
        )
            .prop_map(|(tool, extra, n)| {
                let mut map = serde_json::Map::new();
                map.insert("ts".into(), "2026-01-01T00:00:00.000Z".into());
                map.insert("tool".into(), tool.into());
                map.insert("n".into(), n.into());
                for (k, v) in extra {
                    // Fields named like the chain's own are the writer's, never a record's.
                    if !["seq", "prev", "hash", "mac", "kid", "event"].contains(&k.as_str()) {
                        map.insert(k, v.into());
                    }
                }
                serde_json::to_vec(&map).unwrap()
            })
    }

    fn maybe_key() -> impl Strategy<Value = Option<AuditKey>> {
        prop::option::of(any::<[u8; 32]>().prop_map(|b| AuditKey::new(&b).unwrap()))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any bytes are a clean answer from the checker (and from the tail reader), never a panic.
        #[test]
        fn any_bytes_are_a_line_or_a_clean_error(bytes in prop::collection::vec(any::<u8>(), 0..400),
                                                 prev_seq in any::<u64>()) {
            let keys = [AuditKey::new(&[5; 32]).unwrap()];
            let _ = check_line(&bytes, None, &[]);
            let _ = check_line(&bytes, Some(&(prev_seq, GENESIS.to_owned())), &keys);
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let _ = line_link(text);
            }
        }

        /// Text that looks like a line (valid UTF-8, the right shape) is also a clean answer.
        #[test]
        fn line_shaped_text_is_a_line_or_a_clean_error(seq in any::<u64>(), middle in ".{0,80}",
                                                       link in "[0-9a-fA-F\"]{60,68}", keyed in any::<bool>()) {
            let field = if keyed { "\"kid\":\"0123456789abcdef\",\"mac\"" } else { "\"hash\"" };
            let line = format!("{{\"seq\":{seq},{middle}\"prev\":\"{GENESIS}\",{field}:\"{link}\"}}");
            let _ = check_line(line.as_bytes(), None, &[]);
            let _ = line_link(&line);
        }

        /// Sealing any record and checking the line gives back its seq, its link and its key id.
        #[test]
        fn sealing_then_checking_round_trips(body in body(), seq in 1..u64::MAX, key in maybe_key()) {
            let prev = (seq - 1, GENESIS.to_owned());
            let sealed = seal(&body, seq, &prev.1, key.as_ref());
            prop_assert!(sealed.line.ends_with('\n'));
            prop_assert_eq!(sealed.line.matches('\n').count(), 1, "one line, one newline");
            let keys: Vec<AuditKey> = key.iter().cloned().collect();
            let checked = check_line(sealed.line.trim_end_matches('\n').as_bytes(), Some(&prev), &keys)
                .map_err(|f| TestCaseError::fail(f.problem))?;
            prop_assert_eq!(checked.seq, seq);
            prop_assert_eq!(checked.link, sealed.link);
            prop_assert_eq!(checked.kid.as_deref(), key.as_ref().map(AuditKey::id));
        }

        /// Flipping any bits of any one byte of a sealed line is detected.
        #[test]
        fn flipping_any_byte_of_a_sealed_line_is_detected(body in body(), seq in 1..u64::MAX,
                                                          key in maybe_key(), at in any::<prop::sample::Index>(),
                                                          mask in 1..=255u8) {
            let prev = (seq - 1, GENESIS.to_owned());
            let sealed = seal(&body, seq, &prev.1, key.as_ref());
            let mut line = sealed.line.trim_end_matches('\n').as_bytes().to_vec();
            let i = at.index(line.len());
            line[i] ^= mask;
            let keys: Vec<AuditKey> = key.iter().cloned().collect();
            prop_assert!(check_line(&line, Some(&prev), &keys).is_err(), "byte {} ^ {:#x} went unnoticed", i, mask);
        }
    }
}
