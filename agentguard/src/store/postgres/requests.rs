//! The requests, in PostgreSQL: [`ApprovalStore`] for [`PostgresStore`], each decision one statement.

use super::*;

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
                    actor,
                    note,
                    ..Decision::of(RequestState::parse_stored(&state, "postgres")?)
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
