//! The `when` tables of a policy file's rules: argument tests and the combinators `all`, `any`, `not`.

use super::*;

/// A condition table: argument tests (all must hold) and the combinators `all`, `any`, `not`.
pub(super) fn condition(cx: &mut Ctx<'_>, here: &str, table: &DeTable<'_>, base: Option<&FsPath>) -> Vec<Pred> {
    let mut preds = Vec::new();
    for (key, value) in sorted(table) {
        let k = key.get_ref().as_ref();
        match k {
            "all" | "any" => {
                let at = format!("{here}.{k}");
                match value.get_ref() {
                    DeValue::Array(items) if !items.is_empty() => {
                        let mut parts = Vec::new();
                        for item in items {
                            match item.get_ref() {
                                DeValue::Table(t) => parts.push(Pred::All(condition(cx, &at, t, base))),
                                other => cx.error(item.span(), &at, expected("a table of tests", other)),
                            }
                        }
                        preds.push(if k == "all" { Pred::All(parts) } else { Pred::Any(parts) });
                    }
                    other => cx.error(
                        value.span(),
                        &at,
                        format!(
                            "{k} takes a non-empty list of test tables, e.g. {k} = [{{ a = {{ eq = 1 }} }}, {{ b = {{ \
                             exists = true }} }}]; found {}",
                            describe(other)
                        ),
                    ),
                }
            }
            "not" => match value.get_ref() {
                DeValue::Table(t) => preds.push(Pred::Not(Box::new(Pred::All(condition(
                    cx,
                    &format!("{here}.not"),
                    t,
                    base,
                ))))),
                other => cx.error(
                    value.span(),
                    &format!("{here}.not"),
                    expected("a table of tests, e.g. not = { path = { under = \"/tmp\" } }", other),
                ),
            },
            _ => argument(cx, here, k.to_owned(), value, base, &mut preds),
        }
    }
    preds
}

/// The tests on one argument `path`: a table of operators, a nested table of further steps, or a bare value (`eq`).
fn argument(
    cx: &mut Ctx<'_>,
    here: &str,
    path: String,
    value: &Spanned<DeValue<'_>>,
    base: Option<&FsPath>,
    preds: &mut Vec<Pred>,
) {
    let at = format!("{here}.{path}");
    let arg = match ArgPath::parse(&path) {
        Ok(a) => a,
        Err(why) => return cx.error(value.span(), &at, why),
    };
    let DeValue::Table(table) = value.get_ref() else {
        // `currency = "EUR"` is `currency = { eq = "EUR" }`.
        if let Some(v) = json(cx, &at, value) {
            preds.push(Pred::Test(arg, Op::Eq(v)));
        }
        return;
    };
    let ops = table.keys().filter(|k| OPS.contains(&k.get_ref().as_ref())).count();
    if ops == 0 {
        // A nested table is a further step of the path: `customer = { email = { suffix = "…" } }`.
        if path.starts_with('/') {
            return cx.error(
                value.span(),
                &at,
                "a JSON Pointer path takes a table of tests (eq, gt, under, …), not further steps: write the whole \
                 pointer",
            );
        }
        for (k, v) in sorted(table) {
            let step = k.get_ref().as_ref();
            if COMBINATORS.contains(&step) {
                cx.error(
                    k.span(),
                    &at,
                    format!(
                        "`{step}` combines tests and belongs at the top of `when` (or inside all/any/not), not under \
                         an argument; for an argument named `{step}` use a JSON Pointer: \"/{path}/{step}\""
                    ),
                );
                continue;
            }
            argument(cx, here, format!("{path}.{step}"), v, base, preds);
        }
        return;
    }
    if ops != table.len() {
        let others: Vec<String> = table
            .keys()
            .filter(|k| !OPS.contains(&k.get_ref().as_ref()))
            .map(|k| format!("`{}`", k.get_ref()))
            .collect();
        for k in table.keys().filter(|k| !OPS.contains(&k.get_ref().as_ref())) {
            let name = k.get_ref().as_ref();
            cx.error(
                k.span(),
                &at,
                match suggest(name, OPS) {
                    Some(s) => format!(
                        "unknown test `{name}`; did you mean `{s}`? Tests are: {}",
                        OPS.join(", ")
                    ),
                    None => format!(
                        "`{name}` is not a test, and a table of tests cannot also hold argument names (found {}); \
                         tests are: {}",
                        others.join(", "),
                        OPS.join(", ")
                    ),
                },
            );
        }
        return;
    }
    for (k, v) in sorted(table) {
        let op = k.get_ref().as_ref();
        let at = format!("{at}.{op}");
        if let Some(op) = operator(cx, &at, op, v, base) {
            preds.push(Pred::Test(arg.clone(), op));
        }
    }
}
