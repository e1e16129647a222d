//! [`SqliteStore`]: parked requests in one SQLite file shared by the processes of one host.

mod grants;
mod requests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::request::{ApprovalRequest, RequestId, Resolution, ResolveOutcome};
use crate::store::answer::{step, step_unreadable, Step};
use crate::store::{
    ApprovalStore, Decision, ExecOutcome, Grant, PageCursor, PendingList, PendingPage, RequestState, StoreError,
    StoredRequest, UnreadableRow, WaitFuture, CLAIM_GRACE, MAX_PAGE, SWEEP_BATCH,
};

/// The schema version this build writes and reads. A file of version 1 (before richer answers: no decision details,
/// no grants) is upgraded in place when opened; any other version is refused and left untouched.
pub const SQLITE_SCHEMA_VERSION: i64 = 2;

/// First poll interval of a waiter; doubles up to [`SQLITE_MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(2);
/// Longest poll interval of a waiter: a decision made by another process is seen within this.
pub const SQLITE_MAX_POLL: Duration = Duration::from_millis(25);

/// Default retention of decided requests in a [`SqliteStore`]: 7 days.
pub const SQLITE_DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The WAL is truncated back to this after a checkpoint, so it cannot keep the size of a past burst.
const WAL_SIZE_LIMIT: i64 = 4 * 1024 * 1024;

/// Parked requests in a SQLite database file, so an agent in one process can be approved from another (the
/// `agentguard` CLI, a web server) on the same host.
///
/// The file is opened in WAL mode; every decision is a compare-and-set inside `BEGIN IMMEDIATE`, so of concurrent
/// answers from any number of processes exactly one wins. A waiting agent polls its request's row, starting at 2 ms
/// and backing off to [`SQLITE_MAX_POLL`] (25 ms), so a decision is seen within about 25 ms. Deadlines are stored as Unix
/// milliseconds and judged by the deciding process's clock (one host: one clock).
///
/// An answer is applied inside that same transaction by the transition every store shares: the kinds of answer
/// (approve, deny, edit, respond), quorum votes (kept with the request, which stays pending until enough are in),
/// and the standing grant an approval asks for (inserted in the same transaction). The decision's details (kind,
/// edited params, response, grant, votes) are one JSON column. Standing grants live in their own table, so every
/// process sharing the file honours them; a use is one atomic `UPDATE`, so of concurrent uses of a one-use grant
/// exactly one succeeds.
///
/// The file stays flat on a long-running host: every insert also sweeps a bounded batch (at most 32 rows of each
/// kind). A pending request past its deadline becomes `expired`; an approval its agent never claimed (the
/// agent died) becomes `expired` a minute after the deadline, so it can never run; decided requests (denied,
/// expired, executed, responded) are deleted once older than the retention window (default 7 days,
/// [`retention`](Self::retention)), until then the CLI's `show` reads them; and so are grants that ended (expired,
/// used up, revoked) longer ago than the retention.
///
/// [`open`](Self::open) creates the file (an agent's guard); [`open_existing`](Self::open_existing) opens only a
/// file that already is an agentguard store (the CLI), so a mistyped path is an error, never a new empty store.
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    retention: Duration,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn db_err(what: &str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::with_source(format!("sqlite store: {what}"), e)
}

