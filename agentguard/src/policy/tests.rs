use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

fn policy(text: &str) -> Policy {
    Policy::from_toml(text).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match Policy::from_toml(text) {
        Ok(_) => panic!("expected errors in:\n{text}"),
        Err(e) => e.diagnostics().to_vec(),
    }
}

fn decide(p: &Policy, tool: &str, params: Value) -> (Option<Action>, Option<String>) {
    let call = ToolCall::new(tool, params);
    let eval = p.evaluate(&call, classify(tool));
    (eval.action(), eval.rule().map(str::to_owned))
}

const SAMPLE: &str = r#"
default = "classify"

[[rule]]
name = "refunds over 100 EUR need a person"
tools = ["refund_*", "charge_card"]
when = { amount_eur = { gt = 100 } }
action = "ask"

[[rule]]
name = "refunds over 10000 are refused"
tools = ["refund_*"]
when = { amount_eur = { gt = 10000 } }
action = "deny"
message = "refunds above 10,000 EUR go through finance"

[[rule]]
name = "small refunds run"
tools = ["refund_*"]
action = "allow"

[[rule]]
name = "writes inside the sandbox"
tools = ["write_file", "edit_file", "create_directory"]
when = { path = { under = "./sandbox" } }
action = "allow"

[[rule]]
name = "nothing outside the app"
tools = ["*"]
when = { path = { exists = true, not_under = "/srv/app" } }
action = "deny"
message = "paths outside /srv/app are off limits"
"#;

#[test]
fn deny_beats_ask_beats_allow() {
    let p = policy(SAMPLE);
    assert_eq!(
        decide(&p, "refund_order", json!({"amount_eur": 50})),
        (Some(Action::Allow), Some("small refunds run".into()))
    );
    assert_eq!(
        decide(&p, "refund_order", json!({"amount_eur": 500})),
        (Some(Action::Ask), Some("refunds over 100 EUR need a person".into()))
    );
    assert_eq!(
        decide(&p, "refund_order", json!({"amount_eur": 50_000})),
        (Some(Action::Deny), Some("refunds over 10000 are refused".into()))
    );
    let missing = ToolCall::new("refund_order", json!({}));
    assert_eq!(
        p.evaluate(&missing, None).denial(),
        "refunds above 10,000 EUR go through finance (the rule could not judge `amount_eur`: missing or not the \
         expected type, so it applies)"
    );
    let call = ToolCall::new("refund_order", json!({"amount_eur": 50_000}));
    assert_eq!(
        p.evaluate(&call, None).message(),
        Some("refunds above 10,000 EUR go through finance")
    );
}

#[test]
fn a_missing_argument_never_loosens_a_rule() {
    let p = policy(SAMPLE);
    // Neither the ask nor the deny rule can judge `amount_eur`: both match (fail closed), the deny wins, and the
    // allow rule never decides.
    assert_eq!(decide(&p, "refund_order", json!({})).0, Some(Action::Deny));
    assert_eq!(
        decide(&p, "refund_order", json!({"amount_eur": "50"})).0,
        Some(Action::Deny)
    );
    assert_eq!(
        decide(&p, "charge_card", json!({"amount_eur": "50"})).0,
        Some(Action::Ask)
    );
    // A path that is not a string: the allow rule cannot judge it and does not match; the deny rule cannot either,
    // and does.
    assert_eq!(
        decide(&p, "write_file", json!({"path": 7})),
        (Some(Action::Deny), Some("nothing outside the app".into()))
    );
    // Without `path` at all, the deny rule's `exists = true` is false: the call falls to the default.
    assert_eq!(decide(&p, "write_file", json!({})), (None, None));
    // A relative path against the absolute `/srv/app` cannot be judged: the deny rule matches.
    assert_eq!(
        decide(&p, "write_file", json!({"path": "sandbox/a"})).0,
        Some(Action::Deny)
    );
}

