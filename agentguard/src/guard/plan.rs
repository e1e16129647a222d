//! The guard's rules for a call, before anything is asked or audited: the risk its name carries ([`Inner::risk_of`],
//! [`Inner::gate_risk`]) and what the policy or the name rules decide for it ([`Inner::plan`]).

use super::approval::Route;
use super::{Gating, Inner};
use crate::policy::{Action, DefaultAction, PolicyMode, PolicyStamp};
use crate::request::{Quorum, ToolCall};
use agentguard_classify::{classify, confusable_key, name_key, Risk};

/// Who asks about a call, and on what terms.
#[derive(Clone, Default)]
pub(super) struct Asking {
    /// The policy rule that asks, with its message (none when the name rules or the default ask).
    pub(super) rule: Option<(String, Option<String>)>,
    /// The quorum a matching ask rule requires.
    pub(super) quorum: Option<Quorum>,
    /// The matching ask rule that forbids standing grants.
    pub(super) no_remember: Option<String>,
}

/// What the first step decided for a call.
#[derive(Clone)]
pub(super) enum Plan {
    /// Run without asking.
    Allow(Route),
    /// Ask, showing this risk.
    Ask(Risk, Asking),
    /// Refused by the policy, with the message the agent reads.
    Deny(String),
}

impl Inner {
    /// The risk a call is gated with, or `None` when it runs without asking.
    pub(super) fn gate_risk(&self, tool: &str, gate: Gating) -> Option<Risk> {
        match gate {
            Gating::Auto => self.risk_of(tool),
            Gating::Always(risk) => Some(risk),
            Gating::Never => None,
        }
    }

    /// The guard's rules for a name: a suspicious name is gated whatever the lists say; then `dangerous_tools`,
    /// `safe_tools`, and [`classify`].
    pub(super) fn risk_of(&self, tool: &str) -> Option<Risk> {
        let risk = classify(tool);
        if (self.dangerous.is_empty() && self.safe.is_empty()) || risk == Some(Risk::SuspiciousName) {
            return risk;
        }
        // The lists match names in one normalized form (NFKC, case folded, separators ignored: `LOYALTYBONUS` and
        // fullwidth `ｌｏｙａｌｔｙ_ｂｏｎｕｓ` are `loyalty_bonus`); `dangerous_tools` also by confusable skeleton, so a
        // look-alike of a listed name is listed too.
        if !self.dangerous.is_empty() && self.dangerous.contains(&confusable_key(tool)) {
            return Some(risk.unwrap_or(Risk::ManuallyFlagged));
        }
        if !self.safe.is_empty() && self.safe.contains(&name_key(tool)) {
            return None;
        }
        risk
    }

