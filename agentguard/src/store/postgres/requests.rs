//! The requests, in PostgreSQL: [`ApprovalStore`] for [`PostgresStore`], each decision one transaction on its
//! request's locked row.

use event_listener::Listener;

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
                &c.prepared("WITH parked AS (
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
                                    AND state IN ('denied', 'expired', 'executed', 'responded')
                                  ORDER BY decided LIMIT $8 FOR UPDATE SKIP LOCKED)
                       AND state IN ('denied', 'expired', 'executed', 'responded')
                     RETURNING id),
                 pruned_grants AS (
                     DELETE FROM agentguard_grants
                     WHERE id IN (SELECT id FROM agentguard_grants
                                  WHERE ended_ms < (extract(epoch from now()) * 1000)::bigint - $6::bigint
                                     OR expires_ms < (extract(epoch from now()) * 1000)::bigint - $6::bigint
                                  LIMIT $8 FOR UPDATE SKIP LOCKED)
                     RETURNING id)
                 SELECT (SELECT count(*) FROM parked), (SELECT count(*) FROM pruned),
                        (SELECT count(*) FROM pruned_grants), (SELECT count(pg_notify($9, id)) FROM expired)").await?,
                &[&id, &json, &tool, &digest, &timeout_ms, &retention_ms, &grace_ms, &SWEEP_BATCH, &CHANNEL],
            )
            .await
            .map_err(pg_err("park a request"))?;
            Ok(())
        })
    }

    fn resolve(&self, resolution: &Resolution) -> Result<ResolveOutcome, StoreError> {
        // Concurrent answers from this process share one transaction (decide.rs); this one's result comes back.
        let resolution = resolution.clone();
        self.call(move |s| async move { batch::ask(&s.decisions, resolution).await })
    }

    fn expire(&self, id: &RequestId) -> Result<Option<Decision>, StoreError> {
        let id = id.as_str().to_owned();
        self.call(move |s| async move {
            let c = s.client().await?;
            c.execute(
                &c.prepared(
                    "WITH u AS (UPDATE agentguard_requests SET state = 'expired', decided = now()
                            WHERE id = $1 AND state = 'pending' RETURNING id)
                 SELECT pg_notify($2, id) FROM u",
                )
                .await?,
                &[&id, &CHANNEL],
            )
            .await
            .map_err(pg_err("expire a request"))?;
            // The row as it ended (expired now, or decided just before): the watcher's read of it.
            let read = batch::read_decisions(&s, std::slice::from_ref(&id)).await;
            Ok(read.into_iter().find_map(|(_, d)| d.ok()))
        })
    }

    fn abandon(&self, id: &RequestId) -> Result<(), StoreError> {
        let id = id.as_str().to_owned();
        self.call(move |s| async move {
            let c = s.client().await?;
            c.execute(
                &c.prepared(
                    "UPDATE agentguard_requests SET state = 'expired', decided = now()
                 WHERE id = $1 AND state IN ('pending', 'approved')",
                )
                .await?,
                &[&id],
            )
            .await
            .map_err(pg_err("abandon a request"))?;
            Ok(())
        })
    }

    fn claim(&self, id: &RequestId) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        self.call(move |s| async move { batch::ask(&s.claims, id).await })
    }

    fn finish(&self, id: &RequestId, outcome: &ExecOutcome) -> Result<(), StoreError> {
        let (id, text) = (id.as_str().to_owned(), outcome.to_text());
        self.call(move |s| async move { batch::ask(&s.finishes, (id, text)).await })
    }

    fn get(&self, id: &RequestId) -> Result<Option<StoredRequest>, StoreError> {
        let key = id.as_str().to_owned();
        let row = self.call(move |s| async move {
            let c = s.client().await?;
            let row = c
                .query_opt(
                    "SELECT request,
                            CASE WHEN state = 'pending' AND deadline <= now() THEN 'expired' ELSE state END,
                            actor, note, outcome, details
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
                    r.get::<_, Option<String>>(5),
                )
            }))
        })?;
        row.map(|(json, state, actor, note, outcome, details)| {
            let request = serde_json::from_str(&json)
                .map_err(|e| StoreError::new(format!("postgres store: request {id} is damaged: {e}")))?;
            Ok(StoredRequest {
                request,
                decision: stored_decision(&state, actor, note, details.as_deref())?,
                outcome,
            })
        })
        .transpose()
    }

    fn pending(&self) -> Result<Vec<ApprovalRequest>, StoreError> {
        self.list_pending().map(|list| list.requests)
    }

    fn list_pending(&self) -> Result<PendingList, StoreError> {
        let page = self.read_pending(None, None)?;
        Ok(PendingList {
            requests: page.requests,
            unreadable: page.unreadable,
        })
    }

    fn pending_page(&self, limit: usize, after: Option<&PageCursor>) -> Result<PendingPage, StoreError> {
        self.read_pending(Some(limit.clamp(1, MAX_PAGE)), after)
    }

    fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        self.all_grants()
    }

    fn grants_for(&self, tool: &str) -> Result<Vec<Grant>, StoreError> {
        self.active_grants(tool)
    }

    fn use_grant(&self, id: &str) -> Result<bool, StoreError> {
        self.take_grant_use(id)
    }

    fn revoke_grant(&self, id: &str, by: Option<&str>) -> Result<Option<Grant>, StoreError> {
        self.revoke(id, by)
    }

    fn wait<'a>(&'a self, id: &'a RequestId) -> WaitFuture<'a> {
        Box::pin(async move {
            // The watcher reads the row now, on each notification naming it, and every POSTGRES_POLL_FALLBACK with
            // every other waiting row. (A waiter of its own timer asking again would cost a query per waiter: a
            // thousand parked calls' timers fire at a thousand different times.) The caller's deadline ends the wait.
            let waiter = self.shared.watch(id);
            let result = loop {
                let listener = waiter.event.listen();
                if let Some(result) = waiter.outcome() {
                    break result;
                }
                listener.await;
            };
            self.shared.unwatch(id, waiter);
            result
        })
    }

    fn wait_blocking(&self, id: &RequestId, until: Instant) -> Result<Option<Decision>, StoreError> {
        let waiter = self.shared.watch(id);
        let result = loop {
            let listener = waiter.event.listen();
            if let Some(result) = waiter.outcome() {
                break result.map(Some);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Ok(None);
            }
            let _ = listener.wait_timeout(left);
        };
        self.shared.unwatch(id, waiter);
        result
    }
}

