//! `tracing` (feature `tracing`): one span per call and one event per decision, named after OpenTelemetry's GenAI
//! semantic conventions where they have a name for it. Without the feature every item here is a no-op of size zero.
//!
//! The decision core calls it at four points: the span is made when a call enters
//! ([`CallSpan::of`]), a gated call is announced when it is asked about ([`CallSpan::parked`]), the verdict is
//! announced when it is known ([`CallSpan::decided`], which hands the span on inside the [`Allowed`] decision), and the
//! run is announced when it ends ([`RunTrace`]). Params never appear: only their digest.

use super::Allowed;
use crate::request::{ActionDenied, ApprovalRequest, ToolCall};

/// The span of one tool call, from its decision to the end of its run.
#[derive(Debug, Clone)]
pub(crate) struct CallSpan {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

// Derivable only without the `tracing` feature (an empty struct); with it, the span is `Span::none()`.
#[allow(clippy::derivable_impls)]
impl Default for CallSpan {
    fn default() -> Self {
        CallSpan {
            #[cfg(feature = "tracing")]
            span: tracing::Span::none(),
        }
    }
}

/// The tracing target of every span and event (filter with `agentguard=info`).
#[cfg(feature = "tracing")]
const TARGET: &str = "agentguard";

/// One decision event: its name, level and message, with the fields every decision event has.
#[cfg(feature = "tracing")]
macro_rules! decision {
    ($span:expr, $level:expr, $name:literal, { $($field:tt)* }, $msg:literal) => {
        tracing::event!(
            name: concat!("agentguard.", $name),
            target: TARGET,
            parent: $span,
            $level,
            { agentguard.decision = $name, $($field)* },
            $msg
        )
    };
}

impl CallSpan {
    /// The span of `call`: `execute_tool` with the GenAI attributes (`gen_ai.operation.name`, `gen_ai.tool.name`,
    /// `gen_ai.tool.type`, `gen_ai.tool.call.id`, `gen_ai.agent.id`, `gen_ai.conversation.id`) and empty
    /// `agentguard.*` fields filled in as the decision is made.
    pub(crate) fn of(call: &ToolCall) -> Self {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::info_span!(
                target: TARGET,
                "execute_tool",
                otel.name = format_args!("execute_tool {}", call.name()),
                otel.kind = "internal",
                gen_ai.operation.name = "execute_tool",
                gen_ai.tool.name = call.name(),
                gen_ai.tool.type = "function",
                gen_ai.tool.call.id = call.get_call_id(),
                gen_ai.agent.id = call.get_agent_id(),
                gen_ai.conversation.id = call.get_session_id(),
                agentguard.server = call.get_server(),
                agentguard.risk = tracing::field::Empty,
                agentguard.request_id = tracing::field::Empty,
                agentguard.params_digest = tracing::field::Empty,
                agentguard.decision = tracing::field::Empty,
                agentguard.reason = tracing::field::Empty,
                agentguard.policy.rule = tracing::field::Empty,
                agentguard.actor = tracing::field::Empty,
                agentguard.outcome = tracing::field::Empty,
                error.type = tracing::field::Empty,
            );
            CallSpan { span }
        }
        #[cfg(not(feature = "tracing"))]
        {
            let _ = call;
            CallSpan {}
        }
    }

