//! Where parked requests wait: the [`ApprovalStore`] trait and its stores — [`InMemoryStore`] (the default),
//! `SqliteStore` (feature `sqlite`) and `PostgresStore` (feature `postgres`) — opened from a URL with
//! [`open_store`] / [`StoreUrl`].

pub(crate) mod answer;
mod grants;
mod memory;
pub(crate) mod offload;
mod page;
#[cfg(feature = "postgres")]
mod pg_tls;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
mod sync;
mod url;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use serde_json::Value;

use crate::request::{AnswerKind, ApprovalRequest, RequestId, Resolution, ResolveOutcome, Vote};

pub(crate) use grants::now_ms;
pub use grants::Grant;

pub use memory::{InMemoryStore, DEFAULT_RETENTION};
pub use page::{BadCursor, ChangeBatch, PageCursor, PendingPage, MAX_PAGE};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresStore, POSTGRES_DEFAULT_RETENTION, POSTGRES_POLL_FALLBACK, POSTGRES_SCHEMA_VERSION};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteStore, SQLITE_DEFAULT_RETENTION, SQLITE_MAX_POLL, SQLITE_SCHEMA_VERSION};
pub use url::{open_existing_store, open_store, StoreUrl};

/// An approval still unclaimed this long after its request's deadline belongs to an agent that died (a living one
/// claims it within a poll of seeing it): the database stores' sweep expires it, so it can never run.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const CLAIM_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// The most rows one sweep of a database store expires, and the most it deletes: bounded work per insert, and still
/// ahead of the inserts (each adds one row).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const SWEEP_BATCH: i64 = 32;

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RequestState {
    /// Waiting for an answer.
    Pending,
    /// Approved; not yet claimed for execution.
    Approved,
    /// Denied by a person.
    Denied,
    /// The deadline passed with no answer (or the waiter went away); it will never run.
    Expired,
    /// Approved and claimed by the waiting agent: its executor has been started, once.
    Executed,
    /// A person answered for the tool: it never runs, and the agent reads their text as its result.
    Responded,
}

impl RequestState {
    /// The snake_case name: `pending`, `approved`, `denied`, `expired`, `executed`, `responded`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Denied => "denied",
            RequestState::Expired => "expired",
            RequestState::Executed => "executed",
            RequestState::Responded => "responded",
        }
    }

    /// The state named by [`as_str`](Self::as_str), or `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            RequestState::Pending,
            RequestState::Approved,
            RequestState::Denied,
            RequestState::Expired,
            RequestState::Executed,
            RequestState::Responded,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// A state read back from a database row; `store` names the store in the error.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn parse_stored(name: &str, store: &str) -> Result<Self, StoreError> {
        Self::from_name(name)
            .ok_or_else(|| StoreError::new(format!("{store} store: unknown state {name:?} in the database")))
    }

    /// `true` for every state but [`Pending`](Self::Pending).
    pub fn is_final(self) -> bool {
        self != RequestState::Pending
    }
}

/// The decision recorded for a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The state.
    pub state: RequestState,
    /// Who decided, if known (for a quorum, the deciding voters, comma-separated).
    pub actor: Option<String>,
    /// The decider's note.
    pub note: Option<String>,
    /// The kind of answer that decided it (`None` while pending or when it expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<AnswerKind>,
    /// The approver's edited params ([`AnswerKind::Edit`]), as sent: the agent validates them, restores masked
    /// secrets and freezes them before they run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited: Option<Value>,
    /// The approver's answer for the tool ([`AnswerKind::Respond`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// The standing grant this approval made, if it asked to be remembered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// The votes cast on a quorum request, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub votes: Vec<Vote>,
}

impl Decision {
    /// A decision in `state` with nothing else known.
    pub fn of(state: RequestState) -> Self {
        Decision {
            state,
            actor: None,
            note: None,
            kind: None,
            edited: None,
            response: None,
            grant: None,
            votes: Vec::new(),
        }
    }

    /// The answer's details beyond state, actor and note (kind, edit, response, grant, votes) as one JSON text,
    /// for stores that keep them in one column; `None` when there are none.
    pub fn details_json(&self) -> Option<String> {
        let d = Details {
            kind: self.kind,
            edited: self.edited.clone(),
            response: self.response.clone(),
            grant: self.grant.clone(),
            votes: self.votes.clone(),
        };
        if d.kind.is_none() && d.edited.is_none() && d.response.is_none() && d.grant.is_none() && d.votes.is_empty() {
            return None;
        }
        serde_json::to_string(&d).ok()
    }

