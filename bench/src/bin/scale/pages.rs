//! pages and watch: reading a huge pending list a page at a time, and what an open approval page costs while it
//! changes.

use super::*;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};

use agentguard::http::{ApprovalApi, ServeLimits};
use agentguard::params::ParamsDigest;
use agentguard::store::{ApprovalStore, PageCursor};
use agentguard::ApprovalRequest;

const TOKEN: &str = "scale-bench-token-0123456789abcdef";

/// A pending request made now, live for `ttl`, built as a store receives one.
fn request(ttl: Duration) -> ApprovalRequest {
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs_f64();
    let now = SystemTime::now();
    serde_json::from_value(json!({
        "request_id": RequestId::new(),
        "tool": "delete_row",
        "params": {},
        "params_digest": ParamsDigest::of(b"{}"),
        "risk": "irreversible",
        "timestamp": secs(now),
        "deadline": secs(now + ttl),
    }))
    .expect("a request")
}

/// An in-memory store holding `n` pending requests (live for 10 minutes), and their ids oldest first.
fn filled(n: usize) -> (Arc<InMemoryStore>, Vec<RequestId>) {
    filled_into(InMemoryStore::new(), n).0
}

/// `store` filled with `n` pending requests as [`filled`] does, and the slowest single insert (a table growth
/// happens inside one insert, under the store's lock).
fn filled_into(store: InMemoryStore, n: usize) -> ((Arc<InMemoryStore>, Vec<RequestId>), Duration) {
    let store = Arc::new(store);
    let mut slowest = Duration::ZERO;
    let ids = (0..n)
        .map(|_| {
            let r = request(Duration::from_secs(600));
            let t = Instant::now();
            store.insert(&r).expect("insert");
            slowest = slowest.max(t.elapsed());
            r.request_id().clone()
        })
        .collect();
    ((store, ids), slowest)
}

/// Serves the approval API over `store` on a loopback port, on `rt`.
fn serve(rt: &tokio::runtime::Runtime, store: Arc<dyn ApprovalStore>) -> SocketAddr {
    let app = ApprovalApi::new(store).token(TOKEN, "bench").router().expect("router");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(agentguard::http::serve(listener, app, ServeLimits::default()));
        addr
    })
}

/// One GET over a fresh connection: the time to the whole response, the response's head and its body.
fn get(addr: SocketAddr, path: &str) -> (Duration, String, String) {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr).expect("connect");
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).expect("read");
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (took, head.to_owned(), body.to_owned())
}

/// CPU time this process has used (user + system), from /proc/self/stat in clock ticks of 10 ms.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // Fields 14 and 15 of the file (utime, stime) are 12 and 13 after the name and state.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

// ---------------------------------------------------------------------------------------------------------------
// pages: the first page of a million pending
// ---------------------------------------------------------------------------------------------------------------

pub(super) fn pages(opts: &Options, figures: &mut Figures) {
    let n = opts.pages_n;
    println!("\n== pages: the first page of {n} pending requests (in-memory store), in process and over HTTP");
    // The same filling into a store that reserved room first: its slowest insert is no table growth.
    let filling = Instant::now();
    let ((reserved, _), slowest_reserved) = filled_into(InMemoryStore::with_capacity(n), n);
    let reserved_in = filling.elapsed();
    drop(reserved);
    let filling = Instant::now();
    let ((store, ids), slowest) = filled_into(InMemoryStore::new(), n);
    println!(
        "  {n} parked in the store in      {:>9.1} ms; slowest insert {:.1} ms (the table growing under the lock)",
        ms(filling.elapsed()),
        ms(slowest)
    );
    println!(
        "  the same, room reserved first   {:>9.1} ms; slowest insert {:.1} ms (InMemoryStore::with_capacity)",
        ms(reserved_in),
        ms(slowest_reserved)
    );
    record(figures, "pages.slowest_insert_ms", ms(slowest));
    record(figures, "pages.slowest_insert_reserved_ms", ms(slowest_reserved));

    let mut in_process = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let page = store.pending_page(100, None).expect("page");
        in_process.push(t.elapsed());
        assert_eq!(page.requests.len(), 100);
        assert_eq!(page.requests[0].request_id(), &ids[0], "the oldest first");
    }
    in_process.sort();
    let rt = runtime();
    let addr = serve(&rt, store.clone());
    let mut over_http = Vec::new();
    let mut next = String::new();
    for _ in 0..20 {
        let (took, head, body) = get(addr, "/agentguard/pending?limit=100");
        over_http.push(took);
        let list: Value = serde_json::from_str(&body).expect("JSON list");
        assert_eq!(list.as_array().map(Vec::len), Some(100), "{head}");
        next = head
            .lines()
            .find_map(|l| l.strip_prefix("x-agentguard-next: "))
            .expect("a next cursor")
            .to_owned();
    }
    over_http.sort();
    // The page in the middle, by its cursor.
    let middle = PageCursor::at(&store.get(&ids[n / 2]).expect("get").expect("there").request);
    let (deep_took, _, body) = get(addr, &format!("/agentguard/pending?limit=100&after={middle}"));
    let deep: Value = serde_json::from_str(&body).expect("JSON list");
    assert_eq!(
        deep[0]["request_id"],
        ids[n / 2 + 1].as_str(),
        "the page after the cursor"
    );
    assert!(next.starts_with(|c: char| c.is_ascii_digit()));

    println!(
        "  first page (100), in process    median {:.3} ms, max {:.3} ms (20 reads)",
        ms(quantile(&in_process, 0.5)),
        ms(*in_process.last().expect("20"))
    );
    println!(
        "  first page (100), over HTTP     median {:.3} ms, max {:.3} ms (20 GETs, new connection each)",
        ms(quantile(&over_http, 0.5)),
        ms(*over_http.last().expect("20"))
    );
    println!("  page at the middle, over HTTP   {:.3} ms", ms(deep_took));
    record(figures, "pages.n", n);
    record(
        figures,
        "pages.first_page_in_process_median_ms",
        ms(quantile(&in_process, 0.5)),
    );
    record(
        figures,
        "pages.first_page_in_process_max_ms",
        ms(*in_process.last().expect("20")),
    );
    record(
        figures,
        "pages.first_page_http_median_ms",
        ms(quantile(&over_http, 0.5)),
    );
    record(
        figures,
        "pages.first_page_http_max_ms",
        ms(*over_http.last().expect("20")),
    );
    record(figures, "pages.middle_page_http_ms", ms(deep_took));
    rt.shutdown_timeout(Duration::from_secs(1));
}

