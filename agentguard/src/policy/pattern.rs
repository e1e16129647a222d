//! Patterns: tool, agent, session and server names (`*` and `?` wildcards), argument globs and regexes. All
//! compiled once, when the policy loads.

use agentguard_classify::confusable_key;
use regex::{Regex, RegexBuilder};

/// The largest compiled regex (or glob) a policy may hold: far above any real rule, far below a memory problem.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A name pattern: exact, or with `*` (any run of characters, none included) and `?` (one character).
#[derive(Debug, Clone)]
pub(crate) struct NamePattern {
    raw: String,
    /// The pattern with each literal run replaced by its confusable key (`agentguard_classify::confusable_key`):
    /// how `ask` and `deny` rules also catch other spellings of a name (case, separators, look-alike letters).
    keyed: String,
    wild: bool,
}

impl NamePattern {
    /// Compiles `raw`; `Err` says what is wrong.
    pub(crate) fn new(raw: &str) -> Result<NamePattern, String> {
        if raw.is_empty() {
            return Err("a name pattern is empty; write a name, or `*` for every name".to_owned());
        }
        if let Some(c) = raw.chars().find(|c| matches!(c, '[' | ']' | '{' | '}')) {
            return Err(format!(
                "name pattern `{raw}` has `{c}`: name patterns know only `*` (any characters) and `?` (one \
                 character); list the names instead"
            ));
        }
        let mut keyed = String::new();
        let mut literal = String::new();
        for c in raw.chars() {
            if c == '*' || c == '?' {
                keyed.push_str(&confusable_key(&literal));
                literal.clear();
                // The key drops separators, so `?` (often standing for one) becomes `*` there: wider, and keyed
                // matching only ever widens ask and deny rules.
                keyed.push('*');
            } else {
                literal.push(c);
            }
        }
        keyed.push_str(&confusable_key(&literal));
        Ok(NamePattern {
            raw: raw.to_owned(),
            keyed,
            wild: raw.contains(['*', '?']),
        })
    }

    /// The pattern as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether the pattern is one exact name (no wildcard).
    pub(crate) fn is_exact(&self) -> bool {
        !self.wild
    }

    /// Whether `name` matches as written (case and separators matter).
    pub(crate) fn matches(&self, name: &str) -> bool {
        if self.wild {
            wildcard(self.raw.as_bytes(), name)
        } else {
            self.raw == name
        }
    }

    /// Whether a name whose confusable key is `key` matches the keyed pattern (wider than [`matches`]).
    pub(crate) fn matches_key(&self, key: &str) -> bool {
        if self.wild {
            wildcard(self.keyed.as_bytes(), key)
        } else {
            self.keyed == key
        }
    }
}

/// `*` and `?` matching of UTF-8 text, linear in practice (greedy with one backtrack point).
fn wildcard(pattern: &[u8], text: &str) -> bool {
    fn char_len(b: u8) -> usize {
        match b {
            0..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            _ => 4,
        }
    }
    let s = text.as_bytes();
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match pattern.get(p) {
            Some(b'?') => {
                i += char_len(s[i]);
                p += 1;
            }
            Some(b'*') => {
                star = Some((p, i));
                p += 1;
            }
            Some(&c) if c == s[i] => {
                p += 1;
                i += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    let next = si + char_len(s[si]);
                    star = Some((sp, next));
                    p = sp + 1;
                    i = next;
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&b| b == b'*')
}

/// Compiles a path glob to an anchored regex: `*` is any run within one path step (not `/`), `**` any run across
/// steps, `?` one character but `/`, `[abc]` / `[a-z]` / `[!abc]` a class, `{a,b}` either; everything else is
/// literal.
pub(crate) fn glob(pattern: &str) -> Result<Regex, String> {
    let mut re = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut braces = 0usize;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                re.push_str(".*");
                i += 1;
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                let close = chars[i + 1..]
                    .iter()
                    .skip(1) // a `]` right after `[` (or `[!`) is a literal
                    .position(|&c| c == ']')
                    .map(|at| i + 2 + at)
                    .ok_or_else(|| format!("glob `{pattern}` opens a class `[` that is never closed with `]`"))?;
                let mut class: String = chars[i + 1..close].iter().collect();
                if let Some(rest) = class.strip_prefix('!') {
                    class = format!("^{rest}");
                }
                re.push('[');
                for ch in class.chars() {
                    if matches!(ch, '\\' | '[' | '&' | '~') {
                        re.push('\\');
                    }
                    re.push(ch);
                }
                re.push(']');
                i = close;
            }
            '{' => {
                braces += 1;
                re.push_str("(?:");
            }
            ',' if braces > 0 => re.push('|'),
            '}' if braces > 0 => {
                braces -= 1;
                re.push(')');
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    if braces > 0 {
        return Err(format!("glob `{pattern}` opens `{{` without a closing `}}`"));
    }
    re.push('$');
    build_regex(&re).map_err(|e| format!("glob `{pattern}` is not valid: {e}"))
}

/// Compiles a user's regex (unanchored: write `^…$` to match the whole value). Rust's `regex` runs in time linear
/// in the input, whatever the pattern: no catastrophic backtracking.
pub(crate) fn user_regex(pattern: &str) -> Result<Regex, String> {
    build_regex(pattern).map_err(|e| format!("regex `{pattern}` is not valid: {}", first_line(&e)))
}

fn build_regex(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| e.to_string())
}

