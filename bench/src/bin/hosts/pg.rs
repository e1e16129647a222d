//! The coordinator's own PostgreSQL connection: the run's role and schemas, how many connections the server has
//! left, `pg_stat_activity` samples, the LISTEN killer, and the request rows' states after a run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

/// One connection (as the URL's user, a superuser here) that the coordinator watches and cleans up with; it is
/// excluded from every count it reports.
pub(super) struct Monitor {
    runtime: tokio::runtime::Runtime,
    client: Client,
    /// The ordinary role every child process connects as, so counts and kills touch this run's backends only.
    pub(super) role: String,
    /// Schemas created for the run's phases, dropped when the monitor is.
    schemas: std::sync::Mutex<Vec<String>>,
}

/// What `pg_stat_activity` says about the run's role at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Sample {
    /// Backends of the run's role.
    pub(super) total: i64,
    /// Of them, those whose last statement was `LISTEN …` (the stores' wake-up connections).
    pub(super) listen: i64,
    /// `application_name = 'agentguard'`: the stores' query connections.
    pub(super) query: i64,
    /// `application_name = 'agentguard-decide'`: the connections decisions run their transactions on.
    pub(super) decide: i64,
    /// Client backends on the whole server (other users' included; the monitor's own is not).
    pub(super) server: i64,
}

/// The server's connection budget.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    /// `max_connections`.
    pub(super) max: i64,
    /// Slots an ordinary role cannot take (`superuser_reserved_connections` + `reserved_connections`).
    pub(super) reserved: i64,
    /// Client backends open now, the monitor's included.
    pub(super) in_use: i64,
}

impl Budget {
    /// Connections an ordinary role can still open.
    pub(super) fn free(&self) -> i64 {
        self.max - self.reserved - self.in_use
    }
}

