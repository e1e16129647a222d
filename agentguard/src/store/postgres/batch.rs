//! Group commit for one process's store: the work many concurrent calls ask for is done in few statements.
//!
//! - **Waiting**: one watcher task reads the rows of every waiting request, in one query per batch of ids, when a
//!   notification names them, when they start waiting, and every [`POSTGRES_POLL_FALLBACK`] for all of them (the
//!   fallback for lost notifications): a thousand parked calls cost one query a second, not a thousand.
//! - **Claims and outcomes**: concurrent claims (`approved` → `executed`) are one `UPDATE … RETURNING` and one
//!   commit; so are concurrent outcomes.
//! - **Decisions**: concurrent answers are one transaction (see [`decide_batch`](super::requests)).
//!
//! Each queue's worker takes what is waiting (at most [`BATCH_MAX`]) as soon as it is free: one call alone is done at
//! once, and calls that arrive while a batch is in the database ride the next one. A caller gets its own result; a
//! batch that fails gives every caller in it the error (each fails closed, as a call of its own would).

use std::collections::{HashSet, VecDeque};

use tokio::sync::{mpsc, oneshot};

use super::*;

/// At most this many calls share one statement or transaction.
pub(super) const BATCH_MAX: usize = 256;

/// What a caller gets back from a queue.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A queue of calls of one kind to be done together.
pub(super) type Queue<R, T> = mpsc::UnboundedSender<(R, Reply<T>)>;

/// One waiting request: the watcher puts its decision (or the error that ended the wait) here and wakes it.
#[derive(Default)]
pub(super) struct Waiter {
    pub(super) event: Event,
    pub(super) result: Mutex<Option<Result<Decision, String>>>,
}

impl Waiter {
    /// The decision or error the watcher left, if any.
    pub(super) fn outcome(&self) -> Option<Result<Decision, StoreError>> {
        let slot = self.result.lock().unwrap_or_else(|p| p.into_inner());
        slot.clone().map(|r| r.map_err(StoreError::new))
    }

    fn set(&self, result: Result<Decision, String>) {
        *self.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
        self.event.notify(usize::MAX);
    }
}

/// The most bytes of ids one notification carries (PostgreSQL refuses a payload of 8,000 bytes or more): about 190
/// request ids.
pub(super) const NOTIFY_PAYLOAD_MAX: usize = 7_000;