    /// A decision read back from a database row's `state, actor, note, details` columns; `store` names the store in
    /// the error.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn stored(
        state: &str,
        actor: Option<String>,
        note: Option<String>,
        details: Option<&str>,
        store: &str,
    ) -> Result<Self, StoreError> {
        Decision {
            actor,
            note,
            ..Decision::of(RequestState::parse_stored(state, store)?)
        }
        .with_details_json(details)
    }

    /// This decision with the details read back from [`details_json`](Self::details_json)'s text.
    pub fn with_details_json(mut self, text: Option<&str>) -> Result<Self, StoreError> {
        let Some(text) = text else { return Ok(self) };
        let d: Details = serde_json::from_str(text)
            .map_err(|e| StoreError::with_source("a decision's details cannot be read back", e))?;
        self.kind = d.kind;
        self.edited = d.edited;
        self.response = d.response;
        self.grant = d.grant;
        self.votes = d.votes;
        Ok(self)
    }
}

/// The parts of a [`Decision`] a database store keeps as one JSON column.
#[derive(Serialize, Deserialize)]
struct Details {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<AnswerKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    edited: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grant: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    votes: Vec<Vote>,
}

/// A request and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRequest {
    /// The request as parked (params redacted).
    pub request: ApprovalRequest,
    /// Its decision so far.
    pub decision: Decision,
    /// How its execution ended, once an executed request's executor returned (`ok`) or panicked (`error: …`).
    #[serde(default)]
    pub outcome: Option<String>,
}

/// How the executor of an approved request ended, recorded by [`ApprovalStore::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    /// The executor returned (whatever value it returned: agentguard cannot see inside it).
    Ok,
    /// The executor panicked.
    Error(String),
}

impl ExecOutcome {
    /// `ok`, or `error: <message>`.
    pub fn to_text(&self) -> String {
        match self {
            ExecOutcome::Ok => "ok".to_owned(),
            ExecOutcome::Error(e) => format!("error: {e}"),
        }
    }
}

/// The store could not do what was asked. Gated calls fail closed on it (`store_unavailable`).
#[derive(Debug)]
pub struct StoreError {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// An error with a message saying what failed and what to do.
    pub fn new(message: impl Into<String>) -> Self {
        StoreError {
            message: message.into(),
            source: None,
        }
    }

    /// An error caused by `source`.
    pub fn with_source(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {}", self.message, source),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A parked request whose stored form cannot be read back: its params nested deeper than the JSON reader allows
/// (written by an older version or another program), a damaged row, a foreign row. It is still pending in the
/// store, and readers list every other request around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadableRow {
    /// The row's id as stored (normally a request id), so it can be denied with `agentguard deny ID`.
    pub id: String,
    /// What is wrong with it, e.g. `recursion limit exceeded at line 1 column 129`.
    pub problem: String,
}

impl UnreadableRow {
    /// What a person can do about it, for warnings: deny it (its agent then gets `user_denied`) or let it expire.
    pub fn advice(&self) -> String {
        format!(
            "request {} cannot be read ({}); it is still pending: deny it with `agentguard deny {}` or let it \
             expire at its deadline",
            self.id, self.problem, self.id
        )
    }
}

/// What [`ApprovalStore::list_pending`] found: the live requests it could read, oldest first, and the pending rows
/// it could not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PendingList {
    /// The live requests, oldest first.
    pub requests: Vec<ApprovalRequest>,
    /// Pending rows that cannot be read back; each is reported, none hides the others.
    pub unreadable: Vec<UnreadableRow>,
}

/// A future returned by [`ApprovalStore::wait`].
pub type WaitFuture<'a> = Pin<Box<dyn Future<Output = Result<Decision, StoreError>> + Send + 'a>>;

/// A future returned by [`ApprovalStore::wait_or_expire`]: the decision, or `None` if the request was not in the
/// store at its deadline.
pub type ExpiringWaitFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<Decision>, StoreError>> + Send + 'a>>;