/// Puts the file in WAL mode (it stays so: a no-op once done). Switching needs the file to itself, and SQLite
/// answers "database is locked" at once, without waiting out the busy timeout, when other processes opening the
/// same new file are reading it at that moment: so a file already in WAL mode is left alone, and a busy switch is
/// tried again for up to 10 s (seen when several processes open one new store at the same instant).
fn enable_wal(conn: &Connection) -> rusqlite::Result<()> {
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    let mut pause = Duration::from_millis(2);
    loop {
        let wal = |conn: &Connection| -> rusqlite::Result<bool> {
            let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
            Ok(mode.eq_ignore_ascii_case("wal"))
        };
        let result = match wal(conn) {
            Ok(true) => return Ok(()),
            Ok(false) => conn.pragma_update(None, "journal_mode", "WAL"),
            Err(e) => Err(e),
        };
        match result {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < give_up =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// Runs a statement through the connection's statement cache: the hot statements are parsed once, not per call.
fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// `query_row` through the statement cache.
fn query_row<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings a new file to the current schema. A file at
    /// another schema version is refused with a message, never half-migrated.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut conn = Connection::open(&path).map_err(|e| {
            StoreError::with_source(
                format!(
                    "cannot open the sqlite store at {} (does its directory exist and is it writable?)",
                    path.display()
                ),
                e,
            )
        })?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(db_err("set busy timeout"))?;
        // The schema check comes first and only reads, so a file that is refused is left exactly as it was.
        migrate(&mut conn, &path)?;
        enable_wal(&conn).map_err(db_err("enable WAL (is the file a SQLite database?)"))?;
        // Added after schema 1 shipped, and only an index: files of schema 1 get it here, older readers ignore it.
        // The same for the pending order's partial index, which pages of pending requests are read through.
        conn.execute_batch(
            "CREATE INDEX IF NOT EXISTS agentguard_requests_decided ON agentguard_requests (decided_ms);
             CREATE INDEX IF NOT EXISTS agentguard_requests_pending_order ON agentguard_requests (created_ms, id)
                 WHERE state = 'pending';",
        )
        .map_err(db_err("create the retention and pending-order indexes"))?;
        Self::with_connection(path, conn)
    }

    /// Opens the agentguard store at `path` only if there is one: a missing file, a file that is not a SQLite
    /// database, or a SQLite database without agentguard's tables is an error that names the path, and nothing is
    /// created or changed. For tools that read or answer requests (the CLI), where a mistyped path must not become a
    /// new, empty store that no agent uses.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if !path.is_file() {
            return Err(StoreError::new(format!(
                "no agentguard store at {}: {} (check the path: it must be the file the agents' guard uses; the \
                 guard creates it when the agent starts)",
                path.display(),
                if path.exists() {
                    "it is not a file"
                } else {
                    "the file does not exist"
                }
            )));
        }
        // Without SQLITE_OPEN_CREATE: a file that vanished in between is an error, not a new database.
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(|e| {
            StoreError::with_source(
                format!(
                    "cannot open the sqlite store at {} (is it readable and writable?)",
                    path.display()
                ),
                e,
            )
        })?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(db_err("set busy timeout"))?;
        if !has_meta(&conn, &path)? {
            return Err(StoreError::new(format!(
                "{} is a SQLite database but not an agentguard store (it has no agentguard_meta table); nothing \
                 was changed: check the path",
                path.display()
            )));
        }
        check_version(&mut conn, &path)?;
        Self::with_connection(path, conn)
    }

    fn with_connection(path: PathBuf, conn: Connection) -> Result<Self, StoreError> {
        // One plan per statement whatever its bound values: the bundled SQLite (built with STAT4) would otherwise
        // re-parse a cached statement each time a parameter bounding an index range changes, as `now` always does.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
            .map_err(db_err("fix query plans"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err("set synchronous"))?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
            .map_err(db_err("set the WAL size limit"))?;
        Ok(SqliteStore {
            path,
            conn: Mutex::new(conn),
            retention: SQLITE_DEFAULT_RETENTION,
        })
    }

    /// Deletes decided requests `retention` after their decision, and grants `retention` after they ended (default
    /// [`SQLITE_DEFAULT_RETENTION`], 7 days).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn decision(conn: &Connection, id: &RequestId) -> Result<Option<(Decision, i64)>, StoreError> {
        query_row(
            conn,
            "SELECT state, actor, note, deadline_ms, details FROM agentguard_requests WHERE id = ?1",
            params![id.as_str()],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, Option<String>>(4)?,
                ))
            },
        )
        .optional()
        .map_err(db_err("read a request"))?
        .map(|(state, actor, note, deadline, details)| {
            Ok((stored_decision(&state, actor, note, details.as_deref())?, deadline))
        })
        .transpose()
    }

    fn poll_decision(&self, id: &RequestId) -> Result<Decision, StoreError> {
        let conn = self.conn();
        match Self::decision(&conn, id)? {
            Some((d, _)) => Ok(d),
            None => Err(StoreError::new(format!("no request {id} in the sqlite store"))),
        }
    }
}

fn has_meta(conn: &Connection, path: &Path) -> Result<bool, StoreError> {
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'agentguard_meta'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| {
            StoreError::with_source(
                format!(
                    "sqlite store: cannot read the schema of {} (is the file a SQLite database?)",
                    path.display()
                ),
                e,
            )
        })?;
    Ok(tables > 0)
}

/// A decision read back from a row's `state, actor, note, details`.
fn stored_decision(
    state: &str,
    actor: Option<String>,
    note: Option<String>,
    details: Option<&str>,
) -> Result<Decision, StoreError> {
    Decision::stored(state, actor, note, details, "sqlite")
}