impl PostgresStore {
    /// Live pending rows in the pending order (`created`, then id), after `after`, at most `limit` (all when
    /// `None`), read through the partial index on pending rows. A cursor names a row by its `created` time in
    /// microseconds since the epoch and its id.
    fn read_pending(&self, limit: Option<usize>, after: Option<&PageCursor>) -> Result<PendingPage, StoreError> {
        let after_us = after.map(|c| i64::try_from(c.created_us).unwrap_or(i64::MAX));
        let after_id = after.map(|c| c.id.clone());
        // One more than asked, to tell whether another page follows.
        let fetch = limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX).saturating_add(1));
        let rows = self.call(move |s| async move {
            let c = s.client().await?;
            let rows = c
                .query(
                    &c.prepared(
                        "SELECT id, request, (extract(epoch FROM created) * 1000000)::bigint FROM agentguard_requests
                     WHERE state = 'pending' AND deadline > now()
                       AND ($1::bigint IS NULL
                            OR (created, id) > (to_timestamp(0) + $1::bigint * interval '1 microsecond', $2::text))
                     ORDER BY created, id LIMIT $3::bigint",
                    )
                    .await?,
                    &[&after_us, &after_id, &fetch],
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
                        r.try_get::<_, i64>(2).unwrap_or(0),
                    )
                })
                .collect::<Vec<_>>())
        })?;
        let mut page = PendingPage::default();
        let mut last: Option<PageCursor> = None;
        // Each row is read on its own: one that cannot be read back is reported by id, and the others still listed.
        for (taken, (id, json, created_us)) in rows.into_iter().enumerate() {
            if limit.is_some_and(|l| taken == l) {
                page.next = last;
                break;
            }
            last = Some(PageCursor {
                created_us: u64::try_from(created_us).unwrap_or(0),
                id: id.clone(),
            });
            match json.and_then(|json| {
                serde_json::from_str::<ApprovalRequest>(&json).map_err(|e| format!("damaged request JSON: {e}"))
            }) {
                Ok(request) => page.requests.push(request),
                Err(problem) => page.unreadable.push(UnreadableRow { id, problem }),
            }
        }
        Ok(page)
    }
}