#[test]
fn relative_paths_are_joined_to_base_dir() {
    let p = policy(&format!("base_dir = \"/srv/app\"\n{SAMPLE}"));
    assert_eq!(
        decide(&p, "write_file", json!({"path": "sandbox/a.txt"})),
        (Some(Action::Allow), Some("writes inside the sandbox".into()))
    );
    assert_eq!(
        decide(&p, "write_file", json!({"path": "sandbox/../../etc/passwd"})),
        (Some(Action::Deny), Some("nothing outside the app".into()))
    );
    assert_eq!(
        decide(&p, "write_file", json!({"path": "/srv/app/other"})),
        (None, None)
    );
    assert_eq!(decide(&p, "read_customer", json!({"id": 1})), (None, None));
}

#[test]
fn ask_and_deny_rules_catch_other_spellings_allow_rules_do_not() {
    let p = policy(
        r#"
        [[rule]]
        name = "no deletes"
        tools = ["delete_file"]
        action = "deny"
        [[rule]]
        name = "reads run"
        tools = ["read_file"]
        action = "allow"
        "#,
    );
    for spelling in [
        "DELETE_FILE",
        "deleteFile",
        "delete-file",
        "d\u{0435}lete_file",
        "delete\u{200B}_file",
    ] {
        assert_eq!(decide(&p, spelling, json!({})).0, Some(Action::Deny), "{spelling:?}");
    }
    assert_eq!(decide(&p, "read_file", json!({})).0, Some(Action::Allow));
    for spelling in ["READ_FILE", "r\u{0435}ad_file", "read_file\u{200B}"] {
        assert_eq!(decide(&p, spelling, json!({})).0, None, "{spelling:?}");
    }
}

#[test]
fn a_star_path_matches_a_deny_rule_on_any_element_and_an_allow_rule_on_every_element() {
    let p = policy(
        r#"
        [[rule]]
        name = "outside"
        tools = ["*"]
        when = { "paths.*" = { not_under = "/srv/app" } }
        action = "deny"
        [[rule]]
        name = "inside"
        tools = ["read_files"]
        when = { "paths.*" = { under = "/srv/app" } }
        action = "allow"
        "#,
    );
    let mixed = json!({"paths": ["/srv/app/x", "/etc/passwd"]});
    assert_eq!(
        decide(&p, "read_files", mixed),
        (Some(Action::Deny), Some("outside".into()))
    );
    let inside = json!({"paths": ["/srv/app/x", "/srv/app/y"]});
    assert_eq!(
        decide(&p, "read_files", inside),
        (Some(Action::Allow), Some("inside".into()))
    );
    // Under `not` the reading flips: the deny rule matches unless every element is inside.
    let q = policy(
        "[[rule]]\nname = \"n\"\nwhen = { not = { \"to.*\" = { suffix = \"@corp.com\" } } }\naction = \"deny\"\n",
    );
    assert_eq!(
        decide(&q, "send", json!({"to": ["a@corp.com", "b@x.org"]})).0,
        Some(Action::Deny)
    );
    assert_eq!(decide(&q, "send", json!({"to": ["a@corp.com", "b@corp.com"]})).0, None);
}

#[test]
fn a_value_of_another_json_type_cannot_be_judged_by_eq_or_in() {
    let p = policy(
        r#"
        default = "allow"
        [[rule]]
        name = "no root"
        tools = ["set_role"]
        when = { user_id = { in = [0, 1] } }
        action = "deny"
        [[rule]]
        name = "viewers"
        tools = ["grant"]
        when = { role = { eq = "viewer" } }
        action = "allow"
        "#,
    );
    for id in [json!(0), json!("0"), json!([0]), json!({"id": 0})] {
        assert_eq!(
            decide(&p, "set_role", json!({"user_id": id})).0,
            Some(Action::Deny),
            "{id}"
        );
    }
    assert_eq!(decide(&p, "set_role", json!({"user_id": 7})).0, None);
    assert_eq!(decide(&p, "grant", json!({"role": "viewer"})).0, Some(Action::Allow));
    assert_eq!(decide(&p, "grant", json!({"role": ["viewer"]})).0, None);
}

