//! What a policy says about one call: the [`Evaluation`] the guard acts on, and the [`Explanation`] of every rule's
//! verdict that `agentguard policy explain` prints.

use std::fmt;

use serde::Serialize;

use super::predicate::TestResult;
use super::{Action, DefaultAction, Policy, PolicyMode, Rule};
use agentguard_classify::Risk;

/// The policy's answer for one call: the rule that decided, or none (the default applies).
#[derive(Clone, Copy)]
pub struct Evaluation<'p> {
    pub(super) policy: &'p Policy,
    pub(super) rule: Option<&'p Rule>,
    /// The rule matched because a test could not be judged (fail closed).
    pub(super) unjudged: bool,
    /// The quorum an ask decision needs (from the first matching ask rule that sets one).
    pub(super) quorum: Option<&'p crate::request::Quorum>,
    /// The first matching ask rule with `remember = false`.
    pub(super) no_remember: Option<&'p str>,
}

impl fmt::Debug for Evaluation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evaluation")
            .field("rule", &self.rule())
            .field("action", &self.action())
            .finish()
    }
}

impl<'p> Evaluation<'p> {
    /// The deciding rule's action; `None` when no rule matched.
    pub fn action(&self) -> Option<Action> {
        self.rule.map(|r| r.action)
    }

    /// The deciding rule's name; `None` when no rule matched (the audit then says `default`).
    pub fn rule(&self) -> Option<&'p str> {
        self.rule.map(|r| r.name.as_str())
    }

    /// The deciding rule's message.
    pub fn message(&self) -> Option<&'p str> {
        self.rule.and_then(|r| r.message.as_deref())
    }

    /// Whether the rule matched only because one of its tests could not be judged (an argument missing or of the
    /// wrong type): fail closed.
    pub fn unjudged(&self) -> bool {
        self.unjudged
    }

    /// What the agent reads when this evaluation denies: the rule's message (or its name), and when the rule
    /// matched only because it could not judge an argument, which ones, so the agent can fix its call.
    pub fn denial(&self) -> String {
        let Some(rule) = self.rule else {
            return "no policy rule allows this call, and the policy's default is deny".to_owned();
        };
        let mut text = match &rule.message {
            Some(m) => m.clone(),
            None => format!("policy rule {:?} denies this call", rule.name),
        };
        if self.unjudged {
            let paths: Vec<String> = rule.judged.iter().map(|p| format!("`{p}`")).collect();
            text.push_str(&format!(
                " (the rule could not judge {}: missing or not the expected type, so it applies)",
                paths.join(", ")
            ));
        }
        text
    }

    /// The quorum an `ask` decision needs: from the first matching `ask` rule with `approvers` or `quorum`.
    pub fn quorum(&self) -> Option<&'p crate::request::Quorum> {
        self.quorum
    }

    /// The matching `ask` rule that forbids standing grants (`remember = false`), if any.
    pub fn forbids_remember(&self) -> Option<&'p str> {
        self.no_remember
    }

    /// The policy this came from.
    pub fn policy(&self) -> &'p Policy {
        self.policy
    }

    /// Whether the deciding rule names `tool` exactly (relaxing a tool declared to always ask needs that).
    pub(crate) fn names(&self, tool: &str) -> bool {
        self.rule.is_some_and(|r| r.names(tool))
    }

    /// The decision, with the default resolved: `classify` asks when `risk` (the name rules' risk) is known.
    pub fn resolve(&self, risk: Option<Risk>) -> Action {
        match (self.action(), self.policy.inner.default) {
            (Some(action), _) => action,
            (None, DefaultAction::Classify) => {
                if risk.is_some() {
                    Action::Ask
                } else {
                    Action::Allow
                }
            }
            (None, DefaultAction::Ask) => Action::Ask,
            // As the guard does: `default = "allow"` never runs a suspicious name unasked.
            (None, DefaultAction::Allow) if risk == Some(Risk::SuspiciousName) => Action::Ask,
            (None, DefaultAction::Allow) => Action::Allow,
            (None, DefaultAction::Deny) => Action::Deny,
        }
    }
}

/// Why a policy decided as it did (`agentguard policy explain`). Serializes to JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The decision.
    pub decision: Action,
    /// The deciding rule; `None` when the default decided.
    pub rule: Option<String>,
    /// The deciding rule's message.
    pub message: Option<String>,
    /// The policy's default.
    pub default: DefaultAction,
    /// Enforce or shadow.
    pub mode: PolicyMode,
    /// The policy's version.
    pub version: String,
    /// Every rule, in file order, with what it found.
    pub rules: Vec<RuleTrace>,
}

/// One rule's verdict in an [`Explanation`].
#[derive(Debug, Clone, Serialize)]
pub struct RuleTrace {
    /// The rule's name.
    pub name: String,
    /// Its line in the file.
    pub line: usize,
    /// Its action.
    pub action: Action,
    /// Whether it matched the call.
    pub matched: bool,
    /// Why (or why not), in words.
    pub note: String,
    /// Each test on the arguments, in order.
    pub tests: Vec<TestResult>,
}
