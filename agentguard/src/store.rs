//! Where parked requests wait: the [`ApprovalStore`] trait and the default [`InMemoryStore`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use event_listener::{Event, Listener};
use serde::{Deserialize, Serialize};

use crate::request::{ApprovalRequest, RequestId, Resolution, ResolveOutcome};

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
}

impl RequestState {
    /// The snake_case name: `pending`, `approved`, `denied`, `expired`, `executed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Denied => "denied",
            RequestState::Expired => "expired",
            RequestState::Executed => "executed",
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
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
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
    /// Who decided, if known.
    pub actor: Option<String>,
    /// The decider's note.
    pub note: Option<String>,
}

impl Decision {
    fn of(state: RequestState) -> Self {
        Decision {
            state,
            actor: None,
            note: None,
        }
    }
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

/// A future returned by [`ApprovalStore::wait`].
pub type WaitFuture<'a> = Pin<Box<dyn Future<Output = Result<Decision, StoreError>> + Send + 'a>>;

/// A future returned by [`ApprovalStore::changed`]: it completes at the next change to the store's requests.
pub type ChangeFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Storage for parked approval requests.
///
/// The guard parks a request with [`insert`](Self::insert), waits with [`wait`](Self::wait) (async) or
/// [`wait_blocking`](Self::wait_blocking), and on its deadline calls [`expire`](Self::expire). Answers arrive through
/// [`resolve`](Self::resolve), possibly from another process. Each store brings its own wake-up: the in-memory store
/// wakes waiters directly; a database store may use notifications or polling. The guard owns the deadline: `wait`
/// need not time out by itself, the guard drops it when the deadline passes.
///
/// Implementations must make decisions atomic: of concurrent `resolve` and `expire` calls on one pending request,
/// exactly one changes it, and the others see its final state. A `resolve` that arrives after the request's deadline
/// must not approve it: it returns [`ResolveOutcome::Expired`] (and marks the request expired).
pub trait ApprovalStore: Send + Sync + fmt::Debug + 'static {
    /// Parks a new pending request.
    fn insert(&self, request: &ApprovalRequest) -> Result<(), StoreError>;

    /// Answers a request. First answer wins: [`Resolved`](ResolveOutcome::Resolved) once, then
    /// [`AlreadyResolved`](ResolveOutcome::AlreadyResolved); [`Unknown`](ResolveOutcome::Unknown),
    /// [`Expired`](ResolveOutcome::Expired), or [`DigestMismatch`](ResolveOutcome::DigestMismatch) (nothing decided)
    /// otherwise.
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

    /// The requests still waiting for an answer, oldest first. Requests past their deadline are not listed.
    fn pending(&self) -> Result<Vec<ApprovalRequest>, StoreError>;

    /// Waits until the request is no longer pending and returns its decision. Returns at once if it is decided
    /// already; an unknown id is an error.
    fn wait<'a>(&'a self, id: &'a RequestId) -> WaitFuture<'a>;

    /// Blocks the calling thread until the request is no longer pending (`Some`) or `until` passes (`None`).
    fn wait_blocking(&self, id: &RequestId, until: Instant) -> Result<Option<Decision>, StoreError>;

    /// A future that completes at the next change to this store's requests (one parked, decided or expired), for
    /// watchers such as the approval page's event stream, which then read [`pending`](Self::pending) again. Take it
    /// *before* reading, so a change in between is not missed. It may also complete spuriously.
    ///
    /// `None` (the default) means the store cannot tell (e.g. the change happened in another process); watchers then
    /// poll. The in-memory store can tell.
    fn changed(&self) -> Option<ChangeFuture> {
        None
    }
}

