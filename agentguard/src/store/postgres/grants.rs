//! Standing grants in PostgreSQL: one row each in `agentguard_grants`, used and revoked by single statements, their
//! times judged by the database's clock.

use super::*;

/// The columns a grant is read back from, in this order.
const GRANT_COLUMNS: &str = "id, body, uses_left, used, revoked_ms, revoked_by";

/// The database's clock, in Unix milliseconds.
pub(super) const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// A grant read back: its JSON body, with the columns that change (uses, revocation) taken from the row.
fn grant_of(row: &tokio_postgres::Row) -> Result<Grant, StoreError> {
    let id: String = row.get(0);
    let body: String = row.get(1);
    let mut grant: Grant = serde_json::from_str(&body).map_err(|e| {
        StoreError::new(format!(
            "postgres store: grant {id} is damaged ({e}); revoke it with `agentguard grants revoke {id}`"
        ))
    })?;
    grant.uses_left = row.get::<_, Option<i64>>(2).map(|n| n.clamp(0, u32::MAX as i64) as u32);
    grant.used = row.get::<_, i64>(3).clamp(0, u32::MAX as i64) as u32;
    grant.revoked_at_ms = row.get::<_, Option<i64>>(4).map(|t| t.max(0) as u64);
    grant.revoked_by = row.get(5);
    Ok(grant)
}

fn ms(t: u64) -> i64 {
    t.min(i64::MAX as u64) as i64
}

/// Inserts the grant an approval made, inside the approval's transaction.
pub(super) async fn insert_grant(tx: &tokio_postgres::Transaction<'_>, grant: &Grant) -> Result<(), StoreError> {
    let body = serde_json::to_string(grant)
        .map_err(|e| StoreError::new(format!("postgres store: cannot serialize a grant: {e}")))?;
    tx.execute(
        "INSERT INTO agentguard_grants (id, tool, body, created_ms, expires_ms, uses_left, used)
         VALUES ($1, $2, $3, $4, $5, $6, 0)",
        &[
            &grant.id,
            &grant.tool,
            &body,
            &ms(grant.created_at_ms),
            &grant.expires_at_ms.map(ms),
            &grant.uses_left.map(i64::from),
        ],
    )
    .await
    .map_err(pg_err("store a grant"))?;
    Ok(())
}

impl PostgresStore {
    pub(super) fn all_grants(&self) -> Result<Vec<Grant>, StoreError> {
        self.call(|s| async move {
            let c = s.client().await?;
            let rows = c
                .query(
                    &format!("SELECT {GRANT_COLUMNS} FROM agentguard_grants ORDER BY created_ms DESC, id DESC"),
                    &[],
                )
                .await
                .map_err(pg_err("list grants"))?;
            rows.iter().map(grant_of).collect()
        })
    }

    pub(super) fn active_grants(&self, tool: &str) -> Result<Vec<Grant>, StoreError> {
        let tool = tool.to_owned();
        self.call(move |s| async move {
            let c = s.client().await?;
            let rows = c
                .query(
                    &c.prepared(&format!(
                        "SELECT {GRANT_COLUMNS} FROM agentguard_grants
                         WHERE tool = $1 AND revoked_ms IS NULL AND (expires_ms IS NULL OR expires_ms > {NOW_MS})
                           AND (uses_left IS NULL OR uses_left > 0)
                         ORDER BY created_ms, id"
                    ))
                    .await?,
                    &[&tool],
                )
                .await
                .map_err(pg_err("read grants"))?;
            rows.iter().map(grant_of).collect()
        })
    }

    /// One use, one statement: a concurrent use waits for the row and re-checks the conditions on its new version.
    pub(super) fn take_grant_use(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.call(move |s| async move {
            let c = s.client().await?;
            let n = c
                .execute(
                    &format!(
                        "UPDATE agentguard_grants
                         SET used = used + 1, uses_left = uses_left - 1,
                             ended_ms = CASE WHEN uses_left = 1 THEN {NOW_MS} ELSE ended_ms END
                         WHERE id = $1 AND revoked_ms IS NULL AND (expires_ms IS NULL OR expires_ms > {NOW_MS})
                           AND (uses_left IS NULL OR uses_left > 0)"
                    ),
                    &[&id],
                )
                .await
                .map_err(pg_err("use a grant"))?;
            Ok(n == 1)
        })
    }

    /// Revokes and reads back in one statement: no use can slip in between, so the `used` returned is final.
    pub(super) fn revoke(&self, id: &str, by: Option<&str>) -> Result<Option<Grant>, StoreError> {
        let (id, by) = (id.to_owned(), by.map(str::to_owned));
        self.call(move |s| async move {
            let c = s.client().await?;
            let row = c
                .query_opt(
                    &format!(
                        "UPDATE agentguard_grants
                         SET revoked_by = CASE WHEN revoked_ms IS NULL THEN $2 ELSE revoked_by END,
                             revoked_ms = coalesce(revoked_ms, {NOW_MS}),
                             ended_ms = coalesce(ended_ms, {NOW_MS})
                         WHERE id = $1
                         RETURNING {GRANT_COLUMNS}"
                    ),
                    &[&id, &by],
                )
                .await
                .map_err(pg_err("revoke a grant"))?;
            row.as_ref().map(grant_of).transpose()
        })
    }
}
