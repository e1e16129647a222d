//! The ways a person is asked: terminal prompt, callbacks, and the external (parked) mode's notifier.

use std::fmt;
use std::io::{self, BufRead, IsTerminal, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::audit::AuditDecision;
use crate::request::{ApprovalRequest, DenyReason};

/// A synchronous approval callback.
pub(crate) type SyncCallback = Arc<dyn Fn(&ApprovalRequest) -> bool + Send + Sync>;
/// The future an async approval callback returns.
#[cfg(feature = "tokio")]
pub(crate) type BoxBoolFuture = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>;
/// An asynchronous approval callback.
#[cfg(feature = "tokio")]
pub(crate) type AsyncCallback = Arc<dyn Fn(ApprovalRequest) -> BoxBoolFuture + Send + Sync>;
/// The external mode's notifier.
pub(crate) type Notifier = Arc<dyn Fn(&ApprovalRequest) + Send + Sync>;

/// How a guard asks. One variant per mode, so modes cannot be combined by accident.
#[derive(Clone)]
pub(crate) enum Approver {
    Terminal(Arc<TerminalPrompt>),
    Callback(SyncCallback),
    #[cfg(feature = "tokio")]
    AsyncCallback(AsyncCallback),
    External {
        on_request: Option<Notifier>,
    },
}

impl fmt::Debug for Approver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Approver::Terminal(_) => f.write_str("Terminal"),
            Approver::Callback(_) => f.write_str("Callback"),
            #[cfg(feature = "tokio")]
            Approver::AsyncCallback(_) => f.write_str("AsyncCallback"),
            Approver::External { on_request } => f
                .debug_struct("External")
                .field("on_request", &on_request.is_some())
                .finish(),
        }
    }
}

/// What an approver said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Approved {
        actor: Option<String>,
        /// Params the approver edited (as sent; checked and frozen in `conclude`).
        edited: Option<serde_json::Value>,
        /// The standing grant this approval made.
        grant: Option<String>,
    },
    Denied {
        reason: DenyReason,
        actor: Option<String>,
        detail: Option<String>,
    },
    /// The approver answered for the tool.
    Responded { actor: Option<String>, text: String },
}

impl Verdict {
    /// How the audit names this verdict.
    pub(crate) fn audit_decision(&self) -> AuditDecision {
        match self {
            Verdict::Approved { edited: Some(_), .. } => AuditDecision::Edited,
            Verdict::Approved { .. } => AuditDecision::Approved,
            Verdict::Responded { .. } => AuditDecision::Responded,
            Verdict::Denied {
                reason: DenyReason::UserDenied,
                ..
            } => AuditDecision::Denied,
            Verdict::Denied {
                reason: DenyReason::ApprovalTimeout,
                ..
            } => AuditDecision::Expired,
            Verdict::Denied { .. } => AuditDecision::Blocked,
        }
    }

    /// Who gave the verdict, if known.
    pub(crate) fn actor(&self) -> Option<&str> {
        match self {
            Verdict::Approved { actor, .. } | Verdict::Denied { actor, .. } | Verdict::Responded { actor, .. } => {
                actor.as_deref()
            }
        }
    }

    /// A plain approval by `actor`.
    pub(crate) fn approved(actor: Option<String>) -> Self {
        Verdict::Approved {
            actor,
            edited: None,
            grant: None,
        }
    }

    pub(crate) fn deny(reason: DenyReason, detail: impl Into<Option<String>>) -> Self {
        Verdict::Denied {
            reason,
            actor: None,
            detail: detail.into(),
        }
    }
}

/// Runs a sync callback, turning a panic into `approver_failed`.
pub(crate) fn call_sync(callback: &SyncCallback, request: &ApprovalRequest) -> Verdict {
    match catch_unwind(AssertUnwindSafe(|| callback(request))) {
        Ok(true) => Verdict::approved(Some("callback".into())),
        Ok(false) => Verdict::Denied {
            reason: DenyReason::UserDenied,
            actor: Some("callback".into()),
            detail: None,
        },
        Err(panic) => Verdict::deny(
            DenyReason::ApproverFailed,
            format!("the approval callback panicked: {}", panic_message(&*panic)),
        ),
    }
}