fn first_line(e: &str) -> String {
    // regex's messages draw the pattern with a caret over several lines; keep them, joined, so one line says it.
    e.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_names() {
        let p = NamePattern::new("refund_*").unwrap();
        assert!(p.matches("refund_order"));
        assert!(p.matches("refund_"));
        assert!(!p.matches("refunder"));
        assert!(!p.matches("Refund_order"));
        let q = NamePattern::new("*_file").unwrap();
        assert!(q.matches("write_file") && q.matches("_file") && !q.matches("write_files"));
        let r = NamePattern::new("a?c*z").unwrap();
        assert!(r.matches("abcz") && r.matches("aécxyz") && !r.matches("acz"));
        assert!(NamePattern::new("*").unwrap().matches("anything at all"));
        assert!(NamePattern::new("**a**").unwrap().matches("xxaxx"));
        assert!(NamePattern::new("[ab]").is_err());
    }

    #[test]
    fn keyed_patterns_catch_other_spellings() {
        let p = NamePattern::new("delete_file").unwrap();
        assert!(p.is_exact());
        for spelling in ["DELETE_FILE", "deleteFile", "delete-file", "d\u{0435}lete_file"] {
            assert!(!p.matches(spelling));
            assert!(p.matches_key(&confusable_key(spelling)), "{spelling}");
        }
        let w = NamePattern::new("refund_*").unwrap();
        assert!(w.matches_key(&confusable_key("REFUND_ORDER")));
        let q = NamePattern::new("rm?dir").unwrap();
        assert!(q.matches("rm_dir") && !q.matches("RM-DIR"));
        assert!(q.matches_key(&confusable_key("RM-DIR")) && q.matches_key(&confusable_key("rmdir")));
    }

    #[test]
    fn globs_respect_path_steps() {
        let g = glob("/srv/*/logs/**/*.log").unwrap();
        assert!(g.is_match("/srv/app/logs/a/b/x.log"));
        assert!(!g.is_match("/srv/app/x/logs/x.log"));
        let g = glob("*.{png,jpg}").unwrap();
        assert!(g.is_match("a.png") && g.is_match("a.jpg") && !g.is_match("dir/a.png"));
        let g = glob("report-[0-9][!x].csv").unwrap();
        assert!(g.is_match("report-1a.csv") && !g.is_match("report-1x.csv"));
        assert!(glob("a.(b)+").unwrap().is_match("a.(b)+"));
        assert!(glob("[abc").is_err());
        assert!(glob("{a,b").is_err());
    }

    #[test]
    fn user_regexes_report_errors_on_one_line() {
        let e = user_regex("(unclosed").unwrap_err();
        assert!(!e.contains('\n') && e.contains("(unclosed"), "{e}");
        assert!(user_regex("^[a-z]+@example\\.com$")
            .unwrap()
            .is_match("ann@example.com"));
    }
}
