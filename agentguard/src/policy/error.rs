//! A policy that cannot be loaded ([`PolicyError`]), and each problem found in it ([`Diagnostic`]).

use std::fmt;
use std::path::Path;

use serde::Serialize;

/// How much a [`Diagnostic`] matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The policy does not load.
    Error,
    /// The policy loads, but a rule probably does more than it seems to (an ask or deny rule that matches every
    /// call without an argument it tests).
    Warning,
    /// Worth knowing: which way a rule falls when it cannot judge an argument.
    Note,
}

/// One problem (or warning) in a policy file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error, warning or note.
    pub severity: Severity,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// The key it concerns, as a path (`rule "refunds": when.amount_eur.gt`); empty for a syntax error.
    pub key: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
        } else {
            write!(
                f,
                "line {}, column {}: {}: {}",
                self.line, self.column, self.key, self.message
            )
        }
    }
}

/// A policy could not be loaded: the file could not be read, or it has errors (all of them are listed).
#[derive(Debug, Clone)]
pub struct PolicyError {
    pub(super) origin: String,
    pub(super) diagnostics: Vec<Diagnostic>,
    pub(super) io: Option<String>,
}

impl PolicyError {
    /// A file that cannot be used as it is, and why.
    pub(crate) fn io(path: &Path, why: &str) -> PolicyError {
        PolicyError {
            origin: path.display().to_string(),
            diagnostics: Vec::new(),
            io: Some(why.to_owned()),
        }
    }

    /// The file (or `<policy>` for text).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Every problem found, in file order (empty when the file could not be read).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(io) = &self.io {
            return write!(f, "cannot read policy file {}: {io}", self.origin);
        }
        let n = self.diagnostics.len();
        write!(
            f,
            "policy {} has {n} error{}:",
            self.origin,
            if n == 1 { "" } else { "s" }
        )?;
        for d in &self.diagnostics {
            write!(f, "\n  {}:{d}", self.origin)?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}
