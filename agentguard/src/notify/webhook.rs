//! [`Webhook`]: a bounded queue in front of a background delivery thread.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{StatusCode, Url};
use tokio::sync::{mpsc, Semaphore};

use super::shape::WebhookFormat;
use super::signature::{sign, DELIVERY_HEADER, SIGNATURE_HEADER};
use crate::request::ApprovalRequest;

/// Default time one delivery attempt may take, connection included: 10 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of attempts per notification (the first and three retries).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// Default wait before the first retry; it doubles after each (0.5 s, 1 s, 2 s), up to 30 s.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(500);
/// Default number of notifications waiting for delivery; more are dropped (and counted, and reported).
pub const DEFAULT_QUEUE: usize = 1024;
/// Deliveries in flight at once, per webhook.
const CONCURRENCY: usize = 8;
/// The longest back-off between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why a [`Webhook`] could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum WebhookError {
    /// The URL does not parse, or is not `http` or `https`.
    BadUrl(String),
    /// The page URL does not parse, or is not `http` or `https`.
    BadPageUrl(String),
    /// The HTTP client or the delivery thread could not be started.
    Start(String),
}

impl fmt::Display for WebhookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebhookError::BadUrl(why) => write!(f, "bad webhook URL: {why}; give an http:// or https:// URL"),
            WebhookError::BadPageUrl(why) => write!(
                f,
                "bad page URL: {why}; give the http:// or https:// address of the approval page (e.g. \
                 https://approvals.example.com/agentguard/)"
            ),
            WebhookError::Start(why) => write!(f, "cannot start the webhook's delivery: {why}"),
        }
    }
}

impl std::error::Error for WebhookError {}

/// Configures a [`Webhook`]; made by [`Webhook::builder`].
#[derive(Clone)]
pub struct WebhookBuilder {
    url: String,
    format: WebhookFormat,
    secret: Option<Vec<u8>>,
    page_url: Option<String>,
    timeout: Duration,
    max_attempts: u32,
    backoff: Duration,
    queue: usize,
}

impl fmt::Debug for WebhookBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookBuilder")
            .field("url", &shown_url(&self.url))
            .field("format", &self.format)
            .field("secret", &self.secret.as_ref().map(|_| "[REDACTED]"))
            .field("page_url", &self.page_url)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("queue", &self.queue)
            .finish()
    }
}

impl WebhookBuilder {
    /// The message shape (default [`WebhookFormat::Json`]).
    pub fn format(mut self, format: WebhookFormat) -> Self {
        self.format = format;
        self
    }

    /// Signs every delivery with HMAC-SHA256 under `secret` (see [`verify_signature`](super::verify_signature)).
    /// An empty secret means no signature.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        let secret = secret.as_ref();
        self.secret = (!secret.is_empty()).then(|| secret.to_vec());
        self
    }

    /// The address of the approval page (`agentguard serve`'s or your app's `/agentguard/`): each message links to
    /// `<page_url>#<request_id>`, which opens the page on that request's card.
    pub fn page_url(mut self, page_url: impl Into<String>) -> Self {
        self.page_url = Some(page_url.into());
        self
    }

    /// How long one attempt may take, connecting included (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Attempts per notification, at least 1 (default [`DEFAULT_MAX_ATTEMPTS`]). A connection error, a timeout, a
    /// 5xx or a 429 answer is retried; any other 4xx is not (the receiver refused it).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Wait before the first retry, doubled after each, at most 30 s (default [`DEFAULT_BACKOFF`]).
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// Notifications waiting for delivery, at least 1 (default [`DEFAULT_QUEUE`]); more are dropped.
    pub fn queue(mut self, capacity: usize) -> Self {
        self.queue = capacity.max(1);
        self
    }

    /// Checks the URLs and starts the delivery thread.
    pub fn build(self) -> Result<Webhook, WebhookError> {
        let url = http_url(&self.url).map_err(WebhookError::BadUrl)?;
        let page_url = match &self.page_url {
            Some(page) => Some(http_url(page).map_err(WebhookError::BadPageUrl)?),
            None => None,
        };
        let client = client(self.timeout)?;
        let (tx, rx) = mpsc::channel(self.queue);
        let shared = Arc::new(Shared {
            url,
            host: shown_url(&self.url),
            format: self.format,
            secret: self.secret,
            page_url,
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            busy: Mutex::new(0),
            idle: Condvar::new(),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| WebhookError::Start(e.to_string()))?;
        let worker = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("agentguard-webhook".into())
            .spawn(move || runtime.block_on(deliver_all(worker, client, rx)))
            .map_err(|e| WebhookError::Start(e.to_string()))?;
        Ok(Webhook { shared, tx })
    }
}

