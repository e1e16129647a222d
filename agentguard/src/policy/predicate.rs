//! Predicates on a call's arguments, and their three-valued evaluation.
//!
//! A predicate is true, false, or *unknown*: the argument is missing, or has a type the test cannot judge (`gt` on a
//! string). Unknown is never resolved here: the rule decides, towards the stricter answer (an `allow` rule does not
//! match, an `ask` or `deny` rule does), so a call can never slip past a rule by leaving an argument out.

use std::cmp::Ordering;

use regex::Regex;
use serde_json::{Number, Value};

use super::path::{ArgPath, FsPath};

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

/// What a test is judged against: the `base_dir` relative argument paths are joined to, and what a `*` step means.
#[derive(Clone, Copy)]
pub(crate) struct Env<'a> {
    pub(crate) base: Option<&'a FsPath>,
    /// `true`: a test on a `*` path holds when it holds for *any* element; `false`: for *every* element. Always the
    /// strict reading for the rule: `any` for ask and deny rules (one element outside the folder is enough to match),
    /// `every` for allow rules; flipped under `not`.
    pub(crate) any: bool,
}

impl Env<'_> {
    fn flipped(&self) -> Self {
        Env {
            any: !self.any,
            ..*self
        }
    }
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
            Pred::Not(p) => p.eval(params, &env.flipped()).not(),
            Pred::Test(path, op) => test(path, op, params, env),
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
            Pred::Not(p) => p.explain(params, &env.flipped(), out).not(),
            Pred::Test(path, op) => {
                let (tri, note) = test_explained(path, op, params, env);
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

    /// The argument paths this condition reads whose absence or wrong type makes it unknown, each with whether an
    /// `exists = true` beside it already decides the absent case.
    pub(crate) fn fallible_paths(&self, out: &mut Vec<(String, bool)>) {
        self.fallible(out, &[]);
    }

    fn fallible(&self, out: &mut Vec<(String, bool)>, guarded: &[&str]) {
        match self {
            Pred::All(ps) => {
                let mut here: Vec<&str> = guarded.to_vec();
                here.extend(ps.iter().filter_map(|p| match p {
                    Pred::Test(path, Op::Exists(true)) => Some(path.as_str()),
                    _ => None,
                }));
                ps.iter().for_each(|p| p.fallible(out, &here));
            }
            Pred::Any(ps) => ps.iter().for_each(|p| p.fallible(out, &[])),
            Pred::Not(p) => p.fallible(out, &[]),
            Pred::Test(_, Op::Exists(_)) => {}
            Pred::Test(path, _) => {
                let is_guarded = guarded.contains(&path.as_str());
                match out.iter_mut().find(|(p, _)| p == path.as_str()) {
                    Some((_, g)) => *g &= is_guarded,
                    None => out.push((path.as_str().to_owned(), is_guarded)),
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

/// Folds the results of one test over the values a path leads to: under `any` the first true decides, under
/// `every` the first false; an unknown element makes the whole unknown unless one decides.
struct Fold {
    any: bool,
    unknown: bool,
    decided: bool,
}

impl Fold {
    fn new(any: bool) -> Self {
        Fold {
            any,
            unknown: false,
            decided: false,
        }
    }

    /// Takes one element's result; `false` when the fold is decided (stop visiting).
    fn take(&mut self, tri: Tri) -> bool {
        match (tri, self.any) {
            (Tri::True, true) | (Tri::False, false) => {
                self.decided = true;
                false
            }
            (Tri::Unknown, _) => {
                self.unknown = true;
                true
            }
            _ => true,
        }
    }

    fn result(&self) -> Tri {
        match (self.decided, self.unknown) {
            (true, _) => Tri::of(self.any),
            (false, true) => Tri::Unknown,
            (false, false) => Tri::of(!self.any),
        }
    }
}

/// One test on the value(s) at `path`, without words (the fast path of every call).
fn test(path: &ArgPath, op: &Op, params: &Value, env: &Env<'_>) -> Tri {
    let mut fold = Fold::new(env.any);
    let mut each = |value: &Value| fold.take(test_one(op, value, env, None));
    let found = path.visit(params, &mut each);
    match (found, op) {
        (false, Op::Exists(want)) => Tri::of(!*want),
        (false, _) => Tri::Unknown,
        (true, Op::Exists(want)) => Tri::of(*want),
        (true, _) => fold.result(),
    }
}

/// [`test`] with what it saw, for an explanation.
fn test_explained(path: &ArgPath, op: &Op, params: &Value, env: &Env<'_>) -> (Tri, String) {
    let mut fold = Fold::new(env.any);
    let mut note = String::new();
    let mut count = 0usize;
    let mut each = |value: &Value| {
        count += 1;
        let mut why = String::new();
        let tri = test_one(op, value, env, Some(&mut why));
        let go_on = fold.take(tri);
        if note.is_empty() || !go_on || tri == Tri::Unknown {
            note = why;
        }
        go_on
    };
    let found = path.visit(params, &mut each);
    match (found, op) {
        (false, Op::Exists(want)) => (Tri::of(!*want), "absent".to_owned()),
        (false, _) => (Tri::Unknown, format!("`{path}` is not in the arguments")),
        (true, Op::Exists(want)) => (Tri::of(*want), "present".to_owned()),
        (true, _) if count == 0 => (fold.result(), "no elements".to_owned()),
        (true, _) => (fold.result(), note),
    }
}

/// One test on one value; writes what it saw into `note` when asked.
fn test_one(op: &Op, value: &Value, env: &Env<'_>, note: Option<&mut String>) -> Tri {
    let say = |text: &dyn Fn() -> String| {
        if let Some(n) = note {
            *n = text();
        }
    };
    let seen = || format!("value {}", short(value));
    let wrong = |want: &'static str| move || format!("expected {want}, found {}", kind(value));
    let tri = match op {
        // A value of another JSON type than every operand (`"0"` against `0`, `[0]` against `0`) cannot be judged:
        // a server that coerces types would run it as the value the rule names.
        Op::Eq(v) | Op::Ne(v) if !same_kind(value, v) => {
            say(&|| format!("expected {}, found {}", kind(v), kind(value)));
            return Tri::Unknown;
        }
        Op::In(vs) | Op::NotIn(vs) if !vs.iter().any(|v| same_kind(value, v)) => {
            say(&|| format!("expected {}, found {}", kind(&vs[0]), kind(value)));
            return Tri::Unknown;
        }
        Op::Eq(v) => Tri::of(json_eq(value, v)),
        Op::Ne(v) => Tri::of(!json_eq(value, v)),
        Op::In(vs) => Tri::of(vs.iter().any(|v| json_eq(value, v))),
        Op::NotIn(vs) => Tri::of(!vs.iter().any(|v| json_eq(value, v))),
        Op::Cmp(c, n) => match value {
            Value::Number(x) => match num_cmp(x, n) {
                Some(ord) => Tri::of(c.holds(ord)),
                None => {
                    say(&|| format!("{} cannot be compared", seen()));
                    return Tri::Unknown;
                }
            },
            _ => {
                say(&wrong("a number"));
                return Tri::Unknown;
            }
        },
        Op::Prefix(_) | Op::Suffix(_) | Op::Glob(..) | Op::Regex(..) => {
            let Some(s) = value.as_str() else {
                say(&wrong("a string"));
                return Tri::Unknown;
            };
            // A glob is a path pattern: a path that climbs with `..` could match it as text and lie outside it.
            if matches!(op, Op::Glob(..)) && s.split(['/', '\\']).any(|step| step == "..") {
                say(&|| format!("`{s}` has a `..` step, which a glob cannot judge (use `under` for folders)"));
                return Tri::Unknown;
            }
            Tri::of(match op {
                Op::Prefix(p) => s.starts_with(p.as_str()),
                Op::Suffix(p) => s.ends_with(p.as_str()),
                Op::Glob(_, re) | Op::Regex(_, re) => re.is_match(s),
                _ => unreachable!(),
            })
        }
        Op::Under(dir) | Op::NotUnder(dir) => {
            let Some(text) = value.as_str() else {
                say(&wrong("a path (a string)"));
                return Tri::Unknown;
            };
            match FsPath::is_text_under(text, env.base, dir) {
                Err(why) => {
                    say(&|| why.clone());
                    return Tri::Unknown;
                }
                Ok(None) => {
                    say(&|| {
                        format!(
                            "`{text}` is {} and `{dir}` is not; set `base_dir` in the policy to compare them",
                            if dir.is_absolute() { "relative" } else { "absolute" }
                        )
                    });
                    return Tri::Unknown;
                }
                Ok(Some(under)) => {
                    say(&|| match FsPath::parse(text, env.base) {
                        Ok(p) => format!("`{text}` is `{p}`"),
                        Err(why) => why,
                    });
                    return Tri::of(under == matches!(op, Op::Under(_)));
                }
            }
        }
        Op::Exists(_) => Tri::True,
        Op::LenGt(n) | Op::LenLt(n) => {
            let len = match value {
                Value::String(s) => s.chars().count() as u64,
                Value::Array(a) => a.len() as u64,
                Value::Object(o) => o.len() as u64,
                _ => {
                    say(&wrong("a string, array or object"));
                    return Tri::Unknown;
                }
            };
            say(&|| format!("length {len}"));
            return Tri::of(match op {
                Op::LenGt(_) => len > *n,
                _ => len < *n,
            });
        }
    };
    say(&seen);
    tri
}

/// Whether two values are of the same JSON kind (numbers of any representation are one kind).
fn same_kind(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
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
        Pred::Test(ArgPath::parse(path).unwrap(), op).eval(&params, &Env { base: None, any: false })
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
        let env = Env { base: None, any: false };
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
