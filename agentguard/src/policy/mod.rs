//! Policy: decide by a call's arguments, not only its tool's name — allow, ask or deny, from a TOML file.
//!
//! A [`Policy`] is a list of rules. Each rule names the calls it covers (tools, agents, sessions, servers, risks),
//! tests their arguments (`when`), and says what to do: `allow` (run without asking), `ask` (a person decides), or
//! `deny` (refused, with a message the agent reads in [`ActionDenied::detail`](crate::ActionDenied::detail)). The
//! guard evaluates it for every call, before any approver is consulted:
//!
//! ```
//! use agentguard::policy::{Action, Policy};
//! use agentguard::ToolCall;
//! use serde_json::json;
//!
//! let policy = Policy::from_toml(r#"
//!     default = "classify"
//!
//!     [[rule]]
//!     name = "refunds over 100 EUR need a person"
//!     tools = ["refund_*"]
//!     when = { amount_eur = { gt = 100 } }
//!     action = "ask"
//!
//!     [[rule]]
//!     name = "small refunds run"
//!     tools = ["refund_*"]
//!     action = "allow"
//! "#).unwrap();
//!
//! let small = ToolCall::new("refund_order", json!({"amount_eur": 40}));
//! let large = ToolCall::new("refund_order", json!({"amount_eur": 400}));
//! assert_eq!(policy.evaluate(&small, None).action(), Some(Action::Allow));
//! assert_eq!(policy.evaluate(&large, None).rule(), Some("refunds over 100 EUR need a person"));
//! ```
//!
//! # Precedence
//!
//! Of all the rules that match a call, `deny` beats `ask` beats `allow`; among rules with the same action the first
//! in the file is the one recorded. A call no rule matches falls to `default`: `"classify"` (the guard's name rules:
//! `dangerous_tools`, `safe_tools`, declared risks, [`classify`]), `"ask"`, `"allow"` or `"deny"`.
//!
//! Two things only an explicit rule can relax: a tool declared to always ask (`#[gate]`, `#[tool(risk = …)]`,
//! `Gating::Always`) runs unasked only under an `allow` rule whose `tools` names it exactly (no wildcard), never by
//! `default = "allow"` or a `*` rule; and a name [`classify`] finds suspicious (hidden or
//! look-alike characters) is never allowed by any rule.
//!
//! # Matching names
//!
//! `tools`, `agents`, `sessions` and `servers` take names with `*` (any characters) and `?` (one character).
//! `allow` rules match names exactly as written. `ask` and `deny` rules also match other spellings of a tool's name
//! — any case, separators, Unicode compatibility forms and look-alike letters (`DELETE_FILE`, `deleteFile`, a
//! Cyrillic `е`) — so a dispatcher that runs such a spelling cannot slip past them. A key left out matches
//! everything; a call without an agent id does not match a rule that lists agents.
//!
//! # Tests on arguments
//!
//! `when` is a table of argument paths and tests, all of which must hold: `amount = { gt = 100 }`. A path is a
//! dotted name (`customer.email`, `items.0.sku`, `items.*.sku` for every element) or a JSON Pointer
//! (`"/customer/email"`) for keys that hold a dot or are named like a test. A bare value is `eq`:
//! `currency = "EUR"`. The tests:
//!
//! | test | holds when the argument… |
//! |---|---|
//! | `eq`, `ne` | equals / does not equal the value (JSON equality; numbers by value, `1 == 1.0`) |
//! | `in`, `not_in` | is / is not one of the listed values |
//! | `gt`, `ge`, `lt`, `le` | is a number greater / greater or equal / less / less or equal (integers exactly) |
//! | `prefix`, `suffix` | is a string starting / ending with the text |
//! | `glob` | is a string matching the path glob (`*` within a step, `**` across, `?`, `[a-z]`, `{a,b}`) |
//! | `regex` | is a string the regex finds a match in (unanchored; `^…$` for the whole; linear time) |
//! | `under`, `not_under` | is a path inside / outside the folder, after lexical normalization |
//! | `exists` | is present (`true`) / absent (`false`) |
//! | `len_gt`, `len_lt` | has more / fewer characters (string), elements (array) or keys (object) |
//!
//! `all = [{…}, {…}]`, `any = [{…}, {…}]` and `not = {…}` combine tests. A `*` step is read the strict way: in an
//! `ask` or `deny` rule a test holds when it holds for any element, in an `allow` rule only for every element
//! (flipped under `not`).
//!
//! `under` normalizes both paths lexically (`.` dropped, `..` applied, `/` and `\` both separators), so
//! `sandbox/../etc` is not under `sandbox`; it does not read the filesystem, so a symbolic link inside the folder
//! is judged by its name. Relative paths are joined to the policy's `base_dir` when it sets one; without it a
//! relative path is compared only with relative folders, and a relative path against an absolute folder cannot be
//! judged.
//!
//! # Who answers, and standing grants
//!
//! An `ask` rule can say who decides: `approvers = ["alice", "@finance"]` (names, and groups from a top-level
//! `[groups]` table), `quorum = 2` (approvals needed, default 1) and `denials = 1` (denials that end it, default 1).
//! The request then carries its [`Quorum`](crate::answer::Quorum): votes are counted in the store, the call runs
//! once when enough approvals are in, and only an external guard can collect them. `remember = false` forbids
//! standing grants ([`GrantSpec`](crate::answer::GrantSpec)) for the calls the rule asks about; a quorum rule
//! forbids them too. Every matching `ask` rule adds its constraints, not only the one recorded as deciding. A
//! top-level `[principals]` table maps an agent id to the people who act for it: like the agent itself, they may
//! not answer its requests.
//!
//! # Fail closed
//!
//! A test that cannot be judged — the argument is missing, or has the wrong type (`gt` on a string, `under` on a
//! number, `"0"` for `in = [0, 1]`, a glob on a path with a `..` step) — never loosens anything: in an `allow` rule the rule does not match; in an `ask` or `deny` rule it does.
//! So a call without `path` cannot slip past a `not_under` deny. [`Policy::warnings`] (and `agentguard policy
//! check`) lists the rules this can affect; `exists = true` in a deny rule's test lets calls without the argument
//! through. The values tested are the call's params as they are frozen for approval and execution: the arguments
//! that were judged are the ones that run.

