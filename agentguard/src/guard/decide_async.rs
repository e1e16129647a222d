//! The async path of the decision core: [`AgentGuard::decide`] up to the verdict, and [`Decided::finish`], which
//! checks the params again and records it (the recheck closure, possibly not `Sync`, is never held across an await).

use std::pin::Pin;

use super::super::ask::AskFuture;
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

/// Where an async decision stands once the call is taken in ([`AgentGuard::decide`]): decided at once (a safe
/// call, or a denial), or a parked call being asked about.
///
/// A caller that is parked by the million (`aexecute`) matches on it in a scope that ends before it awaits anything,
/// and keeps only what it took out: a decided call's approval (112 bytes) then never takes room in the future that
/// a parked call holds for its whole wait. [`wait`](Self::wait) is the plain way.
pub(crate) enum Started<'g> {
    /// Decided without asking anyone.
    Done(Result<Decided<'g>, ActionDenied>),
    /// Parked: await it for the verdict.
    Waiting(Waiting<'g>),
}

impl<'g> Started<'g> {
    /// The decision as a future: at once, or once the parked call's verdict is in.
    pub(crate) fn wait(self) -> Deciding<'g> {
        match self {
            Started::Done(decided) => Deciding::Done(Some(decided)),
            Started::Waiting(waiting) => Deciding::Waiting(waiting),
        }
    }
}

/// [`Started::wait`]'s future. Written out rather than an `async fn`, which would keep its argument beside what it
/// moves out of it.
pub(crate) enum Deciding<'g> {
    Done(Option<Result<Decided<'g>, ActionDenied>>),
    Waiting(Waiting<'g>),
}

impl<'g> std::future::Future for Deciding<'g> {
    type Output = Result<Decided<'g>, ActionDenied>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        match self.get_mut() {
            Deciding::Done(decided) => std::task::Poll::Ready(decided.take().expect("polled after it was ready")),
            Deciding::Waiting(waiting) => Pin::new(waiting).poll(cx),
        }
    }
}

/// A parked call being asked about: the call and its wait in one box (see [`Inner::ask_owned`]), and the call's
/// span. Await it for the verdict.
pub(crate) struct Waiting<'g> {
    inner: &'g Inner,
    pub(super) asking: AskFuture<'g>,
    span: CallSpan,
}

impl<'g> std::future::Future for Waiting<'g> {
    type Output = Result<Decided<'g>, ActionDenied>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        let (parked, verdict) = std::task::ready!(this.asking.as_mut().poll(cx));
        let span = std::mem::take(&mut this.span);
        std::task::Poll::Ready(Ok(Decided::Parked(this.inner, parked, verdict, span)))
    }
}

impl AgentGuard {
    /// The async path: everything up to the verdict. The recheck happens in [`Decided::finish`], so the (possibly
    /// non-`Sync`) recheck closure is never held across an await.
    ///
    /// Not a future: the call is taken in (intake, classification, policy, parking) when this is called, which
    /// every caller does from inside its own future (so nothing happens before that is first polled), and what
    /// waits is boxed with the parked call (see [`Started`]).
    pub(crate) fn decide(&self, call: ToolCall, gate: Gating) -> Started<'_> {
        let inner = &*self.inner;
        let span = CallSpan::of(&call);
        match span.in_scope(|| inner.start(call, gate)) {
            Err(denied) => Started::Done(Err(span.denied(denied))),
            Ok(Start::Allowed(approval)) => Started::Done(Ok(Decided::Allowed(inner, approval, span))),
            Ok(Start::Ask(parked)) => {
                span.parked(&parked.request);
                Started::Waiting(Waiting {
                    inner,
                    asking: inner.ask_owned(parked, &span),
                    span,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_parked_call_and_its_wait_share_one_small_box() {
        // With a million parked, each byte of a parked call is a megabyte: its caller's future keeps a pointer (see
        // `a_parked_call_keeps_a_small_future` in the tests crate), and the box holds the parked call, the
        // external mode's wait and, with the in-memory store, that store's wait with its seat among the store's
        // shared deadlines (no tokio timer of its own), one allocation for all of it. With rustc 1.95: 216 bytes,
        // or 256 with the `tracing` feature's span (288 and 328 when each wait held a tokio `Sleep`). The bounds
        // leave room for compiler changes; a failure means something large now lives across the wait (or the
        // store's wait is boxed on its own again: that one test is below).
        let guard = AgentGuard::external().no_audit().build();
        let bound = if cfg!(feature = "tracing") { 288 } else { 248 };
        let Started::Waiting(waiting) = guard.decide(ToolCall::new("delete_x", json!({})), Gating::Auto) else {
            panic!("delete_x is parked");
        };
        let held = std::mem::size_of_val(&*waiting.asking);
        assert!(held <= bound, "{held} bytes");
        // And it holds the store's wait inline: with a store given behind its own `Arc<dyn ApprovalStore>`, which
        // the guard still recognises, the box is as large.
        let store: Arc<dyn crate::store::ApprovalStore> = Arc::new(crate::store::InMemoryStore::new());
        let shared = AgentGuard::external().no_audit().shared_store(store).build();
        let Started::Waiting(waiting) = shared.decide(ToolCall::new("delete_x", json!({})), Gating::Auto) else {
            panic!("delete_x is parked");
        };
        assert_eq!(std::mem::size_of_val(&*waiting.asking), held);
        assert!(shared.inner.in_memory.is_some());
    }
}
