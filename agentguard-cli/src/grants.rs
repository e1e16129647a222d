//! `grants list` and `grants revoke`: the standing grants ("remember this") a store keeps.

use agentguard::answer::GrantScope;
use agentguard::store::Grant;

use super::*;

/// Now, in Unix milliseconds (the clock grants are kept in).
pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Who a grant covers: `session s-42`, `agent support-bot`, `everyone`.
pub(super) fn covers(grant: &Grant) -> String {
    let who = match grant.scope {
        GrantScope::Session => format!("session {}", grant.session_id.as_deref().unwrap_or("?")),
        GrantScope::Agent => format!("agent {}", grant.agent_id.as_deref().unwrap_or("?")),
        GrantScope::Everyone => "everyone".to_owned(),
    };
    shown(&who)
}

/// The tool a grant covers, with its server when it names one.
fn tool(grant: &Grant) -> String {
    match &grant.server {
        Some(server) => format!("{} ({})", shown(&grant.tool), shown(server)),
        None => shown(&grant.tool),
    }
}

/// Its tests on the arguments on one line (a condition may span several), or `-`.
fn condition(grant: &Grant) -> String {
    grant.when.as_deref().map_or_else(
        || "-".to_owned(),
        |w| {
            w.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(shown)
                .collect::<Vec<_>>()
                .join("; ")
        },
    )
}

/// `3 left / 2 used`, or `2 used` for a grant bounded by time only.
fn uses(grant: &Grant) -> String {
    match grant.uses_left {
        Some(left) => format!("{left} left / {} used", grant.used),
        None => format!("{} used", grant.used),
    }
}

/// `in 1h 59m`; `-` for a grant bounded by uses only, or one that no longer lets calls through (its status says
/// why).
fn expires(grant: &Grant, now: u64) -> String {
    match grant.expires_at_ms {
        Some(t) if grant.is_active(now) => format!("in {}", human(Duration::from_millis(t.saturating_sub(now)))),
        _ => "-".to_owned(),
    }
}

/// The bounds a grant was made with, in words: `for 2h 0m or 20 uses, whichever ends first`. Read from the grant as
/// made (its time from creation, its uses left plus used), so a grant already used by the agents reads the same.
pub(super) fn bounds(grant: &Grant) -> String {
    let time = grant
        .expires_at_ms
        .map(|t| human(Duration::from_millis(t.saturating_sub(grant.created_at_ms))));
    match (time, grant.uses_left.map(|n| n.saturating_add(grant.used))) {
        (Some(t), Some(n)) => format!("for {t} or {n} use{}, whichever ends first", plural(n)),
        (Some(t), None) => format!("for {t}"),
        (None, Some(n)) => format!("for {n} use{}", plural(n)),
        (None, None) => "until revoked".to_owned(),
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A grant as `--json` prints it: its fields and its `status` (`active`, `expired`, `used up`, `revoked`).
pub(super) fn grant_json(grant: &Grant, now: u64) -> serde_json::Value {
    let mut value = serde_json::to_value(grant).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("status".into(), grant.status(now).into());
    }
    value
}

/// `grants list [--all]`.
pub(super) fn list(cli: &Cli, store: &dyn ApprovalStore, all: bool) -> Result<(), Failure> {
    let now = now_ms();
    let grants: Vec<Grant> = store
        .grants()
        .map_err(store_error)?
        .into_iter()
        .filter(|g| all || g.is_active(now))
        .collect();
    if cli.json {
        print_json(&grants.iter().map(|g| grant_json(g, now)).collect::<Vec<_>>());
        return Ok(());
    }
    if grants.is_empty() {
        outln!(
            "{}",
            if all {
                "no grants"
            } else {
                "no active grants (--all lists the expired, used up and revoked ones too)"
            }
        );
        return Ok(());
    }
    outln!(
        "{:<36}  {:<20}  {:<24}  {:<16}  {:<10}  {:<12}  {:<36}  {:<8}  WHEN",
        "GRANT",
        "TOOL",
        "COVERS",
        "USES",
        "EXPIRES",
        "MADE BY",
        "FROM REQUEST",
        "STATUS"
    );
    for g in &grants {
        outln!(
            "{:<36}  {:<20}  {:<24}  {:<16}  {:<10}  {:<12}  {:<36}  {:<8}  {}",
            shown(&g.id),
            tool(g),
            covers(g),
            uses(g),
            expires(g, now),
            shown(g.created_by.as_deref().unwrap_or("-")),
            g.from_request,
            g.status(now),
            condition(g)
        );
    }
    Ok(())
}

/// `grants revoke ID`: prints the grant's final use count.
pub(super) fn revoke(cli: &Cli, store: &dyn ApprovalStore, id: &str, actor: Option<&str>) -> Result<(), Failure> {
    let id = id.trim();
    let before = store.grants().map_err(store_error)?.into_iter().find(|g| g.id == id);
    let Some(grant) = store.revoke_grant(id, actor).map_err(store_error)? else {
        return Err(fail(
            EXIT_UNKNOWN,
            format!(
                "unknown grant {}: not in this store (list them with `agentguard grants list --all`; check the id and \
                 --store)",
                shown(id)
            ),
        ));
    };
    let now = now_ms();
    let already = before.is_some_and(|g| g.revoked_at_ms.is_some());
    if cli.json {
        print_json(&serde_json::json!({"grant": grant_json(&grant, now), "already_revoked": already}));
        return Ok(());
    }
    let used = format!("used {} time{}", grant.used, plural(grant.used));
    if already {
        let ago = grant
            .revoked_at_ms
            .map(|t| human(Duration::from_millis(now.saturating_sub(t))))
            .unwrap_or_default();
        outln!(
            "grant {} was already revoked by {} {ago} ago; it was {used}",
            shown(&grant.id),
            shown(grant.revoked_by.as_deref().unwrap_or("unnamed"))
        );
    } else {
        outln!(
            "revoked grant {} ({} for {}): {used}; it lets nothing through from now on",
            shown(&grant.id),
            tool(&grant),
            covers(&grant)
        );
    }
    Ok(())
}
