//! The words of the policy file's diagnostics: where an error is (line, column, key) and what to write instead.

use super::{Diagnostic, Severity};
use toml::de::DeValue;

/// Collects diagnostics against the source text.
pub(super) struct Ctx<'s> {
    source: &'s str,
    pub(super) line_starts: Vec<usize>,
    pub(super) errors: Vec<Diagnostic>,
    pub(super) warnings: Vec<Diagnostic>,
}

impl<'s> Ctx<'s> {
    pub(super) fn new(source: &'s str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        Ctx {
            source,
            line_starts,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub(super) fn at(&self, offset: usize, key: &str, message: String) -> Diagnostic {
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        let column = self
            .source
            .get(start..offset.min(self.source.len()))
            .map_or(1, |s| s.chars().count() + 1);
        Diagnostic {
            severity: Severity::Warning,
            line,
            column,
            key: key.to_owned(),
            message,
        }
    }

    pub(super) fn error(&mut self, span: std::ops::Range<usize>, key: &str, message: impl Into<String>) {
        let mut d = self.at(span.start, key, message.into());
        d.severity = Severity::Error;
        self.errors.push(d);
    }

    pub(super) fn warn(&mut self, span: std::ops::Range<usize>, key: &str, message: impl Into<String>) {
        let d = self.at(span.start, key, message.into());
        self.warnings.push(d);
    }

    pub(super) fn note(&mut self, span: std::ops::Range<usize>, key: &str, message: impl Into<String>) {
        let mut d = self.at(span.start, key, message.into());
        d.severity = Severity::Note;
        self.warnings.push(d);
    }
}

pub(super) fn expected(what: &str, found: &DeValue<'_>) -> String {
    format!("expected {what}; found {}", show(found))
}

pub(super) fn show(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("the string {s:?}"),
        DeValue::Integer(i) => format!("the number {}", i.as_str()),
        DeValue::Float(f) => format!("the number {}", f.as_str()),
        DeValue::Boolean(b) => format!("{b}"),
        other => describe(other).to_owned(),
    }
}

pub(super) fn describe(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) | DeValue::Float(_) => "a number",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

pub(super) fn unknown_key(key: &str, place: &str, known: &[&str]) -> String {
    match suggest(key, known) {
        Some(s) => format!("unknown key `{key}` {place}; did you mean `{s}`?"),
        None => format!("unknown key `{key}` {place}; the keys are: {}", known.join(", ")),
    }
}

/// The known word closest to `word`, if it is a likely typo (edit distance ≤ 2).
pub(super) fn suggest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (distance(word, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

pub(super) fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