/// Opens a store from a URL, as the CLI's `--store` and `AGENTGUARD_STORE` take it:
///
/// - `sqlite:PATH` (or `sqlite://PATH`): a [`SqliteStore`](crate::SqliteStore) file shared by processes on one host
///   (feature `sqlite`);
/// - `postgres://user@host:port/db` (or `postgresql://`), with an optional `schema=NAME` query parameter: a
///   [`PostgresStore`](crate::PostgresStore) shared by hosts (feature `postgres`);
/// - `memory:`: a fresh [`InMemoryStore`], for tests.
///
/// Anything else is an error that lists what is accepted.
pub fn open_store(url: &str) -> Result<Arc<dyn ApprovalStore>, StoreError> {
    let url = url.trim();
    if url == "memory:" {
        return Ok(Arc::new(InMemoryStore::new()));
    }
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        if path.is_empty() {
            return Err(StoreError::new(
                "store URL `sqlite:` needs a file path, e.g. sqlite:/var/lib/agentguard.db",
            ));
        }
        #[cfg(feature = "sqlite")]
        return Ok(Arc::new(crate::SqliteStore::open(path)?));
        #[cfg(not(feature = "sqlite"))]
        return Err(StoreError::new(
            "this build of agentguard has no sqlite store: enable the `sqlite` feature",
        ));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        {
            let (url, schema) = split_schema(url);
            return Ok(Arc::new(crate::PostgresStore::connect(&url, schema.as_deref())?));
        }
        #[cfg(not(feature = "postgres"))]
        return Err(StoreError::new(
            "this build of agentguard has no PostgreSQL store: enable the `postgres` feature",
        ));
    }
    let scheme = url.split(':').next().unwrap_or(url);
    Err(StoreError::new(format!(
        "unknown store URL scheme {scheme:?} in {url:?}: expected sqlite:PATH or postgres://user@host/db (or memory: \
         for tests)"
    )))
}

/// Takes agentguard's own `schema=NAME` query parameter out of a PostgreSQL URL.
#[cfg(feature = "postgres")]
pub(crate) fn split_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("schema=") {
            Some(name) => {
                schema = Some(name.to_owned());
                false
            }
            None => true,
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, schema)
}

/// Default retention of decided requests in an [`InMemoryStore`]: 10 minutes.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(600);

/// The default store: requests kept in this process's memory.
///
/// Decisions are atomic under one mutex. A decided request stays for the retention window (default
/// [`DEFAULT_RETENTION`]) so a repeated answer still gets [`AlreadyResolved`](ResolveOutcome::AlreadyResolved); after
/// that it is evicted (a late answer then gets [`Unknown`](ResolveOutcome::Unknown)), so memory stays flat on a
/// long-running server. Eviction is amortized O(1) per operation.
pub struct InMemoryStore {
    retention: Duration,
    inner: Mutex<Inner>,
    /// Notified on every insert and decision, for [`ApprovalStore::changed`].
    changed: Event,
}

#[derive(Default)]
struct Inner {
    records: HashMap<RequestId, Slot>,
    /// Decided ids in decision order, for eviction.
    decided: VecDeque<(Instant, RequestId)>,
}

struct Slot {
    request: ApprovalRequest,
    deadline: Instant,
    decision: Decision,
    event: Arc<Event>,
}

impl fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryStore")
            .field("retention", &self.retention)
            .field("records", &self.len())
            .finish()
    }
}

impl Default for InMemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryStore {
    /// A store with the default retention window.
    pub fn new() -> Self {
        Self::with_retention(DEFAULT_RETENTION)
    }

    /// A store that forgets decided requests `retention` after their decision.
    pub fn with_retention(retention: Duration) -> Self {
        InMemoryStore {
            retention,
            inner: Mutex::new(Inner::default()),
            changed: Event::new(),
        }
    }

    /// How many requests (pending and retained) are held now.
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// `true` when no request is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave a record half-changed (every change is one assignment), so a
        // poisoned lock is safe to keep using.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_evicting(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.lock();
        let now = Instant::now();
        while let Some((at, _)) = inner.decided.front() {
            if now.saturating_duration_since(*at) < self.retention {
                break;
            }
            let Some((_, id)) = inner.decided.pop_front() else {
                break;
            };
            // An approval not yet claimed by its waiter stays until it is claimed (or abandoned), so eviction can
            // never turn a RESOLVED approval into a denial. Look again at the next operation.
            if inner
                .records
                .get(&id)
                .is_some_and(|s| s.decision.state == RequestState::Approved)
            {
                inner.decided.push_back((now, id));
                break;
            }
            inner.records.remove(&id);
        }
        inner
    }
}