mod condition;
mod file;
mod operand;
mod path;
mod pattern;
mod people;
mod predicate;
#[cfg(test)]
mod tests;
mod verdict;
mod watch;
mod words;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::request::ToolCall;
use agentguard_classify::{classify, confusable_key, Risk};
use path::FsPath;
use pattern::NamePattern;
use predicate::{Env, Pred, Tri};

mod error;

pub use condition::GrantCondition;
pub use error::{Diagnostic, PolicyError, Severity};
pub use predicate::TestResult;
pub use verdict::{Evaluation, Explanation, RuleTrace};
pub use watch::DEFAULT_RELOAD_INTERVAL;
pub(crate) use watch::{Loaded, PolicySlot};

/// What a rule (or the default) says to do with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Run without asking.
    Allow,
    /// A person decides.
    Ask,
    /// Refused, with the rule's message.
    Deny,
}

impl Action {
    /// `allow`, `ask` or `deny`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Ask => "ask",
            Action::Deny => "deny",
        }
    }

    /// `would_allow`, `would_ask` or `would_deny`: what a policy in shadow mode records.
    pub const fn as_shadow_str(self) -> &'static str {
        match self {
            Action::Allow => "would_allow",
            Action::Ask => "would_ask",
            Action::Deny => "would_deny",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to a call no rule matches (`default = …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultAction {
    /// The guard's name rules decide, as without a policy (the default).
    Classify,
    /// Ask about every call no rule covers.
    Ask,
    /// Run every call no rule covers, except tools declared to always ask and suspicious names.
    Allow,
    /// Refuse every call no rule covers.
    Deny,
}

impl DefaultAction {
    /// `classify`, `ask`, `allow` or `deny`.
    pub const fn as_str(self) -> &'static str {
        match self {
            DefaultAction::Classify => "classify",
            DefaultAction::Ask => "ask",
            DefaultAction::Allow => "allow",
            DefaultAction::Deny => "deny",
        }
    }
}

/// Whether a policy decides (`enforce`, the default) or is only watched (`shadow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyMode {
    /// The policy decides.
    Enforce,
    /// The policy is evaluated and its answer recorded in the audit (`would_allow`, `would_ask`, `would_deny`), but
    /// the guard's name rules still decide: watch a policy before enforcing it.
    Shadow,
}

impl PolicyMode {
    /// `enforce` or `shadow`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PolicyMode::Enforce => "enforce",
            PolicyMode::Shadow => "shadow",
        }
    }
}