#[test]
fn a_glob_cannot_judge_a_path_that_climbs() {
    let p = policy(
        "[[rule]]\nname = \"app\"\nwhen = { path = { glob = \"/srv/app/**\" } }\naction = \"allow\"\n\
         [[rule]]\nname = \"no logs\"\nwhen = { path = { glob = \"**/*.log\" } }\naction = \"deny\"\n",
    );
    assert_eq!(
        decide(&p, "read", json!({"path": "/srv/app/a.txt"})).0,
        Some(Action::Allow)
    );
    assert_eq!(
        decide(&p, "read", json!({"path": "/srv/app/../../etc/passwd"})).0,
        Some(Action::Deny)
    );
}

#[test]
fn an_allow_rule_never_covers_a_suspicious_name() {
    let p = policy("[[rule]]\nname = \"all\"\ntools = [\"*\"]\naction = \"allow\"\n");
    assert_eq!(decide(&p, "get_user", json!({})).0, Some(Action::Allow));
    assert_eq!(decide(&p, "g\u{0435}t_user", json!({})).0, None);
}

#[test]
fn scope_keys_match_agents_sessions_servers_and_risks() {
    let p = policy(
        r#"
        [[rule]]
        name = "interns ask"
        agents = ["intern-*"]
        action = "ask"
        [[rule]]
        name = "fs server writes run"
        servers = ["fs"]
        risks = ["data_mutation"]
        action = "allow"
        [[rule]]
        name = "safe tools in the demo session run"
        sessions = ["demo"]
        risks = ["none"]
        action = "allow"
        "#,
    );
    let call = |agent: Option<&str>, server: Option<&str>, session: Option<&str>| {
        let mut c = ToolCall::new("update_note", json!({}));
        if let Some(a) = agent {
            c = c.agent_id(a);
        }
        if let Some(s) = server {
            c = c.server(s);
        }
        if let Some(s) = session {
            c = c.session_id(s);
        }
        c
    };
    let risk = classify("update_note");
    assert_eq!(risk, Some(Risk::DataMutation));
    assert_eq!(
        p.evaluate(&call(Some("intern-7"), Some("fs"), None), risk).action(),
        Some(Action::Ask)
    );
    assert_eq!(
        p.evaluate(&call(Some("ops"), Some("fs"), None), risk).action(),
        Some(Action::Allow)
    );
    assert_eq!(p.evaluate(&call(None, Some("git"), None), risk).action(), None);
    assert_eq!(p.evaluate(&call(None, None, Some("demo")), risk).action(), None);
    assert_eq!(
        p.evaluate(&call(None, None, Some("demo")), None).action(),
        Some(Action::Allow)
    );
}

#[test]
fn every_predicate_holds_when_it_should() {
    let params = json!({
        "to": "ann@example.com", "amount": 250, "currency": "EUR", "path": "/srv/app/reports/q3.csv",
        "tags": ["a", "b", "c"], "note": "", "flag": true, "nested": {"deep": {"x": 1}}, "a.b": 5,
    });
    let holds = |when: &str| {
        let text = format!("[[rule]]\nname = \"r\"\nwhen = {when}\naction = \"allow\"\n");
        policy(&text)
            .evaluate(&ToolCall::new("t", params.clone()), None)
            .action()
            == Some(Action::Allow)
    };
    let cases = [
        ("{ currency = { eq = \"EUR\" } }", true),
        ("{ currency = \"EUR\" }", true),
        ("{ currency = { ne = \"EUR\" } }", false),
        ("{ currency = { in = [\"USD\", \"EUR\"] } }", true),
        ("{ currency = { not_in = [\"USD\", \"EUR\"] } }", false),
        ("{ amount = { gt = 100 } }", true),
        ("{ amount = { ge = 250 } }", true),
        ("{ amount = { lt = 250 } }", false),
        ("{ amount = { le = 250.0 } }", true),
        ("{ amount = { gt = 100, lt = 200 } }", false),
        ("{ to = { prefix = \"ann@\" } }", true),
        ("{ to = { suffix = \"@example.com\" } }", true),
        ("{ to = { suffix = \"@example.org\" } }", false),
        ("{ path = { glob = \"/srv/app/**/*.csv\" } }", true),
        ("{ path = { glob = \"/srv/*/*.csv\" } }", false),
        ("{ to = { regex = \"^[a-z]+@example\\\\.com$\" } }", true),
        ("{ path = { under = \"/srv/app/reports\" } }", true),
        ("{ path = { not_under = \"/srv/app\" } }", false),
        ("{ missing = { exists = false } }", true),
        ("{ flag = { exists = true } }", true),
        ("{ tags = { len_gt = 2 } }", true),
        ("{ tags = { len_lt = 3 } }", false),
        ("{ note = { len_lt = 1 } }", true),
        ("{ nested.deep.x = { eq = 1 } }", true),
        ("{ nested = { deep = { x = { eq = 1 } } } }", true),
        ("{ \"/a.b\" = { eq = 5 } }", true),
        ("{ \"tags.1\" = { eq = \"b\" } }", true),
        ("{ \"tags.*\" = { in = [\"a\", \"b\", \"c\"] } }", true),
        ("{ \"tags.*\" = { eq = \"a\" } }", false),
        ("{ any = [{ currency = \"USD\" }, { amount = { gt = 200 } }] }", true),
        ("{ all = [{ currency = \"USD\" }, { amount = { gt = 200 } }] }", false),
        ("{ not = { currency = \"USD\" } }", true),
        ("{ flag = true }", true),
    ];
    for (when, expected) in cases {
        assert_eq!(holds(when), expected, "when = {when}");
    }
}

