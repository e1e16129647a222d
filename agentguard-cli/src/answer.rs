//! The flags of `approve` and `respond`, turned into a checked [`Resolution`] before anything is sent: edited
//! arguments parsed as a JSON object (errors say where), a standing grant checked with [`GrantSpec::check`], notes and
//! responses checked as the HTTP API checks them.

use std::io::Read as _;

use agentguard::answer::{GrantScope, GrantSpec};
use serde_json::Value;

use super::*;

/// `approve`'s arguments.
#[derive(clap::Args, Debug)]
pub(super) struct ApproveArgs {
    /// The request id (from `pending`).
    id: String,
    /// Who approves (recorded in the audit; a quorum request counts named people).
    #[arg(long, env = "USER")]
    actor: Option<String>,
    /// Approve only if the params still have this digest (from `show`).
    #[arg(long)]
    digest: Option<String>,
    /// Run the call with these arguments instead of the ones shown: a JSON object, @FILE for a file holding one, or
    /// `-` to read it from stdin. A value left as "[REDACTED]" keeps the original secret. The agent checks them
    /// (its tool's argument types) and its policy judges them again.
    #[arg(long, value_name = "JSON")]
    edit: Option<String>,
    /// Remember this approval as a standing grant, so later calls of the same tool run without asking: call (this
    /// call only, the default), session (the same session), agent (the same agent) or everyone.
    #[arg(long, value_name = "SCOPE")]
    remember: Option<String>,
    /// With --remember: how long the grant lasts (30m, 2h, 7d; at most 30d). Without --for and --uses: 1h.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_grant_ttl)]
    ttl: Option<Duration>,
    /// With --remember: how many later calls it lets run (at least 1).
    #[arg(long, value_name = "N")]
    uses: Option<u32>,
    /// With --remember: only calls whose arguments pass these tests, in the policy's `when` language, e.g.
    /// 'path = { under = "./reports" }' or 'amount = { le = 100 }'.
    #[arg(long, value_name = "TESTS")]
    when: Option<String>,
    /// A note for the audit (and the agent).
    #[arg(long)]
    reason: Option<String>,
}

/// `respond`'s arguments.
#[derive(clap::Args, Debug)]
pub(super) struct RespondArgs {
    /// The request id (from `pending`).
    id: String,
    /// What the agent reads as the tool's result (`-` to read it from stdin).
    text: String,
    /// Who answers (recorded in the audit).
    #[arg(long, env = "USER")]
    actor: Option<String>,
    /// Answer only if the params still have this digest (from `show`).
    #[arg(long)]
    digest: Option<String>,
}

/// A grant's `--for`: a duration of at least one second (a grant lasts whole seconds).
fn parse_grant_ttl(text: &str) -> Result<Duration, String> {
    let ttl = parse_duration(text)?;
    if ttl < Duration::from_secs(1) {
        return Err(format!("`{text}`: a grant lasts whole seconds; give at least 1s"));
    }
    Ok(ttl)
}

impl ApproveArgs {
    /// The answer these flags give, every part checked; the error is bad usage (exit 2) and says what to fix.
    pub(super) fn resolution(&self) -> Result<Resolution, Failure> {
        let id = parse_id(&self.id)?;
        let mut answer = match &self.edit {
            Some(edit) => Resolution::edit(id, read_edit(edit)?),
            None => Resolution::approve(id),
        };
        if let Some(actor) = &self.actor {
            answer = answer.actor(actor);
        }
        if let Some(d) = &self.digest {
            answer = answer.params_digest(parse_digest(d)?);
        }
        if let Some(reason) = self.reason.as_deref().filter(|r| !r.trim().is_empty()) {
            answer = answer.note(checked_note(reason)?);
        }
        if let Some(spec) = self.grant_spec()? {
            answer = answer.remember(spec);
        }
        Ok(answer)
    }

    /// The standing grant asked for, checked; `None` for this call only.
    fn grant_spec(&self) -> Result<Option<GrantSpec>, Failure> {
        let shaped = [
            ("--for", self.ttl.is_some()),
            ("--uses", self.uses.is_some()),
            ("--when", self.when.is_some()),
        ]
        .into_iter()
        .filter(|(_, given)| *given)
        .map(|(flag, _)| flag)
        .collect::<Vec<_>>();
        let scope = match self.remember.as_deref() {
            None => None,
            Some(text) => GrantScope::parse(text.trim()).map_err(|e| fail(EXIT_USAGE, format!("--remember: {e}")))?,
        };
        let Some(scope) = scope else {
            if shaped.is_empty() {
                return Ok(None);
            }
            let why = if self.remember.is_some() {
                "--remember call makes no standing grant"
            } else {
                "no --remember given"
            };
            return Err(fail(
                EXIT_USAGE,
                format!(
                    "{} shape{} a standing grant, but {why}: add --remember session, agent or everyone (or drop {})",
                    shaped.join(", "),
                    if shaped.len() == 1 { "s" } else { "" },
                    shaped.join(", ")
                ),
            ));
        };
        let mut spec = GrantSpec::new(scope);
        if let Some(ttl) = self.ttl {
            spec = spec.ttl(ttl);
        }
        if let Some(uses) = self.uses {
            spec = spec.uses(uses);
        }
        if let Some(when) = &self.when {
            spec = spec.when(when.clone());
        }
        spec.check().map_err(|problem| {
            // Which flag is at fault, in the order `check` looks.
            let flag = if self.uses == Some(0) {
                "--uses"
            } else if spec.get_ttl().is_some_and(|t| t > GrantSpec::MAX_TTL) {
                "--for"
            } else {
                "--when"
            };
            // The condition's errors come worded for a policy file; here the flag is the file.
            let problem = problem
                .replace("policy the grant's condition has", "the condition has")
                .replace("the grant's condition:line", "line");
            fail(EXIT_USAGE, format!("{flag}: {problem}"))
        })?;
        Ok(Some(spec))
    }
}

