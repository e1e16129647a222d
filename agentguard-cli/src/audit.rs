//! `agentguard audit verify`: a log's or a PostgreSQL table's chain, with its keys and checkpoints.

use super::*;

/// The keys for `audit verify`: each --key-file, or else the one named by $AGENTGUARD_AUDIT_KEY_FILE.
pub(super) fn audit_keys(files: &[PathBuf]) -> Result<Vec<AuditKey>, Failure> {
    if files.is_empty() {
        return AuditKey::from_env()
            .map(|key| key.into_iter().collect())
            .map_err(|e| fail(EXIT_USAGE, e.to_string()));
    }
    files
        .iter()
        .map(|f| AuditKey::from_file(f).map_err(|e| fail(EXIT_USAGE, format!("--key-file: {e}"))))
        .collect()
}

/// Which checkpoint file `audit verify` checks.
pub(super) enum CheckpointArg {
    /// FILE.checkpoint, when it exists.
    Default,
    File(PathBuf),
    Off,
}

/// `audit verify --store postgres://…`: the audit table of a PostgreSQL store.
pub(super) fn verify_store(cli: &Cli, url: &StoreUrl, keys: &[AuditKey]) -> Result<(), Failure> {
    let store = url
        .connect_postgres()
        .map_err(|e| fail(EXIT_STORE, format!("store {url}: {e}")))?;
    report_verify(cli, store.verify_audit_with_keys(keys))
}

pub(super) fn verify(
    cli: &Cli,
    file: Option<PathBuf>,
    keys: &[AuditKey],
    checkpoint: CheckpointArg,
) -> Result<(), Failure> {
    let file = match file {
        Some(f) => f,
        // A --store that does not parse is a mistake to report, never a reason to check some other log instead.
        None => match cli.store.as_deref().map(StoreUrl::parse) {
            Some(Ok(url)) if url.is_postgres() => return verify_store(cli, &url, keys),
            Some(Err(e)) => return Err(fail(EXIT_USAGE, e.to_string())),
            _ => default_log_path(),
        },
    };
    let mut check = Verify::new(&file);
    for key in keys {
        check = check.key(key.clone());
    }
    let checkpoint_exists = match &checkpoint {
        CheckpointArg::Default => {
            let mut name = file.clone().into_os_string();
            name.push(".checkpoint");
            PathBuf::from(name).exists()
        }
        CheckpointArg::File(_) => true,
        CheckpointArg::Off => false,
    };
    check = match checkpoint {
        CheckpointArg::Default => check,
        CheckpointArg::File(c) => check.checkpoint_file(c),
        CheckpointArg::Off => check.no_checkpoint(),
    };
    // A missing log whose checkpoint file remains is a removed log: verify reports that, as a truncation.
    if !file.exists() && !checkpoint_exists {
        return Err(fail(EXIT_ERROR, format!("no audit log at {}", file.display())));
    }
    report_verify(cli, check.run())
}

pub(super) fn report_verify(cli: &Cli, result: Result<VerifyReport, VerifyError>) -> Result<(), Failure> {
    match result {
        Ok(report) => {
            if cli.json {
                print_json(&serde_json::json!({
                    "ok": true, "lines": report.lines, "first_seq": report.first_seq,
                    "last_seq": report.last_seq, "files": report.files, "keyed": report.keyed,
                    "repairs": report.repairs, "checkpoint": report.checkpoint,
                }));
            } else {
                let mut extra = String::new();
                if report.keyed {
                    extra.push_str("; keyed, every MAC checked");
                }
                if let Some(seq) = report.checkpoint {
                    extra.push_str(&format!("; reaches its last checkpoint (seq {seq})"));
                }
                if report.repairs > 0 {
                    extra.push_str(&format!(
                        "; {} repair(s) of a torn write (see the lines with \"event\":\"repair\")",
                        report.repairs
                    ));
                }
                outln!(
                    "chain intact: {} lines (seq {}..{}) in {} file(s){extra}",
                    report.lines,
                    report.first_seq.unwrap_or(0),
                    report.last_seq.unwrap_or(0),
                    report.files.len()
                );
            }
            Ok(())
        }
        Err(e) => {
            if cli.json {
                print_json(&serde_json::json!({
                    "ok": false, "kind": e.kind.as_str(), "file": e.file, "line": e.line, "problem": e.problem,
                }));
            }
            Err(match e.kind {
                VerifyErrorKind::TornTail => fail(EXIT_TORN, e.to_string()),
                VerifyErrorKind::KeyNeeded => fail(EXIT_USAGE, format!("{e} (--key-file K, or {KEY_FILE_ENV})")),
                VerifyErrorKind::Unreadable => fail(EXIT_ERROR, e.to_string()),
                _ => fail(EXIT_AUDIT, format!("chain broken at {e}")),
            })
        }
    }
}
