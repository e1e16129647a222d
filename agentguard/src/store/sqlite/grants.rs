//! Standing grants in SQLite: one row each in `agentguard_grants`, used and revoked by single statements.

use super::*;

/// The columns a grant is read back from, in this order.
const GRANT_COLUMNS: &str = "id, body, uses_left, used, revoked_ms, revoked_by";

/// A grant read back: its JSON body, with the columns that change (uses, revocation) taken from the row.
fn grant_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Grant, StoreError>> {
    let id: String = row.get(0)?;
    let body: String = row.get(1)?;
    let uses_left: Option<i64> = row.get(2)?;
    let used: i64 = row.get(3)?;
    let revoked_ms: Option<i64> = row.get(4)?;
    let revoked_by: Option<String> = row.get(5)?;
    Ok(serde_json::from_str::<Grant>(&body)
        .map_err(|e| {
            StoreError::new(format!(
                "sqlite store: grant {id} is damaged ({e}); revoke it with `agentguard grants revoke {id}`"
            ))
        })
        .map(|mut grant| {
            grant.uses_left = uses_left.map(|n| n.clamp(0, u32::MAX as i64) as u32);
            grant.used = used.clamp(0, u32::MAX as i64) as u32;
            grant.revoked_at_ms = revoked_ms.map(|t| t.max(0) as u64);
            grant.revoked_by = revoked_by;
            grant
        }))
}

fn ms(t: u64) -> i64 {
    t.min(i64::MAX as u64) as i64
}

/// Inserts the grant an approval made, inside the approval's transaction.
pub(super) fn insert_grant(conn: &Connection, grant: &Grant) -> Result<(), StoreError> {
    let body = serde_json::to_string(grant)
        .map_err(|e| StoreError::new(format!("sqlite store: cannot serialize a grant: {e}")))?;
    exec(
        conn,
        "INSERT INTO agentguard_grants (id, tool, body, created_ms, expires_ms, uses_left, used)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
        params![
            grant.id,
            grant.tool,
            body,
            ms(grant.created_at_ms),
            grant.expires_at_ms.map(ms),
            grant.uses_left.map(i64::from),
        ],
    )
    .map_err(db_err("store a grant"))?;
    Ok(())
}

impl SqliteStore {
    pub(super) fn all_grants(&self) -> Result<Vec<Grant>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {GRANT_COLUMNS} FROM agentguard_grants ORDER BY created_ms DESC, id DESC"
            ))
            .map_err(db_err("list grants"))?;
        let rows = stmt.query_map([], grant_of).map_err(db_err("list grants"))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(db_err("list grants"))??);
        }
        Ok(out)
    }

    pub(super) fn active_grants(&self, tool: &str) -> Result<Vec<Grant>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {GRANT_COLUMNS} FROM agentguard_grants INDEXED BY agentguard_grants_tool
                 WHERE tool = ?1 AND revoked_ms IS NULL AND (expires_ms IS NULL OR expires_ms > ?2)
                   AND (uses_left IS NULL OR uses_left > 0)
                 ORDER BY created_ms, id"
            ))
            .map_err(db_err("read grants"))?;
        let rows = stmt
            .query_map(params![tool, now_ms()], grant_of)
            .map_err(db_err("read grants"))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(db_err("read grants"))??);
        }
        Ok(out)
    }

    /// One use, one statement: the row's write lock makes it atomic across processes.
    pub(super) fn take_grant_use(&self, id: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let changed = exec(
            &self.conn(),
            "UPDATE agentguard_grants
             SET used = used + 1, uses_left = uses_left - 1,
                 ended_ms = CASE WHEN uses_left = 1 THEN ?2 ELSE ended_ms END
             WHERE id = ?1 AND revoked_ms IS NULL AND (expires_ms IS NULL OR expires_ms > ?2)
               AND (uses_left IS NULL OR uses_left > 0)",
            params![id, now],
        )
        .map_err(db_err("use a grant"))?;
        Ok(changed == 1)
    }

    /// Revokes and reads back in one statement: no use can slip in between, so the `used` returned is final.
    pub(super) fn revoke(&self, id: &str, by: Option<&str>) -> Result<Option<Grant>, StoreError> {
        let conn = self.conn();
        query_row(
            &conn,
            &format!(
                "UPDATE agentguard_grants
                 SET revoked_by = CASE WHEN revoked_ms IS NULL THEN ?3 ELSE revoked_by END,
                     revoked_ms = coalesce(revoked_ms, ?2),
                     ended_ms = coalesce(ended_ms, ?2)
                 WHERE id = ?1
                 RETURNING {GRANT_COLUMNS}"
            ),
            params![id, now_ms(), by],
            grant_of,
        )
        .optional()
        .map_err(db_err("revoke a grant"))?
        .transpose()
    }
}
