//! `agentguard policy check | explain | test`: validate a policy file, show why it decides a call as it does, and
//! run a team's table of expected decisions.

use std::path::Path;

use agentguard::policy::{Action, Explanation, Policy, PolicyError};
use agentguard::{classify, Risk, ToolCall};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{fail, print_json, shown, Cli, Failure, EXIT_ERROR, EXIT_USAGE};

/// Loads the policy or fails with every error (exit 2).
fn load(cli: &Cli, file: &Path) -> Result<Policy, Failure> {
    Policy::from_file(file).map_err(|e| {
        if cli.json {
            print_json(&serde_json::json!({
                "valid": false,
                "file": file.display().to_string(),
                "errors": e.diagnostics(),
                "message": e.to_string(),
            }));
        }
        fail(EXIT_USAGE, policy_error(&e))
    })
}

fn policy_error(e: &PolicyError) -> String {
    e.to_string()
}

/// `policy check FILE`: exit 0 when valid (warnings on stderr), 2 with every error and its line.
pub(crate) fn check(cli: &Cli, file: &Path) -> Result<(), Failure> {
    let policy = load(cli, file)?;
    if cli.json {
        print_json(&serde_json::json!({
            "valid": true,
            "file": file.display().to_string(),
            "version": policy.version(),
            "rules": policy.rule_names().collect::<Vec<_>>(),
            "default": policy.default_action(),
            "mode": policy.mode(),
            "warnings": policy.warnings(),
        }));
        return Ok(());
    }
    let rules = policy.rule_names().count();
    outln!(
        "{}: valid — {rules} rule{}, default {}, mode {}, version {}",
        file.display(),
        if rules == 1 { "" } else { "s" },
        policy.default_action().as_str(),
        policy.mode().as_str(),
        policy.version()
    );
    for w in policy.warnings() {
        let level = match w.severity {
            agentguard::policy::Severity::Warning => "warning",
            _ => "note",
        };
        eprintln!("{level}: {}:{w}", file.display());
    }
    Ok(())
}

/// What `explain` and `test` describe a call with.
pub(crate) struct CallArgs<'a> {
    pub(crate) tool: &'a str,
    pub(crate) params: Option<&'a str>,
    pub(crate) agent: Option<&'a str>,
    pub(crate) session: Option<&'a str>,
    pub(crate) server: Option<&'a str>,
    pub(crate) risk: Option<&'a str>,
}

fn parse_risk(text: Option<&str>, tool: &str) -> Result<Option<Risk>, String> {
    match text {
        None => Ok(classify(tool)),
        Some("none") => Ok(None),
        Some(key) => key.parse::<Risk>().map(Some).map_err(|_| {
            let keys: Vec<&str> = Risk::ALL.iter().map(|r| r.key()).collect();
            format!("unknown risk {key:?}: write one of {}, or none", keys.join(", "))
        }),
    }
}

fn make_call(tool: &str, params: Value, agent: Option<&str>, session: Option<&str>, server: Option<&str>) -> ToolCall {
    let mut call = ToolCall::new(tool, params);
    if let Some(a) = agent {
        call = call.agent_id(a);
    }
    if let Some(s) = session {
        call = call.session_id(s);
    }
    if let Some(s) = server {
        call = call.server(s);
    }
    call
}

/// `policy explain FILE --tool NAME [--params JSON] …`.
pub(crate) fn explain(cli: &Cli, file: &Path, args: &CallArgs<'_>) -> Result<(), Failure> {
    let policy = load(cli, file)?;
    let params: Value = match args.params {
        None => Value::Object(Default::default()),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            fail(
                EXIT_USAGE,
                format!("--params is not JSON ({e}); write e.g. --params '{{\"amount_eur\": 250}}'"),
            )
        })?,
    };
    let risk = parse_risk(args.risk, args.tool).map_err(|e| fail(EXIT_USAGE, format!("--risk: {e}")))?;
    let call = make_call(args.tool, params, args.agent, args.session, args.server);
    let x = policy.explain(&call, risk);
    if cli.json {
        print_json(&x);
        return Ok(());
    }
    print_explanation(&x, args.tool, risk);
    Ok(())
}