/// A compiled policy: cheap to clone (shared), immutable. Load one with [`Policy::from_file`] or
/// [`Policy::from_toml`]; give it to a guard with [`GuardBuilder::policy`](crate::guard::GuardBuilder::policy) or
/// [`policy_file`](crate::guard::GuardBuilder::policy_file) (which also reloads it when the file changes).
#[derive(Clone)]
pub struct Policy {
    inner: Arc<Compiled>,
    warnings: Arc<[Diagnostic]>,
}

pub(crate) struct Compiled {
    /// The first 16 hex digits of the SHA-256 of the source text.
    version: String,
    default: DefaultAction,
    mode: PolicyMode,
    base_dir: Option<FsPath>,
    rules: Vec<Rule>,
    /// Rule indexes, deny rules first, then ask, then allow; file order within each.
    order: Vec<usize>,
    /// `[principals]`: for an agent id, the people who act for it (they may not answer its requests).
    principals: HashMap<String, Vec<String>>,
    /// For each tool name seen, the rules (in `order`) whose `tools` cover it: the name matching (wildcards, the
    /// confusable key) is done once per name, not once per call. Bounded by [`MAX_CACHED_NAMES`].
    by_name: RwLock<HashMap<Box<str>, Arc<[u32]>>>,
}

/// How many distinct tool names a policy remembers the matching rules of. Past it, names are matched on every call
/// (same answers, slower), so a model inventing names cannot grow memory without bound.
const MAX_CACHED_NAMES: usize = 4096;

pub(crate) struct Rule {
    name: String,
    line: usize,
    /// The argument paths its tests read that can be missing or of the wrong type (for the denial's words).
    judged: Vec<String>,
    action: Action,
    message: Option<String>,
    tools: Vec<NamePattern>,
    agents: Vec<NamePattern>,
    sessions: Vec<NamePattern>,
    servers: Vec<NamePattern>,
    risks: Option<Vec<Option<Risk>>>,
    when: Option<Pred>,
    /// `remember = false`: approvals of the calls it asks about make no standing grant, and no grant covers them.
    remember: bool,
    /// `approvers` / `quorum` / `denials`: who decides the calls it asks about.
    quorum: Option<crate::request::Quorum>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("version", &self.inner.version)
            .field("default", &self.inner.default)
            .field("mode", &self.inner.mode)
            .field("rules", &self.rule_names().collect::<Vec<_>>())
            .finish()
    }
}

