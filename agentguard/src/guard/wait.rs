//! The external mode: park the request in the store, tell `on_request`, and wait for an answer or the deadline —
//! blocking ([`Inner::park_blocking_anywhere`]) or as a future ([`Inner::park_async`]).

use super::decide::Parked;
use super::Inner;
use crate::approver::Verdict;
use crate::request::{AnswerKind, DenyReason};
use crate::store::{Decision, RequestState, StoreError};

impl Inner {
    /// Parks from blocking code. Inside a tokio runtime, a blocked worker could be the one that would run the
    /// `resolve`: on a multi-thread runtime the wait moves off the worker (`block_in_place`); on a current-thread
    /// runtime it cannot, so the call is denied with advice instead of deadlocking until its deadline.
    pub(super) fn park_blocking_anywhere(&self, parked: &Parked) -> Verdict {
        #[cfg(feature = "tokio")]
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            return match handle.runtime_flavor() {
                tokio::runtime::RuntimeFlavor::MultiThread => {
                    tokio::task::block_in_place(|| self.park_blocking(parked))
                }
                _ => Verdict::deny(
                    DenyReason::ApproverFailed,
                    "the blocking execute() of an external guard was called on a current-thread tokio runtime, \
                     where waiting would block the task that answers it; use aexecute().await"
                        .to_owned(),
                ),
            };
        }
        self.park_blocking(parked)
    }

    fn park_blocking(&self, parked: &Parked) -> Verdict {
        let id = parked.request.request_id();
        if let Err(e) = self.store.insert(&parked.request) {
            return store_down(e);
        }
        self.notify(&parked.request);
        let decision = match self.store.wait_blocking(id, parked.until) {
            Ok(Some(decision)) => Ok(Some(decision)),
            Ok(None) => self.store.expire(id),
            Err(e) => {
                let _ = self.store.expire(id);
                return store_down(e);
            }
        };
        self.verdict_of(parked, decision)
    }

    /// Parks as a future: woken by the store's answer or by a tokio timer at the deadline (both in the store's
    /// [`wait_or_expire`](crate::store::ApprovalStore::wait_or_expire)). Dropping it while parked
    /// abandons the request, so it can never run later.
    #[cfg(feature = "tokio")]
    pub(super) async fn park_async(&self, parked: &Parked) -> Verdict {
        if let Err(e) = self.store.insert(&parked.request) {
            return store_down(e);
        }
        // From here on, a dropped future must not leave a request that could still be approved. (It holds the two
        // references this future has anyway, not copies of the store and the id: a parked call keeps this future
        // for its whole wait.)
        let mut expire_on_drop = ExpireOnDrop {
            inner: self,
            parked,
            armed: true,
        };
        self.notify(&parked.request);
        // The decision, or at the deadline the request expired (or the decision that came meanwhile).
        // The in-memory store's wait is held here, inline: this future is boxed with the parked call already.
        let waited = match &self.in_memory {
            Some(store) => {
                store
                    .wait_or_expire_unboxed(parked.request.request_id(), parked.until)
                    .await
            }
            None => {
                self.store
                    .wait_or_expire(parked.request.request_id(), parked.until)
                    .await
            }
        };
        let decision = match waited {
            Ok(decision) => Ok(decision),
            Err(e) => return store_down(e), // expire_on_drop expires it
        };
        expire_on_drop.armed = false;
        self.verdict_of(parked, decision)
    }

    /// Turns a store decision into a verdict. An approval is claimed later, in `conclude`, once it is known that the
    /// call will run (the arguments rechecked), so the store never says `executed` for a call that was not started.
    fn verdict_of(&self, parked: &Parked, decision: Result<Option<Decision>, StoreError>) -> Verdict {
        let id = parked.request.request_id();
        let decision = match decision {
            Ok(Some(d)) => d,
            Ok(None) => {
                return Verdict::deny(
                    DenyReason::StoreUnavailable,
                    format!("request {id} vanished from the store while parked"),
                )
            }
            Err(e) => return store_down(e),
        };
        self.record_votes(&parked.request, &decision.votes);
        match decision.state {
            RequestState::Approved => Verdict::Approved {
                actor: decision.actor,
                edited: decision.edited.filter(|_| decision.kind == Some(AnswerKind::Edit)),
                grant: decision.grant,
            },
            RequestState::Denied => Verdict::Denied {
                reason: DenyReason::UserDenied,
                actor: decision.actor,
                detail: decision.note,
            },
            RequestState::Responded => match decision.response {
                Some(text) => Verdict::Responded {
                    actor: decision.actor,
                    text,
                },
                None => Verdict::deny(
                    DenyReason::StoreUnavailable,
                    format!("request {id} was answered for the tool, but the store lost the answer's text"),
                ),
            },
            RequestState::Executed => Verdict::deny(DenyReason::AlreadyExecuted, None),
            RequestState::Expired | RequestState::Pending => Verdict::deny(DenyReason::ApprovalTimeout, None),
        }
    }
}

pub(super) fn store_down(e: StoreError) -> Verdict {
    Verdict::deny(DenyReason::StoreUnavailable, e.to_string())
}

/// Abandons a parked request when the future waiting for it is dropped.
#[cfg(feature = "tokio")]
struct ExpireOnDrop<'a> {
    inner: &'a Inner,
    parked: &'a Parked,
    armed: bool,
}

#[cfg(feature = "tokio")]
impl Drop for ExpireOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.inner.store.abandon(self.parked.request.request_id());
        }
    }
}
