//! Decisions in PostgreSQL: a batch of answers to distinct requests, one transaction on their locked rows.

use std::collections::{HashMap, HashSet};

use super::grants::NOW_MS;
use super::*;

/// What one answer of a batch comes to, before the writes.
enum Plan {
    /// Its result is known without a write (refused, unknown, already decided, or an error of its own).
    Done(Result<ResolveOutcome, StoreError>),
    /// Written by one of the batch's statements; this is its result once they commit.
    Written(ResolveOutcome),
    /// A decision, if the batch's decide statement changes its row (it does: the row is locked and pending).
    Decided,
    /// Its row was not pending when the rows were locked but is now (inserted meanwhile): answered in a later batch.
    Again,
}

impl PostgresStore {
    /// Applies `answers` (to distinct requests) in one transaction: locks their pending rows in id order (so two
    /// batches in two processes never wait on each other in a cycle), applies the transition every store shares to
    /// each in turn, writes the expiries, the votes and the decisions with one statement each, inserts the standing
    /// grants the approvals ask for, notifies every changed request, and commits.
    ///
    /// Each answer gets its own result, or `None` when it must be answered again in a later batch. `Err` is the
    /// whole batch failing (nothing was written).
    pub(super) async fn decide_batch(
        shared: &Shared,
        answers: &[&Resolution],
    ) -> Result<Vec<Option<Result<ResolveOutcome, StoreError>>>, StoreError> {
        let mut slot = shared.decide_client().await?;
        let c = slot
            .as_mut()
            .ok_or_else(|| StoreError::new("postgres store: no connection for decisions"))?;
        // Every batch runs these; prepared once per connection (see `Conn`). The rarer statements (expiries, votes,
        // other rows' states) are sent as text.
        let lock = c
            .prepared(&format!(
                "SELECT id, request, deadline <= clock_timestamp(), params_digest, details, {NOW_MS}
                 FROM agentguard_requests WHERE id = ANY($1) AND (state = 'pending') IS TRUE ORDER BY id FOR UPDATE"
            ))
            .await?;
        let write = c
            .prepared(
                "UPDATE agentguard_requests AS r
                 SET state = u.state, actor = u.actor, note = u.note, details = u.details, decided = now()
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                      AS u(id, state, actor, note, details)
                 WHERE r.id = u.id AND r.id = ANY($1) AND (r.state = 'pending') IS TRUE RETURNING r.id",
            )
            .await?;
        let notify = c
            .prepared("SELECT count(pg_notify($1, ids)) FROM unnest($2::text[]) AS ids")
            .await?;
        let tx = c.transaction().await.map_err(pg_err("begin a decision"))?;
        let ids: Vec<&str> = answers.iter().map(|a| a.request_id().as_str()).collect();
        // The row locks order concurrent answers (and the agent's expiry, a single UPDATE): each sees the state and
        // the votes the one before it committed.
        let rows = tx.query(&lock, &[&ids]).await.map_err(pg_err("read a request"))?;
        let locked: HashMap<String, tokio_postgres::Row> = rows.into_iter().map(|r| (r.get(0), r)).collect();
        let others: Vec<&str> = ids.iter().copied().filter(|id| !locked.contains_key(*id)).collect();
        let mut states: HashMap<String, String> = HashMap::new();
        if !others.is_empty() {
            let rows = tx
                .query(
                    "SELECT id, state FROM agentguard_requests WHERE id = ANY($1)",
                    &[&others],
                )
                .await
                .map_err(pg_err("read a request"))?;
            states.extend(rows.into_iter().map(|r| (r.get(0), r.get(1))));
        }

        let mut expire: Vec<&str> = Vec::new();
        let (mut vote_ids, mut vote_details) = (Vec::<&str>::new(), Vec::<Option<String>>::new());
        let mut decide = DecideColumns::default();
        let mut grants: Vec<(&str, Box<Grant>)> = Vec::new();
        let mut plans = Vec::with_capacity(answers.len());
        for answer in answers {
            let id = answer.request_id().as_str();
            let plan = match (locked.get(id), states.get(id)) {
                (Some(row), _) if row.get::<_, bool>(2) => {
                    expire.push(id);
                    Plan::Written(ResolveOutcome::Expired)
                }
                (Some(row), _) => match plan_step(row, answer) {
                    Err(e) => Plan::Done(Err(e)),
                    Ok(Step::Refuse(outcome)) => Plan::Done(Ok(outcome)),
                    Ok(Step::Vote(decision)) => {
                        vote_ids.push(id);
                        vote_details.push(decision.details_json());
                        Plan::Written(ResolveOutcome::VoteRecorded)
                    }
                    Ok(Step::Decide(decision, grant)) => {
                        decide.push(id, &decision);
                        grants.extend(grant.map(|g| (id, g)));
                        Plan::Decided
                    }
                },
                (None, None) => Plan::Done(Ok(ResolveOutcome::Unknown)),
                (None, Some(state)) => match RequestState::parse_stored(state, "postgres") {
                    Ok(RequestState::Expired) => Plan::Done(Ok(ResolveOutcome::Expired)),
                    Ok(RequestState::Pending) => Plan::Again,
                    Ok(_) => Plan::Done(Ok(ResolveOutcome::AlreadyResolved)),
                    Err(e) => Plan::Done(Err(e)),
                },
            };
            plans.push(plan);
        }

        let mut changed: Vec<String> = Vec::new();
        if !expire.is_empty() {
            let rows = tx
                .query(
                    "UPDATE agentguard_requests SET state = 'expired', decided = now()
                     WHERE id = ANY($1) AND state = 'pending' RETURNING id",
                    &[&expire],
                )
                .await
                .map_err(pg_err("expire a request"))?;
            changed.extend(rows.iter().map(|r| r.get::<_, String>(0)));
        }
        if !vote_ids.is_empty() {
            let rows = tx
                .query(
                    "UPDATE agentguard_requests AS r SET details = u.details
                     FROM unnest($1::text[], $2::text[]) AS u(id, details)
                     WHERE r.id = u.id AND r.id = ANY($1) AND (r.state = 'pending') IS TRUE RETURNING r.id",
                    &[&vote_ids, &vote_details],
                )
                .await
                .map_err(pg_err("record a vote"))?;
            changed.extend(rows.iter().map(|r| r.get::<_, String>(0)));
        }
        let mut decided: HashSet<String> = HashSet::new();
        if !decide.ids.is_empty() {
            // Under the row locks they are still pending; checked all the same, so a decision is never reported
            // twice.
            let rows = tx
                .query(
                    &write,
                    &[
                        &decide.ids,
                        &decide.states,
                        &decide.actors,
                        &decide.notes,
                        &decide.details,
                    ],
                )
                .await
                .map_err(pg_err("record a decision"))?;
            decided.extend(rows.iter().map(|r| r.get::<_, String>(0)));
            changed.extend(decided.iter().cloned());
        }
        for (id, grant) in &grants {
            if decided.contains(*id) {
                grants::insert_grant(&tx, grant).await?;
            }
        }
        if !changed.is_empty() {
            let payloads = batch::notify_payloads(&changed);
            tx.execute(&notify, &[&CHANNEL, &payloads])
                .await
                .map_err(pg_err("notify the waiting agents"))?;
        }
        tx.commit().await.map_err(pg_err("commit a decision"))?;
        Ok(answers
            .iter()
            .zip(plans)
            .map(|(answer, plan)| match plan {
                Plan::Done(result) => Some(result),
                Plan::Written(outcome) => Some(Ok(outcome)),
                Plan::Decided if decided.contains(answer.request_id().as_str()) => Some(Ok(ResolveOutcome::Resolved)),
                Plan::Decided => Some(Ok(ResolveOutcome::AlreadyResolved)),
                Plan::Again => None,
            })
            .collect())
    }
}

/// The transition for `answer` on its locked pending `row` (`id, request, late, params_digest, details, now_ms`);
/// a row whose request cannot be read back can only be denied.
fn plan_step(row: &tokio_postgres::Row, answer: &Resolution) -> Result<Step, StoreError> {
    let now_ms: i64 = row.get(5);
    Ok(match serde_json::from_str::<ApprovalRequest>(row.get(1)) {
        Ok(request) => {
            let current = Decision::of(RequestState::Pending).with_details_json(row.get(4))?;
            step(&request, &current, answer, now_ms.max(0) as u64)
        }
        Err(_) => step_unreadable(row.get(3), answer),
    })
}

/// The decide statement's columns, one entry per decided request.
#[derive(Default)]
struct DecideColumns<'a> {
    ids: Vec<&'a str>,
    states: Vec<&'static str>,
    actors: Vec<Option<String>>,
    notes: Vec<Option<String>>,
    details: Vec<Option<String>>,
}

impl<'a> DecideColumns<'a> {
    fn push(&mut self, id: &'a str, decision: &Decision) {
        self.ids.push(id);
        self.states.push(decision.state.as_str());
        self.actors.push(decision.actor.clone());
        self.notes.push(decision.note.clone());
        self.details.push(decision.details_json());
    }
}
