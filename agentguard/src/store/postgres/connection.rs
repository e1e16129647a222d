//! The store's connections: connecting (with TLS), the schema migration, and the LISTEN loop that wakes waiters.

use super::*;

/// The table schema 2 added to schema 1: standing grants, one row each (`body` is the grant as JSON; the columns
/// beside it are what changes, and what the queries filter on; times are Unix milliseconds of the database's clock).
const GRANTS_TABLE: &str = "
    CREATE TABLE IF NOT EXISTS agentguard_grants (
        id text PRIMARY KEY,
        tool text NOT NULL,
        body text NOT NULL,
        created_ms bigint NOT NULL,
        expires_ms bigint,
        uses_left bigint,
        used bigint NOT NULL DEFAULT 0,
        revoked_ms bigint,
        revoked_by text,
        ended_ms bigint
    );
    CREATE INDEX IF NOT EXISTS agentguard_grants_tool ON agentguard_grants (tool, created_ms);
    CREATE INDEX IF NOT EXISTS agentguard_grants_ended ON agentguard_grants (ended_ms);
    CREATE INDEX IF NOT EXISTS agentguard_grants_expires ON agentguard_grants (expires_ms);";

/// The pending order's partial index, which pages of pending requests are read through.
const PENDING_ORDER_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS agentguard_requests_pending_order ON agentguard_requests (created, id) \
     WHERE state = 'pending';";

/// A connection and the statements prepared on it. A statement the store runs per call (park, claim, the
/// watcher's read, …) is prepared once per connection ([`prepared`](Self::prepared)): PostgreSQL parses it once,
/// and after a few runs plans it once, instead of parsing, analysing and planning it on every call (a third of the
/// server's time in the hosts load test), and each run is one round trip instead of two.
///
/// A prepared statement runs a generic plan, chosen without its parameters and on the statistics of the moment; so
/// every statement that finds rows by id tests their state as `(state = …) IS TRUE`, the same test written so that
/// the `(state, deadline)` index cannot serve it, and the rows are always found by primary key. Statistics taken
/// when few rows were `approved` made a scan of every `approved` row look cheapest, which cost each claim about a
/// millisecond with thousands approved and not yet run. The retention sweep reads `ORDER BY decided` for the same
/// reason: without it, its generic plan read the whole table on every park.
pub(crate) struct Conn {
    client: Client,
    statements: Mutex<HashMap<String, Statement>>,
}

impl Conn {
    fn new(client: Client) -> Self {
        Conn {
            client,
            statements: Mutex::new(HashMap::new()),
        }
    }

    /// `sql` prepared on this connection (the first time it is asked for; after that, the same statement).
    pub(crate) async fn prepared(&self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.lock().unwrap_or_else(|p| p.into_inner()).get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await.map_err(pg_err("prepare a statement"))?;
        let mut statements = self.statements.lock().unwrap_or_else(|p| p.into_inner());
        Ok(statements.entry(sql.to_owned()).or_insert(statement).clone())
    }
}