/// One notifier that runs `first`, then `then`, even if `first` panics (its panic is passed on afterwards).
pub(crate) fn chain_notifiers(first: Option<Notifier>, then: Notifier) -> Notifier {
    let Some(first) = first else { return then };
    Arc::new(move |request| {
        let earlier = catch_unwind(AssertUnwindSafe(|| first(request)));
        then(request);
        if let Err(panic) = earlier {
            std::panic::resume_unwind(panic);
        }
    })
}

/// Runs the notifier; `Err` carries the panic message.
pub(crate) fn call_notifier(notifier: &Notifier, request: &ApprovalRequest) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| notifier(request))).map_err(|p| panic_message(&*p))
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}

#[cfg(feature = "tokio")]
pin_project_lite::pin_project! {
    /// Polls a future, turning a panic into `Err(message)`. The future is held inline (box it first when it is
    /// unsized).
    pub(crate) struct CatchUnwind<F> {
        #[pin]
        fut: F,
    }
}

#[cfg(feature = "tokio")]
impl<F> CatchUnwind<F> {
    pub(crate) fn new(fut: F) -> Self {
        CatchUnwind { fut }
    }
}

#[cfg(feature = "tokio")]
impl<F: std::future::Future> std::future::Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let fut = self.project().fut;
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic_message(&*panic))),
        }
    }
}

/// Input for the terminal prompt.
enum Input {
    /// The process's stdin; used only when it is an interactive terminal.
    Stdin,
    /// Injected lines (tests, custom front ends).
    Reader(Option<Box<dyn BufRead + Send>>),
}

/// The terminal approver: a y/n prompt, one at a time.
///
/// A dedicated reader thread reads input lines and hands them over a channel, so a prompt can give up at the
/// deadline. Prompts are serialized by a mutex: concurrent callers wait their turn and their boxes never interleave.
/// Lines typed while no prompt is shown are discarded before the next prompt, so a stale `y` cannot approve a
/// different call.
pub(crate) struct TerminalPrompt {
    state: Mutex<PromptState>,
}

struct PromptState {
    input: Input,
    lines: Option<Receiver<Option<String>>>,
    eof: bool,
    output: Box<dyn Write + Send>,
}

impl TerminalPrompt {
    /// The process's one stdin prompt, shared by every terminal guard: one reader thread owns stdin, and prompts
    /// from all guards take turns.
    pub(crate) fn stdio() -> Arc<Self> {
        static STDIO: std::sync::OnceLock<Arc<TerminalPrompt>> = std::sync::OnceLock::new();
        Arc::clone(STDIO.get_or_init(|| Arc::new(Self::with(Input::Stdin, Box::new(io::stderr())))))
    }

    pub(crate) fn custom(input: Box<dyn BufRead + Send>, output: Box<dyn Write + Send>) -> Self {
        Self::with(Input::Reader(Some(input)), output)
    }

    fn with(input: Input, output: Box<dyn Write + Send>) -> Self {
        TerminalPrompt {
            state: Mutex::new(PromptState {
                input,
                lines: None,
                eof: false,
                output,
            }),
        }
    }

