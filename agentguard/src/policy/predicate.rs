//! Predicates on a call's arguments, and their three-valued evaluation.
//!
//! A predicate is true, false, or *unknown*: the argument is missing, or has a type the test cannot judge (`gt` on a
//! string). Unknown is never resolved here: the rule decides, towards the stricter answer (an `allow` rule does not
//! match, an `ask` or `deny` rule does), so a call can never slip past a rule by leaving an argument out.

use std::cmp::Ordering;

use regex::Regex;
use serde_json::{Number, Value};

use super::path::{ArgPath, Found, FsPath};

/// A compiled condition.
#[derive(Debug, Clone)]
pub(crate) enum Pred {
    /// Every one holds.
    All(Vec<Pred>),
    /// At least one holds.
    Any(Vec<Pred>),
    /// It does not hold.
    Not(Box<Pred>),
    /// One test on one argument.
    Test(ArgPath, Op),
}

/// One test.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    Cmp(Cmp, Number),
    Prefix(String),
    Suffix(String),
    Glob(String, Regex),
    Regex(String, Regex),
    Under(FsPath),
    NotUnder(FsPath),
    Exists(bool),
    LenGt(u64),
    LenLt(u64),
}

/// A numeric comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Cmp {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            Cmp::Gt => ord == Ordering::Greater,
            Cmp::Ge => ord != Ordering::Less,
            Cmp::Lt => ord == Ordering::Less,
            Cmp::Le => ord != Ordering::Greater,
        }
    }

    pub(crate) fn key(self) -> &'static str {
        match self {
            Cmp::Gt => "gt",
            Cmp::Ge => "ge",
            Cmp::Lt => "lt",
            Cmp::Le => "le",
        }
    }
}

/// A three-valued result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tri {
    True,
    False,
    /// Cannot be judged (missing argument, wrong type).
    Unknown,
}

impl Tri {
    fn of(b: bool) -> Tri {
        if b {
            Tri::True
        } else {
            Tri::False
        }
    }

    fn not(self) -> Tri {
        match self {
            Tri::True => Tri::False,
            Tri::False => Tri::True,
            Tri::Unknown => Tri::Unknown,
        }
    }
}

/// What one test found, for an explanation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TestResult {
    /// The argument path as written.
    pub path: String,
    /// The test, as `op = operand` (e.g. `gt = 100`).
    pub test: String,
    /// `Some(true|false)`, or `None` when it could not be judged.
    pub holds: Option<bool>,
    /// Why it could not be judged, or the value it saw.
    pub note: String,
}

/// The `base_dir` relative argument paths are joined to.
pub(crate) struct Env<'a> {
    pub(crate) base: Option<&'a FsPath>,
}

impl Pred {
    /// Evaluates `self` on `params`.
    pub(crate) fn eval(&self, params: &Value, env: &Env<'_>) -> Tri {
        match self {
            Pred::All(preds) => {
                let mut unknown = false;
                for p in preds {
                    match p.eval(params, env) {
                        Tri::False => return Tri::False,
                        Tri::Unknown => unknown = true,
                        Tri::True => {}
                    }
                }
                if unknown {
                    Tri::Unknown
                } else {
                    Tri::True
                }
            }
            Pred::Any(preds) => {
                let mut unknown = false;
                for p in preds {
                    match p.eval(params, env) {
                        Tri::True => return Tri::True,
                        Tri::Unknown => unknown = true,
                        Tri::False => {}
                    }
                }
                if unknown {
                    Tri::Unknown
                } else {
                    Tri::False
                }
            }
            Pred::Not(p) => p.eval(params, env).not(),
            Pred::Test(path, op) => test(path, op, params, env).0,
        }
    }

    /// Evaluates every test (no short cut) and lists each one's result.
    pub(crate) fn explain(&self, params: &Value, env: &Env<'_>, out: &mut Vec<TestResult>) -> Tri {
        match self {
            Pred::All(preds) | Pred::Any(preds) => {
                let results: Vec<Tri> = preds.iter().map(|p| p.explain(params, env, out)).collect();
                let all = matches!(self, Pred::All(_));
                let (win, lose) = if all {
                    (Tri::False, Tri::True)
                } else {
                    (Tri::True, Tri::False)
                };
                if results.contains(&win) {
                    win
                } else if results.contains(&Tri::Unknown) {
                    Tri::Unknown
                } else {
                    lose
                }
            }
            Pred::Not(p) => p.explain(params, env, out).not(),
            Pred::Test(path, op) => {
                let (tri, note) = test(path, op, params, env);
                out.push(TestResult {
                    path: path.as_str().to_owned(),
                    test: op.describe(),
                    holds: match tri {
                        Tri::True => Some(true),
                        Tri::False => Some(false),
                        Tri::Unknown => None,
                    },
                    note,
                });
                tri
            }
        }
    }