impl Policy {
    /// Reads and compiles the policy file at `path`. The error lists every problem with its line.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        let path = path.as_ref();
        let source = std::fs::read_to_string(path).map_err(|e| PolicyError {
            origin: path.display().to_string(),
            diagnostics: Vec::new(),
            io: Some(e.to_string()),
        })?;
        Policy::compile(&source, &path.display().to_string())
    }

    /// Compiles a policy from TOML text.
    pub fn from_toml(source: &str) -> Result<Policy, PolicyError> {
        Policy::compile(source, "<policy>")
    }

    fn compile(source: &str, origin: &str) -> Result<Policy, PolicyError> {
        match file::compile(source) {
            Ok((mut compiled, warnings)) => {
                let digest = Sha256::digest(source.as_bytes());
                compiled.version = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
                Ok(Policy {
                    inner: Arc::new(compiled),
                    warnings: warnings.into(),
                })
            }
            Err(diagnostics) => Err(PolicyError {
                origin: origin.to_owned(),
                diagnostics,
                io: None,
            }),
        }
    }

    /// The policy's version: the first 16 hex digits of the SHA-256 of its text. Every audit line it decides
    /// records it.
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// Enforce or shadow.
    pub fn mode(&self) -> PolicyMode {
        self.inner.mode
    }

    /// What happens to calls no rule matches.
    pub fn default_action(&self) -> DefaultAction {
        self.inner.default
    }

    /// The rules' names, in file order.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.inner.rules.iter().map(|r| r.name.as_str())
    }

    /// What loading found worth knowing that is not an error: rules whose tests can fail to be judged, and which way
    /// they then fall.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The rule that decides `call`, if any. `risk` is the call's declared or classified risk (what a rule's
    /// `risks` matches; `None` for a call its name rules find safe).
    pub fn evaluate(&self, call: &ToolCall, risk: Option<Risk>) -> Evaluation<'_> {
        let c = &*self.inner;
        let candidates = c.rules_for(&call.name);
        for &i in candidates.iter() {
            let rule = &c.rules[i as usize];
            if !rule.covers_context(call, risk) {
                continue;
            }
            let env = Env {
                base: c.base_dir.as_ref(),
                any: rule.action != Action::Allow,
            };
            let tri = rule
                .when
                .as_ref()
                .map_or(Tri::True, |pred| pred.eval(&call.params, &env));
            let hit = match tri {
                Tri::True => true,
                Tri::False => false,
                Tri::Unknown => rule.action != Action::Allow,
            };
            if hit && rule.action == Action::Allow && classify(&call.name) == Some(Risk::SuspiciousName) {
                continue;
            }
            if hit {
                let mut eval = Evaluation {
                    policy: self,
                    rule: Some(rule),
                    unjudged: tri == Tri::Unknown,
                    quorum: None,
                    no_remember: None,
                };
                if rule.action == Action::Ask {
                    // Every ask rule that matches adds its constraints, not only the one recorded: a quorum or a
                    // `remember = false` is never lost to a rule earlier in the file.
                    self.ask_constraints(call, risk, &candidates, &mut eval);
                }
                return eval;
            }
        }
        Evaluation {
            policy: self,
            rule: None,
            unjudged: false,
            quorum: None,
            no_remember: None,
        }
    }

    /// Gathers, over every `ask` rule matching `call`, the first quorum (in file order) and the first rule that
    /// forbids standing grants.
    fn ask_constraints<'p>(
        &'p self,
        call: &ToolCall,
        risk: Option<Risk>,
        candidates: &[u32],
        eval: &mut Evaluation<'p>,
    ) {
        let c = &*self.inner;
        for &i in candidates {
            let rule = &c.rules[i as usize];
            if rule.action != Action::Ask || (rule.remember && rule.quorum.is_none()) {
                continue;
            }
            if !rule.covers_context(call, risk) {
                continue;
            }
            let env = Env {
                base: c.base_dir.as_ref(),
                any: true,
            };
            let hit = rule
                .when
                .as_ref()
                .map_or(Tri::True, |pred| pred.eval(&call.params, &env))
                != Tri::False;
            if !hit {
                continue;
            }
            if eval.quorum.is_none() {
                eval.quorum = rule.quorum.as_ref();
            }
            if !rule.remember && eval.no_remember.is_none() {
                eval.no_remember = Some(rule.name.as_str());
            }
        }
    }

    /// The people who act for `agent` (`[principals]`): they may not answer its requests.
    pub fn principals_of(&self, agent: &str) -> &[String] {
        self.inner.principals.get(agent).map_or(&[], Vec::as_slice)
    }

    /// Every rule's verdict on `call`, each test's result, and the decision, for `agentguard policy explain`. The
    /// default `classify` is resolved with [`classify`] alone (a guard's `dangerous_tools` and
    /// `safe_tools` are not known here).
    pub fn explain(&self, call: &ToolCall, risk: Option<Risk>) -> Explanation {
        let c = &*self.inner;
        let mut key = None;
        let rules = c
            .rules
            .iter()
            .map(|rule| {
                let covers = rule.covers(call, risk, &mut key);
                let mut tests = Vec::new();
                let env = Env {
                    base: c.base_dir.as_ref(),
                    any: rule.action != Action::Allow,
                };
                let tri = match &rule.when {
                    None => Tri::True,
                    Some(pred) => pred.explain(&call.params, &env, &mut tests),
                };
                let suspicious = rule.action == Action::Allow && classify(&call.name) == Some(Risk::SuspiciousName);
                let (matched, note) = match (covers, tri) {
                    (false, _) => (
                        false,
                        "does not cover this call (tools, agents, sessions, servers or risks)",
                    ),
                    (true, _) if suspicious => (false, "an allow rule never covers a suspicious name"),
                    (true, Tri::True) => (true, "matches"),
                    (true, Tri::False) => (false, "its tests do not hold"),
                    (true, Tri::Unknown) if rule.action == Action::Allow => (
                        false,
                        "a test cannot be judged, so this allow rule does not match (fail closed)",
                    ),
                    (true, Tri::Unknown) => (true, "a test cannot be judged, so this rule matches (fail closed)"),
                };
                RuleTrace {
                    name: rule.name.clone(),
                    line: rule.line,
                    action: rule.action,
                    matched,
                    note: note.to_owned(),
                    tests,
                }
            })
            .collect();
        let eval = self.evaluate(call, risk);
        Explanation {
            decision: eval.resolve(risk),
            rule: eval.rule().map(str::to_owned),
            message: eval.message().map(str::to_owned),
            default: c.default,
            mode: c.mode,
            version: c.version.clone(),
            rules,
        }
    }
}