#[test]
fn errors_name_the_line_the_key_and_what_to_write() {
    let e = errors("[[rule]]\nname = \"r\"\nwhen = { amount = { gt = \"100\" } }\naction = \"ask\"\n");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].line, 3);
    assert!(e[0].key.contains("when.amount.gt"), "{:?}", e[0]);
    assert!(e[0].message.contains("write gt = 100"), "{}", e[0].message);

    let e = errors("[[rule]]\nname = \"r\"\ntool = [\"x\"]\naction = \"allow\"\n");
    assert_eq!(
        (e[0].line, e[0].message.contains("did you mean `tools`?")),
        (3, true),
        "{e:?}"
    );

    let e = errors("[[rule]]\nname = \"r\"\nwhen = { p = { glob = \"[abc\" } }\naction = \"allow\"\n");
    assert!(e[0].message.contains("never closed"), "{e:?}");

    let e = errors("[[rule]]\nname = \"r\"\nwhen = { p = { regex = \"(x\" } }\naction = \"allow\"\n");
    assert!(e[0].message.contains("regex `(x` is not valid"), "{e:?}");

    let e = errors("[[rule]]\nname = \"r\"\nwhen = { p = { gt = 1, unde = \"/x\" } }\naction = \"deny\"\n");
    assert!(e[0].message.contains("did you mean `under`?"), "{e:?}");

    let e = errors("default = \"maybe\"\n[[rule]]\naction = \"yes\"\n");
    let lines: Vec<usize> = e.iter().map(|d| d.line).collect();
    assert_eq!(lines, vec![1, 2, 3], "{e:?}");

    let e = errors("[[rule]]\nname = \"a\"\naction = \"allow\"\n[[rule]]\nname = \"a\"\naction = \"deny\"\n");
    assert!(e[0].message.contains("two rules are named"), "{e:?}");

    let e = errors("rule = 1\n");
    assert!(e[0].message.contains("[[rule]]"), "{e:?}");

    let e = errors("[[rule]]\nname = \"r\"\naction = \"allow\"\nthis is not toml\n");
    assert!(e[0].message.starts_with("not valid TOML"), "{e:?}");
    assert_eq!(e[0].line, 4);

    let e = errors("base_dir = \"srv\"\n");
    assert!(e[0].message.contains("absolute"), "{e:?}");

    let e = errors("[[rule]]\nname = \"r\"\nrisks = []\naction = \"deny\"\n");
    assert!(e[0].message.contains("empty list"), "{e:?}");

    let e = errors("[[rule]]\nname = \"r\"\nwhen = { p = { in = [] } }\naction = \"allow\"\n");
    assert!(e[0].message.contains("empty list"), "{e:?}");

    let e = errors("[[rule]]\nname = \"r\"\nwhen = { p = { any = [] } }\naction = \"allow\"\n");
    assert!(e[0].message.contains("JSON Pointer"), "{e:?}");
}

