//! The classifier against the names the README documents and a labeled list of real tool names from public catalogs
//! (`tests/data/tool_names.tsv`, one source per line).

use agentguard::{classify, Risk};

struct Labeled {
    name: String,
    expected: Option<Risk>,
    source: String,
    known_miss: bool,
}

fn catalog() -> Vec<Labeled> {
    let text = include_str!("data/tool_names.tsv");
    let mut out = Vec::new();
    let mut known_miss = false;
    for line in text.lines().skip(1) {
        if let Some(comment) = line.strip_prefix('#') {
            known_miss = comment.trim() == "names whose effect is not in the words";
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 3, "malformed line in tool_names.tsv: {line:?}");
        let expected = match cols[1] {
            "safe" => None,
            key => Some(key.parse::<Risk>().unwrap_or_else(|e| panic!("{line:?}: {e}"))),
        };
        assert!(!cols[2].trim().is_empty(), "{line:?} has no source");
        out.push(Labeled {
            name: cols[0].to_owned(),
            expected,
            source: cols[2].to_owned(),
            known_miss,
        });
    }
    out
}

#[test]
fn catalog_names_are_gated_exactly_when_they_have_side_effects() {
    let names = catalog();
    assert!(
        names.len() >= 300,
        "the catalog should hold at least 300 names, has {}",
        names.len()
    );
    let mut wrong = Vec::new();
    let (mut same_category, mut dangerous) = (0, 0);
    for t in names.iter().filter(|t| !t.known_miss) {
        let got = classify(&t.name);
        if got.is_some() != t.expected.is_some() {
            wrong.push(format!(
                "{} expected {:?} got {:?} ({})",
                t.name, t.expected, got, t.source
            ));
        }
        if t.expected.is_some() {
            dangerous += 1;
            if got == t.expected {
                same_category += 1;
            }
        }
    }
    assert!(wrong.is_empty(), "{} misclassified:\n{}", wrong.len(), wrong.join("\n"));
    // The gate decision above must be exact; the category is a label for the approver. Keep it mostly right.
    let share = same_category as f64 / dangerous as f64;
    println!("category agreement on dangerous names: {same_category}/{dangerous} = {share:.2}");
    assert!(share >= 0.85, "category agreement fell to {share:.2}");
}

#[test]
fn known_misses_are_still_missed_so_the_list_stays_honest() {
    // Names whose danger is not in their words (puppeteer_evaluate runs JavaScript): classify cannot see it, and
    // the README tells users to list such tools in dangerous_tools. If the classifier starts catching one, move it
    // out of the known-miss section.
    let caught: Vec<String> = catalog()
        .into_iter()
        .filter(|t| t.known_miss && (classify(&t.name).is_some() == t.expected.is_some()))
        .map(|t| t.name)
        .collect();
    assert!(
        caught.is_empty(),
        "no longer missed, move out of the known-miss section: {caught:?}"
    );
}

#[test]
fn documented_dangerous_names_are_gated() {
    // Names that must always be gated: the README's examples and the common spellings of destructive verbs.
    for name in [
        "delete_user",
        "DELETE-RECORD",
        "bulk_delete",
        "deleteUser",
        "send_email",
        "run_command",
        "update_email",
        "delete_file",
        "delete_customer",
        "wipe_disk",
        "drop_table",
        "write_file",
        "files.delete",
        "Send Email",
    ] {
        assert!(classify(name).is_some(), "{name} should be gated");
    }
    assert_eq!(classify("delete_user"), Some(Risk::Irreversible));
    assert_eq!(classify("send_email"), Some(Risk::ExternalSend));
    assert_eq!(classify("run_command"), Some(Risk::SystemExecution));
    assert_eq!(classify("update_email"), Some(Risk::DataMutation));
}

#[test]
fn read_only_names_stay_safe_even_with_a_danger_word_later() {
    for name in [
        "get_run_logs",
        "list_messages",
        "search_emails",
        "evaluate_model",
        "get_runtime_info",
        "read_customer",
        "getDeleteStatus",
        "list_workflow_runs",
        "weather",
    ] {
        assert_eq!(classify(name), None, "{name} should be safe");
    }
    // `prune_old` contains the letters "run", which is not why it is gated: pruning deletes.
    assert_eq!(classify("prune_old"), Some(Risk::Irreversible));
}

#[test]
fn side_effect_verbs_of_real_catalogs_are_gated() {
    for name in [
        "create_issue",
        "add_comment",
        "set_status",
        "merge_pull_request",
        "push_files",
        "fork_repository",
        "assign_issue",
        "submit_review",
        "dismiss_notification",
        "move_file",
        "rename_branch",
        "reset_password",
        "approve_pr",
        "transfer_funds",
        "charge_card",
        "grant_admin",
        "revoke_token",
        "deploy_service",
    ] {
        assert!(classify(name).is_some(), "{name} should be gated");
    }
}

#[test]
fn clauses_joined_by_and_or_then_are_each_classified() {
    assert_eq!(classify("fetch_and_delete"), Some(Risk::Irreversible));
    assert_eq!(classify("create_or_update_file"), Some(Risk::DataMutation));
    assert_eq!(classify("read_then_send"), Some(Risk::ExternalSend));
    assert_eq!(classify("search_and_list"), None);
    // The most severe clause wins.
    assert_eq!(classify("update_and_delete"), Some(Risk::Irreversible));
}
