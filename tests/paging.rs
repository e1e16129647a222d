//! Pages of pending requests in every store — in memory, SQLite (a real file) and PostgreSQL (a real server): pages
//! cover every live request once, oldest first; a request decided between two pages moves nothing; the limit is
//! clamped; an unreadable row takes its place on a page and the cursor moves past it. And the in-memory store's
//! change feed: each change once, in order, and it says when it lost some. PostgreSQL needs
//! `AGENTGUARD_TEST_POSTGRES_URL` (`.ci/run` sets it); without it those tests say they were skipped and why.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentguard::params::ParamsDigest;
use agentguard::store::{ApprovalStore, InMemoryStore, PageCursor, PendingPage, PostgresStore, SqliteStore, MAX_PAGE};
use agentguard::{ApprovalRequest, RequestId, Resolution, ResolveOutcome};
use serde_json::json;

/// A store of one kind, and the temp dir its file lives in.
struct Env {
    store: Arc<dyn ApprovalStore>,
    _dir: tempfile::TempDir,
}

fn memory() -> Option<Env> {
    Some(Env {
        store: Arc::new(InMemoryStore::new()),
        _dir: tempfile::tempdir().unwrap(),
    })
}

fn sqlite() -> Option<Env> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("store.db")).unwrap();
    Some(Env {
        store: Arc::new(store),
        _dir: dir,
    })
}

/// A fresh schema on the test server, or `None` (and a message) when the tests are not configured.
fn postgres() -> Option<Env> {
    let server = common::postgres_server()?;
    let schema = format!("ag_{}", RequestId::new().as_str().replace('-', ""));
    Some(Env {
        store: Arc::new(PostgresStore::connect(&server, Some(&schema)).unwrap()),
        _dir: tempfile::tempdir().unwrap(),
    })
}