#[test]
fn warnings_list_rules_a_missing_argument_decides() {
    let p = policy(SAMPLE);
    let w: Vec<String> = p.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 4, "{w:#?}");
    assert!(
        w[0].contains("ask rule matches every call") && w[0].contains("`amount_eur`"),
        "{}",
        w[0]
    );
    assert!(
        w[2].contains("allow rule does not match") && w[2].contains("`path`"),
        "{}",
        w[2]
    );
}

#[test]
fn the_version_is_the_texts_hash() {
    let a = policy(SAMPLE);
    let b = policy(&format!("{SAMPLE}\n# a comment\n"));
    assert_eq!(a.version().len(), 16);
    assert_ne!(a.version(), b.version());
    assert_eq!(a.version(), policy(SAMPLE).version());
}

#[test]
fn explain_reports_each_test() {
    let p = policy(SAMPLE);
    let x = p.explain(&ToolCall::new("refund_order", json!({"amount_eur": 500})), None);
    assert_eq!(x.decision, Action::Ask);
    assert_eq!(x.rule.as_deref(), Some("refunds over 100 EUR need a person"));
    let ask = &x.rules[0];
    assert!(ask.matched);
    assert_eq!(ask.tests[0].test, "gt = 100");
    assert_eq!(ask.tests[0].holds, Some(true));
    let deny = &x.rules[1];
    assert!(!deny.matched);
    assert_eq!(deny.tests[0].holds, Some(false));
    let outside = &x.rules[4];
    assert_eq!(outside.tests[0].holds, Some(false), "{outside:?}");

    let x = p.explain(&ToolCall::new("drop_table", json!({})), classify("drop_table"));
    assert_eq!(
        (x.decision, x.rule),
        (Action::Ask, None),
        "classify asks about drop_table"
    );
    let x = p.explain(&ToolCall::new("read_customer", json!({})), None);
    assert_eq!(x.decision, Action::Allow);
    // The risk given is the one used (`--risk none` says safe), and `default = "allow"` asks about a suspicious name,
    // as the guard does.
    let x = p.explain(&ToolCall::new("drop_table", json!({})), None);
    assert_eq!(x.decision, Action::Allow);
    let open = policy("default = \"allow\"\n");
    let name = "dr\u{043E}p_table";
    assert_eq!(
        open.explain(&ToolCall::new(name, json!({})), classify(name)).decision,
        Action::Ask
    );
}

/// A random condition that always holds for the params it is given or never does, and the params.
fn arb_rule_action() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("allow"), Just("ask")]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever other allow and ask rules a policy has, in whatever order and with whatever default, a call a deny
    /// rule matches is denied by a deny rule.
    #[test]
    fn a_matching_deny_rule_is_never_overridden(
        others in proptest::collection::vec((arb_rule_action(), any::<bool>(), 0u32..200), 0..12),
        deny_at in 0usize..12,
        amount in 0u32..200,
        default in prop_oneof![Just("classify"), Just("ask"), Just("allow"), Just("deny")],
        missing in any::<bool>(),
    ) {
        let mut rules: Vec<String> = others
            .iter()
            .enumerate()
            .map(|(i, (action, wild, limit))| {
                let tools = if *wild { "[\"*\"]" } else { "[\"pay_*\"]" };
                format!("[[rule]]\nname = \"r{i}\"\ntools = {tools}\nwhen = {{ amount = {{ ge = {limit} }} }}\naction = \"{action}\"\n")
            })
            .collect();
        let at = deny_at.min(rules.len());
        rules.insert(at, "[[rule]]\nname = \"stop\"\ntools = [\"pay_*\"]\nwhen = { amount = { ge = 0 } }\naction = \"deny\"\n".to_owned());
        let text = format!("default = \"{default}\"\n{}", rules.concat());
        let p = Policy::from_toml(&text).unwrap();
        let params = if missing { json!({}) } else { json!({"amount": amount}) };
        let call = ToolCall::new("pay_invoice", params);
        let eval = p.evaluate(&call, classify("pay_invoice"));
        prop_assert_eq!(eval.action(), Some(Action::Deny));
        prop_assert_eq!(eval.rule(), Some("stop"));
    }
}