/// The payloads that tell the waiting processes about `ids`: the ids separated by spaces (a request id has none),
/// at most [`NOTIFY_PAYLOAD_MAX`] bytes each. A batch of 256 decisions is two notifications rather than 256, which
/// each of the database's listening processes would otherwise receive and look up one by one.
pub(super) fn notify_payloads(ids: &[String]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current = String::new();
    for id in ids {
        if !current.is_empty() && current.len() + 1 + id.len() > NOTIFY_PAYLOAD_MAX {
            payloads.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(id);
    }
    if !current.is_empty() {
        payloads.push(current);
    }
    payloads
}

/// Takes what is waiting in `rx` after `first`, up to [`BATCH_MAX`].
fn drain<R, T>(first: (R, Reply<T>), rx: &mut mpsc::UnboundedReceiver<(R, Reply<T>)>) -> Vec<(R, Reply<T>)> {
    let mut batch = vec![first];
    while batch.len() < BATCH_MAX {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    batch
}

/// Sends `error` to every caller of a failed batch.
fn fail_all<R, T>(batch: Vec<(R, Reply<T>)>, error: &StoreError) {
    for (_, reply) in batch {
        let _ = reply.send(Err(StoreError::new(error.to_string())));
    }
}

/// Hands a call to a queue's worker and waits for its result.
pub(super) async fn ask<R, T>(queue: &Queue<R, T>, request: R) -> Result<T, StoreError> {
    let (tx, rx) = oneshot::channel();
    queue
        .send((request, tx))
        .map_err(|_| StoreError::new("postgres store: the store is closed"))?;
    rx.await
        .map_err(|_| StoreError::new("postgres store: the store closed before the call was done"))?
}

/// The claims worker: `approved` → `executed` for each batch of ids in one statement. An id claimed twice in one
/// batch is claimed once: only its first caller gets `true`.
pub(super) async fn claim_loop(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<(String, Reply<bool>)>) {
    while let Some(first) = rx.recv().await {
        let batch = drain(first, &mut rx);
        let ids: Vec<&str> = batch.iter().map(|(id, _)| id.as_str()).collect();
        let claimed = async {
            let c = shared.client().await?;
            c.query(
                &c.prepared(
                    "UPDATE agentguard_requests SET state = 'executed', executed = now()
                 WHERE id = ANY($1) AND (state = 'approved') IS TRUE RETURNING id",
                )
                .await?,
                &[&ids],
            )
            .await
            .map_err(pg_err("claim a request"))
        }
        .await;
        match claimed {
            Ok(rows) => {
                let mut won: HashSet<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
                for (id, reply) in batch {
                    let _ = reply.send(Ok(won.remove(&id)));
                }
            }
            Err(e) => fail_all(batch, &e),
        }
    }
}

/// The outcomes worker: each batch of `(id, outcome)` recorded in one statement.
pub(super) async fn finish_loop(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<((String, String), Reply<()>)>) {
    while let Some(first) = rx.recv().await {
        let batch = drain(first, &mut rx);
        let ids: Vec<&str> = batch.iter().map(|((id, _), _)| id.as_str()).collect();
        let outcomes: Vec<&str> = batch.iter().map(|((_, text), _)| text.as_str()).collect();
        let done = async {
            let c = shared.client().await?;
            c.execute(
                &c.prepared(
                    "UPDATE agentguard_requests AS r SET outcome = u.outcome, finished = now()
                 FROM unnest($1::text[], $2::text[]) AS u(id, outcome)
                 WHERE r.id = u.id AND r.id = ANY($1) AND (r.state = 'executed') IS TRUE",
                )
                .await?,
                &[&ids, &outcomes],
            )
            .await
            .map_err(pg_err("record an execution outcome"))
        }
        .await;
        match done {
            Ok(_) => {
                for (_, reply) in batch {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) => fail_all(batch, &e),
        }
    }
}

/// The decisions worker: each batch of answers to distinct requests is one transaction
/// ([`PostgresStore::decide_batch`]); a second answer to a request already in the batch waits for the next one, so
/// it sees the first's result. A batch that fails is retried one answer at a time, so one bad answer does not fail
/// the others.
pub(super) async fn decide_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<(Resolution, Reply<ResolveOutcome>)>,
) {
    // Answers not yet in a batch, in the order they came.
    let mut queued: VecDeque<(Resolution, Reply<ResolveOutcome>)> = VecDeque::new();
    loop {
        if queued.is_empty() {
            match rx.recv().await {
                Some(item) => queued.push_back(item),
                None => return,
            }
        }
        while queued.len() < 4 * BATCH_MAX {
            match rx.try_recv() {
                Ok(item) => queued.push_back(item),
                Err(_) => break,
            }
        }
        let mut batch = Vec::new();
        let mut ids: HashSet<String> = HashSet::new();
        let mut later = VecDeque::new();
        for item in queued.drain(..) {
            if batch.len() < BATCH_MAX && ids.insert(item.0.request_id().as_str().to_owned()) {
                batch.push(item);
            } else {
                later.push_back(item);
            }
        }
        queued = later;
        let resolutions: Vec<&Resolution> = batch.iter().map(|(r, _)| r).collect();
        // An answer with an outcome gets it; one whose row turned pending after the batch's lock was taken goes
        // first into the next batch.
        let mut reply = |item: (Resolution, Reply<ResolveOutcome>),
                         outcome: Option<Result<ResolveOutcome, StoreError>>| {
            match outcome {
                Some(outcome) => {
                    let _ = item.1.send(outcome);
                }
                None => queued.push_front(item),
            }
        };
        match PostgresStore::decide_batch(&shared, &resolutions).await {
            Ok(outcomes) => {
                for (item, outcome) in batch.into_iter().zip(outcomes) {
                    reply(item, outcome);
                }
            }
            Err(e) if batch.len() == 1 => fail_all(batch, &e),
            Err(_) => {
                for item in batch {
                    let outcome = PostgresStore::decide_batch(&shared, &[&item.0]).await;
                    match outcome {
                        Ok(mut outcomes) => reply(item, outcomes.pop().flatten()),
                        Err(e) => reply(item, Some(Err(e))),
                    }
                }
            }
        }
    }
}

impl Shared {
    /// Registers a waiter for `id` (or joins the one there) and asks the watcher to read its row.
    pub(super) fn watch(&self, id: &RequestId) -> Arc<Waiter> {
        let waiter = {
            let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(waiters.entry(id.as_str().to_owned()).or_default())
        };
        self.mark(id.as_str());
        waiter
    }

    /// Drops the waiter for `id` once its last holder is done with it.
    pub(super) fn unwatch(&self, id: &RequestId, waiter: Arc<Waiter>) {
        drop(waiter);
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if waiters.get(id.as_str()).is_some_and(|w| Arc::strong_count(w) == 1) {
            waiters.remove(id.as_str());
        }
    }

    /// Asks the watcher to read the rows this process waits for among the ids of a notification's payload
    /// ([`notify_payloads`]): every process hears every decision, and only its own wake the watcher.
    pub(super) fn mark_waiting(&self, payload: &str) {
        let mine: Vec<String> = {
            let waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            payload
                .split(' ')
                .filter(|id| waiters.contains_key(*id))
                .map(str::to_owned)
                .collect()
        };
        if mine.is_empty() {
            return;
        }
        self.dirty.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
        self.kick.notify_one();
    }

    /// Asks the watcher to read `id`'s row (a notification named it, or it started waiting).
    pub(super) fn mark(&self, id: &str) {
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned());
        self.kick.notify_one();
    }

    /// Asks the watcher to read every waiting request's row (the LISTEN connection came back: notifications sent
    /// while it was down are lost).
    pub(super) fn mark_all(&self) {
        let ids: Vec<String> = self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        self.dirty.lock().unwrap_or_else(|p| p.into_inner()).extend(ids);
        self.kick.notify_one();
    }

    /// Hands each waiter among `ids` its decision once it is final, or `error`.
    fn deliver(&self, found: Vec<(String, Result<Decision, String>)>) {
        let waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        for (id, result) in found {
            if let Some(w) = waiters.get(&id) {
                w.set(result);
            }
        }
    }
}

/// The watcher: reads the rows of the marked waiting requests, in batches, whenever some are marked, and all of
/// them every [`POSTGRES_POLL_FALLBACK`].
pub(super) async fn watch_loop(shared: Arc<Shared>) {
    let mut last_sweep = Instant::now();
    while !shared.closed.load(Ordering::SeqCst) {
        let left = POSTGRES_POLL_FALLBACK.saturating_sub(last_sweep.elapsed());
        let _ = tokio::time::timeout(left, shared.kick.notified()).await;
        if last_sweep.elapsed() >= POSTGRES_POLL_FALLBACK {
            shared.mark_all();
            last_sweep = Instant::now();
        }
        let marked: Vec<String> = {
            let mut dirty = shared.dirty.lock().unwrap_or_else(|p| p.into_inner());
            let waiters = shared.waiters.lock().unwrap_or_else(|p| p.into_inner());
            dirty.drain().filter(|id| waiters.contains_key(id)).collect()
        };
        for ids in marked.chunks(1000) {
            let found = read_decisions(&shared, ids).await;
            shared.deliver(found);
        }
    }
}

/// The final decisions among `ids`; an id with no row, or a row that cannot be read, gets an error; a failed query
/// gives every id its error. Pending rows are left out (their waiters wait on).
pub(super) async fn read_decisions(shared: &Shared, ids: &[String]) -> Vec<(String, Result<Decision, String>)> {
    let rows = async {
        let c = shared.client().await?;
        c.query(
            &c.prepared("SELECT id, state, actor, note, details FROM agentguard_requests WHERE id = ANY($1)")
                .await?,
            &[&ids],
        )
        .await
        .map_err(pg_err("read a request"))
    }
    .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return ids.iter().map(|id| (id.clone(), Err(e.to_string()))).collect(),
    };
    let mut missing: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut found = Vec::new();
    for row in &rows {
        let id: String = row.get(0);
        missing.remove(id.as_str());
        match stored_decision(row.get(1), row.get(2), row.get(3), row.get(4)) {
            Ok(d) if d.state.is_final() => found.push((id, Ok(d))),
            Ok(_) => {}
            Err(e) => found.push((id, Err(e.to_string()))),
        }
    }
    found.extend(
        missing
            .into_iter()
            .map(|id| (id.to_owned(), Err(format!("no request {id} in the postgres store")))),
    );
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_payloads_carry_every_id_once_each_under_the_limit() {
        let ids: Vec<String> = (0..1_000).map(|_| RequestId::new().as_str().to_owned()).collect();
        let payloads = notify_payloads(&ids);
        assert!(payloads.len() > 1, "1,000 ids do not fit one notification");
        assert!(payloads.iter().all(|p| !p.is_empty() && p.len() <= NOTIFY_PAYLOAD_MAX));
        let back: Vec<&str> = payloads.iter().flat_map(|p| p.split(' ')).collect();
        assert_eq!(back, ids.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            notify_payloads(&ids[..1]),
            vec![ids[0].clone()],
            "one id is its own payload, as an expiry's"
        );
        assert!(notify_payloads(&[]).is_empty());
    }
}