fn read_version(conn: &Connection) -> Result<i64, StoreError> {
    let version: Option<String> = conn
        .query_row(
            "SELECT value FROM agentguard_meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err("read the schema version"))?;
    Ok(version.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Accepts a store of this build's schema version, upgrades one of version 1 in place (one transaction: the
/// decision details column and the grants table; any number of processes may race to do it, the first does it),
/// and refuses any other version without changing anything.
fn check_version(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    match read_version(conn)? {
        SQLITE_SCHEMA_VERSION => Ok(()),
        1 => upgrade_from_1(conn),
        version => Err(StoreError::new(format!(
            "the sqlite store at {} has schema version {version}, and this agentguard reads version \
             {SQLITE_SCHEMA_VERSION} (and upgrades version 1 in place); drain it with the agentguard version that \
             created it, then move the file aside (nothing was changed)",
            path.display()
        ))),
    }
}

/// The tables schema 2 added to schema 1: standing grants, one row each (`body` is the grant as JSON; the columns
/// beside it are what changes, and what the queries filter on).
const GRANTS_TABLE: &str = "
    CREATE TABLE IF NOT EXISTS agentguard_grants (
        id TEXT PRIMARY KEY,
        tool TEXT NOT NULL,
        body TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER,
        uses_left INTEGER,
        used INTEGER NOT NULL DEFAULT 0,
        revoked_ms INTEGER,
        revoked_by TEXT,
        ended_ms INTEGER
    );
    CREATE INDEX IF NOT EXISTS agentguard_grants_tool ON agentguard_grants (tool, created_ms);
    CREATE INDEX IF NOT EXISTS agentguard_grants_ended ON agentguard_grants (ended_ms);
    CREATE INDEX IF NOT EXISTS agentguard_grants_expires ON agentguard_grants (expires_ms);";

fn upgrade_from_1(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err("begin the schema upgrade from version 1"))?;
    // Another process may have upgraded it between our read and this write lock.
    match read_version(&tx)? {
        1 => {}
        SQLITE_SCHEMA_VERSION => return Ok(()),
        other => {
            return Err(StoreError::new(format!(
                "sqlite store: the schema version changed to {other} while upgrading; nothing was changed"
            )))
        }
    }
    tx.execute_batch(&format!(
        "ALTER TABLE agentguard_requests ADD COLUMN details TEXT;
         {GRANTS_TABLE}
         UPDATE agentguard_meta SET value = '{SQLITE_SCHEMA_VERSION}' WHERE key = 'schema_version';"
    ))
    .map_err(db_err("upgrade the schema from version 1"))?;
    tx.commit().map_err(db_err("commit the schema upgrade from version 1"))
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    if has_meta(conn, path)? {
        return check_version(conn, path);
    }
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         CREATE TABLE IF NOT EXISTS agentguard_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS agentguard_requests (
             id TEXT PRIMARY KEY,
             request TEXT NOT NULL,
             tool TEXT NOT NULL,
             params_digest TEXT NOT NULL,
             created_ms INTEGER NOT NULL,
             deadline_ms INTEGER NOT NULL,
             state TEXT NOT NULL,
             actor TEXT,
             note TEXT,
             decided_ms INTEGER,
             executed_ms INTEGER,
             outcome TEXT,
             finished_ms INTEGER,
             details TEXT
         );
         CREATE INDEX IF NOT EXISTS agentguard_requests_state ON agentguard_requests (state, deadline_ms);
         CREATE INDEX IF NOT EXISTS agentguard_requests_decided ON agentguard_requests (decided_ms);
         {GRANTS_TABLE}
         INSERT OR IGNORE INTO agentguard_meta (key, value) VALUES ('schema_version', '{SQLITE_SCHEMA_VERSION}');
         COMMIT;"
    ))
    .map_err(db_err("create the schema"))?;
    // Two processes creating one new file: the second one's tables already existed, and its meta row was ignored;
    // whatever version won, it is checked (an older build that won is at version 1, upgraded here).
    check_version(conn, path)
}

/// Bounded housekeeping inside a write transaction: at most [`SWEEP_BATCH`] pending requests past their deadline
/// and as many approvals unclaimed [`CLAIM_GRACE`] after it become `expired`; at most [`SWEEP_BATCH`] decided rows
/// (denied, expired, executed, responded) older than `retention` are deleted, and at most as many grants that ended
/// (used up or revoked, or expired) longer than `retention` ago. Each step walks an index from its oldest entry.
fn sweep(conn: &Connection, now: i64, retention: Duration) -> Result<(), StoreError> {
    let grace = CLAIM_GRACE.as_millis() as i64;
    exec(
        conn,
        "UPDATE agentguard_requests SET state = 'expired', decided_ms = ?1
         WHERE id IN (SELECT id FROM agentguard_requests INDEXED BY agentguard_requests_state
                      WHERE state = 'pending' AND deadline_ms <= ?1 LIMIT ?3)
            OR id IN (SELECT id FROM agentguard_requests INDEXED BY agentguard_requests_state
                      WHERE state = 'approved' AND deadline_ms <= ?1 - ?2 LIMIT ?3)",
        params![now, grace, SWEEP_BATCH],
    )
    .map_err(db_err("expire requests past their deadline"))?;
    let horizon = now.saturating_sub(retention.as_millis().min(i64::MAX as u128) as i64);
    exec(
        conn,
        "DELETE FROM agentguard_requests
         WHERE id IN (SELECT id FROM agentguard_requests INDEXED BY agentguard_requests_decided
                      WHERE decided_ms < ?1 AND state IN ('denied', 'expired', 'executed', 'responded') LIMIT ?2)",
        params![horizon, SWEEP_BATCH],
    )
    .map_err(db_err("prune old requests"))?;
    exec(
        conn,
        "DELETE FROM agentguard_grants
         WHERE id IN (SELECT id FROM agentguard_grants INDEXED BY agentguard_grants_ended
                      WHERE ended_ms < ?1 LIMIT ?2)
            OR id IN (SELECT id FROM agentguard_grants INDEXED BY agentguard_grants_expires
                      WHERE expires_ms < ?1 LIMIT ?2)",
        params![horizon, SWEEP_BATCH],
    )
    .map_err(db_err("prune old grants"))?;
    Ok(())
}

/// `request, state, actor, note, deadline_ms, outcome, details` of one row.
type RequestRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
);
