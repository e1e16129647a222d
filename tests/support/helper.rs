//! `agentguard-test-helper`: a real OS process for the integration tests that need one (several writers on one
//! audit log, a guard whose stdin is not a terminal). Not part of the public tools.

use std::path::PathBuf;
use std::process::ExitCode;

use agentguard::audit::{AuditDecision, AuditRecord};
use agentguard::{AgentGuard, AuditSink, JsonlAudit, ToolCall};
use serde_json::json;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        // Appends N records tagged TAG to the log at PATH, rotating at MAX_BYTES.
        ["audit-append", path, tag, n, max_bytes] => {
            let audit = JsonlAudit::new(PathBuf::from(path)).max_bytes(max_bytes.parse().expect("max_bytes"));
            let params = json!({"tag": tag});
            for i in 0..n.parse::<usize>().expect("n") {
                let tool = format!("tool_{tag}_{i}");
                let mut rec = AuditRecord::new(&tool, AuditDecision::Allowed);
                rec.params = Some(&params);
                if let Err(e) = audit.record(&rec) {
                    eprintln!("audit-append: {e}");
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        // Makes one gated call through a terminal guard on the real stdin and prints the outcome as JSON.
        ["terminal-call"] => {
            let guard = AgentGuard::terminal().no_audit().build();
            let out = guard.execute(ToolCall::new("delete_file", json!({"path": "notes.txt"})), |_, _| "ran");
            match out {
                Ok(v) => println!("{}", json!({"ok": v})),
                Err(denied) => println!("{}", serde_json::to_string(&denied).expect("serializable")),
            }
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: agentguard-test-helper audit-append PATH TAG N MAX_BYTES | terminal-call");
            ExitCode::from(2)
        }
    }
}
