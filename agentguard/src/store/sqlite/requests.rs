//! The requests, in SQLite: [`ApprovalStore`] for [`SqliteStore`], each decision a compare-and-set.

use super::*;

impl ApprovalStore for SqliteStore {
    fn insert(&self, request: &ApprovalRequest) -> Result<(), StoreError> {
        let json = serde_json::to_string(request)
            .map_err(|e| StoreError::new(format!("sqlite store: cannot serialize the request: {e}")))?;
        let mut conn = self.conn();
        // One write transaction: the new row and a bounded sweep of old ones.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err("begin parking a request"))?;
        exec(
            &tx,
            "INSERT INTO agentguard_requests (id, request, tool, params_digest, created_ms, deadline_ms, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending')",
            params![
                request.request_id().as_str(),
                json,
                request.tool(),
                request.params_digest().as_str(),
                to_ms(request.timestamp()),
                to_ms(request.deadline()),
            ],
        )
        .map_err(db_err("park a request"))?;
        sweep(&tx, now_ms(), self.retention)?;
        tx.commit().map_err(db_err("commit a parked request"))?;
        Ok(())
    }

    fn resolve(&self, resolution: &Resolution) -> Result<ResolveOutcome, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err("begin a decision"))?;
        let id = resolution.request_id().as_str();
        let row: Option<(String, String, i64, String, Option<String>)> = query_row(
            &tx,
            "SELECT request, state, deadline_ms, params_digest, details FROM agentguard_requests WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()
        .map_err(db_err("read a request"))?;
        let Some((json, state, deadline_ms, digest, details)) = row else {
            return Ok(ResolveOutcome::Unknown);
        };
        let now = now_ms();
        let outcome = match RequestState::parse_stored(&state, "sqlite")? {
            RequestState::Expired => ResolveOutcome::Expired,
            RequestState::Pending if now >= deadline_ms => {
                exec(
                    &tx,
                    "UPDATE agentguard_requests SET state = 'expired', decided_ms = ?2 WHERE id = ?1",
                    params![id, now],
                )
                .map_err(db_err("expire a request"))?;
                ResolveOutcome::Expired
            }
            RequestState::Pending => {
                // The one transition every store applies; a row that cannot be read back can only be denied.
                let step = match serde_json::from_str::<ApprovalRequest>(&json) {
                    Ok(request) => {
                        let current = Decision::of(RequestState::Pending).with_details_json(details.as_deref())?;
                        step(&request, &current, resolution, now.max(0) as u64)
                    }
                    Err(_) => step_unreadable(&digest, resolution),
                };
                let outcome = step.outcome();
                match step {
                    Step::Refuse(_) => {}
                    Step::Vote(decision) => {
                        exec(
                            &tx,
                            "UPDATE agentguard_requests SET details = ?2 WHERE id = ?1 AND state = 'pending'",
                            params![id, decision.details_json()],
                        )
                        .map_err(db_err("record a vote"))?;
                    }
                    Step::Decide(decision, grant) => {
                        // Inside the write transaction it is still pending; checked all the same, so a decision is
                        // never reported twice.
                        let decided = exec(
                            &tx,
                            "UPDATE agentguard_requests
                             SET state = ?2, actor = ?3, note = ?4, details = ?5, decided_ms = ?6
                             WHERE id = ?1 AND state = 'pending'",
                            params![
                                id,
                                decision.state.as_str(),
                                decision.actor,
                                decision.note,
                                decision.details_json(),
                                now
                            ],
                        )
                        .map_err(db_err("record a decision"))?;
                        if decided != 1 {
                            return Ok(ResolveOutcome::AlreadyResolved);
                        }
                        if let Some(grant) = grant {
                            grants::insert_grant(&tx, &grant)?;
                        }
                    }
                }
                outcome
            }
            _ => ResolveOutcome::AlreadyResolved,
        };
        tx.commit().map_err(db_err("commit a decision"))?;
        Ok(outcome)
    }

    fn expire(&self, id: &RequestId) -> Result<Option<Decision>, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err("begin an expiry"))?;
        exec(
            &tx,
            "UPDATE agentguard_requests SET state = 'expired', decided_ms = ?2 WHERE id = ?1 AND state = 'pending'",
            params![id.as_str(), now_ms()],
        )
        .map_err(db_err("expire a request"))?;
        let decision = Self::decision(&tx, id)?.map(|(d, _)| d);
        tx.commit().map_err(db_err("commit an expiry"))?;
        Ok(decision)
    }

    fn abandon(&self, id: &RequestId) -> Result<(), StoreError> {
        exec(
            &self.conn(),
            "UPDATE agentguard_requests SET state = 'expired', decided_ms = ?2
                 WHERE id = ?1 AND state IN ('pending', 'approved')",
            params![id.as_str(), now_ms()],
        )
        .map_err(db_err("abandon a request"))?;
        Ok(())
    }

    fn claim(&self, id: &RequestId) -> Result<bool, StoreError> {
        let changed = exec(
            &self.conn(),
            "UPDATE agentguard_requests SET state = 'executed', executed_ms = ?2 WHERE id = ?1 AND state = 'approved'",
            params![id.as_str(), now_ms()],
        )
        .map_err(db_err("claim a request"))?;
        Ok(changed == 1)
    }

    fn finish(&self, id: &RequestId, outcome: &ExecOutcome) -> Result<(), StoreError> {
        exec(
            &self.conn(),
            "UPDATE agentguard_requests SET outcome = ?2, finished_ms = ?3 WHERE id = ?1 AND state = 'executed'",
            params![id.as_str(), outcome.to_text(), now_ms()],
        )
        .map_err(db_err("record an execution outcome"))?;
        Ok(())
    }

    fn get(&self, id: &RequestId) -> Result<Option<StoredRequest>, StoreError> {
        let conn = self.conn();
        let row: Option<RequestRow> = query_row(
            &conn,
            "SELECT request, state, actor, note, deadline_ms, outcome, details FROM agentguard_requests WHERE id = ?1",
            params![id.as_str()],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )
        .optional()
        .map_err(db_err("read a request"))?;
        row.map(|(json, state, actor, note, deadline_ms, outcome, details)| {
            let request: ApprovalRequest = serde_json::from_str(&json)
                .map_err(|e| StoreError::new(format!("sqlite store: request {id} is damaged: {e}")))?;
            let mut decision = stored_decision(&state, actor, note, details.as_deref())?;
            // A pending request past its deadline whose agent is gone is expired, whether or not anyone wrote it.
            if decision.state == RequestState::Pending && now_ms() >= deadline_ms {
                decision.state = RequestState::Expired;
            }
            Ok(StoredRequest {
                request,
                decision,
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
            let mut interval = FIRST_POLL;
            loop {
                // A read of the file: off the runtime's worker, so a slow disk does not hold up its other tasks.
                let decision = crate::store::offload::off_runtime(|| self.poll_decision(id))?;
                if decision.state.is_final() {
                    return Ok(decision);
                }
                tokio::time::sleep(interval).await;
                interval = (interval * 2).min(SQLITE_MAX_POLL);
            }
        })
    }

    fn wait_blocking(&self, id: &RequestId, until: Instant) -> Result<Option<Decision>, StoreError> {
        let mut interval = FIRST_POLL;
        loop {
            let decision = self.poll_decision(id)?;
            if decision.state.is_final() {
                return Ok(Some(decision));
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            std::thread::sleep(interval.min(left));
            interval = (interval * 2).min(SQLITE_MAX_POLL);
        }
    }
}

impl SqliteStore {
    /// Live pending rows in the pending order (`created_ms`, then id), after `after`, at most `limit` (all when
    /// `None`), read through the partial index on pending rows. A cursor names a row by its `created_ms` (times
    /// 1,000) and id.
    fn read_pending(&self, limit: Option<usize>, after: Option<&PageCursor>) -> Result<PendingPage, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, request, created_ms FROM agentguard_requests
                 WHERE state = 'pending' AND deadline_ms > ?1 AND (created_ms, id) > (?2, ?3)
                 ORDER BY created_ms, id LIMIT ?4",
            )
            .map_err(db_err("list pending requests"))?;
        let (after_ms, after_id) = after.map_or((i64::MIN, ""), |c| {
            (i64::try_from(c.created_us / 1000).unwrap_or(i64::MAX), c.id.as_str())
        });
        // One more than asked, to tell whether another page follows.
        let fetch = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX).saturating_add(1));
        let mut rows = stmt
            .query(params![now_ms(), after_ms, after_id, fetch])
            .map_err(db_err("list pending requests"))?;
        let mut page = PendingPage::default();
        let mut last: Option<PageCursor> = None;
        let mut taken = 0usize;
        // Each row is read on its own: one that cannot be read back is reported by id, and the others still listed.
        while let Some(row) = rows.next().map_err(db_err("list pending requests"))? {
            if limit.is_some_and(|l| taken == l) {
                page.next = last;
                break;
            }
            taken += 1;
            let id = match row.get_ref(0) {
                Ok(ValueRef::Text(t)) => String::from_utf8_lossy(t).into_owned(),
                Ok(other) => format!("{other:?}"),
                Err(e) => format!("<unreadable id: {e}>"),
            };
            let created_ms: i64 = row.get(2).unwrap_or(0);
            let parsed = match row.get_ref(1) {
                Ok(ValueRef::Text(json)) => {
                    serde_json::from_slice::<ApprovalRequest>(json).map_err(|e| format!("damaged request JSON: {e}"))
                }
                Ok(other) => Err(format!(
                    "the request column holds {:?}, not JSON text",
                    other.data_type()
                )),
                Err(e) => Err(e.to_string()),
            };
            last = Some(PageCursor {
                created_us: u64::try_from(created_ms).unwrap_or(0).saturating_mul(1000),
                id: id.clone(),
            });
            match parsed {
                Ok(request) => page.requests.push(request),
                Err(problem) => page.unreadable.push(UnreadableRow { id, problem }),
            }
        }
        Ok(page)
    }
}
