//! [`PostgresStore`]: parked requests in PostgreSQL, for agents and approvers on different hosts, woken by
//! LISTEN/NOTIFY with a polling fallback. Its audit table sink is [`PostgresAudit`](crate::audit::PostgresAudit).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_listener::Event;
use tokio_postgres::{AsyncMessage, Client, Config, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

mod batch;
mod connection;
mod decide;
mod grants;
mod requests;

use batch::{Queue, Waiter};
use connection::{listen_loop, Conn};

use super::pg_tls::{split_tls, TlsMode};
use super::{CLAIM_GRACE, SWEEP_BATCH};
use crate::request::{ApprovalRequest, RequestId, Resolution, ResolveOutcome};
use crate::store::answer::{step, step_unreadable, Step};
use crate::store::{
    ApprovalStore, Decision, ExecOutcome, Grant, PageCursor, PendingList, PendingPage, RequestState, StoreError,
    StoredRequest, UnreadableRow, WaitFuture, MAX_PAGE,
};

/// The schema version this build writes and reads. A store of version 1 (before richer answers: no decision
/// details, no grants) is upgraded in place when connected to; any other version is refused and left untouched.
pub const POSTGRES_SCHEMA_VERSION: i64 = 2;

/// Every waiting request's row is re-read at least this often, so a lost notification delays an answer but never
/// strands it.
pub const POSTGRES_POLL_FALLBACK: Duration = Duration::from_secs(1);

/// How long one database call may take before the store reports it unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

const CHANNEL: &str = "agentguard_decided";

/// Default retention of decided requests in a [`PostgresStore`]: 7 days.
pub const POSTGRES_DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parked requests in PostgreSQL: agents and approvers on different hosts share one database.
///
/// - **Decisions** lock their requests' rows (`SELECT … FOR UPDATE`), apply the transition every store shares (the
///   kinds of answer, quorum votes, the standing grant an approval asks for, inserted in the same transaction) and
///   write it, so of any number of concurrent answers exactly one decides, and concurrent votes are counted one
///   after the other. Concurrent answers given through one store are one transaction (group commit: one commit for
///   the batch, each answer still gets its own result). Deadlines and grants' times are the database's clock, so
///   hosts with skewed clocks agree. The decision's details (kind, edited params, response, grant, votes) are one
///   JSON column.
/// - **Grants** live in their own table, so every host sharing the database honours them; a use is one `UPDATE`,
///   so of concurrent uses of a one-use grant exactly one succeeds, and a revocation is one `UPDATE … RETURNING`
///   whose `used` count is final.
/// - **Wake-up** is LISTEN/NOTIFY on a dedicated connection (never pooled): a batch of decisions or votes commits
///   `pg_notify`s of the request ids, up to about 190 ids per notification (separated by spaces; an expiry's
///   notification names its one id). One watcher task per store reads the rows of the requests its process waits
///   for, in one query per batch: when a notification names one, when one starts waiting, after the listener
///   reconnects (notifications sent while it was down are lost), and all of them every [`POSTGRES_POLL_FALLBACK`]
///   (1 s) in any case. A thousand parked calls cost one query a second, not a thousand.
/// - **At most once**: an approved request is claimed (`approved` → `executed`) before its executor runs.
///   Concurrent claims are one statement, and so are concurrent outcomes.
///
/// - **Bounded**: every insert also sweeps a bounded batch (at most 32 rows of each kind): pending requests past
///   their deadline become `expired`, approvals their agent never claimed (it died) become `expired` a minute after
///   the deadline, and decided requests older than the retention (default 7 days, [`retention`](Self::retention))
///   are deleted, and so are grants that ended (expired, used up, revoked) longer than the retention ago.
/// - **TLS** (rustls, ring provider) by libpq's `sslmode`: `disable` (the default when absent: unlike libpq, whose
///   default `prefer` silently falls back to plain text, agentguard does what the URL says), `prefer` (TLS when
///   the server offers it; certificate not checked), `require` (TLS or nothing; certificate not checked unless
///   `sslrootcert` is given, then as `verify-ca`), `verify-ca` (the certificate must chain to a trusted root),
///   `verify-full` (and name the host). The roots are `sslrootcert=PATH` (PEM), or without it the system's CA
///   store. Across any network you do not control, use `verify-full`.
///
/// [`connect`](Self::connect) creates the schema and tables (an agent's guard); [`connect_existing`](Self::connect_existing)
/// only opens a store that exists (the CLI).
///
/// The store runs its connections on a small private tokio runtime, so its blocking methods can be called from
/// any thread, inside another runtime or not.
pub struct PostgresStore {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Runtime,
    retention: Duration,
}

pub(crate) struct Shared {
    config: Config,
    tls: MakeRustlsConnect,
    tls_mode: TlsMode,
    /// Create the schema and tables if missing (agents), or refuse a database without them (readers).
    create: bool,
    schema: Option<String>,
    client: tokio::sync::Mutex<Option<Arc<Conn>>>,
    pub(crate) audit_client: tokio::sync::Mutex<Option<Client>>,
    /// The connection decisions run their transactions on (a transaction needs a connection of its own): one at a
    /// time per store, each holding its request's row lock only for a few statements.
    decide_client: tokio::sync::Mutex<Option<Conn>>,
    /// The requests this process waits for, each with the slot the watcher puts its decision in.
    waiters: Mutex<HashMap<String, Arc<Waiter>>>,
    /// Waiting requests whose rows the watcher is to read (a notification named them, or they started waiting).
    dirty: Mutex<HashSet<String>>,
    /// Wakes the watcher.
    kick: tokio::sync::Notify,
    /// Claims, outcomes and decisions, each done in batches by a worker task ([`batch`]).
    claims: Queue<String, bool>,
    finishes: Queue<(String, String), ()>,
    decisions: Queue<Resolution, ResolveOutcome>,
    listening: AtomicBool,
    closed: AtomicBool,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("hosts", &self.shared.config.get_hosts())
            .field("dbname", &self.shared.config.get_dbname())
            .field("schema", &self.shared.schema)
            .field("sslmode", &self.shared.tls_mode.as_str())
            .field("retention", &self.retention)
            .field("listening", &self.shared.listening.load(Ordering::Relaxed))
            .finish()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
    }
}

