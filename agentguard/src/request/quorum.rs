//! Four eyes: a request that needs N approvals of named approvers ([`Quorum`]), the [`Vote`]s cast on it, and how
//! far it got ([`QuorumProgress`]).

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// What a quorum request needs before its call runs: `needed` approvals from distinct actors, drawn from
/// `approvers` when it names them; `denials` denials end it (one, by default: any "no" stops the call). Set by a
/// policy rule (`approvers`, `quorum`, `denials`) and carried by the request, so every process answering it applies
/// the same rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quorum {
    /// Approvals needed.
    pub needed: u32,
    /// Who may vote (groups already expanded); empty means any named actor.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Denials that end the request.
    #[serde(default = "one")]
    pub denials: u32,
}

fn one() -> u32 {
    1
}

impl Quorum {
    /// Whether `actor` is one of the approvers (any named actor when none are listed).
    pub fn admits(&self, actor: &str) -> bool {
        self.approvers.is_empty() || self.approvers.iter().any(|a| a == actor)
    }

    /// How far the votes got.
    pub fn progress(&self, votes: &[Vote], excluded: &[String]) -> QuorumProgress {
        let approvals = votes.iter().filter(|v| v.approve).count() as u32;
        let denials = votes.iter().filter(|v| !v.approve).count() as u32;
        let waiting_for = self
            .approvers
            .iter()
            .filter(|a| !votes.iter().any(|v| &v.actor == *a) && !excluded.contains(a))
            .cloned()
            .collect();
        QuorumProgress {
            approvals,
            denials,
            needed: self.needed,
            waiting_for,
        }
    }
}

/// One person's vote on a quorum request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// Who voted.
    pub actor: String,
    /// `true` to approve, `false` to deny.
    pub approve: bool,
    /// Their note, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When (Unix milliseconds).
    pub at_ms: u64,
}

impl Vote {
    /// A vote cast now.
    pub fn now(actor: impl Into<String>, approve: bool, note: Option<String>) -> Self {
        let at_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Vote {
            actor: actor.into(),
            approve,
            note,
            at_ms,
        }
    }
}

/// How far a quorum request got: shown on the page and by `agentguard show` as "1 of 2 approvals, waiting for bob
/// or carol".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumProgress {
    /// Approvals so far.
    pub approvals: u32,
    /// Denials so far.
    pub denials: u32,
    /// Approvals needed.
    pub needed: u32,
    /// Named approvers who have not voted yet.
    pub waiting_for: Vec<String>,
}

impl fmt::Display for QuorumProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {} approvals", self.approvals, self.needed)?;
        if !self.waiting_for.is_empty() && self.approvals < self.needed {
            write!(f, ", waiting for {}", self.waiting_for.join(" or "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_as_the_page_shows_it() {
        let q = Quorum {
            needed: 2,
            approvers: vec!["alice".into(), "bob".into(), "carol".into()],
            denials: 1,
        };
        let votes = [Vote::now("alice", true, None)];
        assert_eq!(
            q.progress(&votes, &[]).to_string(),
            "1 of 2 approvals, waiting for bob or carol"
        );
        assert_eq!(
            q.progress(&votes, &["carol".to_owned()]).to_string(),
            "1 of 2 approvals, waiting for bob"
        );
    }
}
