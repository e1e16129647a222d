//! Asking the approver for a verdict on a parked call: from blocking code ([`Inner::ask_blocking`]) or from async
//! code ([`Inner::ask_owned`]). Each approval mode has one arm in each; both end in the same [`Verdict`].

use super::decide::Parked;
#[cfg(feature = "tokio")]
use super::trace::CallSpan;
use super::Inner;
use crate::approver::{self, Approver, Verdict};
#[cfg(feature = "tokio")]
use crate::request::DenyReason;

impl Inner {
    /// Asks from blocking code; a terminal prompt or sync callback runs on this thread, a parked request blocks it.
    pub(super) fn ask_blocking(&self, parked: &Parked) -> Verdict {
        match &self.approver {
            Approver::Terminal(prompt) => prompt.ask(&parked.request, parked.until),
            Approver::Callback(cb) => approver::call_sync(cb, &parked.request),
            #[cfg(feature = "tokio")]
            Approver::AsyncCallback(cb) => block_on_async_callback(cb, parked),
            Approver::External { .. } => self.park_blocking_anywhere(parked),
        }
    }

    /// Asks from async code without blocking the runtime: a terminal prompt or sync callback runs on tokio's blocking
    /// pool, a parked request is a future. A panic while waiting denies instead of unwinding into the agent.
    ///
    /// The future owns the parked call and hands it back with the verdict, and it is boxed: the call and its wait
    /// then share one allocation, and the caller's future keeps a pointer across the wait instead of the call (a
    /// future is as large as its largest state, and with a million parked each byte is a megabyte). The external
    /// mode's box holds its own future, not one for every mode: the callback arms hold a timer and a task handle
    /// that a parked request would otherwise carry for its whole wait.
    #[cfg(feature = "tokio")]
    pub(super) fn ask_owned<'g>(&'g self, parked: Parked, span: &CallSpan) -> AskFuture<'g> {
        // The parked call is the async block's own (a capture, borrowed by the wait inside it); the wait is polled
        // inline, not through a box or an `async fn` argument, each of which would keep a second copy of it.
        match &self.approver {
            Approver::External { .. } => Box::pin(span.instrument(async move {
                if let Some(denied) = without_runtime() {
                    return (parked, denied);
                }
                let verdict = unwound(approver::CatchUnwind::new(self.park_async(&parked)).await);
                (parked, verdict)
            })),
            _ => Box::pin(span.instrument(async move {
                if let Some(denied) = without_runtime() {
                    return (parked, denied);
                }
                let verdict = unwound(approver::CatchUnwind::new(self.ask_async(&parked)).await);
                (parked, verdict)
            })),
        }
    }

    #[cfg(feature = "tokio")]
    async fn ask_async(&self, parked: &Parked) -> Verdict {
        match &self.approver {
            Approver::Terminal(prompt) => {
                let prompt = std::sync::Arc::clone(prompt);
                let request = parked.request.clone();
                let until = parked.until;
                match tokio::task::spawn_blocking(move || prompt.ask(&request, until)).await {
                    Ok(v) => v,
                    Err(e) => Verdict::deny(DenyReason::ApproverFailed, format!("terminal prompt failed: {e}")),
                }
            }
            Approver::Callback(cb) => {
                let cb = std::sync::Arc::clone(cb);
                let request = parked.request.clone();
                let task = tokio::task::spawn_blocking(move || approver::call_sync(&cb, &request));
                match tokio::time::timeout_at(parked.until.into(), task).await {
                    Ok(Ok(v)) => v,
                    Ok(Err(e)) => Verdict::deny(DenyReason::ApproverFailed, format!("approval callback failed: {e}")),
                    Err(_) => Verdict::deny(DenyReason::ApprovalTimeout, None),
                }
            }
            Approver::AsyncCallback(cb) => async_callback_verdict(cb, parked).await,
            Approver::External { .. } => self.park_async(parked).await,
        }
    }
}

#[cfg(feature = "tokio")]
fn block_on_async_callback(cb: &approver::AsyncCallback, parked: &Parked) -> Verdict {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Verdict::deny(
            DenyReason::ApproverFailed,
            "an async_callback guard was called through the blocking execute() inside a tokio runtime; use \
             aexecute().await there"
                .to_owned(),
        );
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
        Ok(rt) => rt,
        Err(e) => {
            return Verdict::deny(
                DenyReason::ApproverFailed,
                format!("cannot start a runtime for the async callback: {e}"),
            )
        }
    };
    runtime.block_on(async_callback_verdict(cb, parked))
}

/// The denial of an async wait outside a tokio runtime (there is nothing to wait on), or `None` inside one.
#[cfg(feature = "tokio")]
fn without_runtime() -> Option<Verdict> {
    tokio::runtime::Handle::try_current().is_err().then(|| {
        Verdict::deny(
            DenyReason::ApproverFailed,
            "aexecute needs a tokio runtime (with its time driver: enable_time or enable_all); use execute() \
             elsewhere"
                .to_owned(),
        )
    })
}

/// The verdict of a wait, or a denial if it panicked. A parked request is expired by the wait's drop guard then
/// (e.g. a runtime without its time driver panics at the timer).
#[cfg(feature = "tokio")]
fn unwound(caught: Result<Verdict, String>) -> Verdict {
    caught.unwrap_or_else(|panic| {
        Verdict::deny(
            DenyReason::ApproverFailed,
            format!("waiting for the approval failed: {panic} (does the tokio runtime have enable_time?)"),
        )
    })
}

/// A parked call being asked about, handed back with its verdict (see [`Inner::ask_owned`]).
#[cfg(feature = "tokio")]
pub(crate) type AskFuture<'g> = std::pin::Pin<Box<dyn std::future::Future<Output = (Parked, Verdict)> + Send + 'g>>;

#[cfg(feature = "tokio")]
async fn async_callback_verdict(cb: &approver::AsyncCallback, parked: &Parked) -> Verdict {
    let fut = approver::CatchUnwind::new(cb(parked.request.clone()));
    match tokio::time::timeout_at(parked.until.into(), fut).await {
        Ok(Ok(true)) => Verdict::approved(Some("callback".into())),
        Ok(Ok(false)) => Verdict::Denied {
            reason: DenyReason::UserDenied,
            actor: Some("callback".into()),
            detail: None,
        },
        Ok(Err(panic)) => Verdict::deny(
            DenyReason::ApproverFailed,
            format!("the approval callback panicked: {panic}"),
        ),
        Err(_) => Verdict::deny(DenyReason::ApprovalTimeout, None),
    }
}