/// A future returned by [`ApprovalStore::changed`]: it completes at the next change to the store's requests.
pub type ChangeFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Storage for parked approval requests.
///
/// The guard parks a request with [`insert`](Self::insert), waits with [`wait_or_expire`](Self::wait_or_expire)
/// (async; by default [`wait`](Self::wait) until the deadline, then [`expire`](Self::expire)) or
/// [`wait_blocking`](Self::wait_blocking) (then `expire` at the deadline). Answers arrive through
/// [`resolve`](Self::resolve), possibly from another process. Each store brings its own wake-up: the in-memory store
/// wakes waiters directly; a database store may use notifications or polling. The guard owns the deadline: `wait`
/// need not time out by itself, the guard drops it when the deadline passes.
///
/// Implementations must make decisions atomic: of concurrent `resolve` and `expire` calls on one pending request,
/// exactly one changes it, and the others see its final state. A `resolve` that arrives after the request's deadline
/// must not approve it: it returns [`ResolveOutcome::Expired`] (and marks the request expired).
pub trait ApprovalStore: std::any::Any + Send + Sync + fmt::Debug + 'static {
    /// Parks a new pending request.
    fn insert(&self, request: &ApprovalRequest) -> Result<(), StoreError>;

    /// Answers a request. First answer wins: [`Resolved`](ResolveOutcome::Resolved) once, then
    /// [`AlreadyResolved`](ResolveOutcome::AlreadyResolved); [`Unknown`](ResolveOutcome::Unknown),
    /// [`Expired`](ResolveOutcome::Expired), or [`DigestMismatch`](ResolveOutcome::DigestMismatch) (nothing decided)
    /// otherwise.
    ///
    /// A pending request within its deadline is decided by the one shared transition every store applies under its
    /// lock or in its transaction (`store::answer::step`): the kinds of answer (approve, deny, edit, respond), the
    /// request's quorum (a vote is [`VoteRecorded`](ResolveOutcome::VoteRecorded) until enough are in) and the
    /// standing grant an approval asks for (stored with the decision, atomically).
    fn resolve(&self, resolution: &Resolution) -> Result<ResolveOutcome, StoreError>;

    /// Marks a still-pending request expired and returns the request's final decision (which may be an approval or
    /// denial that won the race). `None` for an unknown id.
    fn expire(&self, id: &RequestId) -> Result<Option<Decision>, StoreError>;

    /// The waiter of a request went away (its future was dropped): a request that is pending, or approved but not
    /// yet claimed, becomes [`Expired`](RequestState::Expired) so it can never run. The default calls
    /// [`expire`](Self::expire); stores that keep unclaimed approvals should override it.
    fn abandon(&self, id: &RequestId) -> Result<(), StoreError> {
        self.expire(id).map(|_| ())
    }

    /// Claims an approved request for execution: `true` exactly once per request (it becomes
    /// [`Executed`](RequestState::Executed)), `false` for any other state or a second claim.
    fn claim(&self, id: &RequestId) -> Result<bool, StoreError>;

    /// Records how the executor of a claimed request ended. The default records nothing (the in-memory store keeps
    /// only the `executed` state); durable stores keep it for `show`.
    fn finish(&self, id: &RequestId, outcome: &ExecOutcome) -> Result<(), StoreError> {
        let _ = (id, outcome);
        Ok(())
    }

    /// A request and its decision.
    fn get(&self, id: &RequestId) -> Result<Option<StoredRequest>, StoreError>;

    /// The requests still waiting for an answer, oldest first. Requests past their deadline are not listed, and
    /// neither are rows that cannot be read back: [`list_pending`](Self::list_pending) reports those.
    fn pending(&self) -> Result<Vec<ApprovalRequest>, StoreError>;

    /// The requests still waiting for an answer, oldest first, and the pending rows that cannot be read back (too
    /// deep, damaged, foreign), each named by its id, so one bad row never hides the others. Readers that show
    /// requests to a person (the CLI, the approval page) use this. The default lists [`pending`](Self::pending)
    /// with no unreadable rows (a store that keeps requests in memory has none).
    fn list_pending(&self) -> Result<PendingList, StoreError> {
        Ok(PendingList {
            requests: self.pending()?,
            unreadable: Vec::new(),
        })
    }

    /// A page of the pending requests, oldest first: at most `limit` (1 to [`MAX_PAGE`]; outside that range it is
    /// read as the nearest bound) live requests and unreadable rows that come after `after` (from the start when
    /// `None`), and the cursor where the next page starts (`None` at the end). Paging by cursor is stable: a request
    /// decided between two pages moves nothing, so none is skipped or shown twice.
    ///
    /// The default pages through [`list_pending`](Self::list_pending) (reading every pending request each time)
    /// and reports the unreadable rows on the first page only; the stores in this crate read one page from an
    /// ordered index, so the first page of a million pending costs what a page costs.
    fn pending_page(&self, limit: usize, after: Option<&PageCursor>) -> Result<PendingPage, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let list = self.list_pending()?;
        let mut requests: Vec<ApprovalRequest> = list
            .requests
            .into_iter()
            .filter(|r| after.is_none_or(|c| c.precedes(r)))
            .collect();
        requests.sort_by_cached_key(PageCursor::at);
        let unreadable = if after.is_none() { list.unreadable } else { Vec::new() };
        let room = limit.saturating_sub(unreadable.len()).max(1);
        let next = (requests.len() > room).then(|| PageCursor::at(&requests[room - 1]));
        requests.truncate(room);
        Ok(PendingPage {
            requests,
            unreadable,
            next,
        })
    }

    /// The store's change feed: the requests changed (parked, voted on, decided) after position `after` of the
    /// feed, and the position to ask from next. `after: None` asks only for the current position (take it *before*
    /// reading a page, so nothing in between is missed). `Ok(None)` (the default) means the store keeps no feed:
    /// watchers then read a page again on each change instead. The in-memory store keeps one.
    fn changes_since(&self, after: Option<u64>) -> Result<Option<ChangeBatch>, StoreError> {
        let _ = after;
        Ok(None)
    }

    /// Waits until the request is no longer pending and returns its decision. Returns at once if it is decided
    /// already; an unknown id is an error.
    fn wait<'a>(&'a self, id: &'a RequestId) -> WaitFuture<'a>;

    /// Blocks the calling thread until the request is no longer pending (`Some`) or `until` passes (`None`).
    fn wait_blocking(&self, id: &RequestId, until: Instant) -> Result<Option<Decision>, StoreError>;

    /// Waits for the request's decision until `until`, and then expires it: the decision (an answer's, or
    /// `Expired`), or `None` if the request is not in the store at the deadline. The guard's async wait calls this.
    ///
    /// The default waits with [`wait`](Self::wait) until the deadline (a tokio timer, looked at before the store is
    /// polled), then calls [`expire`](Self::expire), whose result it returns. A store that can do the two at once
    /// overrides it: the in-memory store expires the request and takes the waiter out of it under one lock, which
    /// is what a million deadlines falling due a few microseconds apart cost.
    #[cfg(feature = "tokio")]
    fn wait_or_expire<'a>(&'a self, id: &'a RequestId, until: Instant) -> ExpiringWaitFuture<'a> {
        Box::pin(async move {
            match deadline_first(until, self.wait(id)).await {
                Some(decision) => decision.map(Some),
                None => self.expire(id),
            }
        })
    }

    /// A future that completes at the next change to this store's requests (one parked, decided or expired), for
    /// watchers such as the approval page's event stream, which then read [`pending`](Self::pending) again. Take it
    /// *before* reading, so a change in between is not missed. It may also complete spuriously.
    ///
    /// `None` (the default) means the store cannot tell (e.g. the change happened in another process); watchers then
    /// poll. The in-memory store can tell.
    fn changed(&self) -> Option<ChangeFuture> {
        None
    }

    /// Whether this store's calls may wait on a disk or a network (`true`, the default). The guard then makes them
    /// off the tokio runtime's workers when it is called from async code (`block_in_place` on a multi-threaded
    /// runtime), so other tasks on the same worker are not held up while the store answers. The in-memory store
    /// says `false`: its calls never wait on I/O, and it is called directly.
    fn blocks_on_io(&self) -> bool {
        true
    }

    /// Every standing grant the store keeps (active, expired, used up or revoked: see [`Grant::status`]), newest
    /// first. The default (a store without grants) has none.
    fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        Ok(Vec::new())
    }

    /// The grants that may let a call of `tool` through now (active), oldest first. The default filters
    /// [`grants`](Self::grants).
    fn grants_for(&self, tool: &str) -> Result<Vec<Grant>, StoreError> {
        let now = now_ms();
        let mut out: Vec<Grant> = self
            .grants()?
            .into_iter()
            .filter(|g| g.tool == tool && g.is_active(now))
            .collect();
        out.sort_by_key(|g| g.created_at_ms);
        Ok(out)
    }

    /// Uses grant `id` once, atomically: `true` when it was active and one use was taken (its `used` count goes up,
    /// its `uses_left` down), `false` when it is unknown, revoked, expired or used up. Of concurrent uses of a
    /// one-use grant, exactly one gets `true`, in every process sharing the store.
    fn use_grant(&self, id: &str) -> Result<bool, StoreError> {
        let _ = id;
        Ok(false)
    }

    /// Revokes grant `id` (`by` is recorded): from then on it lets nothing through. Returns the grant as it stands
    /// after the revocation (its `used` count is final), or `None` for an unknown id. Revoking twice keeps the first
    /// revocation.
    fn revoke_grant(&self, id: &str, by: Option<&str>) -> Result<Option<Grant>, StoreError> {
        let _ = (id, by);
        Ok(None)
    }
}

/// Polls `wait` until `until` (`None`: the deadline passed first). Unlike `tokio::time::timeout`, the deadline is
/// looked at first: a store's wait may cost a lock and a lookup to poll (the in-memory store's does), and past the
/// deadline the caller expires the request, which reads any decision anyway.
#[cfg(feature = "tokio")]
pub(crate) async fn deadline_first<F: Future + Unpin>(until: Instant, mut wait: F) -> Option<F::Output> {
    let mut sleep = std::pin::pin!(tokio::time::sleep_until(until.into()));
    std::future::poll_fn(|cx| {
        if sleep.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(None);
        }
        Pin::new(&mut wait).poll(cx).map(Some)
    })
    .await
}