impl Compiled {
    /// The rules whose `tools` cover `tool`, in decision order.
    fn rules_for(&self, tool: &str) -> Arc<[u32]> {
        if let Some(hit) = self.by_name.read().ok().and_then(|m| m.get(tool).cloned()) {
            return hit;
        }
        let mut key = None;
        let rules: Arc<[u32]> = self
            .order
            .iter()
            .filter(|&&i| self.rules[i].covers_tool(tool, &mut key))
            .map(|&i| i as u32)
            .collect();
        if let Ok(mut m) = self.by_name.write() {
            if m.len() < MAX_CACHED_NAMES {
                m.insert(tool.into(), rules.clone());
            }
        }
        rules
    }
}

impl Rule {
    /// Whether the rule's names and risks cover the call (its `when` aside).
    fn covers(&self, call: &ToolCall, risk: Option<Risk>, key: &mut Option<String>) -> bool {
        self.covers_tool(&call.name, key) && self.covers_context(call, risk)
    }

    /// Whether `tools` covers the tool's name: as written, or for `ask` and `deny` rules in any spelling with the
    /// same confusable key.
    fn covers_tool(&self, tool: &str, key: &mut Option<String>) -> bool {
        if self.tools.is_empty() || self.tools.iter().any(|p| p.matches(tool)) {
            return true;
        }
        if self.action == Action::Allow {
            return false;
        }
        let key = key.get_or_insert_with(|| confusable_key(tool));
        self.tools.iter().any(|p| p.matches_key(key))
    }

    /// Whether the agent, session, server and risk are the rule's.
    fn covers_context(&self, call: &ToolCall, risk: Option<Risk>) -> bool {
        let listed = |patterns: &[NamePattern], value: Option<&str>| {
            patterns.is_empty() || value.is_some_and(|v| patterns.iter().any(|p| p.matches(v)))
        };
        listed(&self.agents, call.agent_id.as_deref())
            && listed(&self.sessions, call.session_id.as_deref())
            && listed(&self.servers, call.server.as_deref())
            && self.risks.as_ref().is_none_or(|rs| rs.contains(&risk))
    }

    /// Whether `tools` names `tool` exactly (no wildcard): what relaxing a declared tool needs.
    fn names(&self, tool: &str) -> bool {
        self.tools.iter().any(|p| p.is_exact() && p.as_str() == tool)
    }
}

/// What decided a call, as the audit records it: `{"rule": NAME|"default", "action": …, "version": …}`. A policy
/// reload's line carries only the version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyStamp {
    /// The deciding rule's name, or `default`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// `allow`, `ask`, `deny` (enforced) or `would_allow`, `would_ask`, `would_deny` (shadow mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    /// The policy's version.
    pub version: String,
}

impl PolicyStamp {
    pub(crate) fn of(eval: &Evaluation<'_>, action: Action) -> PolicyStamp {
        let shadow = eval.policy().mode() == PolicyMode::Shadow;
        PolicyStamp {
            rule: Some(eval.rule().unwrap_or("default").to_owned()),
            action: Some(if shadow {
                action.as_shadow_str()
            } else {
                action.as_str()
            }),
            version: eval.policy().version().to_owned(),
        }
    }
}
