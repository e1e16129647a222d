//! The policy file: TOML in, a compiled [`Compiled`] policy out, or every error at once with its line, key and
//! what to write instead.

use std::collections::{HashMap, HashSet};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::operand::{json, operator};
use super::path::{ArgPath, FsPath};
use super::pattern::NamePattern;
use super::people::{approver_list, name_lists, toml_int};
use super::predicate::{Op, Pred};
use super::words::{describe, expected, show, suggest, unknown_key, Ctx};
use super::{Action, Compiled, DefaultAction, Diagnostic, PolicyMode, Rule, Severity};
use agentguard_classify::Risk;

mod condition;
use condition::condition;

const TOP_KEYS: &[&str] = &["default", "mode", "base_dir", "groups", "principals", "rule"];
const RULE_KEYS: &[&str] = &[
    "name",
    "tools",
    "agents",
    "sessions",
    "servers",
    "risks",
    "when",
    "action",
    "message",
    "remember",
    "approvers",
    "quorum",
    "denials",
];
const OPS: &[&str] = &[
    "eq",
    "ne",
    "in",
    "not_in",
    "gt",
    "ge",
    "lt",
    "le",
    "prefix",
    "suffix",
    "glob",
    "regex",
    "under",
    "not_under",
    "exists",
    "len_gt",
    "len_lt",
];
const COMBINATORS: &[&str] = &["all", "any", "not"];

/// Compiles a policy's source text.
pub(super) fn compile(source: &str) -> Result<(Compiled, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut cx = Ctx::new(source);
    let (doc, parse_errors) = DeTable::parse_recoverable(source);
    if !parse_errors.is_empty() {
        for e in parse_errors {
            let offset = e.span().map_or(0, |s| s.start);
            let mut d = cx.at(offset, "", format!("not valid TOML: {}", e.message().trim_end()));
            d.severity = Severity::Error;
            cx.errors.push(d);
        }
        return Err(cx.errors);
    }
    let doc = doc.into_inner();
    let mut default = DefaultAction::Classify;
    let mut mode = PolicyMode::Enforce;
    let mut base_dir: Option<FsPath> = None;
    let mut rule_values = None;
    // base_dir first: rule paths are joined to it.
    if let Some((k, v)) = doc.iter().find(|(k, _)| k.get_ref() == "base_dir") {
        match v.get_ref().as_str() {
            Some(text) if text.starts_with('/') => match FsPath::parse(text, None) {
                Ok(p) => base_dir = Some(p),
                Err(why) => cx.error(v.span(), "base_dir", why),
            },
            Some(text) => cx.error(
                v.span(),
                "base_dir",
                format!(
                    "base_dir must be an absolute path (the folder relative paths in calls are resolved in); \
                     `{text}` is relative: write e.g. base_dir = \"/srv/app\""
                ),
            ),
            None => cx.error(
                v.span(),
                k.get_ref(),
                expected("a string (an absolute path)", v.get_ref()),
            ),
        }
    }
    // Groups next: rules' approvers name them.
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    if let Some((_, v)) = doc.iter().find(|(k, _)| k.get_ref() == "groups") {
        groups = name_lists(&mut cx, "groups", v, "a group");
    }
    let mut principals: HashMap<String, Vec<String>> = HashMap::new();
    if let Some((_, v)) = doc.iter().find(|(k, _)| k.get_ref() == "principals") {
        principals = name_lists(&mut cx, "principals", v, "an agent");
    }
    for (key, value) in sorted(&doc) {
        match key.get_ref().as_ref() {
            "groups" | "principals" => {}
            "default" => {
                default = match value.get_ref().as_str() {
                    Some("classify") => DefaultAction::Classify,
                    Some("ask") => DefaultAction::Ask,
                    Some("allow") => DefaultAction::Allow,
                    Some("deny") => DefaultAction::Deny,
                    _ => {
                        cx.error(
                            value.span(),
                            "default",
                            format!(
                                "default must be one of \"classify\", \"ask\", \"allow\", \"deny\"; found {}",
                                show(value.get_ref())
                            ),
                        );
                        default
                    }
                }
            }
            "mode" => {
                mode = match value.get_ref().as_str() {
                    Some("enforce") => PolicyMode::Enforce,
                    Some("shadow") => PolicyMode::Shadow,
                    _ => {
                        cx.error(
                            value.span(),
                            "mode",
                            format!(
                                "mode must be \"enforce\" or \"shadow\"; found {}",
                                show(value.get_ref())
                            ),
                        );
                        mode
                    }
                }
            }
            "base_dir" => {}
            "rule" => rule_values = Some(value),
            other => cx.error(
                key.span(),
                other,
                unknown_key(other, "at the top of a policy", TOP_KEYS),
            ),
        }
    }
    let mut rules = Vec::new();
    if let Some(value) = rule_values {
        match value.get_ref() {
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item.get_ref() {
                        DeValue::Table(table) => {
                            if let Some(rule) = compile_rule(&mut cx, i, table, item.span(), base_dir.as_ref(), &groups)
                            {
                                rules.push(rule);
                            }
                        }
                        other => cx.error(
                            item.span(),
                            &format!("rule[{i}]"),
                            expected("a table ([[rule]])", other),
                        ),
                    }
                }
            }
            other => cx.error(
                value.span(),
                "rule",
                format!(
                    "rules are written as [[rule]] tables (an array of tables); found {}",
                    describe(other)
                ),
            ),
        }
    }
    let mut seen = HashSet::new();
    for rule in &rules {
        if !seen.insert(rule.name.as_str()) {
            let d = Diagnostic {
                severity: Severity::Error,
                line: rule.line,
                column: 1,
                key: "name".to_owned(),
                message: format!(
                    "two rules are named {:?}: the audit names the rule that decided, so each name must be unique",
                    rule.name
                ),
            };
            cx.errors.push(d);
        }
    }
    if !cx.errors.is_empty() {
        cx.errors.sort_by_key(|d| (d.line, d.column));
        return Err(cx.errors);
    }
    let mut order: Vec<usize> = (0..rules.len()).collect();
    order.sort_by_key(|&i| match rules[i].action {
        Action::Deny => 0,
        Action::Ask => 1,
        Action::Allow => 2,
    });
    cx.warnings.sort_by_key(|d| (d.line, d.column));
    Ok((
        Compiled {
            version: String::new(),
            default,
            mode,
            base_dir,
            rules,
            order,
            principals,
            by_name: Default::default(),
        },
        cx.warnings,
    ))
}