/// A webhook that tells people a request is waiting: a signed POST to a URL (your receiver, Slack, ntfy), from a
/// background thread, never blocking or failing the agent's call. See the [module docs](super).
///
/// Hand it to [`GuardBuilder::notify_webhook`](crate::guard::GuardBuilder::notify_webhook), or call
/// [`notify`](Self::notify) yourself. Cloning is cheap; clones share the queue. The delivery thread ends when the last
/// clone is dropped and the queue is empty.
#[derive(Clone)]
pub struct Webhook {
    shared: Arc<Shared>,
    tx: mpsc::Sender<ApprovalRequest>,
}

struct Shared {
    url: Url,
    /// Scheme, host and port only: the path of a Slack webhook URL is its secret.
    host: String,
    format: WebhookFormat,
    secret: Option<Vec<u8>>,
    page_url: Option<Url>,
    max_attempts: u32,
    backoff: Duration,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    attempts: AtomicU64,
    /// Notifications queued or being delivered.
    busy: Mutex<usize>,
    idle: Condvar,
}

/// What a [`Webhook`] has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WebhookStats {
    /// Notifications the receiver accepted (a 2xx answer).
    pub delivered: u64,
    /// Notifications given up: attempts used up, a 4xx answer, or the request's deadline passed.
    pub failed: u64,
    /// Notifications dropped because the queue was full.
    pub dropped: u64,
    /// HTTP attempts made, retries included.
    pub attempts: u64,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.shared.host)
            .field("format", &self.shared.format)
            .field("signed", &self.shared.secret.is_some())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Webhook {
    /// A webhook posting to `url`; finish it with [`build`](WebhookBuilder::build).
    pub fn builder(url: impl Into<String>) -> WebhookBuilder {
        WebhookBuilder {
            url: url.into(),
            format: WebhookFormat::default(),
            secret: None,
            page_url: None,
            timeout: DEFAULT_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: DEFAULT_BACKOFF,
            queue: DEFAULT_QUEUE,
        }
    }

    /// Queues a notification about `request` and returns at once. A full queue drops it (reported on stderr and
    /// counted in [`stats`](Self::stats)); nothing here blocks, fails or panics.
    pub fn notify(&self, request: &ApprovalRequest) {
        *lock(&self.shared.busy) += 1;
        if let Err(e) = self.tx.try_send(request.clone()) {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            self.shared.done();
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "queue full",
                mpsc::error::TrySendError::Closed(_) => "its delivery thread has stopped",
            };
            report!(
                "agentguard: webhook {}: {why}, notification for request {} dropped",
                self.shared.host,
                request.request_id()
            );
        }
    }

    /// The link a message carries for `request`: `<page_url>#<request_id>`, or `None` without a page URL.
    pub fn link(&self, request: &ApprovalRequest) -> Option<String> {
        self.shared.link(request)
    }

    /// What this webhook has done so far.
    pub fn stats(&self) -> WebhookStats {
        let s = &self.shared;
        WebhookStats {
            delivered: s.delivered.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            attempts: s.attempts.load(Ordering::Relaxed),
        }
    }

    /// Blocks until every queued notification is delivered or given up, or `timeout` passes; `true` if all are done.
    /// For a clean shutdown (and tests). Do not call it from async code.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let busy = lock(&self.shared.busy);
        let (busy, _) = self
            .shared
            .idle
            .wait_timeout_while(busy, timeout, |busy| *busy > 0)
            .unwrap_or_else(|e| e.into_inner());
        *busy == 0
    }
}

