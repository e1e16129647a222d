//! Tests of the file sink's queue: helping a starved flusher, leases of the OS lock.

use super::*;
use crate::audit::checkpoint::DEFAULT_CHECKPOINT_EVERY;
use crate::audit::Fsync;

fn config(path: &std::path::Path) -> Config {
    Config {
        checkpoint: None,
        path: path.to_owned(),
        max_bytes: u64::MAX,
        lock_timeout: Duration::from_secs(5),
        key: None,
        checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
        fsync: Fsync::Never,
    }
}

/// A queue and writer with no flusher thread: only callers write, as when busy threads leave the flusher no CPU.
fn without_flusher(path: PathBuf) -> Started {
    without_flusher_with(config(&path))
}

fn without_flusher_with(cfg: Config) -> Started {
    Started {
        shared: Arc::new(Shared {
            q: Mutex::new(Queue::default()),
            path: cfg.path.clone(),
            writer: Mutex::new(Writer::new(cfg)),
            work: Condvar::new(),
        }),
        flusher: None,
    }
}

const BODY: &[u8] = br#"{"ts":"2026-12-01T00:00:00.000Z","tool":"read_file","decision":"allowed","params":{"path":"/tmp/a-file-name-of-some-length"}}"#;

fn queued(started: &Started) -> usize {
    lock(&started.shared.q).bodies.len()
}

fn lines_in(path: &std::path::Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

#[test]
fn a_safe_call_that_finds_the_flusher_behind_writes_the_queue_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let started = without_flusher(path.clone());
    let (mut n, mut written) = (0, 0);
    for round in 0..3 {
        while queued(&started) + BODY.len() < HELP_AT {
            started.push(BODY, false).unwrap();
            n += 1;
        }
        assert_eq!(lines_in(&path), written, "nobody writes below HELP_AT");
        // Nobody took a batch for a while: the next call past HELP_AT writes the queue, its line too.
        std::thread::sleep(STARVED);
        started.push(BODY, false).unwrap();
        n += 1;
        assert_eq!(queued(&started), 0, "round {round}: the caller wrote the queue");
        assert_eq!(lines_in(&path), n);
        written = n;
    }
    assert_eq!(crate::audit::verify(&path).unwrap().lines, n as u64);
}

#[test]
fn helpers_the_flusher_and_gated_calls_together_keep_every_line_in_each_threads_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let mut started = Started::start(config(&path)).unwrap();
    let (threads, per) = (6usize, 12_000usize);
    let pad = "x".repeat(200);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (started, pad) = (&started, &pad);
            s.spawn(move || {
                for i in 0..per {
                    let body = format!(r#"{{"ts":"2026-12-01T00:00:00.000Z","thread":{t},"i":{i},"pad":"{pad}"}}"#);
                    started.push(body.as_bytes(), i % 100 == 99).unwrap();
                }
            });
        }
    });
    started.close(); // ends the flusher, after writing what is queued
    assert_eq!(crate::audit::verify(&path).unwrap().lines, (threads * per) as u64);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut next = vec![0u64; threads];
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let (t, i) = (v["thread"].as_u64().unwrap() as usize, v["i"].as_u64().unwrap());
        assert_eq!(i, next[t], "thread {t}'s lines in the order it queued them");
        next[t] += 1;
    }
    assert!(next.iter().all(|&n| n == per as u64));
}