impl std::ops::Deref for Conn {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl Shared {
    pub(crate) async fn client(&self) -> Result<Arc<Conn>, StoreError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(c));
        }
        let client = Arc::new(Conn::new(self.connect_dedicated("agentguard").await?));
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// The connection decisions run their transactions on, (re)connected if needed; held while the caller's
    /// transaction runs.
    pub(super) async fn decide_client(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Conn>>, StoreError> {
        let mut slot = self.decide_client.lock().await;
        if slot.as_ref().is_none_or(|c| c.is_closed()) {
            *slot = Some(Conn::new(self.connect_dedicated("agentguard-decide").await?));
        }
        Ok(slot)
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
        // The server gives up on a statement before this client stops waiting for it (CALL_TIMEOUT), so a claim or an
        // audit row the caller reported as failed cannot commit later behind its back.
        let limit = CALL_TIMEOUT.saturating_sub(Duration::from_secs(1)).as_millis();
        client
            .batch_execute(&format!("SET statement_timeout = {limit}"))
            .await
            .map_err(pg_err("set the statement timeout"))?;
        if let Some(schema) = &self.schema {
            if self.create {
                // Agents starting together on a new schema race to create it: IF NOT EXISTS is not atomic, and the
                // losers get a unique violation, which only means it exists now.
                let created = client
                    .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema)))
                    .await;
                if let Err(e) = created {
                    use tokio_postgres::error::SqlState;
                    if !matches!(e.code(), Some(c) if *c == SqlState::UNIQUE_VIOLATION || *c == SqlState::DUPLICATE_SCHEMA)
                    {
                        return Err(pg_err("create the schema")(e));
                    }
                }
            }
            client
                .batch_execute(&format!("SET search_path TO {}", quote_ident(schema)))
                .await
                .map_err(pg_err("select the schema"))?;
        }
        Ok(client)
    }

    /// Why a connection failed (the whole chain of causes: a TLS failure's reason is in the innermost), with what
    /// to check; for TLS, which mode asked for what. tokio-postgres's errors never include the password.
    pub(super) fn connect_error(&self, e: tokio_postgres::Error) -> StoreError {
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

    pub(super) async fn migrate(self: Arc<Self>) -> Result<(), StoreError> {
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
            match version {
                POSTGRES_SCHEMA_VERSION => {}
                1 => {
                    // In place, in one transaction, once: concurrent upgraders wait for the advisory lock, and the
                    // second finds the work done.
                    c.batch_execute(&format!(
                        "BEGIN;
                         SELECT pg_advisory_xact_lock(7423119);
                         ALTER TABLE agentguard_requests ADD COLUMN IF NOT EXISTS details text;
                         {GRANTS_TABLE}
                         UPDATE agentguard_meta SET value = '{POSTGRES_SCHEMA_VERSION}'
                          WHERE key = 'schema_version' AND value = '1';
                         COMMIT;"
                    ))
                    .await
                    .map_err(pg_err("upgrade the schema from version 1"))?;
                }
                _ => {
                    return Err(StoreError::new(format!(
                        "the postgres store has schema version {version}, and this agentguard reads version \
                         {POSTGRES_SCHEMA_VERSION} (and upgrades version 1 in place); drain it with the agentguard \
                         version that created it (nothing was changed)"
                    )));
                }
            }
            if self.create {
                // Added after schema 1 shipped, and only indexes: stores made before get them here (under the
                // schema lock, as agents starting together would otherwise race to create them).
                c.batch_execute(&format!(
                    "BEGIN;
                     SELECT pg_advisory_xact_lock(7423119);
                     CREATE INDEX IF NOT EXISTS agentguard_requests_decided ON agentguard_requests (decided);
                     {PENDING_ORDER_INDEX}
                     COMMIT;"
                ))
                .await
                .map_err(pg_err("create the retention and pending-order indexes"))?;
            }
            return Ok(());
        }
        c.batch_execute(&format!(
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
                 finished timestamptz,
                 details text
             );
             CREATE INDEX IF NOT EXISTS agentguard_requests_pending ON agentguard_requests (state, deadline);
             CREATE INDEX IF NOT EXISTS agentguard_requests_decided ON agentguard_requests (decided);
             {PENDING_ORDER_INDEX}
             CREATE TABLE IF NOT EXISTS agentguard_audit (seq bigint PRIMARY KEY, line text NOT NULL);
             {GRANTS_TABLE}
             INSERT INTO agentguard_meta (key, value) VALUES ('schema_version', '{POSTGRES_SCHEMA_VERSION}')
                 ON CONFLICT DO NOTHING;
             COMMIT;"
        ))
        .await
        .map_err(pg_err("create the schema"))
    }
}

/// Keeps a dedicated LISTEN connection up for the life of the store; wakes waiters on each notification and all of
/// them after every (re)connect, since notifications sent while it was down are lost.
pub(super) async fn listen_loop(shared: Arc<Shared>, ready: std::sync::mpsc::SyncSender<Result<(), StoreError>>) {
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
                    shared.mark_all();
                    while let Some(id) = rx.recv().await {
                        shared.mark_waiting(&id);
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