    /// The argument paths this condition reads whose absence (or wrong type) makes it unknown.
    pub(crate) fn fallible_paths(&self, out: &mut Vec<String>) {
        match self {
            Pred::All(ps) | Pred::Any(ps) => ps.iter().for_each(|p| p.fallible_paths(out)),
            Pred::Not(p) => p.fallible_paths(out),
            Pred::Test(_, Op::Exists(_)) => {}
            Pred::Test(path, _) => {
                if !out.iter().any(|p| p == path.as_str()) {
                    out.push(path.as_str().to_owned());
                }
            }
        }
    }
}

impl Op {
    /// `op = operand`, as a policy would write it.
    pub(crate) fn describe(&self) -> String {
        let list = |vs: &[Value]| Value::Array(vs.to_vec()).to_string();
        match self {
            Op::Eq(v) => format!("eq = {v}"),
            Op::Ne(v) => format!("ne = {v}"),
            Op::In(vs) => format!("in = {}", list(vs)),
            Op::NotIn(vs) => format!("not_in = {}", list(vs)),
            Op::Cmp(c, n) => format!("{} = {n}", c.key()),
            Op::Prefix(s) => format!("prefix = {s:?}"),
            Op::Suffix(s) => format!("suffix = {s:?}"),
            Op::Glob(s, _) => format!("glob = {s:?}"),
            Op::Regex(s, _) => format!("regex = {s:?}"),
            Op::Under(p) => format!("under = \"{p}\""),
            Op::NotUnder(p) => format!("not_under = \"{p}\""),
            Op::Exists(b) => format!("exists = {b}"),
            Op::LenGt(n) => format!("len_gt = {n}"),
            Op::LenLt(n) => format!("len_lt = {n}"),
        }
    }
}

/// One test on the value(s) at `path`. Under a `*` path every element must pass (and one unknown element makes the
/// whole unknown unless another fails).
fn test(path: &ArgPath, op: &Op, params: &Value, env: &Env<'_>) -> (Tri, String) {
    let values = match path.find(params) {
        Found::Missing => {
            return match op {
                Op::Exists(want) => (Tri::of(!*want), "absent".to_owned()),
                _ => (Tri::Unknown, format!("`{path}` is not in the arguments")),
            }
        }
        Found::Values(values) => values,
    };
    if let Op::Exists(want) = op {
        return (Tri::of(*want), "present".to_owned());
    }
    let mut result = Tri::True;
    let mut note = String::new();
    for value in &values {
        let (tri, why) = test_one(op, value, env);
        if note.is_empty() || tri != Tri::True {
            note = why;
        }
        match tri {
            Tri::False => return (Tri::False, note),
            Tri::Unknown => result = Tri::Unknown,
            Tri::True => {}
        }
    }
    if values.is_empty() {
        note = "no elements".to_owned();
    }
    (result, note)
}

fn test_one(op: &Op, value: &Value, env: &Env<'_>) -> (Tri, String) {
    let seen = || format!("value {}", short(value));
    let wrong = |want: &str| (Tri::Unknown, format!("expected {want}, found {}", kind(value)));
    match op {
        Op::Eq(v) => (Tri::of(json_eq(value, v)), seen()),
        Op::Ne(v) => (Tri::of(!json_eq(value, v)), seen()),
        Op::In(vs) => (Tri::of(vs.iter().any(|v| json_eq(value, v))), seen()),
        Op::NotIn(vs) => (Tri::of(!vs.iter().any(|v| json_eq(value, v))), seen()),
        Op::Cmp(c, n) => match value {
            Value::Number(x) => match num_cmp(x, n) {
                Some(ord) => (Tri::of(c.holds(ord)), seen()),
                None => (Tri::Unknown, format!("{} cannot be compared", seen())),
            },
            _ => wrong("a number"),
        },
        Op::Prefix(p) => match value.as_str() {
            Some(s) => (Tri::of(s.starts_with(p.as_str())), seen()),
            None => wrong("a string"),
        },
        Op::Suffix(p) => match value.as_str() {
            Some(s) => (Tri::of(s.ends_with(p.as_str())), seen()),
            None => wrong("a string"),
        },
        Op::Glob(_, re) | Op::Regex(_, re) => match value.as_str() {
            Some(s) => (Tri::of(re.is_match(s)), seen()),
            None => wrong("a string"),
        },
        Op::Under(dir) | Op::NotUnder(dir) => {
            let Some(text) = value.as_str() else {
                return wrong("a path (a string)");
            };
            match FsPath::parse(text, env.base) {
                Err(why) => (Tri::Unknown, why),
                Ok(path) => match path.is_under(dir) {
                    None => (
                        Tri::Unknown,
                        format!(
                            "`{text}` is {} and `{dir}` is not; set `base_dir` in the policy to compare them",
                            if path.is_absolute() { "absolute" } else { "relative" }
                        ),
                    ),
                    Some(under) => {
                        let holds = under == matches!(op, Op::Under(_));
                        (Tri::of(holds), format!("`{text}` is `{path}`"))
                    }
                },
            }
        }
        Op::Exists(_) => unreachable!("handled by the caller"),
        Op::LenGt(n) | Op::LenLt(n) => {
            let len = match value {
                Value::String(s) => s.chars().count() as u64,
                Value::Array(a) => a.len() as u64,
                Value::Object(o) => o.len() as u64,
                _ => return wrong("a string, array or object"),
            };
            let holds = match op {
                Op::LenGt(_) => len > *n,
                _ => len < *n,
            };
            (Tri::of(holds), format!("length {len}"))
        }
    }
}