impl Shared {
    fn link(&self, request: &ApprovalRequest) -> Option<String> {
        let mut url = self.page_url.clone()?;
        url.set_fragment(Some(request.request_id().as_str()));
        Some(url.into())
    }

    fn done(&self) {
        let mut busy = lock(&self.busy);
        *busy = busy.saturating_sub(1);
        if *busy == 0 {
            self.idle.notify_all();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The delivery loop: one task per notification, at most [`CONCURRENCY`] at once.
async fn deliver_all(shared: Arc<Shared>, client: reqwest::Client, mut rx: mpsc::Receiver<ApprovalRequest>) {
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    // A slot first, then a request: at most CONCURRENCY are taken off the queue, and the queue's capacity is all that
    // waits beyond them.
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let Some(request) = rx.recv().await else { break };
        let shared = Arc::clone(&shared);
        let client = client.clone();
        tasks.spawn(async move {
            deliver(&shared, &client, &request).await;
            shared.done();
            drop(slot);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// One notification: attempts with back-off until accepted, refused, out of attempts, or past the request's
/// deadline (nobody can answer it then).
async fn deliver(shared: &Shared, client: &reqwest::Client, request: &ApprovalRequest) {
    let link = shared.link(request);
    let body = shared.format.body(request, link.as_deref());
    let delivery = uuid::Uuid::new_v4().to_string();
    let mut wait = shared.backoff;
    let mut last = String::new();
    for attempt in 1..=shared.max_attempts {
        shared.attempts.fetch_add(1, Ordering::Relaxed);
        let mut post = client
            .post(shared.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(DELIVERY_HEADER, &delivery)
            .header("x-agentguard-event", WebhookFormat::EVENT);
        if let Some(secret) = &shared.secret {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            post = post.header(SIGNATURE_HEADER, sign(secret, t, &body));
        }
        let retry = match post.body(body.clone()).send().await {
            Ok(res) if res.status().is_success() => {
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(res) => {
                last = format!("the receiver answered {}", res.status());
                res.status().is_server_error() || res.status() == StatusCode::TOO_MANY_REQUESTS
            }
            Err(e) if e.is_timeout() => {
                last = "no answer within the timeout".to_owned();
                true
            }
            Err(e) => {
                last = error_chain(&e);
                true
            }
        };
        let past_deadline = SystemTime::now() + wait >= request.deadline();
        if !retry || attempt == shared.max_attempts || past_deadline {
            break;
        }
        tokio::time::sleep_until((Instant::now() + wait).into()).await;
        wait = (wait * 2).min(MAX_BACKOFF);
    }
    shared.failed.fetch_add(1, Ordering::Relaxed);
    report!(
        "agentguard: webhook {}: notification for request {} not delivered: {last}",
        shared.host,
        request.request_id()
    );
}

/// An error and its sources, without the URL (reqwest's `Display` includes it, and a Slack URL is a secret).
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err("it has no host".to_owned()),
        other => Err(format!("scheme {other:?} is not http or https")),
    }
}

/// Scheme, host and port of a URL, for logs and `Debug`.
fn shown_url(text: &str) -> String {
    match Url::parse(text) {
        Ok(url) => format!(
            "{}://{}",
            url.scheme(),
            url.authority().rsplit('@').next().unwrap_or_default()
        ),
        Err(_) => "(an invalid URL)".to_owned(),
    }
}

/// An HTTP client over rustls with the ring provider (the one agentguard's PostgreSQL TLS uses: no C toolchain
/// beyond cc) and the platform's certificate verifier. No redirects: a webhook that moved is an error to fix.
fn client(timeout: Duration) -> Result<reqwest::Client, WebhookError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| WebhookError::Start(format!("TLS: {e}")))?
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("agentguard/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| WebhookError::Start(e.to_string()))
}
