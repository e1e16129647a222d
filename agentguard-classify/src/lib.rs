//! Tool names → [`Risk`], by words rather than substrings.
//!
//! This crate is shared by the `agentguard` runtime and its procedural macros (which classify `#[derive(Tool)]`
//! variants at compile time). Use it through `agentguard::{classify, Risk}`.
//!
//! Names are compared in one normalized form ([`fold_name`]: NFKC, case folded); the guard's lists match on
//! [`name_key`] and, for `dangerous_tools`, on the UTS #39 confusable skeleton ([`confusable_key`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod hidden;
mod hidden_table;
mod konst;
mod name;
mod read;
mod vocab;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use hidden::{escape_hidden, hidden_js_class, is_hidden};
pub use konst::{classify_const, is_dangerous_const};
pub use name::{confusable_key, fold_name, name_key, normalize_name};

/// Why a tool call needs a person's approval.
///
/// The four classified categories and their labels are fixed strings, part of the API: dashboards and scripts may
/// match on them. [`Risk::ManuallyFlagged`] is for tools the developer listed (or marked with
/// `#[gate]`) whose name alone does not look dangerous. [`Risk::SuspiciousName`] is for a name spelled to get past
/// the check (hidden, edge-whitespace or look-alike characters): [`classify`] gives it, nobody declares it.
///
/// Serializes as its [label](Risk::label); deserializes from the label or the [key](Risk::key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Risk {
    /// The name has hidden, control or edge-whitespace characters, or letters that imitate other letters (mixed
    /// scripts, look-alikes of ASCII): whatever it runs, the name was dressed up to look like something else.
    SuspiciousName,
    /// Deletes, destroys or resets something that cannot be undone.
    Irreversible,
    /// Sends data or money out of your system (email, chat, payments, uploads).
    ExternalSend,
    /// Runs code or commands, deploys or restarts systems.
    SystemExecution,
    /// Creates or changes stored state.
    DataMutation,
    /// Listed by the developer as always requiring approval.
    ManuallyFlagged,
}

impl Risk {
    /// Every risk, in order of severity (most severe first).
    pub const ALL: [Risk; 6] = [
        Risk::SuspiciousName,
        Risk::Irreversible,
        Risk::SystemExecution,
        Risk::ExternalSend,
        Risk::DataMutation,
        Risk::ManuallyFlagged,
    ];

    /// The human-readable label shown to approvers (a fixed string, part of the API).
    pub const fn label(self) -> &'static str {
        match self {
            Risk::SuspiciousName => "SUSPICIOUS NAME - hidden or look-alike characters",
            Risk::Irreversible => "IRREVERSIBLE - cannot be undone",
            Risk::ExternalSend => "EXTERNAL SEND - leaves your system",
            Risk::SystemExecution => "SYSTEM EXECUTION - runs arbitrary code",
            Risk::DataMutation => "DATA MUTATION - changes stored state",
            Risk::ManuallyFlagged => "MANUALLY FLAGGED - always requires approval",
        }
    }

    /// The short machine key: `suspicious_name`, `irreversible`, `external_send`, `system_execution`,
    /// `data_mutation`, `manually_flagged`. This is the spelling `#[gate(risk = "...")]` and `#[tool(risk = "...")]`
    /// accept (all but `suspicious_name`, which only [`classify`] gives).
    pub const fn key(self) -> &'static str {
        match self {
            Risk::SuspiciousName => "suspicious_name",
            Risk::Irreversible => "irreversible",
            Risk::ExternalSend => "external_send",
            Risk::SystemExecution => "system_execution",
            Risk::DataMutation => "data_mutation",
            Risk::ManuallyFlagged => "manually_flagged",
        }
    }

    /// Severity rank: lower is more severe. Used to pick one risk when a name has several clauses.
    fn severity(self) -> u8 {
        match self {
            Risk::SuspiciousName => 0,
            Risk::Irreversible => 1,
            Risk::SystemExecution => 2,
            Risk::ExternalSend => 3,
            Risk::DataMutation => 4,
            Risk::ManuallyFlagged => 5,
        }
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Error returned when a string is neither a [`Risk`] key nor a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseRiskError {
    input: String,
}

impl fmt::Display for ParseRiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown risk {:?}: expected one of irreversible, external_send, system_execution, data_mutation, \
             manually_flagged, suspicious_name (or one of their labels)",
            self.input
        )
    }
}

