//! Asking the approver for a verdict on a parked call: from blocking code ([`Inner::ask_blocking`]) or from async
//! code ([`Inner::ask`]). Each approval mode has one arm in each; both end in the same [`Verdict`].

use super::decide::Parked;
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
            Approver::External { on_request } => self.park_blocking_anywhere(parked, on_request.as_ref()),
        }
    }

    /// Asks from async code without blocking the runtime: a terminal prompt or sync callback runs on tokio's blocking
    /// pool, a parked request is a future. A panic while waiting denies instead of unwinding into the agent.
    #[cfg(feature = "tokio")]
    pub(super) async fn ask(&self, parked: &Parked) -> Verdict {
        if tokio::runtime::Handle::try_current().is_err() {
            return Verdict::deny(
                DenyReason::ApproverFailed,
                "aexecute needs a tokio runtime (with its time driver: enable_time or enable_all); use execute() \
                 elsewhere"
                    .to_owned(),
            );
        }
        // A parked request is expired by the wait's drop guard if this panics (e.g. a runtime without its time
        // driver). The wait is boxed (it outlives every other state of the call), and the external mode's on its
        // own: a future is as large as its largest state, and the callback arms hold a timer and a task handle that
        // a parked request would otherwise carry for its whole wait (168 bytes boxed instead of about half that).
        let asking: std::pin::Pin<Box<dyn std::future::Future<Output = Verdict> + Send + '_>> = match &self.approver {
            Approver::External { on_request } => Box::pin(self.park_async(parked, on_request.as_ref())),
            _ => Box::pin(self.ask_async(parked)),
        };
        match approver::CatchUnwind(asking).await {
            Ok(verdict) => verdict,
            Err(panic) => Verdict::deny(
                DenyReason::ApproverFailed,
                format!("waiting for the approval failed: {panic} (does the tokio runtime have enable_time?)"),
            ),
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
            Approver::External { on_request } => self.park_async(parked, on_request.as_ref()).await,
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

#[cfg(feature = "tokio")]
async fn async_callback_verdict(cb: &approver::AsyncCallback, parked: &Parked) -> Verdict {
    let fut = approver::CatchUnwind(Box::pin(cb(parked.request.clone())));
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