    /// Runs `f` inside the span (so the approver's own events nest under it).
    pub(crate) fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        #[cfg(feature = "tracing")]
        return self.span.in_scope(f);
        #[cfg(not(feature = "tracing"))]
        f()
    }

    /// `fut`, polled inside the span.
    #[cfg(feature = "tokio")]
    pub(crate) fn instrument<F: std::future::Future>(&self, fut: F) -> impl std::future::Future<Output = F::Output> {
        #[cfg(feature = "tracing")]
        return tracing::Instrument::instrument(fut, self.span.clone());
        #[cfg(not(feature = "tracing"))]
        fut
    }

    /// A gated call is asked about: its request is made (and, in external mode, parked in the store).
    pub(crate) fn parked(&self, request: &ApprovalRequest) {
        #[cfg(feature = "tracing")]
        {
            let span = &self.span;
            span.record("agentguard.risk", request.risk().key());
            span.record("agentguard.request_id", request.request_id().as_str());
            span.record("agentguard.params_digest", request.params_digest().as_str());
            span.record("agentguard.policy.rule", request.policy_rule());
            decision!(span, tracing::Level::INFO, "parked", {
                agentguard.request_id = request.request_id().as_str(),
                agentguard.risk = request.risk().key(),
                agentguard.params_digest = request.params_digest().as_str(),
                agentguard.policy.rule = request.policy_rule(),
            }, "gated call waits for an answer");
        }
        #[cfg(not(feature = "tracing"))]
        let _ = request;
    }

    /// The call is refused: announces it (`denied`, or `expired`) and passes the denial on.
    #[cfg(feature = "tokio")]
    pub(crate) fn denied(self, denied: ActionDenied) -> ActionDenied {
        match self.decided(Err(denied)) {
            Err(denied) => denied,
            Ok(_) => unreachable!("a denial stays a denial"),
        }
    }

    /// The verdict is known: announces it (`allowed` for a safe call, `approved`, `denied`, `expired`) and hands the
    /// span on inside the decision, for the run.
    pub(crate) fn decided(self, decision: Result<Allowed, ActionDenied>) -> Result<Allowed, ActionDenied> {
        #[cfg(feature = "tracing")]
        {
            use tracing::Level;
            let span = &self.span;
            match &decision {
                Ok(allowed) if allowed.was_asked() => {
                    let actor = allowed.actor();
                    span.record("agentguard.decision", "approved");
                    span.record("agentguard.actor", actor);
                    decision!(span, Level::INFO, "approved", {
                        agentguard.request_id = allowed.request_id().map(|id| id.as_str()),
                        agentguard.actor = actor,
                    }, "gated call approved");
                }
                Ok(_) => {
                    span.record("agentguard.decision", "allowed");
                    decision!(span, Level::INFO, "allowed", {}, "call allowed without asking");
                }
                Err(denied) => {
                    let reason = denied.reason().as_str();
                    let expired = denied.reason() == crate::DenyReason::ApprovalTimeout;
                    span.record("agentguard.decision", if expired { "expired" } else { "denied" });
                    span.record("agentguard.reason", reason);
                    span.record("error.type", reason);
                    let id = denied.request_id().map(|id| id.as_str());
                    if expired {
                        decision!(span, Level::WARN, "expired", {
                            agentguard.request_id = id,
                            agentguard.reason = reason,
                        }, "gated call expired: no answer in time");
                    } else {
                        decision!(span, Level::WARN, "denied", {
                            agentguard.request_id = id,
                            agentguard.reason = reason,
                        }, "call denied");
                    }
                }
            }
        }
        decision.map(|allowed| allowed.traced(self))
    }
}

/// The run of an allowed call: `executed` when it returns, `failed` when it is refused, panics or is dropped.
#[derive(Debug)]
pub(crate) struct RunTrace {
    span: CallSpan,
    done: bool,
}

impl RunTrace {
    /// Starts tracing the run of `allowed`.
    pub(crate) fn of(allowed: &Allowed) -> Self {
        RunTrace {
            span: allowed.span().clone(),
            done: false,
        }
    }

    /// Runs `f` inside the call's span.
    pub(crate) fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        self.span.in_scope(f)
    }

    /// `fut`, polled inside the call's span.
    #[cfg(feature = "tokio")]
    pub(crate) fn instrument<F: std::future::Future>(&self, fut: F) -> impl std::future::Future<Output = F::Output> {
        self.span.instrument(fut)
    }

    /// The executor returned.
    pub(crate) fn executed(mut self) {
        self.done = true;
        #[cfg(feature = "tracing")]
        {
            let span = &self.span.span;
            span.record("agentguard.outcome", "executed");
            decision!(span, tracing::Level::INFO, "executed", {}, "the executor returned");
        }
    }

    /// The run was refused before anything ran (a handler's approval not made).
    pub(crate) fn refused(mut self, denied: &ActionDenied) {
        self.done = true;
        self.fail(denied.reason().as_str());
    }

    fn fail(&self, why: &str) {
        #[cfg(feature = "tracing")]
        {
            let span = &self.span.span;
            span.record("agentguard.outcome", "failed");
            span.record("error.type", why);
            decision!(
                span,
                tracing::Level::WARN,
                "failed",
                { agentguard.reason = why },
                "the run did not finish"
            );
        }
        #[cfg(not(feature = "tracing"))]
        let _ = why;
    }
}

impl Drop for RunTrace {
    fn drop(&mut self) {
        if !self.done {
            self.fail(if std::thread::panicking() {
                "executor_panicked"
            } else {
                "executor_cancelled"
            });
        }
    }
}
