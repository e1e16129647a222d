//! Keeping a store's I/O off the tokio runtime's workers: [`off_runtime`], and [`Offloaded`], the wrapper the
//! guard puts around a store that waits on a disk or a network ([`ApprovalStore::blocks_on_io`]).

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::{
    ApprovalStore, ChangeBatch, ChangeFuture, Decision, ExecOutcome, Grant, PageCursor, PendingList, PendingPage,
    StoreError, StoredRequest, WaitFuture,
};
use crate::request::{ApprovalRequest, RequestId, Resolution, ResolveOutcome};

/// Runs code that may wait for a disk or a network so that it does not hold up a tokio runtime: on a worker of a
/// multi-threaded runtime, in `block_in_place` (the worker's queued tasks move to another thread while it waits);
/// elsewhere (a plain thread, a blocking-pool thread, a current-thread runtime, which cannot hand its tasks over)
/// as is.
pub(crate) fn off_runtime<T>(wait: impl FnOnce() -> T) -> T {
    #[cfg(feature = "tokio")]
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            return tokio::task::block_in_place(wait);
        }
    }
    wait()
}

/// `store` as the guard uses it: wrapped in [`Offloaded`] when its calls may wait on I/O.
pub(crate) fn offloaded(store: Arc<dyn ApprovalStore>) -> Arc<dyn ApprovalStore> {
    if store.blocks_on_io() {
        Arc::new(Offloaded(store))
    } else {
        store
    }
}

/// A store whose every blocking call runs through [`off_runtime`], so an async agent calling it from a tokio worker
/// does not stall the other tasks on that worker while the database answers. Its `wait` is the store's own (an
/// async wait that must not block is the store's to write).
pub(crate) struct Offloaded(Arc<dyn ApprovalStore>);

impl fmt::Debug for Offloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl ApprovalStore for Offloaded {
    fn insert(&self, request: &ApprovalRequest) -> Result<(), StoreError> {
        off_runtime(|| self.0.insert(request))
    }
    fn resolve(&self, resolution: &Resolution) -> Result<ResolveOutcome, StoreError> {
        off_runtime(|| self.0.resolve(resolution))
    }
    fn expire(&self, id: &RequestId) -> Result<Option<Decision>, StoreError> {
        off_runtime(|| self.0.expire(id))
    }
    fn abandon(&self, id: &RequestId) -> Result<(), StoreError> {
        off_runtime(|| self.0.abandon(id))
    }
    fn claim(&self, id: &RequestId) -> Result<bool, StoreError> {
        off_runtime(|| self.0.claim(id))
    }
    fn finish(&self, id: &RequestId, outcome: &ExecOutcome) -> Result<(), StoreError> {
        off_runtime(|| self.0.finish(id, outcome))
    }
    fn get(&self, id: &RequestId) -> Result<Option<StoredRequest>, StoreError> {
        off_runtime(|| self.0.get(id))
    }
    fn pending(&self) -> Result<Vec<ApprovalRequest>, StoreError> {
        off_runtime(|| self.0.pending())
    }
    fn list_pending(&self) -> Result<PendingList, StoreError> {
        off_runtime(|| self.0.list_pending())
    }
    fn pending_page(&self, limit: usize, after: Option<&PageCursor>) -> Result<PendingPage, StoreError> {
        off_runtime(|| self.0.pending_page(limit, after))
    }
    fn changes_since(&self, after: Option<u64>) -> Result<Option<ChangeBatch>, StoreError> {
        off_runtime(|| self.0.changes_since(after))
    }
    fn wait<'a>(&'a self, id: &'a RequestId) -> WaitFuture<'a> {
        self.0.wait(id)
    }
    fn wait_blocking(&self, id: &RequestId, until: Instant) -> Result<Option<Decision>, StoreError> {
        off_runtime(|| self.0.wait_blocking(id, until))
    }
    fn changed(&self) -> Option<ChangeFuture> {
        self.0.changed()
    }
    fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        off_runtime(|| self.0.grants())
    }
    fn grants_for(&self, tool: &str) -> Result<Vec<Grant>, StoreError> {
        off_runtime(|| self.0.grants_for(tool))
    }
    fn use_grant(&self, id: &str) -> Result<bool, StoreError> {
        off_runtime(|| self.0.use_grant(id))
    }
    fn revoke_grant(&self, id: &str, by: Option<&str>) -> Result<Option<Grant>, StoreError> {
        off_runtime(|| self.0.revoke_grant(id, by))
    }
    fn blocks_on_io(&self) -> bool {
        false
    }
}
