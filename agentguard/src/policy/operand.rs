//! The operands of the policy file's tests: each test's value checked and compiled (`gt` takes a number, `glob` a
//! valid glob, `under` a path …), and TOML values turned into the JSON the arguments are.

use serde_json::{Number, Value};
use toml::de::DeValue;
use toml::Spanned;

use super::file::sorted;
use super::path::FsPath;
use super::pattern::{glob, user_regex};
use super::predicate::{Cmp, Op};
use super::words::{show, Ctx};

pub(super) fn operator(
    cx: &mut Ctx<'_>,
    at: &str,
    op: &str,
    v: &Spanned<DeValue<'_>>,
    base: Option<&FsPath>,
) -> Option<Op> {
    let string = |cx: &mut Ctx<'_>, hint: &str| match v.get_ref().as_str() {
        Some(s) => Some(s.to_owned()),
        None => {
            cx.error(
                v.span(),
                at,
                format!("{op} takes a string, e.g. {op} = {hint}; found {}", show(v.get_ref())),
            );
            None
        }
    };
    Some(match op {
        "eq" => Op::Eq(json(cx, at, v)?),
        "ne" => Op::Ne(json(cx, at, v)?),
        "in" | "not_in" => {
            let DeValue::Array(items) = v.get_ref() else {
                cx.error(
                    v.span(),
                    at,
                    format!(
                        "{op} takes a list, e.g. {op} = [\"EUR\", \"USD\"]; found {}",
                        show(v.get_ref())
                    ),
                );
                return None;
            };
            if items.is_empty() {
                cx.error(
                    v.span(),
                    at,
                    format!("{op} = [] is an empty list; list the values to compare with"),
                );
                return None;
            }
            let values: Vec<Value> = items.iter().filter_map(|i| json(cx, at, i)).collect();
            if values.len() != items.len() {
                return None;
            }
            if op == "in" {
                Op::In(values)
            } else {
                Op::NotIn(values)
            }
        }
        "gt" | "ge" | "lt" | "le" => {
            let cmp = match op {
                "gt" => Cmp::Gt,
                "ge" => Cmp::Ge,
                "lt" => Cmp::Lt,
                _ => Cmp::Le,
            };
            match number(v.get_ref()) {
                Some(n) => Op::Cmp(cmp, n),
                None => {
                    let hint = match v.get_ref().as_str().map(str::trim).map(str::parse::<f64>) {
                        Some(Ok(_)) => format!(
                            "; write {op} = {} (a number, without quotes)",
                            v.get_ref().as_str().unwrap_or_default().trim()
                        ),
                        _ => String::new(),
                    };
                    cx.error(
                        v.span(),
                        at,
                        format!("{op} compares numbers, but {} is not a number{hint}", show(v.get_ref())),
                    );
                    return None;
                }
            }
        }
        "prefix" => Op::Prefix(string(cx, "\"INV-\" (for folders, use under)")?),
        "suffix" => Op::Suffix(string(cx, "\"@example.com\"")?),
        "glob" => {
            let s = string(cx, "\"reports/**/*.csv\"")?;
            match glob(&s) {
                Ok(re) => Op::Glob(s, re),
                Err(why) => {
                    cx.error(v.span(), at, why);
                    return None;
                }
            }
        }
        "regex" => {
            let s = string(cx, "\"^[A-Z]{3}$\"")?;
            match user_regex(&s) {
                Ok(re) => Op::Regex(s, re),
                Err(why) => {
                    cx.error(v.span(), at, why);
                    return None;
                }
            }
        }
        "under" | "not_under" => {
            let s = string(cx, "\"./sandbox\"")?;
            match FsPath::parse(&s, base) {
                Ok(p) => {
                    if op == "under" {
                        Op::Under(p)
                    } else {
                        Op::NotUnder(p)
                    }
                }
                Err(why) => {
                    cx.error(v.span(), at, why);
                    return None;
                }
            }
        }
        "exists" => match v.get_ref().as_bool() {
            Some(b) => Op::Exists(b),
            None => {
                cx.error(
                    v.span(),
                    at,
                    format!("exists takes true or false; found {}", show(v.get_ref())),
                );
                return None;
            }
        },
        "len_gt" | "len_lt" => match v.get_ref().as_integer().and_then(|i| i.as_str().parse::<i128>().ok()) {
            Some(n) if (0..=i128::from(u64::MAX)).contains(&n) => {
                let n = n as u64;
                if op == "len_gt" {
                    Op::LenGt(n)
                } else {
                    Op::LenLt(n)
                }
            }
            _ => {
                cx.error(
                    v.span(),
                    at,
                    format!("{op} takes a whole number ≥ 0 (a length); found {}", show(v.get_ref())),
                );
                return None;
            }
        },
        _ => unreachable!("only known operators reach here"),
    })
}

/// A TOML value as JSON (datetimes are refused: arguments are JSON, where a date is a string).
pub(super) fn json(cx: &mut Ctx<'_>, at: &str, v: &Spanned<DeValue<'_>>) -> Option<Value> {
    Some(match v.get_ref() {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Integer(_) | DeValue::Float(_) => match number(v.get_ref()) {
            Some(n) => Value::Number(n),
            None => {
                cx.error(v.span(), at, "this number cannot be compared (NaN or infinite)");
                return None;
            }
        },
        DeValue::Datetime(d) => {
            cx.error(
                v.span(),
                at,
                format!("arguments are JSON, where a date is a string: write \"{d}\" in quotes"),
            );
            return None;
        }
        DeValue::Array(items) => {
            let values: Vec<Value> = items.iter().filter_map(|i| json(cx, at, i)).collect();
            if values.len() != items.len() {
                return None;
            }
            Value::Array(values)
        }
        DeValue::Table(t) => {
            let mut map = serde_json::Map::new();
            for (k, v) in sorted(t) {
                map.insert(k.get_ref().to_string(), json(cx, at, v)?);
            }
            Value::Object(map)
        }
    })
}

fn number(v: &DeValue<'_>) -> Option<Number> {
    match v {
        DeValue::Integer(i) => {
            let text = i.as_str().replace('_', "");
            let radix = i.radix();
            if radix == 10 {
                text.parse::<i64>()
                    .map(Number::from)
                    .ok()
                    .or_else(|| text.parse::<u64>().ok().map(Number::from))
            } else {
                i64::from_str_radix(&text, radix).ok().map(Number::from)
            }
        }
        DeValue::Float(f) => {
            let x: f64 = f.as_str().replace('_', "").parse().ok()?;
            Number::from_f64(x)
        }
        _ => None,
    }
}