pub(crate) fn pg_err(what: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::with_source(format!("postgres store: {what}"), e)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`, with `sslmode` and `sslrootcert` as in libpq: see the type's
    /// docs), optionally inside `schema` (created if missing), brings the tables to the current schema version
    /// (idempotent; a database at another version is refused with a message and left untouched), and starts
    /// listening.
    pub fn connect(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        Self::start(url, schema, true)
    }

    /// Connects to an agentguard store that already exists in `url` (and `schema`): a database or schema without
    /// agentguard's tables is an error, and nothing is created. For tools that read or answer requests.
    pub fn connect_existing(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        Self::start(url, schema, false)
    }

    fn start(url: &str, schema: Option<&str>, create: bool) -> Result<Self, StoreError> {
        let masked = || super::url::mask_password(url);
        let tls = split_tls(url).map_err(|e| StoreError::new(format!("invalid PostgreSQL URL {:?}: {e}", masked())))?;
        let mut config: Config = tls
            .conn
            .parse()
            .map_err(|e| StoreError::with_source(format!("invalid PostgreSQL URL {:?}", masked()), e))?;
        config.connect_timeout(Duration::from_secs(5));
        config.ssl_mode(tls.ssl_mode());
        let connector = tls.connector()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("agentguard-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::with_source("postgres store: cannot start its runtime", e))?;
        let (claims, claim_rx) = tokio::sync::mpsc::unbounded_channel();
        let (finishes, finish_rx) = tokio::sync::mpsc::unbounded_channel();
        let (decisions, decide_rx) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            config,
            tls: connector,
            tls_mode: tls.mode,
            create,
            schema: schema.map(str::to_owned),
            client: tokio::sync::Mutex::new(None),
            audit_client: tokio::sync::Mutex::new(None),
            decide_client: tokio::sync::Mutex::new(None),
            waiters: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashSet::new()),
            kick: tokio::sync::Notify::new(),
            claims,
            finishes,
            decisions,
            listening: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        let store = PostgresStore {
            shared,
            runtime,
            retention: POSTGRES_DEFAULT_RETENTION,
        };
        store.call(|s| async move { s.migrate().await })?;
        store.runtime.spawn(batch::claim_loop(store.shared.clone(), claim_rx));
        store.runtime.spawn(batch::finish_loop(store.shared.clone(), finish_rx));
        store.runtime.spawn(batch::decide_loop(store.shared.clone(), decide_rx));
        store.runtime.spawn(batch::watch_loop(store.shared.clone()));
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        store.runtime.spawn(listen_loop(store.shared.clone(), ready_tx));
        ready_rx
            .recv_timeout(CALL_TIMEOUT)
            .map_err(|_| StoreError::new("postgres store: the LISTEN connection did not come up in time"))??;
        Ok(store)
    }

    /// Deletes decided requests `retention` after their decision, and grants `retention` after they ended (default
    /// [`POSTGRES_DEFAULT_RETENTION`], 7 days).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Whether the store's connection is encrypted, as the server sees it (`pg_stat_ssl`): for diagnostics and
    /// tests of `sslmode`.
    pub fn uses_tls(&self) -> Result<bool, StoreError> {
        self.call(|s| async move {
            let c = s.client().await?;
            let row = c
                .query_one(
                    "SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
                    &[],
                )
                .await
                .map_err(pg_err("read the connection's TLS state"))?;
            Ok(row.get::<_, bool>(0))
        })
    }

    /// Runs `f` on the store's runtime and waits for it: callable from any thread.
    pub(crate) fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = f(self.shared.clone());
        self.runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv_timeout(CALL_TIMEOUT)
            .map_err(|_| StoreError::new("postgres store: the database did not answer within 15 s"))?
    }

    /// Whether the LISTEN connection is up now (for diagnostics and tests).
    pub fn is_listening(&self) -> bool {
        self.shared.listening.load(Ordering::SeqCst)
    }
}

/// A decision read back from a row's `state, actor, note, details`.
fn stored_decision(
    state: &str,
    actor: Option<String>,
    note: Option<String>,
    details: Option<&str>,
) -> Result<Decision, StoreError> {
    Decision::stored(state, actor, note, details, "postgres")
}
