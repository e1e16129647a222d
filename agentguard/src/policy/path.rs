//! Addressing arguments ([`ArgPath`]: a dotted path or a JSON Pointer) and comparing filesystem paths lexically
//! ([`FsPath`]).

use std::fmt;

use serde_json::Value;

/// Where in a call's params a predicate looks: `amount`, `customer.email`, `items.0.sku`, `items.*.sku` (every
/// element), or a JSON Pointer (`/customer/email`, RFC 6901) for keys that hold dots or are named like operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArgPath {
    /// As written in the policy (shown in explanations).
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// An object key, or an array index when the value there is an array and the key is a number.
    Key(String),
    /// `*` in a dotted path: every element of an array (or every value of an object).
    Each,
}

/// What a path found in the params.
#[cfg(test)]
pub(crate) enum Found<'v> {
    /// The path leads to these values (one, or one per element under a `*`; empty for `*` over an empty array).
    Values(Vec<&'v Value>),
    /// A step of the path is not there (or goes through something that is not an object or array).
    Missing,
}

impl ArgPath {
    /// Parses `text`; `Err` says what is wrong.
    pub(crate) fn parse(text: &str) -> Result<ArgPath, String> {
        if text.is_empty() {
            return Err("an argument path is empty; write the argument's name, e.g. `path`".to_owned());
        }
        let segments = if let Some(pointer) = text.strip_prefix('/') {
            pointer
                .split('/')
                .map(|s| {
                    if s.contains('~') && !valid_pointer_escapes(s) {
                        return Err(format!(
                            "JSON Pointer `{text}` has a `~` that is not `~0` or `~1` (RFC 6901: write `~0` for `~` \
                             and `~1` for `/`)"
                        ));
                    }
                    Ok(Segment::Key(s.replace("~1", "/").replace("~0", "~")))
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            text.split('.')
                .map(|s| match s {
                    "" => Err(format!(
                        "argument path `{text}` has an empty step (two dots, or a dot at an end); for a key that \
                         holds a dot, use a JSON Pointer such as `/a.b`"
                    )),
                    "*" => Ok(Segment::Each),
                    s => Ok(Segment::Key(s.to_owned())),
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(ArgPath {
            text: text.to_owned(),
            segments,
        })
    }

    /// The path as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// Calls `each` with every value the path leads to (one, or one per element under a `*`), until it returns
    /// `false`. Returns `false` when a step of the path is not there. Allocates nothing for a path without `*`.
    pub(crate) fn visit(&self, params: &Value, each: &mut dyn FnMut(&Value) -> bool) -> bool {
        fn walk(segments: &[Segment], value: &Value, each: &mut dyn FnMut(&Value) -> bool) -> Option<bool> {
            let mut here = value;
            for (i, segment) in segments.iter().enumerate() {
                match segment {
                    Segment::Key(key) => here = step(here, key)?,
                    Segment::Each => {
                        let rest = &segments[i + 1..];
                        let mut go = |v: &Value| walk(rest, v, each);
                        match here {
                            Value::Array(items) => {
                                for v in items {
                                    if !go(v)? {
                                        return Some(false);
                                    }
                                }
                            }
                            Value::Object(map) => {
                                for v in map.values() {
                                    if !go(v)? {
                                        return Some(false);
                                    }
                                }
                            }
                            _ => return None,
                        }
                        return Some(true);
                    }
                }
            }
            Some(each(here))
        }
        walk(&self.segments, params, each).is_some()
    }

    /// Follows the path in `params`.
    #[cfg(test)]
    pub(crate) fn find<'v>(&self, params: &'v Value) -> Found<'v> {
        let mut here = vec![params];
        for segment in &self.segments {
            let mut next = Vec::with_capacity(here.len());
            for value in here {
                match segment {
                    Segment::Key(key) => match step(value, key) {
                        Some(v) => next.push(v),
                        None => return Found::Missing,
                    },
                    Segment::Each => match value {
                        Value::Array(items) => next.extend(items.iter()),
                        Value::Object(map) => next.extend(map.values()),
                        _ => return Found::Missing,
                    },
                }
            }
            here = next;
        }
        Found::Values(here)
    }
}

fn valid_pointer_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter()
        .enumerate()
        .all(|(i, &c)| c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
}

fn step<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    match value {
        Value::Object(map) => map.get(key),
        Value::Array(items) => {
            // RFC 6901 array indexes: decimal, no leading zeros, no sign.
            if key.is_empty() || (key.len() > 1 && key.starts_with('0')) || !key.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            key.parse::<usize>().ok().and_then(|i| items.get(i))
        }
        _ => None,
    }
}

impl fmt::Display for ArgPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A filesystem path after lexical normalization: `.` steps dropped, `..` applied, `/` and `\` both separators.
/// No filesystem access: symbolic links are not followed (documented).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FsPath {
    absolute: bool,
    /// For a relative path, leading `..` steps that climbed above its start are kept.
    parts: Vec<String>,
}

impl FsPath {
    /// Normalizes `text`, joined to `base` when it is relative and a base is given. `Err` when the text cannot be a
    /// path a predicate can judge: empty, a NUL byte, or `~` (a home directory only the tool would expand).
    pub(crate) fn parse(text: &str, base: Option<&FsPath>) -> Result<FsPath, String> {
        if text.is_empty() {
            return Err("the path is empty".to_owned());
        }
        if text.contains('\0') {
            return Err("the path holds a NUL byte".to_owned());
        }
        if text.starts_with('~') {
            return Err(format!(
                "the path `{text}` starts with `~`, which only the tool would expand; it cannot be judged"
            ));
        }
        let absolute = text.starts_with('/') || text.starts_with('\\');
        let mut path = match (absolute, base) {
            (false, Some(base)) => base.clone(),
            _ => FsPath {
                absolute,
                parts: Vec::new(),
            },
        };
        for part in text.split(['/', '\\']) {
            match part {
                "" | "." => {}
                ".." => {
                    let climbs = path.parts.last().is_none_or(|p| p == "..");
                    if !climbs {
                        path.parts.pop();
                    } else if !path.absolute {
                        path.parts.push("..".to_owned());
                    } // `/..` is `/`
                }
                part => path.parts.push(part.to_owned()),
            }
        }
        Ok(path)
    }

    /// Whether `self` is `dir` or inside it (the evaluator uses the borrowed [`is_text_under`](Self::is_text_under);
    /// this one states the rule the tests check it against). `None` when one is absolute and the other relative (no
    /// base to join): the question has no answer.
    #[cfg(test)]
    pub(crate) fn is_under(&self, dir: &FsPath) -> Option<bool> {
        if self.absolute != dir.absolute {
            return None;
        }
        // A relative path's leading `..` steps are kept, so `../x` is never under `sandbox`; only a path that climbs
        // exactly as far is under `../shared` (or `.`: `../x` is not under `.`).
        let climbs = |parts: &[String]| parts.iter().take_while(|p| *p == "..").count();
        Some(
            climbs(&self.parts) == climbs(&dir.parts)
                && self.parts.len() >= dir.parts.len()
                && self.parts[..dir.parts.len()] == dir.parts[..],
        )
    }

    /// Whether `text` (joined to `base` when relative) is `dir` or inside it, normalizing into borrowed steps (no
    /// copy of the text). `Ok(None)` when one is absolute and the other relative.
    pub(crate) fn is_text_under(text: &str, base: Option<&FsPath>, dir: &FsPath) -> Result<Option<bool>, String> {
        if text.is_empty() || text.contains('\0') || text.starts_with('~') {
            return FsPath::parse(text, base).map(|_| None); // the same error words
        }
        let absolute = text.starts_with('/') || text.starts_with('\\');
        let mut parts: Vec<&str> = Vec::with_capacity(16);
        let joined = match (absolute, base) {
            (false, Some(base)) => {
                parts.extend(base.parts.iter().map(String::as_str));
                base.absolute
            }
            _ => absolute,
        };
        for part in text.split(['/', '\\']) {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.last().is_none_or(|p| *p == "..") {
                        if !joined {
                            parts.push("..");
                        }
                    } else {
                        parts.pop();
                    }
                }
                part => parts.push(part),
            }
        }
        if joined != dir.absolute {
            return Ok(None);
        }
        let climbs = parts.iter().take_while(|p| **p == "..").count();
        let dir_climbs = dir.parts.iter().take_while(|p| *p == "..").count();
        Ok(Some(
            climbs == dir_climbs
                && parts.len() >= dir.parts.len()
                && parts.iter().zip(&dir.parts).all(|(a, b)| *a == b.as_str()),
        ))
    }

    /// Whether the path is absolute.
    pub(crate) fn is_absolute(&self) -> bool {
        self.absolute
    }
}

impl fmt::Display for FsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.absolute {
            f.write_str("/")?;
        } else if self.parts.is_empty() {
            return f.write_str(".");
        }
        f.write_str(&self.parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> FsPath {
        FsPath::parse(s, None).unwrap()
    }

    #[test]
    fn dot_dot_cannot_climb_out_of_the_sandbox() {
        let sandbox = p("./sandbox");
        assert_eq!(p("sandbox/a.txt").is_under(&sandbox), Some(true));
        assert_eq!(p("./sandbox/./x/../y").is_under(&sandbox), Some(true));
        assert_eq!(p("sandbox").is_under(&sandbox), Some(true));
        assert_eq!(p("sandbox/../etc/passwd").is_under(&sandbox), Some(false));
        assert_eq!(p("sandbox/x/../../etc").is_under(&sandbox), Some(false));
        assert_eq!(p("sandbox\\..\\etc").is_under(&sandbox), Some(false));
        assert_eq!(p("../sandbox/x").is_under(&sandbox), Some(false));
        assert_eq!(p("sandboxes/x").is_under(&sandbox), Some(false));
        assert_eq!(p("/sandbox/x").is_under(&sandbox), None);
        // A folder of only `..` steps (or `.`) is not a prefix of a path that climbs further.
        assert_eq!(p("../../etc/passwd").is_under(&p(".")), Some(false));
        assert_eq!(p("../../../etc").is_under(&p("..")), Some(false));
        assert_eq!(p("../x").is_under(&p("..")), Some(true));
        for (text, dir) in [("../../etc/passwd", "."), ("../../../etc", ".."), ("../x", "..")] {
            assert_eq!(
                FsPath::is_text_under(text, None, &p(dir)).unwrap(),
                p(text).is_under(&p(dir)),
                "{text}"
            );
        }
    }

    #[test]
    fn absolute_paths_normalize_at_the_root() {
        let app = p("/srv/app");
        assert_eq!(p("/srv/app/data/x").is_under(&app), Some(true));
        assert_eq!(p("/srv/app/../app2/x").is_under(&app), Some(false));
        assert_eq!(p("/../../srv/app/x").is_under(&app), Some(true));
        assert_eq!(p("//srv//app//x").is_under(&app), Some(true));
        assert_eq!(p("/srv/application").is_under(&app), Some(false));
        assert_eq!(p("/etc").to_string(), "/etc");
    }

    #[test]
    fn a_base_dir_joins_relative_paths() {
        let base = p("/srv/app");
        let rel = FsPath::parse("./sandbox/a", Some(&base)).unwrap();
        assert_eq!(rel.to_string(), "/srv/app/sandbox/a");
        let escape = FsPath::parse("../../etc", Some(&base)).unwrap();
        assert_eq!(escape.to_string(), "/etc");
        assert_eq!(escape.is_under(&base), Some(false));
    }

    proptest::proptest! {
        /// The borrowed fast path agrees with normalizing into a path and comparing.
        #[test]
        fn the_fast_containment_check_agrees_with_the_normalized_paths(
            steps in proptest::collection::vec(
                proptest::sample::select(vec!["a", "b", ".", "..", "", "sandbox"]), 0..8),
            seps in proptest::collection::vec(proptest::sample::select(vec!["/", "\\"]), 8),
            lead in proptest::sample::select(vec!["", "/", "./"]),
            dir in proptest::sample::select(vec!["sandbox", "./sandbox/a", "/", "/a", "..", "../b", "."]),
            base in proptest::option::of(proptest::sample::select(vec!["/srv/app", "/"])),
        ) {
            let mut text = lead.to_owned();
            for (i, s) in steps.iter().enumerate() {
                text.push_str(s);
                text.push_str(seps[i]);
            }
            proptest::prop_assume!(!text.is_empty());
            let base = base.map(|b| FsPath::parse(b, None).unwrap());
            let dir = FsPath::parse(dir, base.as_ref()).unwrap();
            let slow = FsPath::parse(&text, base.as_ref()).unwrap().is_under(&dir);
            let fast = FsPath::is_text_under(&text, base.as_ref(), &dir).unwrap();
            proptest::prop_assert_eq!(slow, fast, "{} under {}", text, dir);
        }
    }

    #[test]
    fn paths_that_cannot_be_judged_are_errors() {
        assert!(FsPath::parse("", None).is_err());
        assert!(FsPath::parse("~/x", None).is_err());
        assert!(FsPath::parse("a\0b", None).is_err());
    }

    #[test]
    fn arg_paths_follow_keys_indexes_and_pointers() {
        let v = json!({"a": {"b.c": 1, "d": [10, {"e": "x"}]}, "in": true});
        let get = |path: &str| match ArgPath::parse(path).unwrap().find(&v) {
            Found::Values(vs) => Some(vs.into_iter().cloned().collect::<Vec<_>>()),
            Found::Missing => None,
        };
        assert_eq!(get("a.d.0"), Some(vec![json!(10)]));
        assert_eq!(get("a.d.1.e"), Some(vec![json!("x")]));
        assert_eq!(get("/a/b.c"), Some(vec![json!(1)]));
        assert_eq!(get("/in"), Some(vec![json!(true)]));
        assert_eq!(get("a.d.*"), Some(vec![json!(10), json!({"e": "x"})]));
        assert_eq!(get("a.d.01"), None);
        assert_eq!(get("a.x"), None);
        assert_eq!(get("a.d.0.z"), None);
        assert!(ArgPath::parse("a..b").is_err());
        assert!(ArgPath::parse("/a~2").is_err());
        assert!(!ArgPath::parse("/x~1y~0")
            .unwrap()
            .find(&json!({"x/y~": 3}))
            .is_missing());
    }

    impl Found<'_> {
        fn is_missing(&self) -> bool {
            matches!(self, Found::Missing)
        }
    }
}
