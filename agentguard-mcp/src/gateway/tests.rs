//! How a tool's MCP annotations decide its gating.

use super::*;

fn hints(read_only: Option<bool>, destructive: Option<bool>) -> ToolAnnotations {
    let mut a = ToolAnnotations::new();
    a.read_only_hint = read_only;
    a.destructive_hint = destructive;
    a
}

#[test]
fn destructive_hint_always_asks_with_the_names_risk_or_irreversible() {
    assert_eq!(
        gating_for("write_file", Some(&hints(Some(false), Some(true)))),
        Gating::Always(agentguard::classify("write_file").unwrap())
    );
    assert_eq!(
        gating_for("frobnicate", Some(&hints(None, Some(true)))),
        Gating::Always(Risk::Irreversible)
    );
}

#[test]
fn read_only_hint_never_asks_only_for_an_innocent_name() {
    assert_eq!(
        gating_for("read_text_file", Some(&hints(Some(true), None))),
        Gating::Never
    );
    assert_eq!(gating_for("delete_user", Some(&hints(Some(true), None))), Gating::Auto);
}

#[test]
fn destructive_wins_over_read_only_and_no_hint_is_auto() {
    assert_eq!(
        gating_for("echo", Some(&hints(Some(true), Some(true)))),
        Gating::Always(Risk::Irreversible)
    );
    assert_eq!(gating_for("echo", None), Gating::Auto);
    assert_eq!(gating_for("echo", Some(&hints(Some(false), Some(false)))), Gating::Auto);
}