fn print_explanation(x: &Explanation, tool: &str, risk: Option<Risk>) {
    outln!("decision: {}", x.decision);
    match &x.rule {
        Some(rule) => outln!("rule:     {}", shown(rule)),
        None => outln!(
            "rule:     none matched; the default ({}) decided{}",
            x.default.as_str(),
            match (x.default, risk) {
                (agentguard::policy::DefaultAction::Classify, Some(r)) =>
                    format!(" — `{}` has risk {}", shown(tool), r.key()),
                (agentguard::policy::DefaultAction::Classify, None) =>
                    format!(" — `{}` looks safe by name", shown(tool)),
                _ => String::new(),
            }
        ),
    }
    if let Some(m) = &x.message {
        outln!("message:  {}", shown(m));
    }
    outln!("policy:   version {}, mode {}", x.version, x.mode.as_str());
    outln!("");
    for r in &x.rules {
        outln!(
            "{} line {:<4} {:<5} {}: {}",
            if r.matched { "✓" } else { "·" },
            r.line,
            r.action.as_str(),
            shown(&format!("{:?}", r.name)),
            r.note
        );
        for t in &r.tests {
            let holds = match t.holds {
                Some(true) => "true",
                Some(false) => "false",
                None => "cannot be judged",
            };
            outln!(
                "      {} {}: {holds} ({})",
                shown(&t.path),
                shown(&t.test),
                shown(&t.note)
            );
        }
    }
}

/// The cases file of `policy test`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: Option<String>,
    tool: String,
    #[serde(default)]
    params: Option<Value>,
    agent: Option<String>,
    session: Option<String>,
    server: Option<String>,
    risk: Option<String>,
    expect: Expect,
    /// The rule expected to decide (`default` when no rule should match).
    rule: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
enum Expect {
    Allow,
    Ask,
    Deny,
}

impl Expect {
    fn action(self) -> Action {
        match self {
            Expect::Allow => Action::Allow,
            Expect::Ask => Action::Ask,
            Expect::Deny => Action::Deny,
        }
    }
}

#[derive(Serialize)]
struct CaseResult {
    name: String,
    passed: bool,
    expected: Action,
    decision: Action,
    expected_rule: Option<String>,
    rule: String,
    problem: Option<String>,
}

/// `policy test FILE CASES.toml`: exit 0 when every case decides as expected, 1 when one does not, 2 for a bad file.
pub(crate) fn test(cli: &Cli, file: &Path, cases_file: &Path) -> Result<(), Failure> {
    let policy = load(cli, file)?;
    let text = std::fs::read_to_string(cases_file).map_err(|e| {
        fail(
            EXIT_USAGE,
            format!("cannot read cases file {}: {e}", cases_file.display()),
        )
    })?;
    let cases: Cases = toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
        fail(
            EXIT_USAGE,
            format!(
                "cases file {}{}: {}\neach case is a [[case]] table: name, tool, params, agent, session, server, \
                 risk, expect = \"allow\" | \"ask\" | \"deny\", rule",
                cases_file.display(),
                line.map(|l| format!(", line {l}")).unwrap_or_default(),
                e.message()
            ),
        )
    })?;
    if cases.cases.is_empty() {
        return Err(fail(
            EXIT_USAGE,
            format!("cases file {} has no [[case]] tables", cases_file.display()),
        ));
    }
    let mut results = Vec::new();
    for (i, case) in cases.cases.iter().enumerate() {
        let name = case.name.clone().unwrap_or_else(|| format!("case {}", i + 1));
        let risk = parse_risk(case.risk.as_deref(), &case.tool)
            .map_err(|e| fail(EXIT_USAGE, format!("{}: {name}: risk: {e}", cases_file.display())))?;
        let params = case.params.clone().unwrap_or_else(|| Value::Object(Default::default()));
        let call = make_call(
            &case.tool,
            params,
            case.agent.as_deref(),
            case.session.as_deref(),
            case.server.as_deref(),
        );
        let x = policy.explain(&call, risk);
        let rule = x.rule.clone().unwrap_or_else(|| "default".to_owned());
        let mut problem = None;
        if x.decision != case.expect.action() {
            problem = Some(format!(
                "expected {}, got {} (rule: {rule})",
                case.expect.action(),
                x.decision
            ));
        } else if let Some(want) = case.rule.as_ref().filter(|want| **want != rule) {
            problem = Some(format!("expected rule {want:?} to decide, but {rule:?} did"));
        }
        results.push(CaseResult {
            name,
            passed: problem.is_none(),
            expected: case.expect.action(),
            decision: x.decision,
            expected_rule: case.rule.clone(),
            rule,
            problem,
        });
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    if cli.json {
        print_json(&serde_json::json!({"passed": results.len() - failed, "failed": failed, "cases": results}));
    } else {
        for r in &results {
            match &r.problem {
                None => outln!("ok    {}: {} ({})", shown(&r.name), r.decision, shown(&r.rule)),
                Some(p) => outln!("FAIL  {}: {}", shown(&r.name), shown(p)),
            }
        }
        outln!("{} passed, {failed} failed", results.len() - failed);
    }
    if failed > 0 {
        return Err(fail(
            EXIT_ERROR,
            format!("{failed} of {} policy cases failed", results.len()),
        ));
    }
    Ok(())
}