    /// What to do with a call: the policy's answer (when the guard has one in force), else the name rules'. In
    /// shadow mode the policy's answer is only recorded (`would_…`) and the name rules decide.
    pub(super) fn plan(&self, call: &ToolCall, gate: Gating, risk: Option<Risk>) -> (Plan, Option<PolicyStamp>) {
        let by_names = match risk {
            None => Plan::Allow(match gate {
                // Whose word made it safe: the caller's declaration proves nothing about the call.
                Gating::Never => Route::Declared,
                _ => Route::GuardRules,
            }),
            Some(risk) => Plan::Ask(risk, Asking::default()),
        };
        let Some(slot) = &self.policy else {
            return (by_names, None);
        };
        let policy = slot.current();
        let eval = policy.evaluate(call, risk);
        // What only an explicit allow rule may relax: a tool declared to always ask, or listed in dangerous_tools.
        let declared = matches!(gate, Gating::Always(_))
            || (!self.dangerous.is_empty() && self.dangerous.contains(&confusable_key(&call.name)));
        // From the name itself, not the gating: a caller's `Gating::Never` does not make a disguised name plain.
        let suspicious = risk == Some(Risk::SuspiciousName) || classify(&call.name) == Some(Risk::SuspiciousName);
        let by_rule = Asking {
            rule: eval
                .rule()
                .map(|rule| (rule.to_owned(), eval.message().map(str::to_owned))),
            quorum: eval.quorum().cloned(),
            no_remember: eval.forbids_remember().map(str::to_owned),
        };
        let ask = || Plan::Ask(risk.unwrap_or(Risk::ManuallyFlagged), by_rule.clone());
        let plan = match (eval.action(), policy.default_action()) {
            (Some(Action::Deny), _) => Plan::Deny(eval.denial()),
            (Some(Action::Ask), _) => ask(),
            // The allow rule cannot relax it; the request does not name that rule as the one asking.
            (Some(Action::Allow), _) if declared && !eval.names(&call.name) => {
                Plan::Ask(risk.unwrap_or(Risk::ManuallyFlagged), Asking::default())
            }
            (Some(Action::Allow), _) => Plan::Allow(Route::Policy),
            (None, DefaultAction::Classify) => by_names.clone(),
            (None, DefaultAction::Ask) => ask(),
            (None, DefaultAction::Allow) if declared || suspicious => {
                let shown = if suspicious {
                    Risk::SuspiciousName
                } else {
                    Risk::ManuallyFlagged
                };
                Plan::Ask(risk.unwrap_or(shown), Asking::default())
            }
            // No rule looked at it: a call its caller declared safe stays the caller's word (no `Approval` from it).
            (None, DefaultAction::Allow) if gate == Gating::Never => Plan::Allow(Route::Declared),
            (None, DefaultAction::Allow) => Plan::Allow(Route::Policy),
            (None, DefaultAction::Deny) => {
                Plan::Deny("no policy rule allows this call, and the policy's default is deny".to_owned())
            }
        };
        let action = match plan {
            Plan::Allow(_) => Action::Allow,
            Plan::Ask(..) => Action::Ask,
            Plan::Deny(_) => Action::Deny,
        };
        let stamp = Some(PolicyStamp::of(&eval, action));
        match policy.mode() {
            PolicyMode::Enforce => (plan, stamp),
            PolicyMode::Shadow => (by_names, stamp),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{AgentGuard, Risk};

    fn guard() -> AgentGuard {
        AgentGuard::callback(|_| false)
            .dangerous_tools(["loyaltyBonus"])
            .safe_tools(["reset_view"])
            .no_audit()
            .build()
    }

    #[test]
    fn dangerous_tools_gate_every_spelling_a_dispatcher_could_run() {
        let guard = guard();
        for spelling in [
            "loyaltyBonus",
            "LOYALTYBONUS",
            "loyaltybonus",
            "loyalty_bonus",
            "Loyalty-Bonus",
            "\u{00A0}loyalty_bonus",
            "loyalty_bonus\u{3000}",
            "l\u{043E}yalty_bonus",
            "\u{FF4C}\u{FF4F}\u{FF59}\u{FF41}\u{FF4C}\u{FF54}\u{FF59}_\u{FF42}\u{FF4F}\u{FF4E}\u{FF55}\u{FF53}",
            "loyalty\u{200B}_bonus",
        ] {
            assert!(guard.risk_of(spelling).is_some(), "{spelling:?} runs ungated");
        }
        assert_eq!(guard.risk_of("LOYALTYBONUS"), Some(Risk::ManuallyFlagged));
        assert_eq!(guard.risk_of("l\u{043E}yalty_bonus"), Some(Risk::SuspiciousName));
        assert_eq!(guard.risk_of("loyalty_points"), None);
    }

    #[test]
    fn safe_tools_never_cover_a_disguised_name() {
        let guard = guard();
        assert_eq!(guard.risk_of("reset_view"), None);
        assert_eq!(guard.risk_of("RESETVIEW"), None);
        assert_eq!(guard.risk_of("\u{00A0}reset_view"), Some(Risk::SuspiciousName));
        assert_eq!(guard.risk_of("r\u{0435}set_view"), Some(Risk::SuspiciousName));
        assert_eq!(guard.risk_of("reset\u{200B}_view"), Some(Risk::SuspiciousName));
        assert_eq!(guard.risk_of("reset_views_all"), Some(Risk::Irreversible));
    }
}