impl std::error::Error for ParseRiskError {}

impl FromStr for Risk {
    type Err = ParseRiskError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Risk::ALL
            .into_iter()
            .find(|r| r.key() == s || r.label() == s)
            .ok_or_else(|| ParseRiskError { input: s.to_owned() })
    }
}

impl Serialize for Risk {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.label())
    }
}

impl<'de> Deserialize<'de> for Risk {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Classifies a tool name by the words it is made of.
///
/// Returns the [`Risk`] of a name that looks dangerous, or `None` for a name that looks safe. Only the name is read,
/// never what the function does: a dangerous tool with an innocent name needs
/// `dangerous_tools` (on the guard builder) or `#[gate]`.
///
/// # Rules
///
/// 1. **One normalized form.** The name is read in its [normalized form](fold_name): Unicode NFKC and case folded,
///    so fullwidth `ＤＥＬＥＴＥ_ＦＩＬＥ`, `DELETE_FILE` and `\u{212A}ill_process` (Kelvin sign) read as
///    `delete_file` and `kill_process`. `classify(name) == classify(&fold_name(name))` for every name.
/// 2. **Suspicious names.** A name that a dispatcher could read differently from how it looks is
///    [`Risk::SuspiciousName`], whatever its words: whitespace at either end (a dispatcher that trims would run it),
///    control characters, invisible ones (zero-width, default-ignorable, bidi controls) or any other character
///    UTS #39 does not allow in identifiers, letters from scripts that are not normally mixed (Latin with
///    Cyrillic or Greek: `dеlete_file` with a Cyrillic `е`), and names whose letters are all look-alikes of ASCII
///    (`сору` in Cyrillic). A space between words is a separator, not suspicious.
/// 3. **Words.** The name is split into words at every character that is not a letter or digit (`snake_case`,
///    `kebab-case`, `dotted.names`, `spaced names`, `path/like`), at case changes (`camelCase`, `PascalCase`,
///    `HTTPRequest` → `http` + `request`) and between letters and digits (`s3upload` → `s` `3` `upload`). Words are
///    compared case-insensitively and whole: `evaluate_model` is not `eval`, `get_runtime_info` is not `run`,
///    `prune` is not `run`.
/// 4. **Run-together words.** A word the classifier does not know is split into words it knows when the whole word
///    splits cleanly: `deletefile` is `delete` and `file`, `SENDEMAIL` is `send` and `email`, `RUNSHELLCOMMAND` is
///    `run`, `shell` and `command`. Words may also be read across case changes and separators when one of them is
///    unknown (`dElEtE_fIlE` reads `delete` and `file`, `CANCel` reads `cancel`), or when two words together make
///    a known one. A known word is never split (`runtime`, `output` and `dataset` are nouns). When a name reads
///    several ways, every reading counts and the most severe wins, so a spelling cannot pick the harmless reading.
///    The vocabulary is the verbs below plus a list of common nouns, qualifiers and service names; a word outside
///    it (a product name) stays unread, so `FOOBARDELETE` for `fooBarDelete` is not seen: list such tools in
///    `dangerous_tools`, which ignores case and separators.
/// 5. **Accents.** A name with accents is also read without them (`dèlete_file` is `delete_file`).
/// 6. **Clauses.** The words `and`, `then` and `or` split the name into clauses (`fetch_and_delete`,
///    `create_or_update_file`). Each clause is classified on its own and the most severe result wins
///    (irreversible, then system execution, then external send, then data mutation).
/// 7. **The first verb decides.** In each clause, the first word that is a known verb decides. A read-only verb
///    (`get`, `list`, `read`, `search`, `fetch`, `query`, `describe`, `show`, `count`, `evaluate`, …) makes the clause
///    safe even when a danger word follows (`get_run_logs`, `list_messages`, `search_emails`). A danger verb gives the
///    clause its category. Words that are not verbs (`bulk`, `slack`, `git`, `user`) are skipped, so `bulk_delete`,
///    `slack_post_message` and `git_commit` are found. A past participle (`annotated`, `scheduled`: a word of five
///    or more letters ending in `ed`) followed by a verb that is also a common noun (`message`, `post`, `order`,
///    `report`, …) makes that word a noun, so `annotatedMessage` is not a send; a real verb after a participle still
///    counts (`forced_delete_user` is irreversible).
/// 8. **Categories** (four, with the verbs real tool catalogs use for side effects):
///    - [`Risk::Irreversible`]: delete, remove, destroy, drop, truncate, wipe, erase, purge, kill, terminate, reset,
///      revoke, cancel, clear, prune, uninstall, …
///    - [`Risk::SystemExecution`]: run, exec, execute, eval, shell, bash, spawn, launch, invoke, trigger, deploy,
///      install, restart, start, stop, …
///    - [`Risk::ExternalSend`]: send, email, mail, post, publish, notify, message, reply, forward, share, invite,
///      upload, push, export, transfer, pay, charge, refund, purchase, …
///    - [`Risk::DataMutation`]: write, create, add, insert, set, update, upsert, patch, edit, save, merge, fork,
///      assign, submit, dismiss, move, rename, copy, approve, reject, grant, enable, disable, commit, apply, …
/// 9. A name with no known verb (`weather`, `calculator`, `computer`) is safe.
///
/// ```
/// use agentguard_classify::{classify, Risk};
///
/// assert_eq!(classify("delete_user"), Some(Risk::Irreversible));
/// assert_eq!(classify("deleteUser"), Some(Risk::Irreversible));
/// assert_eq!(classify("DELETEUSER"), Some(Risk::Irreversible));
/// assert_eq!(classify("ｄｅｌｅｔｅ_ｕｓｅｒ"), Some(Risk::Irreversible));
/// assert_eq!(classify("slack_post_message"), Some(Risk::ExternalSend));
/// assert_eq!(classify("update_email"), Some(Risk::DataMutation));
/// assert_eq!(classify("get_run_logs"), None);
/// assert_eq!(classify("evaluate_model"), None);
/// assert_eq!(classify("\u{00A0}get_user"), Some(Risk::SuspiciousName));
/// assert_eq!(classify("g\u{0435}t_user"), Some(Risk::SuspiciousName));
/// ```
pub fn classify(name: &str) -> Option<Risk> {
    let bytes = name.as_bytes();
    if bytes.iter().all(|b| (b' '..=b'~').contains(b)) && bytes.first() != Some(&b' ') && bytes.last() != Some(&b' ') {
        // The common case, printable ASCII with no space at either end: its own NFKC form, nothing hidden, and the
        // reader folds case word by word.
        return read::read(name);
    }
    let folded = fold_name(name);
    if folded.is_ascii() {
        return classify_ascii(&folded);
    }
    if name::suspicious(&folded) {
        return Some(Risk::SuspiciousName);
    }
    let risk = read::read(&folded);
    match name::without_accents(&folded) {
        Some(plain) => worse(risk, read::read(&plain)),
        None => risk,
    }
}

/// Whether `word` (ASCII letters, any case) is in the classifier's vocabulary, as a verb, noun or clause word, or
/// as the plural of a noun. For tests; not a stable API.
#[doc(hidden)]
pub fn is_known_word(word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    lower.bytes().all(|b| b.is_ascii_lowercase()) && vocab::VOCAB.get(lower.as_bytes()).is_some()
}

fn classify_ascii(name: &str) -> Option<Risk> {
    if name::ascii_suspicious(name.as_bytes()) {
        return Some(Risk::SuspiciousName);
    }
    read::read(name)
}

fn worse(a: Option<Risk>, b: Option<Risk>) -> Option<Risk> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.severity() < a.severity() { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Splits a name into words, yielding byte ranges. Shared with redaction so both read names the same way.
/// Not a stable API.
#[doc(hidden)]
#[derive(Debug)]
pub struct Words<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Words<'a> {
    /// Words of `name`, as byte ranges.
    pub fn new(name: &'a str) -> Self {
        Words {
            bytes: name.as_bytes(),
            pos: 0,
        }
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

impl Iterator for Words<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let bytes = self.bytes;
        while self.pos < bytes.len() && !is_word_byte(bytes[self.pos]) {
            self.pos += 1;
        }
        if self.pos >= bytes.len() {
            return None;
        }
        let start = self.pos;
        let mut i = start + 1;
        while i < bytes.len() && is_word_byte(bytes[i]) {
            let prev = bytes[i - 1];
            let cur = bytes[i];
            // lower or digit → Upper: deleteUser, s3Upload
            if cur.is_ascii_uppercase() && (prev.is_ascii_lowercase() || prev.is_ascii_digit()) {
                break;
            }
            // Upper → Upper followed by lower: HTTPRequest → HTTP | Request
            if cur.is_ascii_uppercase()
                && prev.is_ascii_uppercase()
                && bytes.get(i + 1).is_some_and(|n| n.is_ascii_lowercase())
            {
                break;
            }
            i += 1;
        }
        self.pos = i;
        Some((start, i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(name: &str) -> Vec<&str> {
        Words::new(name).map(|(s, e)| &name[s..e]).collect()
    }

    #[test]
    fn splits_every_naming_convention_into_words() {
        assert_eq!(words("delete_user"), ["delete", "user"]);
        assert_eq!(words("DELETE-RECORD"), ["DELETE", "RECORD"]);
        assert_eq!(words("deleteUser"), ["delete", "User"]);
        assert_eq!(words("DeleteUser"), ["Delete", "User"]);
        assert_eq!(words("HTTPRequestSend"), ["HTTP", "Request", "Send"]);
        assert_eq!(words("files.delete"), ["files", "delete"]);
        assert_eq!(words("send email now"), ["send", "email", "now"]);
        assert_eq!(words("s3Upload"), ["s3", "Upload"]);
        assert_eq!(words("__x__"), ["x"]);
        assert!(words("").is_empty());
        assert!(words("_-. ").is_empty());
    }

    #[test]
    fn risk_round_trips_through_key_and_label() {
        for risk in Risk::ALL {
            assert_eq!(risk.key().parse::<Risk>(), Ok(risk));
            assert_eq!(risk.label().parse::<Risk>(), Ok(risk));
            let json = serde_json::to_string(&risk).unwrap();
            assert_eq!(json, format!("\"{}\"", risk.label()));
            assert_eq!(serde_json::from_str::<Risk>(&json).unwrap(), risk);
        }
        let err = "severe".parse::<Risk>().unwrap_err().to_string();
        assert!(err.contains("expected one of irreversible"), "{err}");
    }

    #[test]
    fn a_participle_never_hides_a_danger_verb() {
        assert_eq!(classify("forced_delete_user"), Some(Risk::Irreversible));
        assert_eq!(classify("scheduled_delete_job"), Some(Risk::Irreversible));
        assert_eq!(classify("authenticated_delete"), Some(Risk::Irreversible));
        assert_eq!(classify("batched_remove_rows"), Some(Risk::Irreversible));
        assert_eq!(classify("forced_push"), Some(Risk::ExternalSend));
        assert_eq!(classify("annotatedMessage"), None);
        assert_eq!(classify("scheduled_post_list"), None);
    }

    #[test]
    fn long_and_non_ascii_words_are_skipped_not_misread() {
        assert_eq!(classify("überdelete"), None);
        assert_eq!(classify("delete_ü"), Some(Risk::Irreversible));
        assert_eq!(classify(&"a".repeat(100)), None);
    }
}
