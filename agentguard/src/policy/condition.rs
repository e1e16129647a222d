//! [`GrantCondition`]: tests on a call's arguments in the policy's `when` language, standing alone — what narrows a
//! standing grant ("allow writes under ./reports for this session").

use std::fmt;

use serde_json::Value;

use super::predicate::{Env, Pred, Tri};
use super::{Diagnostic, Policy, PolicyError};

/// Tests on a call's arguments written as the body of a policy rule's `when` table, e.g.
/// `path = { under = "./reports" }` or `amount = { le = 100 }` (several lines or `all`/`any`/`not` for more).
///
/// A call matches only when every test holds for certain: an argument that is missing or of the wrong type, or an
/// `items.*` test that fails for one element, does not match (fail closed, as in an `allow` rule).
///
/// ```
/// use agentguard::policy::GrantCondition;
/// use serde_json::json;
///
/// let cond = GrantCondition::compile(r#"path = { under = "reports" }"#).unwrap();
/// assert!(cond.matches(&json!({"path": "reports/q3.csv"})));
/// assert!(!cond.matches(&json!({"path": "reports/../etc/passwd"})));
/// assert!(!cond.matches(&json!({})));
/// let err = GrantCondition::compile("amount = { gt = \"100\" }").unwrap_err();
/// assert!(err.to_string().contains("gt = 100"), "{err}");
/// ```
#[derive(Clone)]
pub struct GrantCondition {
    source: String,
    pred: Pred,
}

impl fmt::Debug for GrantCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("GrantCondition").field(&self.source).finish()
    }
}

/// Lines the wrapper adds before the condition's own text.
const PREFIX_LINES: usize = 4;

impl GrantCondition {
    /// Compiles the tests. The error lists every problem, with its line in `source` and what to write instead.
    pub fn compile(source: &str) -> Result<GrantCondition, PolicyError> {
        let wrapped = format!("[[rule]]\nname = \"grant\"\naction = \"allow\"\n[rule.when]\n{source}\n");
        let policy = Policy::from_toml(&wrapped).map_err(|mut e| {
            e.origin = "the grant's condition".to_owned();
            for d in &mut e.diagnostics {
                d.line = d.line.saturating_sub(PREFIX_LINES).max(1);
                d.key = d
                    .key
                    .replace("rule \"grant\": when.", "")
                    .replace("rule \"grant\": when", "");
            }
            e
        })?;
        let pred = policy.inner.rules.first().and_then(|r| r.when.clone());
        match pred {
            Some(pred) => Ok(GrantCondition {
                source: source.to_owned(),
                pred,
            }),
            None => Err(PolicyError {
                origin: "the grant's condition".to_owned(),
                diagnostics: vec![Diagnostic {
                    severity: super::Severity::Error,
                    line: 1,
                    column: 1,
                    key: String::new(),
                    message: "the condition has no test; write e.g. path = { under = \"./reports\" }".to_owned(),
                }],
                io: None,
            }),
        }
    }

    /// Whether `params` pass every test, for certain.
    pub fn matches(&self, params: &Value) -> bool {
        let env = Env { base: None, any: false };
        self.pred.eval(params, &env) == Tri::True
    }

    /// The text it was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }
}
