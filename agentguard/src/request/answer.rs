//! A person's answer to a parked request ([`Resolution`]) and what became of it ([`ResolveOutcome`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::RequestId;
use crate::params::ParamsDigest;

/// The result of answering a parked request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ResolveOutcome {
    /// This answer decided the request.
    Resolved,
    /// Someone answered first; this answer changed nothing.
    AlreadyResolved,
    /// No such request (never made, or forgotten after the retention window).
    Unknown,
    /// The deadline passed; the request was denied and will never run.
    Expired,
    /// The answer carried a params digest that is not the request's: the approver was shown something else. Nothing
    /// was decided; the request stays pending.
    DigestMismatch,
    /// The store could not be reached; nothing was decided.
    Unavailable,
}

impl ResolveOutcome {
    /// The upper-case name, e.g. `ALREADY_RESOLVED`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ResolveOutcome::Resolved => "RESOLVED",
            ResolveOutcome::AlreadyResolved => "ALREADY_RESOLVED",
            ResolveOutcome::Unknown => "UNKNOWN",
            ResolveOutcome::Expired => "EXPIRED",
            ResolveOutcome::DigestMismatch => "DIGEST_MISMATCH",
            ResolveOutcome::Unavailable => "UNAVAILABLE",
        }
    }
}

impl ResolveOutcome {
    /// What this outcome means for the person who answered, and what to do: the words the HTTP API and the CLI
    /// both show. `approved` is whether the answer was an approval (it matters only for
    /// [`Resolved`](Self::Resolved)).
    pub const fn explain(self, approved: bool) -> &'static str {
        match self {
            ResolveOutcome::Resolved if approved => "approved: the agent's call runs now",
            ResolveOutcome::Resolved => "denied: the agent is told it was denied",
            ResolveOutcome::AlreadyResolved => {
                "already answered: someone answered this request first; this answer changed nothing"
            }
            ResolveOutcome::Unknown => {
                "unknown request: never parked in this store, or forgotten after its retention window (check the \
                 id and the store)"
            }
            ResolveOutcome::Expired => "expired: the deadline passed, the request was denied and will never run",
            ResolveOutcome::DigestMismatch => {
                "the params digest is not this request's: the params you were shown are not the ones that would \
                 run; nothing was decided, look at the request again"
            }
            ResolveOutcome::Unavailable => "the approval store did not answer; nothing was decided",
        }
    }
}

impl fmt::Display for ResolveOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A person's answer to a parked request, for [`AgentGuard::resolve_with`](crate::AgentGuard::resolve_with) and
/// [`ApprovalStore::resolve`](crate::store::ApprovalStore::resolve).
///
/// Built one way: [`approve`](Self::approve), [`deny`](Self::deny) or [`new`](Self::new), then the optional parts.
/// Read back with the `get_` accessors (as `std::process::Command` does), e.g. in a custom store.
///
/// ```
/// # use agentguard::{Resolution, RequestId};
/// let id = RequestId::new();
/// let answer = Resolution::deny(id).actor("alice").note("wrong customer");
/// assert!(!answer.is_approval());
/// assert_eq!(answer.get_note(), Some("wrong customer"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    request_id: RequestId,
    approved: bool,
    actor: Option<String>,
    params_digest: Option<ParamsDigest>,
    note: Option<String>,
}

impl Resolution {
    /// The longest note an answer may carry, in characters: it goes to the agent and into the audit. The HTTP API
    /// and the CLI refuse longer ones.
    pub const MAX_NOTE_CHARS: usize = 1000;

    /// Checks a note before it is sent: at most [`MAX_NOTE_CHARS`](Self::MAX_NOTE_CHARS) characters, and no
    /// control character but newline and tab (a NUL or an escape sequence has no place in a note for a person, and
    /// a database may refuse it). The error says what is wrong, for the HTTP API and the CLI alike.
    pub fn check_note(note: &str) -> Result<(), String> {
        let chars = note.chars().count();
        if chars > Self::MAX_NOTE_CHARS {
            return Err(format!("{chars} characters; at most {}", Self::MAX_NOTE_CHARS));
        }
        if let Some((at, c)) = note
            .chars()
            .enumerate()
            .find(|(_, c)| c.is_control() && !matches!(c, '\n' | '\t'))
        {
            return Err(format!(
                "a control character (U+{:04X}) at character {}; send plain text (newline and tab are the only \
                 control characters allowed)",
                u32::from(c),
                at + 1
            ));
        }
        Ok(())
    }

    /// An approval of `request_id`.
    pub fn approve(request_id: RequestId) -> Self {
        Self::new(request_id, true)
    }

    /// A denial of `request_id`.
    pub fn deny(request_id: RequestId) -> Self {
        Self::new(request_id, false)
    }

    /// An answer to `request_id`: approve (`true`) or deny (`false`).
    pub fn new(request_id: RequestId, approved: bool) -> Self {
        Resolution {
            request_id,
            approved,
            actor: None,
            params_digest: None,
            note: None,
        }
    }

    /// Who answered; recorded in the audit.
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// The digest of the params the approver was shown; an answer whose digest is not the request's is refused
    /// ([`ResolveOutcome::DigestMismatch`]).
    pub fn params_digest(mut self, digest: ParamsDigest) -> Self {
        self.params_digest = Some(digest);
        self
    }

    /// A note for the agent ([`ActionDenied::detail`](super::ActionDenied::detail)) and the audit, e.g. why it was denied.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// Which request this answers.
    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    /// `true` for an approval, `false` for a denial.
    pub fn is_approval(&self) -> bool {
        self.approved
    }

    /// Who answered, if given.
    pub fn get_actor(&self) -> Option<&str> {
        self.actor.as_deref()
    }

    /// The digest the approver was shown, if given.
    pub fn get_params_digest(&self) -> Option<&ParamsDigest> {
        self.params_digest.as_ref()
    }

    /// The note, if given.
    pub fn get_note(&self) -> Option<&str> {
        self.note.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_outcome_serializes_to_its_documented_names() {
        assert_eq!(
            serde_json::to_value(ResolveOutcome::AlreadyResolved).unwrap(),
            "ALREADY_RESOLVED"
        );
        assert_eq!(ResolveOutcome::Resolved.to_string(), "RESOLVED");
    }
}
