//! `agentguard policy check | explain | test` as a script runs them: exit codes, line numbers, the JSON shape.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_agentguard");

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/agentguard.toml")
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("AGENTGUARD_STORE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn out(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn check_passes_a_valid_file_and_prints_its_warnings() {
    let (code, stdout, stderr) = out(&run(&["policy", "check", sample().to_str().unwrap()]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("valid — 8 rules, default classify, mode enforce"),
        "{stdout}"
    );
    assert!(stderr.contains("warning:") && stderr.contains("line 52"), "{stderr}");
}

#[test]
fn check_fails_with_exit_2_and_every_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nname = \"r\"\nwhen = { amount = { gt = \"100\" } }\naction = \"ask\"\n\n[[rule]]\nnam = \"x\"\naction = \"allow\"\n",
    )
    .unwrap();
    let (code, stdout, stderr) = out(&run(&["policy", "check", bad.to_str().unwrap()]));
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(stderr.contains("has 3 errors"), "{stderr}");
    assert!(
        stderr.contains("bad.toml:line 3, column 26: rule \"r\": when.amount.gt"),
        "{stderr}"
    );
    assert!(stderr.contains("write gt = 100"), "{stderr}");
    assert!(
        stderr.contains("line 7, column 1: rule[1]: unknown key `nam` in a rule; did you mean `name`?"),
        "{stderr}"
    );

    let (code, stdout, _) = out(&run(&["policy", "check", bad.to_str().unwrap(), "--json"]));
    assert_eq!(code, 2);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["line"], 3);

    let (code, _, stderr) = out(&run(&["policy", "check", "/nonexistent/agentguard.toml"]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cannot read policy file /nonexistent/agentguard.toml"),
        "{stderr}"
    );
}

#[test]
fn explain_json_has_the_bound_keys() {
    let file = sample();
    let explain = |tool: &str, params: &str| {
        let o = run(&[
            "policy",
            "explain",
            file.to_str().unwrap(),
            "--tool",
            tool,
            "--params",
            params,
            "--json",
        ]);
        let (code, stdout, stderr) = out(&o);
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str::<Value>(&stdout).unwrap()
    };
    let v = explain("refund_order", r#"{"amount_eur": 250}"#);
    assert_eq!(v["decision"], "ask");
    assert_eq!(v["rule"], "refunds over 100 EUR need a person");
    assert_eq!(v["message"], Value::Null);
    let v = explain("write_file", r#"{"path": "/etc/passwd"}"#);
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["message"], "paths outside /srv/app are off limits");
    let v = explain("read_customer", r#"{"id": 1}"#);
    assert_eq!((v["decision"].as_str(), v["rule"].as_str()), (Some("allow"), None));
    let v = explain("drop_table", "{}");
    assert_eq!((v["decision"].as_str(), v["rule"].as_str()), (Some("ask"), None));
}

#[test]
fn explain_in_words_shows_each_test() {
    let file = sample();
    let o = run(&[
        "policy",
        "explain",
        file.to_str().unwrap(),
        "--tool",
        "send_email",
        "--params",
        r#"{"to": ["ann@example.com", "x@elsewhere.org"]}"#,
        "--agent",
        "bot",
    ]);
    let (code, stdout, stderr) = out(&o);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("decision: ask\nrule:     none matched; the default (classify) decided"),
        "{stdout}"
    );
    assert!(stdout.contains("to.* suffix = \"@example.com\": false"), "{stdout}");

    let (code, _, stderr) = out(&run(&[
        "policy",
        "explain",
        file.to_str().unwrap(),
        "--tool",
        "t",
        "--params",
        "{nope",
    ]));
    assert_eq!(code, 2);
    assert!(stderr.contains("--params is not JSON"), "{stderr}");
    let (code, _, stderr) = out(&run(&[
        "policy",
        "explain",
        file.to_str().unwrap(),
        "--tool",
        "t",
        "--risk",
        "bad",
    ]));
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown risk \"bad\""), "{stderr}");
}

#[test]
fn test_runs_a_table_of_cases_and_fails_with_exit_1_on_a_wrong_expectation() {
    let file = sample();
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policy_cases.toml");
    let (code, stdout, stderr) = out(&run(&[
        "policy",
        "test",
        file.to_str().unwrap(),
        cases.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.ends_with("11 passed, 0 failed\n"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("cases.toml");
    std::fs::write(
        &wrong,
        "[[case]]\nname = \"big refunds run\"\ntool = \"refund_order\"\nparams = { amount_eur = 500 }\nexpect = \"allow\"\n\n\
         [[case]]\ntool = \"refund_order\"\nparams = { amount_eur = 5 }\nexpect = \"allow\"\nrule = \"default\"\n",
    )
    .unwrap();
    let (code, stdout, stderr) = out(&run(&[
        "policy",
        "test",
        file.to_str().unwrap(),
        wrong.to_str().unwrap(),
    ]));
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("FAIL  big refunds run: expected allow, got ask"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL  case 2: expected rule \"default\" to decide, but \"small refunds run\" did"),
        "{stdout}"
    );
    assert!(stdout.ends_with("0 passed, 2 failed\n"), "{stdout}");

    std::fs::write(&wrong, "[[case]]\ntool = \"x\"\nexpect = \"maybe\"\n").unwrap();
    let (code, _, stderr) = out(&run(&[
        "policy",
        "test",
        file.to_str().unwrap(),
        wrong.to_str().unwrap(),
    ]));
    assert_eq!(code, 2);
    assert!(stderr.contains("line 3"), "{stderr}");
}
