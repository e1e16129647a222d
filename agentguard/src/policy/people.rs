//! Who answers, in the policy file: rules' `approvers` (names and `@groups`), the top-level `[groups]` and
//! `[principals]` tables, and the whole numbers of `quorum` and `denials`.

use std::collections::{HashMap, HashSet};

use toml::de::DeValue;
use toml::Spanned;

use super::file::sorted;
use super::words::{describe, expected, Ctx};

/// A whole number from a TOML value.
pub(super) fn toml_int(value: &DeValue<'_>) -> Option<i64> {
    match value {
        DeValue::Integer(i) => i.as_str().parse::<i64>().ok(),
        _ => None,
    }
}

/// `approvers = ["alice", "@finance"]`: names, and groups (`@name`, from `[groups]`) expanded; duplicates dropped.
pub(super) fn approver_list(
    cx: &mut Ctx<'_>,
    here: &str,
    value: &Spanned<DeValue<'_>>,
    groups: &HashMap<String, Vec<String>>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let DeValue::Array(items) = value.get_ref() else {
        cx.error(
            value.span(),
            here,
            expected(
                "a list of names, e.g. approvers = [\"alice\", \"bob\", \"@finance\"]",
                value.get_ref(),
            ),
        );
        return out;
    };
    if items.is_empty() {
        cx.error(
            value.span(),
            here,
            "approvers is empty: name who may approve, or leave the key out",
        );
    }
    for item in items.iter() {
        match item.get_ref().as_str() {
            Some(group) if group.starts_with('@') => match groups.get(&group[1..]) {
                Some(members) => out.extend(members.iter().cloned()),
                None => {
                    let known: Vec<&str> = groups.keys().map(String::as_str).collect();
                    cx.error(
                        item.span(),
                        here,
                        format!(
                            "no group {:?} in [groups]{}",
                            &group[1..],
                            if known.is_empty() {
                                "; define it, e.g. [groups] finance = [\"alice\", \"bob\"]".to_owned()
                            } else {
                                format!(" (groups: {})", known.join(", "))
                            }
                        ),
                    );
                }
            },
            Some(name) if !name.trim().is_empty() => out.push(name.to_owned()),
            _ => cx.error(item.span(), here, expected("a non-empty name", item.get_ref())),
        }
    }
    let mut seen = HashSet::new();
    out.retain(|n| seen.insert(n.clone()));
    out
}

/// `[groups]` and `[principals]`: a table of names, each a list of actor names.
pub(super) fn name_lists(
    cx: &mut Ctx<'_>,
    key: &str,
    value: &Spanned<DeValue<'_>>,
    what: &str,
) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    let DeValue::Table(table) = value.get_ref() else {
        cx.error(
            value.span(),
            key,
            format!(
                "[{key}] is a table naming {what} and its people, e.g. [{key}] name = [\"alice\", \"bob\"]; found {}",
                describe(value.get_ref())
            ),
        );
        return out;
    };
    for (k, v) in sorted(table) {
        let here = format!("{key}.{}", k.get_ref());
        match v.get_ref() {
            DeValue::Array(items) => {
                let mut names = Vec::new();
                for item in items.iter() {
                    match item.get_ref().as_str() {
                        Some(n) if !n.trim().is_empty() => names.push(n.to_owned()),
                        _ => cx.error(item.span(), &here, expected("a non-empty name", item.get_ref())),
                    }
                }
                out.insert(k.get_ref().to_string(), names);
            }
            other => cx.error(v.span(), &here, expected("a list of names", other)),
        }
    }
    out
}
