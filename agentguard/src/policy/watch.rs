//! The guard's current policy, swapped atomically when its file changes.
//!
//! A guard built with [`policy_file`](crate::guard::GuardBuilder::policy_file) starts one small thread that looks at
//! the file's size, modification time and identity every [`DEFAULT_RELOAD_INTERVAL`] (or the builder's
//! `policy_reload_interval`), and re-reads it when they change. A file that compiles replaces the policy for every
//! call that starts after it; one that does not keeps the old policy and says why, on stderr, in the audit and (feature
//! `tracing`) as a `tracing` event. The thread ends when the guard (every clone of it) is dropped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use super::{Policy, PolicyError};
use crate::audit::{AuditDecision, AuditRecord, AuditSink};

/// How often a policy file is checked for changes by default: once a second.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The policy a guard decides with now, and where it came from.
pub(crate) struct PolicySlot {
    current: RwLock<Policy>,
    file: Option<Watched>,
    audit: Option<Arc<dyn AuditSink>>,
}

struct Watched {
    path: PathBuf,
    /// What the file looked like when last read, to notice a change without reading it. Its lock also makes reloads
    /// one at a time, so an older read can never be swapped in after a newer one.
    seen: Mutex<Option<Fingerprint>>,
}

/// A policy file read whole while it did not change (same size, time and identity before and after the read).
pub(crate) struct Loaded {
    pub(crate) policy: Policy,
    seen: Option<Fingerprint>,
}

impl Loaded {
    /// Reads and compiles `path`. A file that changes while it is read (an editor writing it in place) is an
    /// error: it may be half written.
    pub(crate) fn read(path: &Path) -> Result<Loaded, PolicyError> {
        let before = fingerprint(path);
        let policy = Policy::from_file(path)?;
        let after = fingerprint(path);
        if before != after {
            return Err(PolicyError::io(
                path,
                "the file changed while it was being read (written in place?); it is read again when it settles. \
                 Write a new file and rename it over the old one to replace a policy in one step",
            ));
        }
        Ok(Loaded { policy, seen: after })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    };
    Some(Fingerprint {
        len: meta.len(),
        modified: meta.modified().ok(),
        #[cfg(unix)]
        inode,
    })
}

impl PolicySlot {
    /// A fixed policy.
    pub(crate) fn fixed(policy: Policy, audit: Option<Arc<dyn AuditSink>>) -> Arc<PolicySlot> {
        Arc::new(PolicySlot {
            current: RwLock::new(policy),
            file: None,
            audit,
        })
    }

    /// A policy read from `path`, re-read every `interval` while the slot lives (`None`: only on
    /// [`reload`](Self::reload)).
    pub(crate) fn watched(
        path: PathBuf,
        loaded: Loaded,
        interval: Option<Duration>,
        audit: Option<Arc<dyn AuditSink>>,
    ) -> Arc<PolicySlot> {
        let Loaded { policy, seen } = loaded;
        let slot = Arc::new(PolicySlot {
            current: RwLock::new(policy),
            file: Some(Watched {
                path,
                seen: Mutex::new(seen),
            }),
            audit,
        });
        if let Some(interval) = interval {
            let weak = Arc::downgrade(&slot);
            let spawned = std::thread::Builder::new()
                .name("agentguard-policy-watch".to_owned())
                .spawn(move || watch(weak, interval));
            if let Err(e) = spawned {
                report!("agentguard: cannot start the policy file watcher ({e}); the policy will not reload");
            }
        }
        slot
    }

    /// The policy now.
    pub(crate) fn current(&self) -> Policy {
        match self.current.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the file now (whether or not it changed). A file that does not compile, is empty, or changes while
    /// it is read keeps the policy in force.
    pub(crate) fn reload(&self) -> Result<Policy, PolicyError> {
        let Some(file) = &self.file else {
            return Ok(self.current());
        };
        let mut seen = match file.seen.lock() {
            Ok(seen) => seen,
            Err(poisoned) => poisoned.into_inner(),
        };
        let result = match std::fs::metadata(&file.path) {
            Ok(meta) if meta.len() == 0 => Err(PolicyError::io(
                &file.path,
                "the file is empty (truncated, or being written?); an empty policy is refused on reload: write \
                 `default = \"classify\"` for a policy with no rules",
            )),
            _ => Loaded::read(&file.path),
        };
        match result {
            Ok(loaded) => {
                *seen = loaded.seen;
                let policy = loaded.policy;
                let old = self.current();
                if policy.version() != old.version() {
                    match self.current.write() {
                        Ok(mut p) => *p = policy.clone(),
                        Err(poisoned) => *poisoned.into_inner() = policy.clone(),
                    }
                    self.report(
                        AuditDecision::PolicyLoaded,
                        &format!(
                            "policy {} reloaded: version {} replaces {}",
                            file.path.display(),
                            policy.version(),
                            old.version()
                        ),
                        policy.version(),
                    );
                }
                Ok(policy)
            }
            Err(e) => {
                // Remember this state of the file, so the watcher reports it once, not every second; a file that was
                // changing is looked at again on the next tick.
                let now = fingerprint(&file.path);
                if !e.to_string().contains("changed while it was being read") {
                    *seen = now;
                }
                drop(seen);
                let kept = self.current();
                let detail = format!("{e}\nthe policy in force stays version {}", kept.version());
                report!("agentguard: {detail}");
                self.report(AuditDecision::PolicyRejected, &detail, kept.version());
                Err(e)
            }
        }
    }

    /// Re-reads the file if it looks changed.
    fn check(&self) {
        let Some(file) = &self.file else { return };
        let now = fingerprint(&file.path);
        let changed = match file.seen.lock() {
            Ok(seen) => *seen != now,
            Err(_) => true,
        };
        if changed {
            let _ = self.reload();
        }
    }

    fn report(&self, decision: AuditDecision, detail: &str, version: &str) {
        #[cfg(feature = "tracing")]
        match decision {
            AuditDecision::PolicyRejected => tracing::event!(
                name: "agentguard.policy_rejected",
                target: "agentguard",
                tracing::Level::WARN,
                agentguard.policy.version = version,
                "{detail}"
            ),
            _ => tracing::event!(
                name: "agentguard.policy_loaded",
                target: "agentguard",
                tracing::Level::INFO,
                agentguard.policy.version = version,
                "{detail}"
            ),
        }
        let Some(audit) = &self.audit else { return };
        let mut rec = AuditRecord::new("", decision);
        rec.event = "policy";
        rec.detail = Some(detail);
        let stamp = super::PolicyStamp {
            rule: None,
            action: None,
            version: version.to_owned(),
        };
        rec.policy = Some(&stamp);
        if let Err(e) = audit.record(&rec) {
            report!("agentguard: audit record of a policy change failed: {e}");
        }
    }
}

fn watch(slot: Weak<PolicySlot>, interval: Duration) {
    loop {
        std::thread::sleep(interval);
        let Some(slot) = slot.upgrade() else { return };
        slot.check();
    }
}
