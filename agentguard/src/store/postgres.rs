//! [`PostgresStore`]: parked requests in PostgreSQL, for agents and approvers on different hosts, woken by
//! LISTEN/NOTIFY with a polling fallback. Its audit table sink is [`PostgresAudit`](crate::audit::PostgresAudit).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_listener::{Event, Listener};
use tokio_postgres::{AsyncMessage, Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::pg_tls::{split_tls, TlsMode};
use super::{CLAIM_GRACE, SWEEP_BATCH};
use crate::request::{ApprovalRequest, RequestId, Resolution, ResolveOutcome};
use crate::store::{
    ApprovalStore, Decision, ExecOutcome, PendingList, RequestState, StoreError, StoredRequest, UnreadableRow,
    WaitFuture,
};

/// The schema version this build writes and reads.
pub const POSTGRES_SCHEMA_VERSION: i64 = 1;

/// A waiter re-reads its row at least this often, so a lost notification delays an answer but never strands it.
pub const POSTGRES_POLL_FALLBACK: Duration = Duration::from_secs(1);

/// How long one database call may take before the store reports it unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

const CHANNEL: &str = "agentguard_decided";

/// Default retention of decided requests in a [`PostgresStore`]: 7 days.
pub const POSTGRES_DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parked requests in PostgreSQL: agents and approvers on different hosts share one database.
///
/// - **Decisions** are single statements, `UPDATE … WHERE id = $1 AND state = 'pending' RETURNING …`, so of any
///   number of concurrent answers exactly one wins; deadlines are compared with the database's `now()`, so hosts
///   with skewed clocks agree.
/// - **Wake-up** is LISTEN/NOTIFY on a dedicated connection (never pooled): a decision commits a `pg_notify` of the
///   request id, and the waiting agent re-reads its row. A waiter starts listening before it reads, re-reads after
///   the listener reconnects (notifications sent while it was down are lost), and re-reads every
///   [`POSTGRES_POLL_FALLBACK`] (1 s) in any case.
/// - **At most once**: an approved request is claimed (`approved` → `executed`) before its executor runs.
///
/// - **Bounded**: every insert also sweeps a bounded batch (at most 32 rows of each kind): pending requests past
///   their deadline become `expired`, approvals their agent never claimed (it died) become `expired` a minute after
///   the deadline, and decided requests older than the retention (default 7 days, [`retention`](Self::retention))
///   are deleted.
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
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
    pub(crate) audit_client: tokio::sync::Mutex<Option<Client>>,
    waiters: Mutex<HashMap<String, Arc<Event>>>,
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

fn parse_state(s: &str) -> Result<RequestState, StoreError> {
    RequestState::from_name(s)
        .ok_or_else(|| StoreError::new(format!("postgres store: unknown state {s:?} in the database")))
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
        let shared = Arc::new(Shared {
            config,
            tls: connector,
            tls_mode: tls.mode,
            create,
            schema: schema.map(str::to_owned),
            client: tokio::sync::Mutex::new(None),
            audit_client: tokio::sync::Mutex::new(None),
            waiters: Mutex::new(HashMap::new()),
            listening: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        let store = PostgresStore {
            shared,
            runtime,
            retention: POSTGRES_DEFAULT_RETENTION,
        };
        store.call(|s| async move { s.migrate().await })?;
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        store.runtime.spawn(listen_loop(store.shared.clone(), ready_tx));
        ready_rx
            .recv_timeout(CALL_TIMEOUT)
            .map_err(|_| StoreError::new("postgres store: the LISTEN connection did not come up in time"))??;
        Ok(store)
    }

    /// Deletes decided requests `retention` after their decision (default [`POSTGRES_DEFAULT_RETENTION`], 7 days).
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

    /// The async twin of `call`, for futures running on another runtime.
    async fn acall<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let fut = f(self.shared.clone());
        self.runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            _ => Err(StoreError::new(
                "postgres store: the database did not answer within 15 s",
            )),
        }
    }

    /// Whether the LISTEN connection is up now (for diagnostics and tests).
    pub fn is_listening(&self) -> bool {
        self.shared.listening.load(Ordering::SeqCst)
    }

    fn waiter(&self, id: &RequestId) -> Arc<Event> {
        let mut waiters = self.shared.waiters.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(waiters.entry(id.as_str().to_owned()).or_default())
    }

    fn forget_waiter(&self, id: &RequestId) {
        let mut waiters = self.shared.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if waiters.get(id.as_str()).is_some_and(|e| Arc::strong_count(e) == 1) {
            waiters.remove(id.as_str());
        }
    }

    async fn read_decision(shared: Arc<Shared>, id: String) -> Result<Decision, StoreError> {
        let c = shared.client().await?;
        let row = c
            .query_opt(
                "SELECT state, actor, note FROM agentguard_requests WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(pg_err("read a request"))?
            .ok_or_else(|| StoreError::new(format!("no request {id} in the postgres store")))?;
        Ok(Decision {
            state: parse_state(row.get(0))?,
            actor: row.get(1),
            note: row.get(2),
        })
    }
}

impl Shared {
    pub(crate) async fn client(&self) -> Result<Arc<Client>, StoreError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(c));
        }
        let client = Arc::new(self.connect_dedicated("agentguard").await?);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// A new connection of its own, in the store's schema.
    pub(crate) async fn connect_dedicated(&self, application: &str) -> Result<Client, StoreError> {
        let mut config = self.config.clone();
        config.application_name(application);
        let (client, connection) = config
            .connect(self.tls.clone())
            .await
            .map_err(|e| self.connect_error(e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        if let Some(schema) = &self.schema {
            let sql = if self.create {
                format!(
                    "CREATE SCHEMA IF NOT EXISTS {s}; SET search_path TO {s}",
                    s = quote_ident(schema)
                )
            } else {
                format!("SET search_path TO {}", quote_ident(schema))
            };
            client.batch_execute(&sql).await.map_err(pg_err("select the schema"))?;
        }
        Ok(client)
    }

    /// Why a connection failed (the whole chain of causes: a TLS failure's reason is in the innermost), with what
    /// to check; for TLS, which mode asked for what. tokio-postgres's errors never include the password.
    fn connect_error(&self, e: tokio_postgres::Error) -> StoreError {
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(inner) = source {
            let text = inner.to_string();
            if !cause.contains(&text) {
                cause = format!("{cause}: {text}");
            }
            source = inner.source();
        }
        StoreError::new(match self.tls_mode {
            TlsMode::Disable => {
                format!("postgres store: cannot connect (is the server running and the URL right?): {cause}")
            }
            TlsMode::Prefer | TlsMode::Require => format!(
                "postgres store: cannot connect over TLS (sslmode={}: {cause}); check that the server is running \
                 with ssl = on and that the URL is right",
                self.tls_mode
            ),
            TlsMode::VerifyCa | TlsMode::VerifyFull => format!(
                "postgres store: cannot connect over TLS (sslmode={}: {cause}); check that the server is running \
                 with ssl = on and that sslrootcert names the CA that signed its certificate{}",
                self.tls_mode,
                if self.tls_mode == TlsMode::VerifyFull {
                    ", and that the certificate names the host in the URL"
                } else {
                    ""
                }
            ),
        })
    }

    async fn migrate(self: Arc<Self>) -> Result<(), StoreError> {
        let c = self.client().await?;
        let has_meta: bool = c
            .query_one("SELECT to_regclass('agentguard_meta') IS NOT NULL", &[])
            .await
            .map_err(pg_err("read the schema"))?
            .get(0);
        if !has_meta && !self.create {
            return Err(StoreError::new(format!(
                "postgres store: no agentguard store in {} of database {:?} (no agentguard_meta table); nothing was \
                 created: check the URL and ?schema= (the agents' guard creates the store when it connects)",
                match &self.schema {
                    Some(schema) => format!("schema {schema:?}"),
                    None => "the default schema (search_path)".to_owned(),
                },
                self.config.get_dbname().unwrap_or("")
            )));
        }
        if has_meta {
            let version: Option<String> = c
                .query_opt("SELECT value FROM agentguard_meta WHERE key = 'schema_version'", &[])
                .await
                .map_err(pg_err("read the schema version"))?
                .map(|r| r.get(0));
            let version: i64 = version.and_then(|v| v.parse().ok()).unwrap_or(0);
            if version != POSTGRES_SCHEMA_VERSION {
                return Err(StoreError::new(format!(
                    "the postgres store has schema version {version}, and this agentguard reads version \
                     {POSTGRES_SCHEMA_VERSION}; drain it with the agentguard version that created it (nothing was \
                     changed)"
                )));
            }
            if self.create {
                // Added after schema 1 shipped, and only an index: stores of schema 1 get it here.
                c.batch_execute(
                    "CREATE INDEX IF NOT EXISTS agentguard_requests_decided ON agentguard_requests (decided)",
                )
                .await
                .map_err(pg_err("create the retention index"))?;
            }
            return Ok(());
        }
        c.batch_execute(
            "BEGIN;
             SELECT pg_advisory_xact_lock(7423119);
             CREATE TABLE IF NOT EXISTS agentguard_meta (key text PRIMARY KEY, value text NOT NULL);
             CREATE TABLE IF NOT EXISTS agentguard_requests (
                 id text PRIMARY KEY,
                 request text NOT NULL,
                 tool text NOT NULL,
                 params_digest text NOT NULL,
                 created timestamptz NOT NULL DEFAULT now(),
                 deadline timestamptz NOT NULL,
                 state text NOT NULL,
                 actor text,
                 note text,
                 decided timestamptz,
                 executed timestamptz,
                 outcome text,
                 finished timestamptz
             );
             CREATE INDEX IF NOT EXISTS agentguard_requests_pending ON agentguard_requests (state, deadline);
             CREATE INDEX IF NOT EXISTS agentguard_requests_decided ON agentguard_requests (decided);
             CREATE TABLE IF NOT EXISTS agentguard_audit (seq bigint PRIMARY KEY, line text NOT NULL);
             INSERT INTO agentguard_meta (key, value) VALUES ('schema_version', '1') ON CONFLICT DO NOTHING;
             COMMIT;",
        )
        .await
        .map_err(pg_err("create the schema"))
    }

    fn wake(&self, id: &str) {
        let waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = waiters.get(id) {
            e.notify(usize::MAX);
        }
    }

    fn wake_all(&self) {
        let waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        for e in waiters.values() {
            e.notify(usize::MAX);
        }
    }
}

/// Keeps a dedicated LISTEN connection up for the life of the store; wakes waiters on each notification and all of
/// them after every (re)connect, since notifications sent while it was down are lost.
async fn listen_loop(shared: Arc<Shared>, ready: std::sync::mpsc::SyncSender<Result<(), StoreError>>) {
    let mut ready = Some(ready);
    let mut config = shared.config.clone();
    config.application_name("agentguard-listen");
    while !shared.closed.load(Ordering::SeqCst) {
        match config.connect(shared.tls.clone()).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                let pump = tokio::spawn(async move {
                    while let Some(msg) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        match msg {
                            Ok(AsyncMessage::Notification(n)) => {
                                if tx.send(n.payload().to_owned()).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                });
                if client.batch_execute(&format!("LISTEN {CHANNEL}")).await.is_ok() {
                    shared.listening.store(true, Ordering::SeqCst);
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(()));
                    }
                    shared.wake_all();
                    while let Some(id) = rx.recv().await {
                        shared.wake(&id);
                        if shared.closed.load(Ordering::SeqCst) {
                            break;
                        }
                    }
                }
                shared.listening.store(false, Ordering::SeqCst);
                pump.abort();
            }
            Err(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(shared.connect_error(e)));
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl ApprovalStore for PostgresStore {
    fn insert(&self, request: &ApprovalRequest) -> Result<(), StoreError> {
        let json = serde_json::to_string(request)
            .map_err(|e| StoreError::new(format!("postgres store: cannot serialize the request: {e}")))?;
        let id = request.request_id().as_str().to_owned();
        let tool = request.tool().to_owned();
        let digest = request.params_digest().as_str().to_owned();
        // The deadline is the database's now() plus the request's timeout: hosts with skewed clocks agree.
        let timeout_ms = request
            .deadline()
            .duration_since(request.timestamp())
            .map_or(0, |d| d.as_millis() as i64);
        let retention_ms = self.retention.as_millis().min(i64::MAX as u128) as i64;
        let grace_ms = CLAIM_GRACE.as_millis() as i64;
        self.call(move |s| async move {
            let c = s.client().await?;
            // One statement parks the request and sweeps a bounded batch of old rows (every part of it runs, and
            // it commits or fails as one): pending past the deadline and approvals unclaimed a grace after it
            // become expired (their waiters are told), decided rows past the retention are deleted. SKIP LOCKED:
            // two sweeps never wait for each other, and the outer conditions are re-checked on the locked row.
            c.execute(
                "WITH parked AS (
                     INSERT INTO agentguard_requests (id, request, tool, params_digest, deadline, state)
                     VALUES ($1, $2, $3, $4, now() + $5::bigint * interval '1 millisecond', 'pending')
                     RETURNING id),
                 expired AS (
                     UPDATE agentguard_requests SET state = 'expired', decided = now()
                     WHERE id IN (SELECT id FROM agentguard_requests
                                  WHERE (state = 'pending' AND deadline <= now())
                                     OR (state = 'approved' AND deadline <= now() - $7::bigint * interval '1 millisecond')
                                  LIMIT $8 FOR UPDATE SKIP LOCKED)
                       AND ((state = 'pending' AND deadline <= now())
                            OR (state = 'approved' AND deadline <= now() - $7::bigint * interval '1 millisecond'))
                     RETURNING id),
                 pruned AS (
                     DELETE FROM agentguard_requests
                     WHERE id IN (SELECT id FROM agentguard_requests
                                  WHERE decided < now() - $6::bigint * interval '1 millisecond'
                                    AND state IN ('denied', 'expired', 'executed')
                                  LIMIT $8 FOR UPDATE SKIP LOCKED)
                       AND state IN ('denied', 'expired', 'executed')
                     RETURNING id)
                 SELECT (SELECT count(*) FROM parked), (SELECT count(*) FROM pruned),
                        (SELECT count(pg_notify($9, id)) FROM expired)",
                &[&id, &json, &tool, &digest, &timeout_ms, &retention_ms, &grace_ms, &SWEEP_BATCH, &CHANNEL],
            )
            .await
            .map_err(pg_err("park a request"))?;
            Ok(())
        })
    }

    fn resolve(&self, resolution: &Resolution) -> Result<ResolveOutcome, StoreError> {
        let id = resolution.request_id().as_str().to_owned();
        let state = if resolution.is_approval() { "approved" } else { "denied" };
        let digest = resolution.get_params_digest().map(|d| d.as_str().to_owned());
        let (actor, note) = (
            resolution.get_actor().map(str::to_owned),
            resolution.get_note().map(str::to_owned),
        );
        self.call(move |s| async move {
            let c = s.client().await?;
            // One statement decides: pending and in time and (if given) the same digest → the answer; pending but
            // late → expired. Exactly one concurrent statement finds the row pending.
            let decided = c
                .query_opt(
                    "WITH u AS (
                         UPDATE agentguard_requests
                         SET state = CASE WHEN now() >= deadline THEN 'expired' ELSE $2 END,
                             actor = CASE WHEN now() >= deadline THEN NULL ELSE $3 END,
                             note = CASE WHEN now() >= deadline THEN NULL ELSE $4 END,
                             decided = now()
                         WHERE id = $1 AND state = 'pending'
                           AND ($5::text IS NULL OR params_digest = $5 OR now() >= deadline)
                         RETURNING id, state)
                     SELECT state, pg_notify($6, id) FROM u",
                    &[&id, &state, &actor, &note, &digest, &CHANNEL],
                )
                .await
                .map_err(pg_err("record a decision"))?;
            if let Some(row) = decided {
                return Ok(match row.get::<_, &str>(0) {
                    "expired" => ResolveOutcome::Expired,
                    _ => ResolveOutcome::Resolved,
                });
            }
            let row = c
                .query_opt(
                    "SELECT state, deadline <= now() FROM agentguard_requests WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(pg_err("read a request"))?;
            Ok(match row {
                None => ResolveOutcome::Unknown,
                Some(row) => match (row.get::<_, &str>(0), row.get::<_, bool>(1)) {
                    ("expired", _) => ResolveOutcome::Expired,
                    ("pending", false) => ResolveOutcome::DigestMismatch,
                    ("pending", true) => ResolveOutcome::Expired,
                    _ => ResolveOutcome::AlreadyResolved,
                },
            })
        })
    }

    fn expire(&self, id: &RequestId) -> Result<Option<Decision>, StoreError> {
        let id = id.as_str().to_owned();
        self.call(move |s| async move {
            let c = s.client().await?;
            c.execute(
                "WITH u AS (UPDATE agentguard_requests SET state = 'expired', decided = now()
                            WHERE id = $1 AND state = 'pending' RETURNING id)
                 SELECT pg_notify($2, id) FROM u",
                &[&id, &CHANNEL],
            )
            .await
            .map_err(pg_err("expire a request"))?;
            match PostgresStore::read_decision(s, id).await {
                Ok(d) => Ok(Some(d)),
                Err(_) => Ok(None),
            }
        })
    }

    fn abandon(&self, id: &RequestId) -> Result<(), StoreError> {
        let id = id.as_str().to_owned();
        self.call(move |s| async move {
            let c = s.client().await?;
            c.execute(
                "UPDATE agentguard_requests SET state = 'expired', decided = now()
                 WHERE id = $1 AND state IN ('pending', 'approved')",
                &[&id],
            )
            .await
            .map_err(pg_err("abandon a request"))?;
            Ok(())
        })
    }

    fn claim(&self, id: &RequestId) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        self.call(move |s| async move {
            let c = s.client().await?;
            let n = c
                .execute(
                    "UPDATE agentguard_requests SET state = 'executed', executed = now()
                     WHERE id = $1 AND state = 'approved'",
                    &[&id],
                )
                .await
                .map_err(pg_err("claim a request"))?;
            Ok(n == 1)
        })
    }

    fn finish(&self, id: &RequestId, outcome: &ExecOutcome) -> Result<(), StoreError> {
        let (id, text) = (id.as_str().to_owned(), outcome.to_text());
        self.call(move |s| async move {
            let c = s.client().await?;
            c.execute(
                "UPDATE agentguard_requests SET outcome = $2, finished = now() WHERE id = $1 AND state = 'executed'",
                &[&id, &text],
            )
            .await
            .map_err(pg_err("record an execution outcome"))?;
            Ok(())
        })
    }

    fn get(&self, id: &RequestId) -> Result<Option<StoredRequest>, StoreError> {
        let key = id.as_str().to_owned();
        let row = self.call(move |s| async move {
            let c = s.client().await?;
            let row = c
                .query_opt(
                    "SELECT request,
                            CASE WHEN state = 'pending' AND deadline <= now() THEN 'expired' ELSE state END,
                            actor, note, outcome
                     FROM agentguard_requests WHERE id = $1",
                    &[&key],
                )
                .await
                .map_err(pg_err("read a request"))?;
            Ok(row.map(|r| {
                (
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, Option<String>>(2),
                    r.get::<_, Option<String>>(3),
                    r.get::<_, Option<String>>(4),
                )
            }))
        })?;
        row.map(|(json, state, actor, note, outcome)| {
            let request = serde_json::from_str(&json)
                .map_err(|e| StoreError::new(format!("postgres store: request {id} is damaged: {e}")))?;
            Ok(StoredRequest {
                request,
                decision: Decision {
                    state: parse_state(&state)?,
                    actor,
                    note,
                },
                outcome,
            })
        })
        .transpose()
    }

    fn pending(&self) -> Result<Vec<ApprovalRequest>, StoreError> {
        self.list_pending().map(|list| list.requests)
    }

    fn list_pending(&self) -> Result<PendingList, StoreError> {
        let rows = self.call(|s| async move {
            let c = s.client().await?;
            let rows = c
                .query(
                    "SELECT id, request FROM agentguard_requests WHERE state = 'pending' AND deadline > now()
                     ORDER BY created, id",
                    &[],
                )
                .await
                .map_err(pg_err("list pending requests"))?;
            Ok(rows
                .iter()
                .map(|r| {
                    (
                        r.try_get::<_, String>(0)
                            .unwrap_or_else(|e| format!("<unreadable id: {e}>")),
                        r.try_get::<_, String>(1).map_err(|e| e.to_string()),
                    )
                })
                .collect::<Vec<_>>())
        })?;
        let mut list = PendingList::default();
        // Each row is read on its own: one that cannot be read back is reported by id, and the others still listed.
        for (id, json) in rows {
            match json.and_then(|json| {
                serde_json::from_str::<ApprovalRequest>(&json).map_err(|e| format!("damaged request JSON: {e}"))
            }) {
                Ok(request) => list.requests.push(request),
                Err(problem) => list.unreadable.push(UnreadableRow { id, problem }),
            }
        }
        Ok(list)
    }

    fn wait<'a>(&'a self, id: &'a RequestId) -> WaitFuture<'a> {
        Box::pin(async move {
            let event = self.waiter(id);
            let result = loop {
                // Listen first, then read: a decision in between still wakes us.
                let listener = event.listen();
                let key = id.as_str().to_owned();
                match self.acall(move |s| PostgresStore::read_decision(s, key)).await {
                    Ok(d) if d.state.is_final() => break Ok(d),
                    Ok(_) => {}
                    Err(e) => break Err(e),
                }
                let _ = tokio::time::timeout(POSTGRES_POLL_FALLBACK, listener).await;
            };
            drop(event);
            self.forget_waiter(id);
            result
        })
    }

    fn wait_blocking(&self, id: &RequestId, until: Instant) -> Result<Option<Decision>, StoreError> {
        let event = self.waiter(id);
        let result = loop {
            let listener = event.listen();
            let key = id.as_str().to_owned();
            match self.call(move |s| PostgresStore::read_decision(s, key)) {
                Ok(d) if d.state.is_final() => break Ok(Some(d)),
                Ok(_) => {}
                Err(e) => break Err(e),
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Ok(None);
            }
            let _ = listener.wait_timeout(left.min(POSTGRES_POLL_FALLBACK));
        };
        drop(event);
        self.forget_waiter(id);
        result
    }
}
