//! `#[gate(guard = X)]` goes through X only: a named guard that is not set denies, even with a permissive guard
//! installed for the process. (Its own test binary: `install` is once per process.)

use std::sync::OnceLock;

use agentguard::{AgentGuard, DenyReason};

/// A guard named by `#[gate(guard = ...)]` that is never set.
static NEVER_SET: OnceLock<AgentGuard> = OnceLock::new();

#[agentguard::gate(guard = NEVER_SET)]
fn wipe_disk(device: String) -> String {
    format!("wiped {device}")
}

#[agentguard::gate]
fn format_disk(device: String) -> String {
    format!("formatted {device}")
}

#[test]
fn a_named_guard_that_is_not_set_denies_even_with_a_permissive_guard_installed() {
    agentguard::install(AgentGuard::callback(|_| true).no_audit().build()).unwrap();
    // The installed guard approves everything routed to it...
    assert_eq!(format_disk("/dev/sdb".into()).unwrap(), "formatted /dev/sdb");
    // ...but it never stands in for a named guard that is missing.
    let denied = wipe_disk("/dev/sda".into()).unwrap_err();
    assert_eq!(denied.reason(), DenyReason::NoGuard);
    assert!(denied.detail().unwrap().contains("not set"), "{denied}");
}
