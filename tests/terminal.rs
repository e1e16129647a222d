//! The terminal approver: the prompt box, y/n answers, serialized prompts, and failing closed without input.

use std::io::{BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentguard::{AgentGuard, DenyReason, ToolCall};
use serde_json::{json, Value};

/// What the prompt writes, with a signal each time a prompt is complete (like a person seeing the question).
#[derive(Clone)]
struct Screen {
    text: Arc<Mutex<String>>,
    prompted: Sender<()>,
}

impl Write for Screen {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let chunk = String::from_utf8_lossy(buf);
        self.text.lock().unwrap().push_str(&chunk);
        if chunk.contains("Allow? (y/n): ") {
            let _ = self.prompted.send(());
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Terminal {
    guard: AgentGuard,
    keyboard: std::io::PipeWriter,
    prompted: Receiver<()>,
    text: Arc<Mutex<String>>,
}

fn terminal(timeout: Duration) -> Terminal {
    let (reader, keyboard) = std::io::pipe().unwrap();
    let (tx, prompted) = mpsc::channel();
    let text = Arc::new(Mutex::new(String::new()));
    let screen = Screen {
        text: text.clone(),
        prompted: tx,
    };
    let guard = AgentGuard::terminal()
        .io(BufReader::new(reader), screen)
        .timeout(timeout)
        .no_audit()
        .build();
    Terminal {
        guard,
        keyboard,
        prompted,
        text,
    }
}

fn delete_call() -> ToolCall {
    ToolCall::new("delete_file", json!({"path": "notes.txt", "password": "hunter2"}))
        .agent_id("support-bot")
        .session_id("ticket-4821")
        .reason("customer asked")
}

#[test]
fn prompt_shows_the_box_and_y_approves() {
    let mut t = terminal(Duration::from_secs(30));
    let g = t.guard.clone();
    let agent = std::thread::spawn(move || g.execute(delete_call(), |_, p: Value| p["path"].clone()));
    t.prompted.recv().unwrap();
    writeln!(t.keyboard, "y").unwrap();
    assert_eq!(agent.join().unwrap().unwrap(), "notes.txt");
    let text = t.text.lock().unwrap().clone();
    for expected in [
        "[!] AGENTGUARD: Action requires approval",
        "===================================================",
        "Tool      : delete_file",
        "Parameters: {\"password\":\"[REDACTED]\",\"path\":\"notes.txt\"}",
        "Risk      : IRREVERSIBLE - cannot be undone",
        "Reason    : customer asked",
        "Agent     : support-bot",
        "Session   : ticket-4821",
        "Request   : ",
        "Allow? (y/n): ",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("hunter2"));
}

#[test]
fn n_denies_with_user_denied() {
    let mut t = terminal(Duration::from_secs(30));
    let g = t.guard.clone();
    let agent = std::thread::spawn(move || g.execute(delete_call(), |_, _| ()));
    t.prompted.recv().unwrap();
    writeln!(t.keyboard, "n").unwrap();
    assert_eq!(agent.join().unwrap().unwrap_err().reason(), DenyReason::UserDenied);
}

#[test]
fn anything_but_y_or_yes_denies() {
    let mut t = terminal(Duration::from_secs(30));
    for (answer, approved) in [("yes", true), ("Y", true), ("maybe", false), ("", false)] {
        let g = t.guard.clone();
        let agent = std::thread::spawn(move || g.execute(delete_call(), |_, _| ()));
        t.prompted.recv().unwrap();
        writeln!(t.keyboard, "{answer}").unwrap();
        assert_eq!(agent.join().unwrap().is_ok(), approved, "answer {answer:?}");
    }
}

#[test]
fn end_of_input_denies_with_no_terminal() {
    let t = terminal(Duration::from_secs(30));
    drop(t.keyboard);
    let denied = t.guard.execute(delete_call(), |_, _| ()).unwrap_err();
    assert_eq!(denied.reason(), DenyReason::NoTerminal);
}

#[test]
fn no_answer_before_the_deadline_denies_with_approval_timeout() {
    let t = terminal(Duration::from_millis(50));
    let denied = t.guard.execute(delete_call(), |_, _| ()).unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ApprovalTimeout);
    assert!(t.text.lock().unwrap().contains("no answer before the deadline"));
    drop(t.keyboard);
}

#[test]
fn an_answer_typed_before_the_prompt_does_not_count() {
    let mut t = terminal(Duration::from_secs(30));
    // Prime the reader with a first prompt so the typed-ahead line below is read while no prompt is shown.
    let g = t.guard.clone();
    let first = std::thread::spawn(move || g.execute(delete_call(), |_, _| ()));
    t.prompted.recv().unwrap();
    writeln!(t.keyboard, "n").unwrap();
    first.join().unwrap().unwrap_err();
    writeln!(t.keyboard, "y").unwrap(); // typed ahead, while no prompt is shown
                                        // A person types before the question appears; there is no event to wait on for "the reader thread has read
                                        // the line", so give it time. If it were too short, the test would fail (the stale y would approve), not pass.
    std::thread::sleep(Duration::from_millis(200));
    let g = t.guard.clone();
    let second = std::thread::spawn(move || g.execute(delete_call(), |_, _| ()));
    t.prompted.recv().unwrap();
    writeln!(t.keyboard, "n").unwrap();
    assert_eq!(second.join().unwrap().unwrap_err().reason(), DenyReason::UserDenied);
}

#[test]
fn prompts_from_six_threads_never_interleave() {
    let mut t = terminal(Duration::from_secs(60));
    let agents: Vec<_> = (0..6)
        .map(|i| {
            let g = t.guard.clone();
            std::thread::spawn(move || g.execute(delete_call().agent_id(format!("agent-{i}")), |_, _| i))
        })
        .collect();
    for _ in 0..6 {
        t.prompted.recv_timeout(Duration::from_secs(30)).unwrap();
        writeln!(t.keyboard, "y").unwrap();
    }
    for a in agents {
        a.join().unwrap().unwrap();
    }
    let text = t.text.lock().unwrap().clone();
    let boxes: Vec<&str> = text.split("[!] AGENTGUARD").skip(1).collect();
    assert_eq!(boxes.len(), 6);
    for b in &boxes {
        assert_eq!(b.matches("Allow? (y/n): ").count(), 1, "interleaved box:\n{b}");
        assert_eq!(b.matches("Agent     : ").count(), 1, "interleaved box:\n{b}");
        assert!(
            b.trim_end().ends_with("approved"),
            "box not answered before the next began:\n{b}"
        );
    }
}

#[test]
fn a_process_whose_stdin_is_not_a_terminal_denies_with_no_terminal() {
    let out = Command::new(env!("CARGO_BIN_EXE_agentguard-test-helper"))
        .arg("terminal-call")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["denied"], true);
    assert_eq!(result["reason"], "no_terminal");
}
