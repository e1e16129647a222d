//! The approval page end to end in headless Chromium (Debian's `chromium` and `chromium-driver`, which `.ci/run`
//! installs), driven over WebDriver with fantoccini. A real server on a loopback port, a real agent call parked in
//! this process, a real browser clicking the page's buttons.
//!
//! Without chromedriver (at `$AGENTGUARD_CHROMEDRIVER` or /usr/bin/chromedriver) each test says it was skipped and
//! why, except under CI (`CI` set), where a missing browser is a failure.

mod web;

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agentguard::store::RequestState;
use agentguard::{AgentGuard, DenyReason};
use fantoccini::actions::{InputSource, KeyAction, KeyActions, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use web::{Web, ALICE};

/// A chromedriver process and a browser session on it.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Stops chromedriver and every Chromium process it started: they share chromedriver's process group, so a
    /// failed test leaves no browser behind.
    fn drop(&mut self) {
        // killpg directly: the `kill` command's parsing of `-KILL -<pgid>` differs between implementations (procps
        // 4.0.2 sends SIGKILL to group 9 instead), and a wrong group is someone else's processes.
        if let Ok(pgid) = i32::try_from(self.driver.id()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn chromedriver() -> Option<PathBuf> {
    let path =
        PathBuf::from(std::env::var("AGENTGUARD_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned()));
    if path.exists() {
        return Some(path);
    }
    let why = format!(
        "no chromedriver at {} (apt-get install chromium chromium-driver, or set AGENTGUARD_CHROMEDRIVER)",
        path.display()
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "the browser tests must run in CI: {why}"
    );
    eprintln!("skipped: {why}");
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Browser {
    async fn start() -> Option<Browser> {
        let driver_path = chromedriver()?;
        let port = free_port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .process_group(0) // its own group, so Drop can stop the browsers with it
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let chromium = std::env::var("AGENTGUARD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1100,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let caps = caps.as_object().unwrap().clone();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let mut builder = ClientBuilder::new(connector.clone());
            match builder
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("could not start a Chromium session: {e}"),
            }
        };
        Some(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    /// A browser signed in to a fresh server over an external guard built from `builder`; `None` when skipped.
    async fn session(
        builder: agentguard::guard::GuardBuilder<agentguard::guard::mode::External>,
    ) -> Option<(Browser, Web)> {
        Self::session_with(builder, |api| api).await
    }

    /// Like [`session`](Self::session), with the API configured further (more people's tokens).
    async fn session_with(
        builder: agentguard::guard::GuardBuilder<agentguard::guard::mode::External>,
        configure: impl FnOnce(agentguard::http::ApprovalApi) -> agentguard::http::ApprovalApi,
    ) -> Option<(Browser, Web)> {
        let browser = Browser::start().await?;
        let web = Web::start_with(builder, configure).await;
        browser.sign_in(&web).await;
        Some((browser, web))
    }

    /// Opens the page and signs in with Alice's token, as a person would.
    async fn sign_in(&self, web: &Web) {
        self.client.goto(&web.base).await.unwrap();
        let input = self.client.find(Locator::Id("token")).await.unwrap();
        input.send_keys(ALICE).await.unwrap();
        self.client
            .find(Locator::Id("connect"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.until(
            "the page is live",
            "document.getElementById('status').textContent === 'Live'",
        )
        .await;
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Waits until the JS expression `condition` is true (at most 20 s), polling the page.
    async fn until(&self, what: &str, condition: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let script = format!("return !!({condition});");
        while self.js(&script).await != json!(true) {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn card(id: &agentguard::RequestId) -> String {
        format!("document.querySelector('article[data-request-id=\"{id}\"]')")
    }

    /// Waits until the request's card is on the page (`true`) or gone (`false`).
    async fn until_card(&self, id: &agentguard::RequestId, present: bool) {
        let (what, op) = if present {
            ("the card appears", "!==")
        } else {
            ("the card leaves", "===")
        };
        self.until(what, &format!("{} {op} null", Self::card(id))).await;
    }

    async fn card_text(&self, id: &agentguard::RequestId) -> String {
        let text = self.js(&format!("return {}.innerText;", Self::card(id))).await;
        text.as_str().unwrap_or_default().to_owned()
    }

    async fn button(&self, id: &agentguard::RequestId, which: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(&format!(
                "article[data-request-id=\"{id}\"] button.{which}"
            )))
            .await
            .unwrap()
    }

    /// The first element matching `css` inside the request's card.
    async fn in_card(&self, id: &agentguard::RequestId, css: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(&format!("article[data-request-id=\"{id}\"] {css}")))
            .await
            .unwrap()
    }

    /// Opens one of the card's "more" sections (`remember`, `edit`, `respond`) as a person would: a click on its
    /// summary.
    async fn open(&self, id: &agentguard::RequestId, section: &str) {
        self.in_card(id, &format!("details.{section} > summary"))
            .await
            .click()
            .await
            .unwrap();
        self.until(
            "the section opens",
            &format!("{}.querySelector('details.{section}').open", Self::card(id)),
        )
        .await;
    }

    /// Counts the page's POSTs to `resolve` in `window.__posts`.
    async fn count_posts(&self) {
        self.js("window.__posts = 0; const f = window.fetch; \
                 window.fetch = (u, o) => { if (String(u).includes('resolve')) window.__posts++; return f(u, o); }; \
                 return 0;")
            .await;
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Ends the session politely; Drop then stops whatever is left.
    async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

fn external(timeout: Duration) -> agentguard::guard::GuardBuilder<agentguard::guard::mode::External> {
    AgentGuard::external().timeout(timeout).no_audit()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_call_appears_as_a_card_without_reload_and_approve_runs_it() {
    let Some((browser, mut web)) = Browser::session(external(Duration::from_secs(120))).await else {
        return;
    };
    assert_eq!(
        browser.js("return document.getElementById('empty').hidden").await,
        json!(false)
    );
    browser.js("window.__sameDocument = true; return 0;").await;

    let call = web.call(
        "delete_customer",
        json!({"customer_id": 4711, "api_key": "sk-live-9f8e", "options": {"hard": true}}),
    );
    let parked = web.next_parked().await;
    let id = parked.request_id().clone();
    browser.until_card(&id, true).await;
    assert_eq!(
        browser.js("return window.__sameDocument === true").await,
        json!(true),
        "the card came by the event stream, not a reload"
    );
    let text = browser.card_text(&id).await;
    for shown in [
        "delete_customer",
        "IRREVERSIBLE",
        "support-bot",
        "s-42",
        "customer_id",
        "4711",
        "Expires in",
    ] {
        assert!(text.contains(shown), "the card shows {shown:?}: {text}");
    }
    assert!(
        text.contains("[REDACTED]") && !text.contains("sk-live-9f8e"),
        "secrets are masked: {text}"
    );
    assert!(
        text.contains("\"hard\": true") && !text.contains("\\u{000A}"),
        "nested params keep their own line breaks, unmarked: {text}"
    );

    browser.button(&id, "approve").await.click().await.unwrap();
    assert_eq!(
        call.await.unwrap().unwrap(),
        "ran",
        "approved from the page, the agent's call ran"
    );
    let decision = web.guard.store().get(&id).unwrap().unwrap().decision;
    assert_eq!(decision.actor.as_deref(), Some("alice"));
    browser.until_card(&id, false).await;
    assert_eq!(
        browser.js("return document.getElementById('empty').hidden").await,
        json!(false)
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_and_reordering_characters_in_params_are_shown_not_obeyed() {
    let Some((browser, mut web)) = Browser::session(external(Duration::from_secs(120))).await else {
        return;
    };
    // U+202E reverses what follows: unescaped, "report\u{202E}fdp.exe" reads as "reportexe.pdf".
    // One character of each class the terminal and the CLI escape too: bidi override, zero-width space, tag
    // characters ("ASCII smuggling", outside the BMP), a variation selector, the combining grapheme joiner, Mongolian
    // and Khmer invisibles, a Hangul filler.
    let hidden = [
        '\u{202E}',
        '\u{200B}',
        '\u{E0041}',
        '\u{E007F}',
        '\u{FE0F}',
        '\u{034F}',
        '\u{180B}',
        '\u{17B4}',
        '\u{3164}',
    ];
    let smuggled: String = hidden.iter().collect();
    let call = web.call(
        "send_email",
        json!({"attachment": "report\u{202E}fdp.exe", "to": "a\u{200B}b@example.com", "count": "4711",
               "note": format!("ok{smuggled}")}),
    );
    let id = web.next_parked().await.request_id().clone();
    browser.until_card(&id, true).await;
    let text = browser.card_text(&id).await;
    for c in hidden {
        let mark = format!("\\u{{{:04X}}}", c as u32);
        assert!(text.contains(&mark), "U+{:04X} is marked as {mark}: {text}", c as u32);
        assert!(!text.contains(c), "U+{:04X} is not rendered raw: {text}", c as u32);
    }
    assert!(text.contains("\"4711\""), "a string is quoted, unlike a number: {text}");
    web.guard.resolve(&id, false, None);
    assert!(call.await.unwrap().is_err());
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_on_the_page_gives_the_agent_action_denied_with_the_note() {
    let Some((browser, mut web)) = Browser::session(external(Duration::from_secs(120))).await else {
        return;
    };
    let call = web.call("send_email", json!({"to": "everyone@example.com", "subject": "Hi"}));
    let id = web.next_parked().await.request_id().clone();
    browser.until_card(&id, true).await;

    let note = browser
        .client
        .find(Locator::Css(&format!("article[data-request-id=\"{id}\"] input.note")))
        .await
        .unwrap();
    note.send_keys("not to everyone").await.unwrap();
    browser.button(&id, "deny").await.click().await.unwrap();
    let denied = call.await.unwrap().unwrap_err();
    assert_eq!(denied.reason(), DenyReason::UserDenied);
    assert_eq!(denied.detail(), Some("not to everyone"), "the note reaches the agent");
    assert_eq!(
        denied.to_string(),
        "Blocked by AgentGuard (user_denied: not to everyone)"
    );
    browser.until_card(&id, false).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_deadline_the_card_turns_expired_and_both_buttons_disable() {
    let Some((browser, mut web)) = Browser::session(external(Duration::from_secs(6))).await else {
        return;
    };
    let call = web.call("wipe_disk", json!({"device": "/dev/sda"}));
    let id = web.next_parked().await.request_id().clone();
    browser.until_card(&id, true).await;
    assert!(browser.button(&id, "approve").await.is_enabled().await.unwrap());

    browser
        .until(
            "the card shows expired",
            &format!("{}.classList.contains('expired')", Browser::card(&id)),
        )
        .await;
    let text = browser.card_text(&id).await;
    assert!(text.contains("Expired"), "{text}");
    assert!(!browser.button(&id, "approve").await.is_enabled().await.unwrap());
    assert!(!browser.button(&id, "deny").await.is_enabled().await.unwrap());
    assert_eq!(call.await.unwrap().unwrap_err().reason(), DenyReason::ApprovalTimeout);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_click_sends_one_decision_and_a_second_answer_is_already_resolved() {
    let Some((browser, mut web)) = Browser::session(external(Duration::from_secs(120))).await else {
        return;
    };
    // Count the page's resolve requests.
    browser
        .js("window.__posts = 0; const f = window.fetch; \
             window.fetch = (u, o) => { if (String(u).includes('resolve')) window.__posts++; return f(u, o); }; \
             return 0;")
        .await;
    let call = web.call("delete_customer", json!({"customer_id": 1}));
    let parked = web.next_parked().await;
    let id = parked.request_id().clone();
    browser.until_card(&id, true).await;

    let approve = browser.button(&id, "approve").await;
    let mut double = MouseActions::new("mouse".to_owned()).then(PointerAction::MoveToElement {
        element: approve,
        duration: None,
        x: 0,
        y: 0,
    });
    for _ in 0..2 {
        double = double
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            });
    }
    browser.client.perform_actions(double).await.unwrap();
    assert_eq!(call.await.unwrap().unwrap(), "ran");
    assert_eq!(
        browser.js("return window.__posts").await,
        json!(1),
        "one click was sent, the second ignored"
    );
    assert_eq!(web.state(&id), RequestState::Executed);

    // Another approver answering the same request afterwards changes nothing.
    let res = reqwest::Client::new()
        .post(web.url("resolve"))
        .bearer_auth(ALICE)
        .json(&json!({"request_id": id, "approved": false, "params_digest": parked.params_digest()}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::CONFLICT);
    let out: Value = res.json().await.unwrap();
    assert_eq!(out["outcome"], "ALREADY_RESOLVED");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_dangerous_tool_shows_a_card_and_a_safe_tool_shows_none() {
    let Some((browser, mut web)) =
        Browser::session(external(Duration::from_secs(120)).dangerous_tools(["lookup_vip_status"])).await
    else {
        return;
    };

    let safe = web.call("get_order_status", json!({"order": 99}));
    assert_eq!(safe.await.unwrap().unwrap(), "ran", "a safe tool runs at once");
    let listed = web.call("lookup_vip_status", json!({"customer_id": 7}));
    let id = web.next_parked().await.request_id().clone();
    browser.until_card(&id, true).await;

    let tools = browser
        .js("return [...document.querySelectorAll('article.card h2')].map(h => h.textContent)")
        .await;
    assert_eq!(
        tools,
        json!(["lookup_vip_status"]),
        "only the listed tool asked; the safe one did not"
    );
    assert!(browser.card_text(&id).await.contains("MANUALLY FLAGGED"));
    browser.button(&id, "deny").await.click().await.unwrap();
    assert!(listed.await.unwrap().is_err());
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_works_by_keyboard_at_phone_width_and_is_saved_as_a_screenshot() {
    let Some((browser, mut web)) =
        Browser::session(external(Duration::from_secs(300)).dangerous_tools(["refund_order"])).await
    else {
        return;
    };
    // Parked one after the other, so the cards are in this order.
    let requests = [
        (
            "delete_customer",
            json!({"customer_id": 4711, "reason": "GDPR erasure request", "api_key": "sk-live-9f8e"}),
        ),
        (
            "send_email",
            json!({"to": "all-customers@example.com", "subject": "Price change", "attachments": ["terms.pdf"]}),
        ),
        ("refund_order", json!({"order_id": "A-1009", "amount_eur": 249.0})),
    ];
    let mut calls = Vec::new();
    let mut ids = Vec::new();
    for (tool, params) in requests {
        calls.push(web.call(tool, params));
        ids.push(web.next_parked().await.request_id().clone());
    }
    browser
        .until("three cards", "document.querySelectorAll('article.card').length === 3")
        .await;
    let shot = browser.screenshot("agentguard-approval-page.png").await;
    eprintln!("screenshot: {}", shot.display());

    // Phone width: nothing wider than the screen, buttons labelled with what they do.
    browser.client.set_window_size(390, 844).await.unwrap();
    browser
        .until("the layout is phone width", "window.innerWidth <= 400")
        .await;
    assert_eq!(
        browser
            .js("return document.documentElement.scrollWidth <= document.documentElement.clientWidth")
            .await,
        json!(true),
        "no horizontal scrolling at 390 px"
    );
    let labels = browser
        .js("return [...document.querySelectorAll('article.card button')].map(b => b.getAttribute('aria-label'))")
        .await;
    assert_eq!(labels[0], "Approve delete_customer");
    assert_eq!(labels[1], "Deny delete_customer");
    browser.screenshot("agentguard-approval-page-phone.png").await;

    // Keyboard only: from the header's "Forget token", Tab reaches the first card's note, then its Approve; Enter
    // presses it.
    browser.js("document.getElementById('logout').focus(); return 0;").await;
    let mut keys = KeyActions::new("keyboard".to_owned());
    for _ in 0..2 {
        keys = keys
            .then(KeyAction::Down { value: Key::Tab.into() })
            .then(KeyAction::Up { value: Key::Tab.into() });
    }
    browser.client.perform_actions(keys).await.unwrap();
    assert_eq!(
        browser
            .js("return document.activeElement.getAttribute('aria-label')")
            .await,
        json!("Approve delete_customer"),
        "Tab order: Forget token, note, Approve"
    );
    let enter = KeyActions::new("keyboard".to_owned())
        .then(KeyAction::Down {
            value: Key::Enter.into(),
        })
        .then(KeyAction::Up {
            value: Key::Enter.into(),
        });
    browser.client.perform_actions(enter).await.unwrap();
    let mut calls = calls.into_iter();
    let first = calls.next().unwrap();
    assert_eq!(first.await.unwrap().unwrap(), "ran", "approved with the keyboard");
    for id in &ids[1..] {
        web.guard.resolve(id, false, None);
    }
    for denied in calls {
        assert!(denied.await.unwrap().is_err());
    }
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_to_a_card_opens_the_page_on_that_card_and_approves_nothing() {
    let Some((browser, mut web)) = Browser::session(external(Duration::from_secs(120))).await else {
        return;
    };
    let first_call = web.call("delete_file", json!({"path": "a.txt"}));
    let first = web.next_parked().await.request_id().clone();
    let second_call = web.call("send_email", json!({"to": "jane@example.com"}));
    let second = web.next_parked().await.request_id().clone();
    browser.until_card(&second, true).await;

    // The link a notification carries, opened afresh (as from a chat message): the page loads, connects, and shows
    // that card highlighted and focused.
    browser.client.goto("about:blank").await.unwrap();
    browser.client.goto(&format!("{}#{second}", web.base)).await.unwrap();
    let target = |id: &agentguard::RequestId| {
        format!(
            "{card} !== null && {card}.classList.contains('target') && document.activeElement === {card}.querySelector('h2')",
            card = Browser::card(id)
        )
    };
    browser
        .until("the linked card is highlighted and focused", &target(&second))
        .await;
    assert_eq!(
        browser
            .js("return document.querySelectorAll('article.card.target').length")
            .await,
        json!(1),
        "only the linked card is highlighted"
    );
    assert_eq!(
        web.state(&first),
        RequestState::Pending,
        "opening the link approved nothing"
    );
    assert_eq!(
        web.state(&second),
        RequestState::Pending,
        "opening the link approved nothing"
    );

    // Following another link in the same tab moves the highlight without a reload.
    browser.js(&format!("location.hash = '{first}'; return 0;")).await;
    browser.until("the other card is highlighted", &target(&first)).await;
    assert_eq!(
        browser
            .js(&format!(
                "return {}.classList.contains('target')",
                Browser::card(&second)
            ))
            .await,
        json!(false)
    );

    // A link to a request that is no longer waiting says so.
    web.guard.resolve(&first, false, Some("bob"));
    assert!(first_call.await.unwrap().is_err());
    browser.until_card(&first, false).await;
    browser
        .until(
            "the page says the linked request is gone",
            "!document.getElementById('missing').hidden && \
             document.getElementById('missing').textContent.includes('is not waiting any more')",
        )
        .await;
    assert_eq!(web.state(&second), RequestState::Pending);

    browser.button(&second, "approve").await.click().await.unwrap();
    assert_eq!(second_call.await.unwrap().unwrap(), "ran");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_on_the_page_runs_the_edited_call_and_invalid_json_is_refused_before_sending() {
    let Some((browser, mut web)) = Browser::session(external(Duration::from_secs(120))).await else {
        return;
    };
    browser.count_posts().await;
    let call = web.call_echo(
        "send_email",
        json!({"to": "all@example.com", "subject": "Price change", "note": "report\u{202E}fdp.exe"}),
    );
    let id = web.next_parked().await.request_id().clone();
    browser.until_card(&id, true).await;
    browser.open(&id, "edit").await;

    // Pre-filled with the shown params as JSON; a hidden character is written as its escape, not obeyed.
    let box_ = browser.in_card(&id, "textarea.edit-json").await;
    let shown = box_.prop("value").await.unwrap().unwrap();
    assert!(shown.contains("\"to\": \"all@example.com\""), "{shown}");
    assert!(
        shown.contains("report\\u202Efdp.exe") && !shown.contains('\u{202E}'),
        "{shown}"
    );
    let parsed: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(
        parsed["note"], "report\u{202E}fdp.exe",
        "the escape parses back to the same text"
    );

    // Not JSON, then not an object: said on the page, nothing sent.
    for (text, says) in [
        (r#"{"to": "team@example.com","#, "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
    ] {
        box_.clear().await.unwrap();
        box_.send_keys(text).await.unwrap();
        browser.in_card(&id, "button.edit-send").await.click().await.unwrap();
        browser
            .until(
                "the page says what is wrong",
                &format!(
                    "{}.querySelector('.edit-error').textContent.includes('{says}')",
                    Browser::card(&id)
                ),
            )
            .await;
    }
    assert_eq!(browser.js("return window.__posts").await, json!(0), "nothing was sent");
    assert_eq!(web.state(&id), RequestState::Pending);

    let edited = json!({"to": "team@example.com", "subject": "Price change"});
    box_.clear().await.unwrap();
    box_.send_keys(&edited.to_string()).await.unwrap();
    browser.in_card(&id, "button.edit-send").await.click().await.unwrap();
    assert_eq!(
        call.await.unwrap().unwrap(),
        edited,
        "the agent's call ran with the edit"
    );
    assert_eq!(browser.js("return window.__posts").await, json!(1));
    browser.until_card(&id, false).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_refuses_edits_shows_why_and_its_edit_box_is_disabled() {
    let Some((browser, mut web)) = Browser::session(external(Duration::from_secs(120))).await else {
        return;
    };
    let call = web.run(
        agentguard::ToolCall::new("charge_card", json!({"amount": 40}))
            .agent_id("support-bot")
            .refuse_edits("the amount is signed by the <b>payment</b> provider"),
    );
    let id = web.next_parked().await.request_id().clone();
    browser.until_card(&id, true).await;
    browser.open(&id, "edit").await;
    let text = browser.card_text(&id).await;
    assert!(
        text.contains("Not available: the amount is signed by the <b>payment</b> provider"),
        "the reason, shown as text: {text}"
    );
    assert!(!browser
        .in_card(&id, "textarea.edit-json")
        .await
        .is_enabled()
        .await
        .unwrap());
    assert!(!browser
        .in_card(&id, "button.edit-send")
        .await
        .is_enabled()
        .await
        .unwrap());
    assert!(
        browser.button(&id, "approve").await.is_enabled().await.unwrap(),
        "approve still works"
    );
    browser.button(&id, "deny").await.click().await.unwrap();
    assert!(call.await.unwrap().is_err());
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_from_the_page_reaches_the_agent_as_the_tools_result() {
    let Some((browser, mut web)) = Browser::session(external(Duration::from_secs(120))).await else {
        return;
    };
    let call = web.call_echo("refund_payment", json!({"order": "A-1009", "amount": 249}));
    let id = web.next_parked().await.request_id().clone();
    browser.until_card(&id, true).await;
    browser.open(&id, "respond").await;
    let text = "Already refunded on Monday.\nTell the customer it is on its way.";
    browser
        .in_card(&id, "textarea.respond-text")
        .await
        .send_keys(text)
        .await
        .unwrap();
    browser.in_card(&id, "button.respond-send").await.click().await.unwrap();

    let answered = call.await.unwrap().unwrap_err();
    assert_eq!(answered.reason(), DenyReason::Responded);
    assert_eq!(
        answered.response(),
        Some(text),
        "the agent reads the text as the result"
    );
    assert!(!answered.is_denial());
    assert_eq!(web.state(&id), RequestState::Responded);
    browser.until_card(&id, false).await;
    browser.close().await;
}

/// The grant items shown, as text.
async fn grant_items(browser: &Browser) -> Vec<String> {
    let items = browser
        .js("return [...document.querySelectorAll('#grant-list li.grant')].map(li => li.innerText)")
        .await;
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remember_on_the_page_makes_a_grant_the_next_call_uses_and_revoke_on_the_page_ends_it() {
    let Some((browser, mut web)) = Browser::session(external(Duration::from_secs(120))).await else {
        return;
    };
    assert_eq!(
        browser.js("return document.getElementById('no-grants').hidden").await,
        json!(false),
        "the grants view says there are none"
    );
    let first = web.call_echo("delete_file", json!({"path": "./reports/a.txt"}));
    let id = web.next_parked().await.request_id().clone();
    browser.until_card(&id, true).await;
    browser.open(&id, "remember").await;
    let scope = browser.in_card(&id, "select.scope").await;
    scope.select_by_value("session").await.unwrap();
    browser.in_card(&id, "input.for").await.send_keys("2h").await.unwrap();
    browser.in_card(&id, "input.uses").await.send_keys("5").await.unwrap();
    browser
        .in_card(&id, "input.when")
        .await
        .send_keys(r#"path = { under = "./reports" }"#)
        .await
        .unwrap();
    browser.open(&id, "edit").await;
    browser.open(&id, "respond").await;
    let shot = browser.screenshot("agentguard-approval-page-answers.png").await;
    eprintln!("screenshot: {}", shot.display());
    browser.button(&id, "approve").await.click().await.unwrap();
    assert!(first.await.unwrap().is_ok());

    // The grants view lists it, live.
    browser
        .until(
            "the grant is listed",
            "document.querySelectorAll('#grant-list li.grant').length === 1",
        )
        .await;
    let item = &grant_items(&browser).await[0];
    for shown in [
        "delete_file",
        "session s-42",
        "by alice",
        "used 0 times",
        "5 uses left",
        "until",
        "active",
    ] {
        assert!(item.contains(shown), "the grant shows {shown:?}: {item}");
    }
    assert!(item.contains(r#"only when path = { under = "./reports" }"#), "{item}");
    let grant = web.guard.store().grants().unwrap().remove(0);
    assert_eq!(grant.uses_left, Some(5));
    assert!(grant.expires_at_ms.is_some());

    // The next call in that session runs without a card.
    let second = web.call_echo("delete_file", json!({"path": "./reports/b.txt"}));
    assert_eq!(second.await.unwrap().unwrap(), json!({"path": "./reports/b.txt"}));
    assert!(web.nothing_parked(), "the grant let it through");
    browser
        .until(
            "the use is counted on the page",
            "document.querySelector('#grant-list li.grant').innerText.includes('used 1 time')",
        )
        .await;

    // Revoked from the page: the next call asks again.
    browser
        .client
        .find(Locator::Css("#grant-list li.grant button.revoke"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .until(
            "the grant shows revoked",
            "document.querySelector('#grant-list li.grant').innerText.includes('revoked') && \
             document.querySelector('#grant-list li.grant button.revoke') === null",
        )
        .await;
    let grant = web.guard.store().grants().unwrap().remove(0);
    assert_eq!(
        grant.revoked_by.as_deref(),
        Some("alice"),
        "the page's token names who revoked it"
    );
    let third = web.call_echo("delete_file", json!({"path": "./reports/c.txt"}));
    let asked = web.next_parked().await.request_id().clone();
    browser.until_card(&asked, true).await;
    browser.button(&asked, "deny").await.click().await.unwrap();
    assert!(third.await.unwrap().is_err());
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_progress_shows_on_the_page_and_moves_with_each_vote() {
    let policy = agentguard::policy::Policy::from_toml(
        r#"
        default = "classify"
        [[rule]]
        name = "payments need two of three"
        tools = ["charge_card"]
        action = "ask"
        approvers = ["alice", "bob", "carol"]
        quorum = 2
        "#,
    )
    .unwrap();
    let Some((browser, mut web)) =
        Browser::session_with(external(Duration::from_secs(120)).policy(policy), web::everyone).await
    else {
        return;
    };
    let call = web.call_echo("charge_card", json!({"amount": 900}));
    let parked = web.next_parked().await;
    let id = parked.request_id().clone();
    browser.until_card(&id, true).await;
    let text = browser.card_text(&id).await;
    assert!(
        text.contains("0 of 2 approvals, waiting for alice or bob or carol"),
        "{text}"
    );
    assert!(text.contains("alice, bob, carol"), "the approvers are named: {text}");
    assert!(!browser
        .in_card(&id, "button.edit-send")
        .await
        .is_enabled()
        .await
        .unwrap());
    assert!(!browser
        .in_card(&id, "button.respond-send")
        .await
        .is_enabled()
        .await
        .unwrap());
    assert!(!browser.in_card(&id, "select.scope").await.is_enabled().await.unwrap());

    // Bob votes elsewhere (the API): the card follows without a reload.
    let res = reqwest::Client::new()
        .post(web.url("resolve"))
        .bearer_auth(web::BOB)
        .json(&json!({"request_id": id, "approved": true, "params_digest": parked.params_digest()}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::ACCEPTED);
    browser
        .until(
            "the card shows bob's vote",
            &format!(
                "{}.querySelector('.progress').innerText.includes('1 of 2 approvals, waiting for alice or carol')",
                Browser::card(&id)
            ),
        )
        .await;
    assert!(browser.card_text(&id).await.contains("bob approved"));
    assert_eq!(web.state(&id), RequestState::Pending);

    // Alice's click is the second approval: the call runs.
    browser.button(&id, "approve").await.click().await.unwrap();
    assert_eq!(call.await.unwrap().unwrap(), json!({"amount": 900}));
    let decision = web.guard.store().get(&id).unwrap().unwrap().decision;
    assert_eq!(decision.actor.as_deref(), Some("bob, alice"));
    browser.until_card(&id, false).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vote_on_the_page_waits_for_the_others_and_a_second_click_is_not_possible() {
    let policy = agentguard::policy::Policy::from_toml(
        r#"
        default = "classify"
        [[rule]]
        name = "payments need two of three"
        tools = ["charge_card"]
        action = "ask"
        approvers = ["alice", "bob", "carol"]
        quorum = 2
        "#,
    )
    .unwrap();
    let Some((browser, mut web)) =
        Browser::session_with(external(Duration::from_secs(120)).policy(policy), web::everyone).await
    else {
        return;
    };
    let call = web.call_echo("charge_card", json!({"amount": 900}));
    let parked = web.next_parked().await;
    let id = parked.request_id().clone();
    browser.until_card(&id, true).await;
    browser.button(&id, "approve").await.click().await.unwrap();
    browser
        .until(
            "the page says the vote counted",
            &format!(
                "{card}.innerText.includes('vote recorded') && \
                 {card}.querySelector('.progress').innerText.includes('1 of 2 approvals, waiting for bob or carol')",
                card = Browser::card(&id)
            ),
        )
        .await;
    assert!(
        !browser.button(&id, "approve").await.is_enabled().await.unwrap(),
        "one vote per person"
    );
    assert_eq!(web.state(&id), RequestState::Pending);

    let res = reqwest::Client::new()
        .post(web.url("resolve"))
        .bearer_auth(web::CAROL)
        .json(&json!({"request_id": id, "approved": true, "params_digest": parked.params_digest()}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    assert!(call.await.unwrap().is_ok());
    browser.until_card(&id, false).await;
    browser.close().await;
}
