//! Notifications (feature `webhook`): tell people that a request is waiting, by a signed HTTP POST.
//!
//! ```no_run
//! use std::time::Duration;
//! use agentguard::notify::{Webhook, WebhookFormat};
//! use agentguard::AgentGuard;
//!
//! # fn run() -> Result<(), agentguard::notify::WebhookError> {
//! let hook = Webhook::builder("https://hooks.slack.com/services/T000/B000/XXXX")
//!     .format(WebhookFormat::Slack)
//!     .page_url("https://approvals.example.com/agentguard/") // each message links to the request's card
//!     .secret(std::env::var("AGENTGUARD_WEBHOOK_SECRET").unwrap_or_default())
//!     .build()?;
//! let guard = AgentGuard::external()
//!     .notify_webhook(hook)                  // composes with .on_request(...): both run
//!     .timeout(Duration::from_secs(600))
//!     .build();
//! # Ok(()) }
//! ```
//!
//! A notification never blocks or fails the agent's call: [`Webhook::notify`] puts the request on a bounded queue
//! and returns at once; a background thread (one per webhook, with its own small tokio runtime) delivers it with a
//! timeout per attempt and bounded retries with exponential back-off. When the queue is full the notification is
//! dropped and reported on stderr; [`Webhook::stats`] counts what was delivered, given up and dropped.
//!
//! The link in a message opens the approval page on that request's card (`<page_url>#<request_id>`). Opening it
//! changes nothing: the fragment never reaches the server, and approving still takes the page's token and a click.
//!
//! # Verifying a delivery
//!
//! With a [`secret`](WebhookBuilder::secret), every POST carries
//! `X-AgentGuard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` (the scheme Stripe uses),
//! and `X-AgentGuard-Delivery: <id>` (the same id on every retry of one notification, for de-duplication). A receiver
//! recomputes the HMAC over the timestamp, a dot and the raw body bytes, compares in constant time, and refuses a
//! timestamp more than a few minutes old (a replayed delivery). [`verify_signature`] does all three.

mod shape;
mod signature;
mod webhook;

pub use shape::WebhookFormat;
pub use signature::{verify_signature, SignatureError, DELIVERY_HEADER, SIGNATURE_HEADER};
pub use webhook::{
    Webhook, WebhookBuilder, WebhookError, WebhookStats, DEFAULT_BACKOFF, DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE,
    DEFAULT_TIMEOUT,
};