impl RespondArgs {
    /// The answer these arguments give, its text checked.
    pub(super) fn resolution(&self) -> Result<Resolution, Failure> {
        let id = parse_id(&self.id)?;
        let text = if self.text == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| fail(EXIT_USAGE, format!("cannot read the response from stdin: {e}")))?;
            // The newline that ends what was typed or piped is not part of the answer.
            text.trim_end_matches(['\n', '\r']).to_owned()
        } else {
            self.text.clone()
        };
        Resolution::check_response(&text).map_err(|problem| {
            fail(
                EXIT_USAGE,
                format!("the response: {problem} (the agent reads it as the tool's result)"),
            )
        })?;
        let mut answer = Resolution::respond(id, text);
        if let Some(actor) = &self.actor {
            answer = answer.actor(actor);
        }
        if let Some(d) = &self.digest {
            answer = answer.params_digest(parse_digest(d)?);
        }
        Ok(answer)
    }
}

/// `--edit`'s value: the JSON object itself, `@FILE`, or `-` for stdin.
fn read_edit(arg: &str) -> Result<Value, Failure> {
    let (origin, text) = if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| fail(EXIT_USAGE, format!("--edit -: cannot read stdin: {e}")))?;
        ("--edit - (stdin)".to_owned(), text)
    } else if let Some(path) = arg.strip_prefix('@') {
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(EXIT_USAGE, format!("--edit @{path}: cannot read {path}: {e}")))?;
        (format!("--edit @{path}"), text)
    } else {
        ("--edit".to_owned(), arg.to_owned())
    };
    parse_edit(&origin, &text).map_err(|message| fail(EXIT_USAGE, message))
}

const EDIT_EXAMPLE: &str =
    "give the call's arguments as one JSON object, e.g. --edit '{\"to\": \"bob@example.com\"}' (or --edit @FILE, \
     or --edit - to read stdin)";

/// Parses edited arguments: one JSON object. The error names the line and column, shows the line with a mark under
/// the place, and says what to write.
fn parse_edit(origin: &str, text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Err(format!("{origin}: no arguments given; {EDIT_EXAMPLE}"));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let (mut line, mut column) = (e.line(), e.column());
        let full = e.to_string();
        let what = full
            .strip_suffix(&format!(" at line {line} column {column}"))
            .unwrap_or(&full)
            .to_owned();
        // serde_json reports a problem found at a line's end (`tru` then a newline) at column 0 of the next line:
        // point just past the end of the line where it is.
        if column == 0 && line > 1 {
            line -= 1;
            column = text.lines().nth(line - 1).map_or(0, str::len) + 1;
        }
        format!(
            "{origin}: not valid JSON at line {line}, column {column}: {what}\n{}\n{EDIT_EXAMPLE}",
            pointer(text, line, column)
        )
    })?;
    match &value {
        Value::Object(_) => Ok(value),
        other => {
            let kind = match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                Value::Object(_) => unreachable!(),
            };
            Err(format!(
                "{origin}: the arguments must be a JSON object ({{\"name\": value, …}}), not {kind}; {EDIT_EXAMPLE}"
            ))
        }
    }
}

/// The line `line` of `text` (1-based), cut to at most 60 characters around `column`, with a `^` under the column.
fn pointer(text: &str, line: usize, column: usize) -> String {
    let Some(source) = text.lines().nth(line.saturating_sub(1)) else {
        return String::new();
    };
    // serde_json counts columns in bytes; the mark goes under the character holding that byte (or just past the
    // end, for a text that ends too soon).
    let at = source
        .char_indices()
        .take_while(|(i, _)| *i < column.saturating_sub(1))
        .count();
    let chars: Vec<char> = source.chars().collect();
    let start = at.saturating_sub(30);
    let end = (start + 60).min(chars.len());
    let at = at.min(end);
    let piece = |cs: &[char]| shown(&cs.iter().collect::<String>());
    let (before, after) = (piece(&chars[start..at]), piece(&chars[at..end]));
    let lead = if start > 0 { "…" } else { "" };
    let tail = if end < chars.len() { "…" } else { "" };
    format!(
        "  {lead}{before}{after}{tail}\n  {}^",
        " ".repeat(lead.chars().count() + before.chars().count())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_error_names_its_line_and_column_and_marks_the_place() {
        let err = parse_edit("--edit", "{\"to\" \"bob\"}").unwrap_err();
        assert!(
            err.starts_with("--edit: not valid JSON at line 1, column 7: expected `:`"),
            "{err}"
        );
        assert!(err.contains("\n  {\"to\" \"bob\"}\n        ^\n"), "{err}");
        let err = parse_edit("--edit @e.json", "{\n  \"a\": 1,\n  \"b\": tru\n}").unwrap_err();
        assert!(err.contains("at line 3, column"), "{err}");
        assert!(err.contains("\n    \"b\": tru\n"), "{err}");
    }

    #[test]
    fn edited_arguments_must_be_an_object() {
        let err = parse_edit("--edit", "[1, 2]").unwrap_err();
        assert!(
            err.contains("must be a JSON object") && err.contains("not an array"),
            "{err}"
        );
        assert!(parse_edit("--edit", "  ").unwrap_err().contains("no arguments given"));
        assert_eq!(
            parse_edit("--edit", r#"{"a": 1}"#).unwrap(),
            serde_json::json!({"a": 1})
        );
    }
}
