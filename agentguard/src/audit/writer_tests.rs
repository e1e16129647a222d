//! Tests of the writer's leases of the OS lock.

use super::lease::{COOLDOWN, LEASE};
use super::*;

const BODY: &[u8] = br#"{"ts":"2026-12-02T00:00:00.000Z","tool":"read_file","decision":"allowed"}"#;

fn batch(writer: &mut Writer) {
    writer.write_batch(BODY, &[BODY.len()]).map_err(|e| e.error).unwrap();
}

fn lock_is_free(writer: &Writer) -> bool {
    let other = File::create(writer.cfg.lock_path()).unwrap();
    other.try_lock().is_ok()
}

#[test]
fn a_lease_that_a_helping_call_ends_is_followed_by_the_cooldown() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::new(Config {
        path: dir.path().join("audit.log"),
        max_bytes: u64::MAX,
        lock_timeout: Duration::from_secs(5),
        key: None,
        checkpoint: None,
        checkpoint_every: u64::MAX,
        fsync: Fsync::Never,
    });
    // Two batches back to back: a lease (retried if a pause on a busy machine left too long a gap).
    let t0 = Instant::now();
    while writer.lease_due().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(10), "no lease");
        batch(&mut writer);
        batch(&mut writer);
    }
    std::thread::sleep(LEASE);
    // A safe call helping the flusher takes the lease over, and its batch ends it (it is due), with the
    // cooldown after it, so that quick batches right after take no lease.
    let before = Instant::now();
    assert!(writer.hold_lock_now());
    batch(&mut writer);
    writer.release_held();
    assert!(writer.lease_due().is_none() && lock_is_free(&writer));
    assert!(writer.no_lease_until.is_some_and(|until| until >= before + COOLDOWN));
}