impl Monitor {
    /// Connects to `server` and creates this run's login role (allowed to create schemas in the database); with
    /// `async_commit`, the role commits without waiting for the WAL flush.
    pub(super) fn connect(server: &str, role: &str, async_commit: bool) -> Result<Monitor, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let config: tokio_postgres::Config = server.parse().map_err(|e| format!("invalid URL {server:?}: {e}"))?;
        let client = runtime.block_on(async {
            let (client, connection) = tokio::time::timeout(Duration::from_secs(5), config.connect(NoTls))
                .await
                .map_err(|_| "no answer within 5 s".to_owned())?
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            Ok::<_, String>(client)
        })?;
        let monitor = Monitor {
            runtime,
            client,
            role: role.to_owned(),
            schemas: Default::default(),
        };
        monitor.exec(&format!(
            "CREATE ROLE {role} LOGIN; \
             DO $$BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO {role}', current_database()); END$$;"
        ))?;
        if async_commit {
            monitor.exec(&format!("ALTER ROLE {role} SET synchronous_commit = off"))?;
        }
        Ok(monitor)
    }

    /// Runs statements (simple protocol), with a deadline.
    pub(super) fn exec(&self, sql: &str) -> Result<(), String> {
        self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(15), self.client.batch_execute(sql))
                .await
                .map_err(|_| format!("no answer within 15 s to {sql:?}"))?
                .map_err(|e| format!("{e} in {sql:?}"))
        })
    }

    /// Runs a query (the run's role is `$1` when the query names it), with a deadline.
    fn rows(&self, sql: &str) -> Result<Vec<tokio_postgres::Row>, String> {
        let role = self.role.clone();
        self.runtime.block_on(async {
            let with_role: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&role];
            let params = if sql.contains("$1") { &with_role[..] } else { &[] };
            tokio::time::timeout(Duration::from_secs(15), self.client.query(sql, params))
                .await
                .map_err(|_| format!("no answer within 15 s to {sql:?}"))?
                .map_err(|e| format!("{e} in {sql:?}"))
        })
    }

    /// The server's connection budget now.
    pub(super) fn budget(&self) -> Result<Budget, String> {
        let rows = self.rows(
            "SELECT current_setting('max_connections')::bigint,
                    current_setting('superuser_reserved_connections')::bigint
                      + coalesce(current_setting('reserved_connections', true)::bigint, 0),
                    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')",
        )?;
        let r = rows.first().ok_or("no row")?;
        Ok(Budget {
            max: r.get(0),
            reserved: r.get(1),
            in_use: r.get(2),
        })
    }

    /// Transactions committed in the database so far (`pg_stat_database.xact_commit`, every session's).
    pub(super) fn commits(&self) -> Result<i64, String> {
        let rows = self.rows("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")?;
        Ok(rows.first().map_or(0, |r| r.get(0)))
    }

    /// Transactions/s that `clients` connections of their own (as `server`'s user) reach in `run`, each
    /// transaction updating one row of a small table in `schema`: `[plain, with pg_notify in the transaction, with
    /// pg_notify sent after the commit]`. What a decision costs the server, without agentguard around it.
    pub(super) fn commit_probe(
        &self,
        server: &str,
        schema: &str,
        clients: usize,
        run: Duration,
    ) -> Result<[f64; 3], String> {
        let table = format!("\"{schema}\".t");
        self.exec(&format!(
            "CREATE SCHEMA \"{schema}\"; CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL); \
             INSERT INTO {table} SELECT g, 0 FROM generate_series(0, 999) g;"
        ))?;
        let config: tokio_postgres::Config = server.parse().map_err(|e| format!("invalid URL: {e}"))?;
        let probe = async {
            let mut conns = Vec::new();
            for _ in 0..clients {
                let (client, connection) = config.connect(NoTls).await.map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                conns.push(Arc::new(client));
            }
            let mut rates = [0.0; 3];
            for (kind, rate) in rates.iter_mut().enumerate() {
                let end = Instant::now() + run;
                let tasks: Vec<_> = conns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let (c, table) = (c.clone(), table.clone());
                        tokio::spawn(async move {
                            let mut n = 0u64;
                            while Instant::now() < end {
                                let id = (i as u64 * 7919 + n * 104_729) % 1000;
                                let update = format!("UPDATE {table} SET v = v + 1 WHERE id = {id}");
                                let notify = format!("SELECT pg_notify('ag_hosts_probe', '{id}')");
                                let sql = match kind {
                                    0 => format!("BEGIN; {update}; COMMIT"),
                                    1 => format!("BEGIN; {update}; {notify}; COMMIT"),
                                    _ => format!("BEGIN; {update}; COMMIT; {notify}"),
                                };
                                c.batch_execute(&sql).await.map_err(|e| e.to_string())?;
                                n += 1;
                            }
                            Ok::<u64, String>(n)
                        })
                    })
                    .collect();
                let mut total = 0;
                for t in tasks {
                    total += t.await.map_err(|e| e.to_string())??;
                }
                *rate = total as f64 / run.as_secs_f64();
            }
            Ok(rates)
        };
        self.runtime.block_on(async {
            tokio::time::timeout(run * 3 + Duration::from_secs(20), probe)
                .await
                .map_err(|_| "the probe did not end in time".to_owned())?
        })
    }

    /// The run's backends now, by kind.
    pub(super) fn sample(&self) -> Result<Sample, String> {
        let rows = self.rows(
            "SELECT count(*),
                    count(*) FILTER (WHERE query ILIKE 'LISTEN%'),
                    count(*) FILTER (WHERE application_name = 'agentguard'),
                    count(*) FILTER (WHERE application_name = 'agentguard-decide'),
                    (SELECT count(*) FROM pg_stat_activity
                      WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())
               FROM pg_stat_activity WHERE usename = $1",
        )?;
        let r = rows.first().ok_or("no row")?;
        Ok(Sample {
            total: r.get(0),
            listen: r.get(1),
            query: r.get(2),
            decide: r.get(3),
            server: r.get(4),
        })
    }

    /// Terminates every LISTEN backend of the run's role; how many were terminated.
    pub(super) fn kill_listeners(&self) -> Result<i64, String> {
        let rows = self.rows(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
                                    WHERE usename = $1 AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()) k
              WHERE killed",
        )?;
        Ok(rows.first().map_or(0, |r| r.get(0)))
    }

    /// A fresh schema's name, remembered so that it is dropped with the monitor.
    pub(super) fn new_schema(&self, label: &str) -> String {
        let name = format!("ag_hosts_{label}_{}", std::process::id());
        self.schemas.lock().expect("schemas").push(name.clone());
        name
    }

    /// Each request state in `schema`'s table and how many rows are in it.
    pub(super) fn states(&self, schema: &str) -> Result<Vec<(String, i64)>, String> {
        let rows = self.rows(&format!(
            "SELECT state, count(*) FROM \"{schema}\".agentguard_requests GROUP BY state ORDER BY state"
        ))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

impl Drop for Monitor {
    /// Leaves nothing behind (best effort): the run's schemas, then its role.
    fn drop(&mut self) {
        let schemas = std::mem::take(&mut *self.schemas.lock().unwrap_or_else(|p| p.into_inner()));
        for schema in schemas {
            let _ = self.exec(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
        }
        let role = self.role.clone();
        let _ = self.exec(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'; \
             DO $$BEGIN EXECUTE format('REVOKE CREATE ON DATABASE %I FROM {role}', current_database()); END$$; \
             DROP ROLE IF EXISTS {role};"
        ));
    }
}

/// `server` with its user replaced by `user` and `?schema=` added.
pub(super) fn child_url(server: &str, user: &str, schema: &str) -> String {
    let (scheme, rest) = server.split_once("://").unwrap_or(("postgres", server));
    let host_and_rest = rest.split_once('@').map_or(rest, |(_, h)| h);
    let sep = if host_and_rest.contains('?') { '&' } else { '?' };
    format!("{scheme}://{user}@{host_and_rest}{sep}schema={schema}")
}