/// Each behaviour below, once per store: `memory::name`, `sqlite::name`, `postgres::name`.
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod memory { $( #[test] fn $name() { if let Some(env) = super::memory() { super::$name(&*env.store) } } )* }
        mod sqlite { $( #[test] fn $name() { if let Some(env) = super::sqlite() { super::$name(&*env.store) } } )* }
        mod postgres { $( #[test] fn $name() { if let Some(env) = super::postgres() { super::$name(&*env.store) } } )* }
    };
}

on_every_store!(
    pages_cover_every_pending_request_once_oldest_first,
    a_request_decided_between_pages_moves_nothing,
    a_limit_out_of_range_is_read_as_the_nearest_bound,
);

/// A request made `age` ago (so requests made in a loop with decreasing ages are in order), live for a minute.
fn request(age: Duration) -> ApprovalRequest {
    let made = SystemTime::now() - age;
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    serde_json::from_value(json!({
        "request_id": RequestId::new(),
        "tool": "delete_row",
        "params": {},
        "params_digest": ParamsDigest::of(b"{}"),
        "risk": "irreversible",
        "timestamp": secs(made),
        "deadline": secs(made + Duration::from_secs(60)),
    }))
    .unwrap()
}

/// Parks `n` requests, oldest first (1 ms apart), and returns their ids in that order.
fn park(store: &dyn ApprovalStore, n: usize) -> Vec<RequestId> {
    (0..n)
        .map(|i| {
            let r = request(Duration::from_millis((n - i) as u64 * 2));
            store.insert(&r).unwrap();
            // PostgreSQL orders by its own clock at insert: keep inserts apart so both orders agree.
            std::thread::sleep(Duration::from_millis(1));
            r.request_id().clone()
        })
        .collect()
}

fn ids(page: &PendingPage) -> Vec<RequestId> {
    page.requests.iter().map(|r| r.request_id().clone()).collect()
}

/// Every page until the end, `limit` at a time.
fn all_pages(store: &dyn ApprovalStore, limit: usize) -> Vec<PendingPage> {
    let mut pages = vec![store.pending_page(limit, None).unwrap()];
    while let Some(next) = pages.last().unwrap().next.clone() {
        // The cursor also survives a trip through its text form, as the API and the CLI pass it.
        let next: PageCursor = next.to_string().parse().unwrap();
        pages.push(store.pending_page(limit, Some(&next)).unwrap());
        assert!(pages.len() < 100, "paging ends");
    }
    pages
}

fn pages_cover_every_pending_request_once_oldest_first(store: &dyn ApprovalStore) {
    let parked = park(store, 25);
    let pages = all_pages(store, 10);
    assert_eq!(pages.iter().map(|p| p.requests.len()).collect::<Vec<_>>(), [10, 10, 5]);
    assert!(pages[2].next.is_none(), "the last page says it is the last");
    let listed: Vec<RequestId> = pages.iter().flat_map(ids).collect();
    assert_eq!(listed, parked, "every request once, oldest first");
    assert_eq!(
        store
            .pending()
            .unwrap()
            .iter()
            .map(|r| r.request_id().clone())
            .collect::<Vec<_>>(),
        parked,
        "the same order as the whole list"
    );
    // A page that ends exactly at the last request: the next one is empty and the last.
    let exact = all_pages(store, 25);
    assert_eq!(exact.iter().map(|p| p.requests.len()).collect::<Vec<_>>(), [25]);
}

fn a_request_decided_between_pages_moves_nothing(store: &dyn ApprovalStore) {
    let parked = park(store, 25);
    let first = store.pending_page(10, None).unwrap();
    assert_eq!(ids(&first), parked[..10]);
    // One already shown and one not yet shown are decided before the next pages are read.
    for id in [&parked[3], &parked[22]] {
        assert_eq!(
            store.resolve(&Resolution::deny(id.clone())).unwrap(),
            ResolveOutcome::Resolved
        );
    }
    let second = store.pending_page(10, first.next.as_ref()).unwrap();
    assert_eq!(ids(&second), parked[10..20], "nothing skipped, nothing shown twice");
    let third = store.pending_page(10, second.next.as_ref()).unwrap();
    let mut rest = parked[20..].to_vec();
    rest.retain(|id| *id != parked[22]);
    assert_eq!(ids(&third), rest, "the decided one is gone from its page");
    assert!(third.next.is_none());
}

fn a_limit_out_of_range_is_read_as_the_nearest_bound(store: &dyn ApprovalStore) {
    let parked = park(store, 3);
    let page = store.pending_page(0, None).unwrap();
    assert_eq!(ids(&page), parked[..1], "a limit of 0 is read as 1");
    assert!(page.next.is_some());
    let page = store.pending_page(usize::MAX, None).unwrap();
    assert_eq!(ids(&page), parked, "a huge limit is read as {MAX_PAGE}");
    assert!(page.next.is_none());
}

#[test]
fn sqlite_unreadable_row_takes_its_place_on_a_page_and_the_cursor_moves_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).unwrap();
    let parked = park(&store, 5);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE agentguard_requests SET request = '{\"damaged\": ' WHERE id = ?1",
            [parked[1].as_str()],
        )
        .unwrap();
    let first = store.pending_page(2, None).unwrap();
    assert_eq!(ids(&first), parked[..1]);
    assert_eq!(first.unreadable.len(), 1, "the damaged row is reported, by id");
    assert_eq!(first.unreadable[0].id, parked[1].as_str());
    let second = store.pending_page(2, first.next.as_ref()).unwrap();
    assert_eq!(ids(&second), parked[2..4], "the cursor moved past the damaged row");
    assert!(second.unreadable.is_empty());
}

#[test]
fn a_cursor_in_bad_text_is_refused_with_what_to_pass() {
    for bad in ["", "abc", "12", "x_1", "_abc"] {
        let e = bad.parse::<PageCursor>().unwrap_err().to_string();
        assert!(e.contains("`next`"), "{bad:?}: {e}");
    }
}

#[test]
fn memory_change_feed_reports_each_change_once_in_order_and_says_when_it_lost_some() {
    let store = InMemoryStore::new();
    let start = store
        .changes_since(None)
        .unwrap()
        .expect("the in-memory store keeps a feed");
    assert!(start.changed.is_empty() && start.complete);
    let parked = park(&store, 3);
    store.resolve(&Resolution::approve(parked[0].clone())).unwrap();
    let batch = store.changes_since(Some(start.next)).unwrap().unwrap();
    assert!(batch.complete);
    assert_eq!(
        batch.changed,
        [parked[1].clone(), parked[2].clone(), parked[0].clone()],
        "each request once, at its latest change"
    );
    assert_eq!(batch.next, start.next + 4, "three parked, one decided");
    let none = store.changes_since(Some(batch.next)).unwrap().unwrap();
    assert!(none.changed.is_empty() && none.complete && none.next == batch.next);

    // More changes than the feed keeps: a reader that far behind is told to read a page again.
    for _ in 0..4100 {
        let r = request(Duration::ZERO);
        store.insert(&r).unwrap();
        store.resolve(&Resolution::deny(r.request_id().clone())).unwrap();
    }
    let behind = store.changes_since(Some(batch.next)).unwrap().unwrap();
    assert!(!behind.complete, "changes were lost: read a page again");
    assert!(behind.changed.is_empty());
    let caught_up = store.changes_since(Some(behind.next)).unwrap().unwrap();
    assert!(caught_up.complete && caught_up.changed.is_empty());
    // A position this feed never gave is not trusted either.
    assert!(!store.changes_since(Some(behind.next + 10)).unwrap().unwrap().complete);
}

#[test]
fn a_store_without_its_own_paging_pages_through_its_list() {
    /// A store that implements only what the trait requires, over the in-memory store: the default `pending_page`.
    #[derive(Debug)]
    struct Plain(InMemoryStore);
    impl ApprovalStore for Plain {
        fn insert(&self, r: &ApprovalRequest) -> Result<(), agentguard::store::StoreError> {
            self.0.insert(r)
        }
        fn resolve(&self, r: &Resolution) -> Result<ResolveOutcome, agentguard::store::StoreError> {
            self.0.resolve(r)
        }
        fn expire(&self, id: &RequestId) -> Result<Option<agentguard::store::Decision>, agentguard::store::StoreError> {
            self.0.expire(id)
        }
        fn claim(&self, id: &RequestId) -> Result<bool, agentguard::store::StoreError> {
            self.0.claim(id)
        }
        fn get(
            &self,
            id: &RequestId,
        ) -> Result<Option<agentguard::store::StoredRequest>, agentguard::store::StoreError> {
            self.0.get(id)
        }
        fn pending(&self) -> Result<Vec<ApprovalRequest>, agentguard::store::StoreError> {
            self.0.pending()
        }
        fn wait<'a>(&'a self, id: &'a RequestId) -> agentguard::store::WaitFuture<'a> {
            self.0.wait(id)
        }
        fn wait_blocking(
            &self,
            id: &RequestId,
            until: std::time::Instant,
        ) -> Result<Option<agentguard::store::Decision>, agentguard::store::StoreError> {
            self.0.wait_blocking(id, until)
        }
    }
    let store = Plain(InMemoryStore::new());
    assert!(store.changes_since(None).unwrap().is_none(), "no feed by default");
    pages_cover_every_pending_request_once_oldest_first(&store);
}