/// A table's entries in the order they appear in the file.
pub(super) fn sorted<'a, 'i>(
    table: &'a DeTable<'i>,
) -> Vec<(&'a Spanned<std::borrow::Cow<'i, str>>, &'a Spanned<DeValue<'i>>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}

fn compile_rule(
    cx: &mut Ctx<'_>,
    index: usize,
    table: &DeTable<'_>,
    span: std::ops::Range<usize>,
    base: Option<&FsPath>,
    groups: &HashMap<String, Vec<String>>,
) -> Option<Rule> {
    let errors_before = cx.errors.len();
    let mut label = format!("rule[{index}]");
    if let Some(name) = table.get("name").and_then(|v| v.get_ref().as_str()) {
        label = format!("rule {name:?}");
    }
    let line = cx.at(span.start, "", String::new()).line;
    let mut name = None;
    let mut action = None;
    let mut message = None;
    let mut tools = Vec::new();
    let mut agents = Vec::new();
    let mut sessions = Vec::new();
    let mut servers = Vec::new();
    let mut risks = None;
    let mut when = None;
    let mut when_span = span.clone();
    let mut remember = true;
    let mut approvers: Option<(Vec<String>, std::ops::Range<usize>)> = None;
    let mut quorum: Option<(u32, std::ops::Range<usize>)> = None;
    let mut denials: Option<u32> = None;
    for (key, value) in sorted(table) {
        let k = key.get_ref().as_ref();
        let here = format!("{label}: {k}");
        match k {
            "name" => match value.get_ref().as_str() {
                Some(n) if !n.trim().is_empty() => name = Some(n.to_owned()),
                Some(_) => cx.error(
                    value.span(),
                    &here,
                    "a rule's name cannot be empty: say what the rule is for",
                ),
                None => cx.error(value.span(), &here, expected("a string", value.get_ref())),
            },
            "action" => match value.get_ref().as_str() {
                Some("allow") => action = Some(Action::Allow),
                Some("ask") => action = Some(Action::Ask),
                Some("deny") => action = Some(Action::Deny),
                _ => cx.error(
                    value.span(),
                    &here,
                    format!(
                        "action must be \"allow\", \"ask\" or \"deny\"; found {}",
                        show(value.get_ref())
                    ),
                ),
            },
            "message" => match value.get_ref().as_str() {
                Some(m) => message = Some(m.to_owned()),
                None => cx.error(value.span(), &here, expected("a string", value.get_ref())),
            },
            "tools" | "agents" | "sessions" | "servers" => {
                let list = names(cx, &here, value);
                let out = match k {
                    "tools" => &mut tools,
                    "agents" => &mut agents,
                    "sessions" => &mut sessions,
                    _ => &mut servers,
                };
                *out = list;
            }
            "risks" => risks = Some(risk_list(cx, &here, value)),
            "remember" => match value.get_ref() {
                DeValue::Boolean(b) => remember = *b,
                other => cx.error(
                    value.span(),
                    &here,
                    format!(
                        "remember is true or false (false: approvals of these calls never make standing grants); \
                         found {}",
                        describe(other)
                    ),
                ),
            },
            "approvers" => {
                let list = approver_list(cx, &here, value, groups);
                approvers = Some((list, value.span()));
            }
            "quorum" | "denials" => match toml_int(value.get_ref()) {
                Some(n) if (1..=100).contains(&n) => {
                    if k == "quorum" {
                        quorum = Some((n as u32, value.span()));
                    } else {
                        denials = Some(n as u32);
                    }
                }
                _ => cx.error(
                    value.span(),
                    &here,
                    format!(
                        "{k} is a whole number of people from 1 to 100, e.g. {k} = 2; found {}",
                        show(value.get_ref())
                    ),
                ),
            },
            "when" => {
                when_span = value.span();
                match value.get_ref() {
                    DeValue::Table(t) => when = Some(Pred::All(condition(cx, &format!("{label}: when"), t, base))),
                    other => cx.error(
                        value.span(),
                        &here,
                        format!(
                            "when is a table of argument tests, e.g. when = {{ amount = {{ gt = 100 }} }}; found {}",
                            describe(other)
                        ),
                    ),
                }
            }
            other => cx.error(key.span(), &label, unknown_key(other, "in a rule", RULE_KEYS)),
        }
    }
    if name.is_none() && !table.contains_key("name") {
        cx.error(
            span.clone(),
            &label,
            "this rule has no name; add name = \"…\" (the audit records which rule decided)",
        );
    }
    if action.is_none() && !table.contains_key("action") {
        cx.error(
            span.clone(),
            &label,
            "this rule has no action; add action = \"allow\", \"ask\" or \"deny\"",
        );
    }
    if (approvers.is_some() || quorum.is_some() || denials.is_some()) && action != Some(Action::Ask) {
        cx.error(
            span.clone(),
            &label,
            "approvers, quorum and denials say who decides an ask rule's calls; they need action = \"ask\"",
        );
    }
    if !remember && action != Some(Action::Ask) {
        cx.error(
            span.clone(),
            &label,
            "remember = false forbids standing grants for the calls an ask rule asks about; it needs action = \"ask\"",
        );
    }
    if let (Some((list, _)), Some((n, at))) = (&approvers, &quorum) {
        if *n as usize > list.len() {
            cx.error(
                at.clone(),
                &format!("{label}: quorum"),
                format!(
                    "quorum = {n} but only {} approver(s) are named ({}): name more approvers or lower the quorum",
                    list.len(),
                    list.join(", ")
                ),
            );
        }
    }
    if cx.errors.len() > errors_before {
        return None;
    }
    let (name, action) = (name?, action?);
    let quorum = match (approvers, quorum) {
        (None, None) => None,
        (approvers, needed) => Some(crate::request::Quorum {
            needed: needed.map_or(1, |(n, _)| n),
            approvers: approvers.map(|(list, _)| list).unwrap_or_default(),
            denials: denials.unwrap_or(1),
        }),
    };
    let mut judged = Vec::new();
    if let Some(pred) = &when {
        pred.fallible_paths(&mut judged);
        let list = |guarded: bool| {
            judged
                .iter()
                .filter(|(_, g)| *g == guarded)
                .map(|(p, _)| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (open, typed) = (list(false), list(true));
        let at = format!("{label}: when");
        match action {
            Action::Allow if !judged.is_empty() => {
                let all = judged
                    .iter()
                    .map(|(p, _)| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                cx.note(
                    when_span.clone(),
                    &at,
                    format!(
                        "this allow rule does not match a call whose {all} is missing or not of the type its test \
                         needs (fail closed: such a call falls to the other rules and the default)"
                    ),
                );
            }
            Action::Allow => {}
            _ => {
                if !open.is_empty() {
                    cx.warn(
                        when_span.clone(),
                        &at,
                        format!(
                            "this {} rule matches every call it covers that has no {open} (fail closed); if such \
                             calls are not this rule's business, add `exists = true` to the test",
                            action.as_str()
                        ),
                    );
                }
                if !typed.is_empty() {
                    cx.note(
                        when_span.clone(),
                        &at,
                        format!(
                            "this {} rule matches a call whose {typed} is not of the type its test needs (fail closed)",
                            action.as_str()
                        ),
                    );
                }
            }
        }
    }
    Some(Rule {
        name,
        line,
        judged: judged.into_iter().map(|(p, _)| p).collect(),
        action,
        message,
        tools,
        agents,
        sessions,
        servers,
        risks,
        when,
        remember,
        quorum,
    })
}

/// A list of name patterns (a single string is a list of one).
fn names(cx: &mut Ctx<'_>, here: &str, value: &Spanned<DeValue<'_>>) -> Vec<NamePattern> {
    let mut out = Vec::new();
    let mut one = |cx: &mut Ctx<'_>, v: &Spanned<DeValue<'_>>| match v.get_ref().as_str() {
        Some(s) => match NamePattern::new(s) {
            Ok(p) => out.push(p),
            Err(why) => cx.error(v.span(), here, why),
        },
        None => cx.error(v.span(), here, expected("a name (a string)", v.get_ref())),
    };
    match value.get_ref() {
        DeValue::Array(items) if items.is_empty() => cx.error(
            value.span(),
            here,
            "an empty list matches nothing; leave the key out to match every name, or list names",
        ),
        DeValue::Array(items) => items.iter().for_each(|v| one(cx, v)),
        DeValue::String(_) => one(cx, value),
        other => cx.error(
            value.span(),
            here,
            expected("a list of names, e.g. [\"write_file\", \"refund_*\"]", other),
        ),
    }
    out
}

fn risk_list(cx: &mut Ctx<'_>, here: &str, value: &Spanned<DeValue<'_>>) -> Vec<Option<Risk>> {
    let keys = || {
        Risk::ALL
            .iter()
            .map(|r| format!("\"{}\"", r.key()))
            .chain(["\"none\"".to_owned()])
            .collect::<Vec<_>>()
            .join(", ")
    };
    let items: Vec<&Spanned<DeValue<'_>>> = match value.get_ref() {
        DeValue::Array(items) if items.is_empty() => {
            cx.error(
                value.span(),
                here,
                "an empty list matches nothing; leave the key out to match every risk, or list risks",
            );
            return Vec::new();
        }
        DeValue::Array(items) => items.iter().collect(),
        DeValue::String(_) => vec![value],
        other => {
            cx.error(value.span(), here, expected("a list of risks", other));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for v in items {
        match v.get_ref().as_str() {
            Some("none") => out.push(None),
            Some(s) => match s.parse::<Risk>() {
                Ok(r) => out.push(Some(r)),
                Err(_) => cx.error(v.span(), here, format!("unknown risk {s:?}; write one of {}", keys())),
            },
            None => cx.error(v.span(), here, expected("a risk name (a string)", v.get_ref())),
        }
    }
    out
}