#[test]
fn a_safe_call_does_not_wait_for_a_busy_writer_until_the_queue_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let started = without_flusher(path.clone());
    // Someone is writing a batch (a slow disk): callers past HELP_AT go on without waiting for it.
    let mut busy = Some(lock(&started.shared.writer));
    let n = 2 * HELP_AT / BODY.len();
    std::thread::scope(|s| {
        let pusher = s.spawn(|| {
            for _ in 0..n {
                started.push(BODY, false).unwrap();
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pusher.is_finished() {
            if Instant::now() > deadline {
                busy = None; // let the pusher finish, so that the test ends
                panic!("the safe calls waited for the writer");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    assert_eq!(queued(&started), n * BODY.len(), "all queued, none written");
    drop(busy);
    started.flush().unwrap();
    assert_eq!(crate::audit::verify(&path).unwrap().lines, n as u64);
}

/// Pushes past HELP_AT with no flusher; returns how many lines were written meanwhile (by helping callers).
fn push_past_help_at(started: &Started) -> usize {
    let n = 2 * HELP_AT / BODY.len();
    let t0 = Instant::now();
    for _ in 0..n {
        started.push(BODY, false).unwrap();
    }
    // The log's lock timeout is 5 s: a caller that waited for it would take that long.
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "a safe call waited: {:?}",
        t0.elapsed()
    );
    n - queued(started) / BODY.len()
}

#[test]
fn a_safe_call_does_not_help_when_another_process_holds_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let started = without_flusher(path.clone());
    // Another open file description's lock: to flock, another process.
    let other = std::fs::File::create(crate::audit::files::sibling(&path, "lock")).unwrap();
    other.lock().unwrap();
    assert_eq!(
        push_past_help_at(&started),
        0,
        "nothing written while another holds the lock"
    );
    other.unlock().unwrap();
    started.flush().unwrap();
    assert_eq!(
        crate::audit::verify(&path).unwrap().lines,
        (2 * HELP_AT / BODY.len()) as u64
    );
}

#[test]
fn a_safe_call_does_not_help_when_a_batch_means_a_flush_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let started = without_flusher_with(Config {
        fsync: Fsync::PerBatch,
        ..config(&path)
    });
    assert_eq!(push_past_help_at(&started), 0);
    let without = without_flusher(dir.path().join("other.log"));
    assert!(push_past_help_at(&without) > 0, "with Fsync::Never the same calls help");
}

/// Whether another open file description (to `flock`, another process) can take the log's lock right now; it
/// lets go at once if it can.
fn lock_is_free(path: &std::path::Path) -> bool {
    let other = std::fs::File::create(crate::audit::files::sibling(path, "lock")).unwrap();
    let free = other.try_lock().is_ok();
    drop(other);
    free
}

#[test]
fn a_loop_of_gated_lines_leases_the_lock_and_the_flusher_ends_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let started = Started::start(config(&path)).unwrap();
    // Waited lines one after another (a loop of gated calls): soon one finds the lock still held after its batch.
    // (A look that finds it free, or a pause on a busy machine, only delays that.)
    let t0 = Instant::now();
    let mut n = 0;
    let leased = loop {
        started.push(BODY, true).unwrap();
        n += 1;
        if !lock_is_free(&path) {
            break true;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            break false;
        }
    };
    assert!(leased, "{n} waited lines in a row, and the lock was free after each");
    // No more lines: the flusher ends the lease when it is due.
    let t1 = Instant::now();
    while !lock_is_free(&path) {
        assert!(t1.elapsed() < Duration::from_secs(10), "the lease was never ended");
        std::thread::sleep(Duration::from_micros(200));
    }
    drop(started);
    assert_eq!(crate::audit::verify(&path).unwrap().lines, n as u64);
}

#[test]
fn no_lease_when_a_batch_means_a_flush_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let started = Started::start(Config {
        fsync: Fsync::PerBatch,
        ..config(&path)
    })
    .unwrap();
    for i in 0..50 {
        started.push(BODY, true).unwrap();
        assert!(lock_is_free(&path), "line {i}: the lock was kept after its batch");
    }
}

/// Pushes waited lines for up to 40 ms after `since` (a moment before the writer's pause of its leases began),
/// and checks that the lock is free after each: a batch that started before `since` + 40 ms did not lease
/// (the pause lasts 50 ms). Returns how many were checked (a preemption can leave none).
fn no_lease_within_40_ms_of(started: &Started, path: &std::path::Path, since: Instant) -> usize {
    let mut checked = 0;
    loop {
        started.push(BODY, true).unwrap();
        if since.elapsed() >= Duration::from_millis(40) {
            return checked;
        }
        assert!(lock_is_free(path), "leased {:?} after the pause began", since.elapsed());
        checked += 1;
    }
}

#[test]
fn a_writer_that_finds_the_lock_taken_takes_no_lease_for_a_while() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let started = Started::start(config(&path)).unwrap();
    started.push(BODY, true).unwrap();
    // A few rounds, in case a busy machine leaves one with nothing checked.
    let mut checked = 0;
    for _ in 0..5 {
        // Another process holds the lock while the next line waits for it.
        let other = std::fs::File::create(crate::audit::files::sibling(&path, "lock")).unwrap();
        other.lock().unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            drop(other);
        });
        let before = Instant::now();
        started.push(BODY, true).unwrap();
        release.join().unwrap();
        checked += no_lease_within_40_ms_of(&started, &path, before);
        if checked > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(60));
    }
    assert!(checked > 0);
}

#[test]
fn a_writer_that_finds_another_process_lines_takes_no_lease_for_a_while() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let started = Started::start(config(&path)).unwrap();
    // Another sink (its own lock file description: to flock, another process) on the same log.
    let other = Started::start(config(&path)).unwrap();
    started.push(BODY, true).unwrap();
    let mut checked = 0;
    for _ in 0..5 {
        // Past any lease or pause of our writer, the other process writes a line; our next batch sees it.
        std::thread::sleep(Duration::from_millis(60));
        other.push(BODY, true).unwrap();
        let before = Instant::now();
        checked += no_lease_within_40_ms_of(&started, &path, before);
        if checked > 0 {
            break;
        }
    }
    assert!(checked > 0);
    drop((started, other));
    crate::audit::verify(&path).unwrap();
}