impl Inner {
    /// Moves a pending slot to a final decision and wakes its waiters.
    fn decide(&mut self, id: &RequestId, decision: Decision) {
        if let Some(slot) = self.records.get_mut(id) {
            slot.decision = decision;
            slot.event.notify(usize::MAX);
            self.decided.push_back((Instant::now(), id.clone()));
        }
    }
}

fn unknown(id: &RequestId) -> StoreError {
    StoreError::new(format!(
        "no request {id} in the store (unknown, or evicted after its retention window)"
    ))
}

impl InMemoryStore {
    fn resolve_now(&self, resolution: &Resolution) -> ResolveOutcome {
        let mut inner = self.lock_evicting();
        let id = &resolution.request_id;
        let Some(slot) = inner.records.get(id) else {
            return ResolveOutcome::Unknown;
        };
        match slot.decision.state {
            RequestState::Pending => {}
            RequestState::Expired => return ResolveOutcome::Expired,
            _ => return ResolveOutcome::AlreadyResolved,
        }
        if Instant::now() >= slot.deadline {
            inner.decide(id, Decision::of(RequestState::Expired));
            return ResolveOutcome::Expired;
        }
        if let Some(shown) = &resolution.params_digest {
            if shown != slot.request.params_digest() {
                return ResolveOutcome::DigestMismatch;
            }
        }
        let state = if resolution.approved {
            RequestState::Approved
        } else {
            RequestState::Denied
        };
        inner.decide(
            id,
            Decision {
                state,
                actor: resolution.actor.clone(),
                note: resolution.note.clone(),
            },
        );
        ResolveOutcome::Resolved
    }

    fn expire_now(&self, id: &RequestId) -> Option<Decision> {
        let mut inner = self.lock_evicting();
        let slot = inner.records.get(id)?;
        if slot.decision.state == RequestState::Pending {
            inner.decide(id, Decision::of(RequestState::Expired));
        }
        inner.records.get(id).map(|s| s.decision.clone())
    }

    fn abandon_now(&self, id: &RequestId) {
        let mut inner = self.lock();
        match inner.records.get(id).map(|s| s.decision.state) {
            Some(RequestState::Pending) => inner.decide(id, Decision::of(RequestState::Expired)),
            Some(RequestState::Approved) => {
                // Already queued for eviction since its approval; it just must never be claimed now.
                if let Some(slot) = inner.records.get_mut(id) {
                    slot.decision = Decision::of(RequestState::Expired);
                }
            }
            _ => {}
        }
    }
}

impl ApprovalStore for InMemoryStore {
    fn insert(&self, request: &ApprovalRequest) -> Result<(), StoreError> {
        let deadline = Instant::now() + request.remaining();
        let mut inner = self.lock_evicting();
        let id = request.request_id().clone();
        if inner.records.contains_key(&id) {
            return Err(StoreError::new(format!("request {id} is already in the store")));
        }
        inner.records.insert(
            id,
            Slot {
                request: request.clone(),
                deadline,
                decision: Decision::of(RequestState::Pending),
                event: Arc::new(Event::new()),
            },
        );
        drop(inner);
        self.changed.notify(usize::MAX);
        Ok(())
    }

    fn resolve(&self, resolution: &Resolution) -> Result<ResolveOutcome, StoreError> {
        let outcome = self.resolve_now(resolution);
        if matches!(outcome, ResolveOutcome::Resolved | ResolveOutcome::Expired) {
            self.changed.notify(usize::MAX);
        }
        Ok(outcome)
    }

    fn expire(&self, id: &RequestId) -> Result<Option<Decision>, StoreError> {
        let decision = self.expire_now(id);
        self.changed.notify(usize::MAX);
        Ok(decision)
    }

    fn abandon(&self, id: &RequestId) -> Result<(), StoreError> {
        self.abandon_now(id);
        self.changed.notify(usize::MAX);
        Ok(())
    }

    fn changed(&self) -> Option<ChangeFuture> {
        Some(Box::pin(self.changed.listen()))
    }