/// JSON equality, with numbers compared by value (`1 == 1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_cmp(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Compares two JSON numbers exactly when both are integers (no rounding of large amounts), else as floats.
pub(crate) fn num_cmp(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    match (a.as_i64(), b.as_u64()) {
        // A negative i64 against a u64 beyond i64.
        (Some(x), Some(_)) if x < 0 => return Some(Ordering::Less),
        _ => {}
    }
    if let (Some(_), Some(y)) = (a.as_u64(), b.as_i64()) {
        if y < 0 {
            return Some(Ordering::Greater);
        }
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(path: &str, op: Op, params: Value) -> Tri {
        Pred::Test(ArgPath::parse(path).unwrap(), op).eval(&params, &Env { base: None })
    }

    fn n(v: Value) -> Number {
        match v {
            Value::Number(n) => n,
            _ => panic!(),
        }
    }

    #[test]
    fn comparisons_are_exact_for_integers_and_numeric_across_kinds() {
        let big = json!({"a": 9_007_199_254_740_993u64});
        assert_eq!(
            t("a", Op::Cmp(Cmp::Gt, n(json!(9_007_199_254_740_992u64))), big.clone()),
            Tri::True
        );
        assert_eq!(t("a", Op::Eq(json!(9_007_199_254_740_992u64)), big), Tri::False);
        assert_eq!(t("a", Op::Eq(json!(100)), json!({"a": 100.0})), Tri::True);
        assert_eq!(t("a", Op::Cmp(Cmp::Le, n(json!(100))), json!({"a": 100.0})), Tri::True);
        assert_eq!(
            t("a", Op::Cmp(Cmp::Lt, n(json!(-1))), json!({"a": u64::MAX})),
            Tri::False
        );
        assert_eq!(
            t("a", Op::Cmp(Cmp::Gt, n(json!(100))), json!({"a": "150"})),
            Tri::Unknown
        );
        assert_eq!(t("a", Op::Cmp(Cmp::Gt, n(json!(100))), json!({})), Tri::Unknown);
    }

    #[test]
    fn each_element_must_pass_under_a_star() {
        let dir = FsPath::parse("/srv/app", None).unwrap();
        let under = || Op::Under(dir.clone());
        assert_eq!(
            t("paths.*", under(), json!({"paths": ["/srv/app/a", "/srv/app/b"]})),
            Tri::True
        );
        assert_eq!(
            t("paths.*", under(), json!({"paths": ["/srv/app/a", "/etc/x"]})),
            Tri::False
        );
        assert_eq!(t("paths.*", under(), json!({"paths": ["/srv/app/a", 3]})), Tri::Unknown);
        assert_eq!(t("paths.*", under(), json!({"paths": [3, "/etc"]})), Tri::False);
    }

    #[test]
    fn unknown_propagates_through_all_any_and_not() {
        let gt = || Pred::Test(ArgPath::parse("x").unwrap(), Op::Cmp(Cmp::Gt, n(json!(1))));
        let yes = || Pred::Test(ArgPath::parse("y").unwrap(), Op::Exists(true));
        let env = Env { base: None };
        let p = json!({"y": 1});
        assert_eq!(Pred::All(vec![gt(), yes()]).eval(&p, &env), Tri::Unknown);
        assert_eq!(Pred::Any(vec![gt(), yes()]).eval(&p, &env), Tri::True);
        assert_eq!(Pred::Not(Box::new(gt())).eval(&p, &env), Tri::Unknown);
        assert_eq!(
            Pred::All(vec![gt(), Pred::Not(Box::new(yes()))]).eval(&p, &env),
            Tri::False
        );
    }
}
