//! The async path of the decision core: [`AgentGuard::decide`] up to the verdict, and [`Decided::finish`], which
//! checks the params again and records it (the recheck closure, possibly not `Sync`, is never held across an await).

use super::*;

/// An async approval with its verdict in, before the params are checked again and the verdict recorded.
pub(crate) enum Decided<'g> {
    Allowed(&'g Inner, Allowed, CallSpan),
    Parked(&'g Inner, Parked, Verdict, CallSpan),
}

impl Decided<'_> {
    /// Checks the params again (if `recheck` is given), records the verdict, and hands out the approval.
    pub(crate) fn finish(self, recheck: Option<&Recheck<'_>>, claim: Claim) -> Result<Allowed, ActionDenied> {
        match self {
            Decided::Allowed(inner, approval, span) => {
                let decision = inner.unchanged_since_judged(&approval, recheck).map(|()| approval);
                span.decided(decision)
            }
            Decided::Parked(inner, parked, verdict, span) => {
                let decision = span.in_scope(|| inner.conclude(parked, verdict, recheck, claim));
                span.decided(decision)
            }
        }
    }
}

impl AgentGuard {
    /// The async path: everything up to the verdict. The recheck happens in [`Decided::finish`], so the (possibly
    /// non-`Sync`) recheck closure is never held across an await.
    ///
    /// Not an `async fn`: the call is taken in (intake, classification, policy, parking) when it is made, and the
    /// future keeps only what the wait needs, not the call as well (a parked call holds its future for the whole
    /// wait). Every caller awaits it at once.
    pub(crate) fn decide(
        &self,
        call: ToolCall,
        gate: Gating,
    ) -> impl std::future::Future<Output = Result<Decided<'_>, ActionDenied>> + '_ {
        let inner = &*self.inner;
        let span = CallSpan::of(&call);
        let started = span.in_scope(|| inner.start(call, gate));
        async move {
            // Asked about in place and moved out after the verdict: moved out of the capture before the await, it
            // would take room of its own in the future beside the capture's (a second `Parked` in every one).
            let verdict = match &started {
                Ok(Start::Ask(parked)) => {
                    span.parked(&parked.request);
                    Some(span.instrument(inner.ask(parked)).await)
                }
                _ => None,
            };
            match started {
                Err(denied) => Err(span.denied(denied)),
                Ok(Start::Allowed(approval)) => Ok(Decided::Allowed(inner, approval, span)),
                Ok(Start::Ask(parked)) => {
                    let verdict = verdict.unwrap_or_else(|| {
                        // Always asked above; were it not, the call is denied.
                        Verdict::deny(DenyReason::ApproverFailed, "the approver was not asked".to_owned())
                    });
                    Ok(Decided::Parked(inner, parked, verdict, span))
                }
            }
        }
    }
}