    fn claim(&self, id: &RequestId) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        match inner.records.get_mut(id) {
            Some(slot) if slot.decision.state == RequestState::Approved => {
                slot.decision.state = RequestState::Executed;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn get(&self, id: &RequestId) -> Result<Option<StoredRequest>, StoreError> {
        Ok(self.lock().records.get(id).map(|s| StoredRequest {
            request: s.request.clone(),
            decision: s.decision.clone(),
            outcome: None,
        }))
    }

    fn pending(&self) -> Result<Vec<ApprovalRequest>, StoreError> {
        let inner = self.lock_evicting();
        let now = Instant::now();
        let mut live: Vec<&Slot> = inner
            .records
            .values()
            .filter(|s| s.decision.state == RequestState::Pending && s.deadline > now)
            .collect();
        live.sort_by_key(|s| s.request.timestamp());
        Ok(live.into_iter().map(|s| s.request.clone()).collect())
    }

    fn wait<'a>(&'a self, id: &'a RequestId) -> WaitFuture<'a> {
        Box::pin(async move {
            loop {
                // Listen before reading the state, so a decision between the two cannot be missed.
                let listener = {
                    let inner = self.lock();
                    let slot = inner.records.get(id).ok_or_else(|| unknown(id))?;
                    if slot.decision.state.is_final() {
                        return Ok(slot.decision.clone());
                    }
                    slot.event.listen()
                };
                listener.await;
            }
        })
    }

    fn wait_blocking(&self, id: &RequestId, until: Instant) -> Result<Option<Decision>, StoreError> {
        loop {
            let listener = {
                let inner = self.lock();
                let slot = inner.records.get(id).ok_or_else(|| unknown(id))?;
                if slot.decision.state.is_final() {
                    return Ok(Some(slot.decision.clone()));
                }
                slot.event.listen()
            };
            if listener.wait_deadline(until).is_none() {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamsDigest;
    use agentguard_classify::Risk;
    use std::time::SystemTime;

    fn request(timeout: Duration) -> ApprovalRequest {
        let now = SystemTime::now();
        ApprovalRequest::new(
            RequestId::new(),
            "delete_row".into(),
            serde_json::json!({}),
            ParamsDigest::of(b"{}"),
            Risk::Irreversible,
            None,
            None,
            None,
            now,
            now + timeout,
        )
    }

    #[test]
    fn eviction_never_drops_an_approval_its_waiter_has_not_claimed() {
        let store = InMemoryStore::with_retention(Duration::ZERO);
        let req = request(Duration::from_secs(60));
        let id = req.request_id().clone();
        store.insert(&req).unwrap();
        assert_eq!(
            store.resolve(&Resolution::approve(id.clone())).unwrap(),
            ResolveOutcome::Resolved
        );
        // Operations that evict run before the waiter claims.
        store.pending().unwrap();
        store.insert(&request(Duration::from_secs(60))).unwrap();
        assert!(store.claim(&id).unwrap(), "the approval survived eviction");
        assert!(!store.claim(&id).unwrap(), "and is claimed once only");
        store.pending().unwrap();
        store.pending().unwrap();
        assert!(store.get(&id).unwrap().is_none(), "evicted once executed");
    }

    #[test]
    fn abandoned_approval_expires_and_can_never_be_claimed() {
        let store = InMemoryStore::new();
        let req = request(Duration::from_secs(60));
        let id = req.request_id().clone();
        store.insert(&req).unwrap();
        store.resolve(&Resolution::approve(id.clone())).unwrap();
        store.abandon(&id).unwrap();
        assert!(!store.claim(&id).unwrap());
        assert_eq!(store.get(&id).unwrap().unwrap().decision.state, RequestState::Expired);
    }

    #[test]
    fn resolve_after_the_deadline_expires_the_request() {
        let store = InMemoryStore::new();
        let req = request(Duration::ZERO);
        let id = req.request_id().clone();
        store.insert(&req).unwrap();
        assert_eq!(
            store.resolve(&Resolution::approve(id.clone())).unwrap(),
            ResolveOutcome::Expired
        );
        assert_eq!(
            store.resolve(&Resolution::approve(id.clone())).unwrap(),
            ResolveOutcome::Expired
        );
        assert!(store.pending().unwrap().is_empty());
    }
}
