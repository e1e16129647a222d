//! [`PostgresAudit`]: the audit in a PostgreSQL table, beside a [`PostgresStore`]'s requests.

use std::sync::Arc;

use super::body::record_body;
use super::chain::{line_link, seal, GENESIS};
use super::verify::verify_lines;
use super::{AuditError, AuditKey, AuditRecord, AuditSink, VerifyError, VerifyErrorKind, VerifyReport};
use crate::store::postgres::pg_err;
use crate::store::{PostgresStore, StoreError};

impl PostgresStore {
    /// An audit sink writing hash-chained records to the `agentguard_audit` table of this store's database.
    pub fn audit(self: &Arc<Self>) -> PostgresAudit {
        PostgresAudit {
            store: Arc::clone(self),
            key: None,
        }
    }

    /// Verifies the hash chain of the `agentguard_audit` table (line numbers in errors count rows from 1). A keyed
    /// table needs [`verify_audit_with_keys`](Self::verify_audit_with_keys).
    pub fn verify_audit(&self) -> Result<VerifyReport, VerifyError> {
        self.verify_audit_with_keys(&[])
    }

    /// Verifies the chain of the `agentguard_audit` table, checking MACs with these keys (see [`AuditKey`]).
    pub fn verify_audit_with_keys(&self, keys: &[AuditKey]) -> Result<VerifyReport, VerifyError> {
        let lines = self
            .call(|s| async move {
                let c = s.client().await?;
                let rows = c
                    .query("SELECT seq, line FROM agentguard_audit ORDER BY seq", &[])
                    .await
                    .map_err(pg_err("read the audit table"))?;
                Ok(rows
                    .iter()
                    .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
                    .collect::<Vec<_>>())
            })
            .map_err(|e| VerifyError {
                file: "postgres:agentguard_audit".into(),
                line: 0,
                kind: VerifyErrorKind::Unreadable,
                problem: e.to_string(),
            })?;
        verify_lines("postgres:agentguard_audit", lines.iter().map(|(_, l)| l.as_str()), keys)
    }
}

/// The audit in PostgreSQL: the same hash-chained lines as [`JsonlAudit`](super::JsonlAudit), one row each in
/// `agentguard_audit`, appended under a table lock so writers on any host keep one chain. Verify with
/// [`PostgresStore::verify_audit`] or `agentguard audit verify --store postgres://…`.
///
/// Truncation: a table has no checkpoint file. Give the role the agents use `INSERT` and `SELECT` on
/// `agentguard_audit` and no `UPDATE`, `DELETE` or `TRUNCATE`, and rows cannot be removed or edited by it at all.
#[derive(Debug, Clone)]
pub struct PostgresAudit {
    store: Arc<PostgresStore>,
    key: Option<AuditKey>,
}

impl PostgresAudit {
    /// Seals rows with HMAC-SHA256 under `key` (see [`AuditKey`]); verify with
    /// [`PostgresStore::verify_audit_with_keys`] or `agentguard audit verify --key-file K --store postgres://…`.
    pub fn key(mut self, key: AuditKey) -> Self {
        self.key = Some(key);
        self
    }
}

impl AuditSink for PostgresAudit {
    fn record(&self, record: &AuditRecord<'_>) -> Result<(), AuditError> {
        let body = record_body(record)?;
        let key = self.key.clone();
        self.store
            .call(move |s| async move {
                let mut slot = s.audit_client.lock().await;
                if slot.as_ref().is_none_or(|c| c.is_closed()) {
                    *slot = Some(s.connect_dedicated("agentguard-audit").await?);
                }
                let client = slot.as_mut().expect("connected above");
                let tx = client.transaction().await.map_err(pg_err("begin an audit append"))?;
                tx.batch_execute("LOCK TABLE agentguard_audit IN EXCLUSIVE MODE")
                    .await
                    .map_err(pg_err("lock the audit table"))?;
                let last = tx
                    .query_opt("SELECT seq, line FROM agentguard_audit ORDER BY seq DESC LIMIT 1", &[])
                    .await
                    .map_err(pg_err("read the audit chain head"))?;
                let (seq, prev) = match last {
                    Some(row) => {
                        let line: String = row.get(1);
                        let (link, keyed) = line_link(&line).ok_or_else(|| {
                            StoreError::new("postgres store: the last audit row is damaged; run audit verify")
                        })?;
                        if keyed && key.is_none() {
                            return Err(StoreError::new(
                                "postgres store: the audit table is keyed (its last row carries a MAC) and this \
                                 writer has no key: give it the key (PostgresAudit::key)",
                            ));
                        }
                        (row.get::<_, i64>(0), link)
                    }
                    None => (0, GENESIS.to_owned()),
                };
                let next = seq
                    .checked_add(1)
                    .ok_or_else(|| StoreError::new("postgres store: the audit table is at its largest seq"))?;
                let sealed = seal(&body, next as u64, &prev, key.as_ref()).line;
                tx.execute(
                    "INSERT INTO agentguard_audit (seq, line) VALUES ($1, $2)",
                    &[&next, &sealed.trim_end()],
                )
                .await
                .map_err(pg_err("append to the audit table"))?;
                tx.commit().await.map_err(pg_err("commit an audit append"))
            })
            .map_err(|e| AuditError::new(e.to_string()))
    }
}