    /// Asks about `request`, waiting at most until `until`.
    pub(crate) fn ask(&self, request: &ApprovalRequest, until: Instant) -> Verdict {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.lines.is_none() {
            let reader: Box<dyn BufRead + Send> = match &mut state.input {
                Input::Stdin => {
                    if !io::stdin().is_terminal() {
                        return Verdict::deny(
                            DenyReason::NoTerminal,
                            "terminal approval needs an interactive terminal on stdin; use AgentGuard::callback or \
                             AgentGuard::external where there is none"
                                .to_owned(),
                        );
                    }
                    Box::new(io::BufReader::new(io::stdin()))
                }
                Input::Reader(r) => match r.take() {
                    Some(r) => r,
                    None => return Verdict::deny(DenyReason::NoTerminal, "terminal input is closed".to_owned()),
                },
            };
            state.lines = Some(spawn_reader(reader));
        }
        // Drop type-ahead: an answer typed before this prompt was shown is not an answer to it.
        while let Some(Ok(line)) = state.lines.as_ref().map(|rx| rx.try_recv()) {
            if line.is_none() {
                state.eof = true;
            }
        }
        if state.eof {
            return Verdict::deny(DenyReason::NoTerminal, "terminal input ended (EOF)".to_owned());
        }
        let text = render_box(request);
        if state
            .output
            .write_all(text.as_bytes())
            .and_then(|()| state.output.flush())
            .is_err()
        {
            return Verdict::deny(
                DenyReason::NoTerminal,
                "cannot write the prompt to the terminal".to_owned(),
            );
        }
        let rx = state.lines.as_ref().expect("spawned above");
        let answer = rx.recv_timeout(until.saturating_duration_since(Instant::now()));
        let verdict = match answer {
            Ok(Some(line)) => {
                let line = line.trim();
                if line.eq_ignore_ascii_case("y") || line.eq_ignore_ascii_case("yes") {
                    Verdict::approved(Some("terminal".into()))
                } else {
                    Verdict::Denied {
                        reason: DenyReason::UserDenied,
                        actor: Some("terminal".into()),
                        detail: None,
                    }
                }
            }
            Ok(None) | Err(RecvTimeoutError::Disconnected) => {
                state.eof = true;
                Verdict::deny(DenyReason::NoTerminal, "terminal input ended (EOF)".to_owned())
            }
            Err(RecvTimeoutError::Timeout) => Verdict::deny(DenyReason::ApprovalTimeout, None),
        };
        let note = match &verdict {
            Verdict::Approved { .. } | Verdict::Responded { .. } => "approved\n",
            Verdict::Denied {
                reason: DenyReason::ApprovalTimeout,
                ..
            } => "\nno answer before the deadline: denied\n",
            Verdict::Denied { .. } => "denied\n",
        };
        let _ = state.output.write_all(note.as_bytes());
        let _ = state.output.flush();
        verdict
    }
}

fn spawn_reader(mut reader: Box<dyn BufRead + Send>) -> Receiver<Option<String>> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("agentguard-terminal".into())
        .spawn(move || loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(_) => {
                    if tx.send(Some(line)).is_err() {
                        return;
                    }
                }
            }
        });
    if spawned.is_err() {
        // No thread, no input: the receiver reports a disconnect, which denies.
        let (_, rx) = mpsc::channel();
        return rx;
    }
    rx
}

/// The prompt box: a heading, a rule, one row per field, a rule, then `Allow? (y/n): `.
pub(crate) fn render_box(request: &ApprovalRequest) -> String {
    const RULE: &str = "===================================================";
    let mut s = String::with_capacity(512);
    s.push_str("\n[!] AGENTGUARD: Action requires approval\n");
    s.push_str(RULE);
    s.push('\n');
    let params = serde_json::to_string(request.params()).unwrap_or_else(|_| "?".into());
    let rows: [(&str, Option<&str>); 7] = [
        ("Tool", Some(request.tool())),
        ("Parameters", Some(&params)),
        ("Risk", Some(request.risk().label())),
        ("Reason", request.reason()),
        ("Agent", request.agent_id()),
        ("Session", request.session_id()),
        ("Request", Some(request.request_id().as_str())),
    ];
    for (label, value) in rows {
        if let Some(value) = value {
            s.push_str(&format!("{label:<10}: {}\n", sanitize(value)));
        }
    }
    s.push_str(&format!("{:<10}: {} s\n", "Time left", request.remaining().as_secs()));
    s.push_str(RULE);
    s.push_str("\nAllow? (y/n): ");
    s
}

/// Agent-supplied text with every character that could move the cursor, hide or reorder text shown as a visible
/// `\u{…}` mark: the one definition the CLI and the approval page use too.
fn sanitize(s: &str) -> String {
    agentguard_classify::escape_hidden(s).into_owned()
}