// ---------------------------------------------------------------------------------------------------------------
// watch: an open approval page on 100,000 pending at 100 changes/s
// ---------------------------------------------------------------------------------------------------------------

pub(super) fn watch(opts: &Options, figures: &mut Figures) {
    let n = opts.watch_n;
    let secs = opts.watch_secs;
    println!("\n== watch: {n} pending, 100 changes/s for {secs} s (50 parked, 50 answered), with and without an open event stream");
    let (store, ids) = filled(n);
    let rt = runtime();
    let addr = serve(&rt, store.clone());
    let mut oldest = ids.into_iter();

    // 100 changes a second, alternating: one parked, one of the oldest answered (which the page shows).
    let mut churn = |seconds: u64| {
        let start = Instant::now();
        let started_cpu = cpu_time();
        let mut i = 0u64;
        while start.elapsed() < Duration::from_secs(seconds) {
            let due = Duration::from_millis(i * 10);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            if i.is_multiple_of(2) {
                store.insert(&request(Duration::from_secs(600))).expect("insert");
            } else if let Some(id) = oldest.next() {
                store.resolve(&Resolution::deny(id)).expect("resolve");
            }
            i += 1;
        }
        (cpu_time() - started_cpu, i)
    };

    let (idle_cpu, idle_changes) = churn(secs);
    // The page: an event-stream client on its own thread, counting what it is sent.
    let events = Arc::new(AtomicUsize::new(0));
    let bytes = Arc::new(AtomicUsize::new(0));
    let reading = Arc::new(AtomicBool::new(true));
    let client = {
        let (events, bytes, reading) = (events.clone(), bytes.clone(), reading.clone());
        std::thread::spawn(move || {
            let mut tcp = TcpStream::connect(addr).expect("connect");
            tcp.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
            write!(
                tcp,
                "GET /agentguard/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n"
            )
            .expect("send");
            let mut buf = vec![0u8; 1 << 16];
            while reading.load(Ordering::Relaxed) {
                match tcp.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => {
                        bytes.fetch_add(k, Ordering::Relaxed);
                        let text = String::from_utf8_lossy(&buf[..k]);
                        events.fetch_add(text.matches("event:").count(), Ordering::Relaxed);
                    }
                    Err(_) => continue,
                }
            }
        })
    };
    // Let the snapshot go out before measuring.
    while events.load(Ordering::Relaxed) == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let (snapshot_events, snapshot_bytes) = (events.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed));
    let (open_cpu, open_changes) = churn(secs);
    std::thread::sleep(Duration::from_millis(100));
    reading.store(false, Ordering::Relaxed);
    client.join().expect("client");
    let sent = events.load(Ordering::Relaxed) - snapshot_events;
    let sent_bytes = bytes.load(Ordering::Relaxed) - snapshot_bytes;
    let extra = open_cpu.saturating_sub(idle_cpu).as_secs_f64() / secs as f64;

    println!(
        "  CPU without a page              {:.1} ms over {secs} s ({idle_changes} changes)",
        ms(idle_cpu)
    );
    println!(
        "  CPU with one page open          {:.1} ms over {secs} s ({open_changes} changes)",
        ms(open_cpu)
    );
    println!(
        "  the page's share of a core      {:.2} % (the difference; /proc ticks are 10 ms)",
        extra * 100.0
    );
    println!("  snapshot                        {snapshot_bytes} bytes");
    println!("  events sent while changing      {sent} ({sent_bytes} bytes)");
    record(figures, "watch.pending", n);
    record(figures, "watch.seconds", secs);
    record(figures, "watch.cpu_idle_ms", ms(idle_cpu));
    record(figures, "watch.cpu_open_ms", ms(open_cpu));
    record(figures, "watch.page_core_percent", extra * 100.0);
    record(figures, "watch.snapshot_bytes", snapshot_bytes);
    record(figures, "watch.events_sent", sent);
    rt.shutdown_timeout(Duration::from_secs(1));
}
