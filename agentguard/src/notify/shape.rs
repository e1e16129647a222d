//! The message shapes a webhook can send: agentguard's own JSON, a Slack incoming-webhook message, an ntfy message.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::request::ApprovalRequest;
use crate::text::escape_hidden;

/// What a webhook POSTs. Every shape carries the **redacted** request (secrets masked, as on the page) and, when
/// [`page_url`](super::WebhookBuilder::page_url) is set, the link to the request's card.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WebhookFormat {
    /// `{"event": "approval_requested", "request": <ApprovalRequest as JSON>, "link": "<page>#<id>" | null}`:
    /// for your own receiver.
    #[default]
    Json,
    /// A Slack incoming-webhook message (`text` plus `blocks`: the tool, risk, agent, session, reason, the params
    /// as a code block, and an "Open the request" button). Point the URL at the Slack webhook (it is a secret: it
    /// never appears in agentguard's logs or `Debug`).
    Slack,
    /// An ntfy JSON publish (`topic`, `title`, `message`, `priority`, `tags`, `click`, a view action). Point the URL
    /// at the ntfy server's root (`https://ntfy.sh/`), not at the topic: the topic is in the body.
    Ntfy {
        /// The ntfy topic.
        topic: String,
    },
}

/// Largest share of a message the params may take, in bytes (Slack caps a section at 3,000 characters and ntfy a
/// message at 4,096 bytes); longer params are cut with a note.
const MAX_PARAMS_TEXT: usize = 2000;

impl WebhookFormat {
    /// The `event` of the JSON shape.
    pub(crate) const EVENT: &'static str = "approval_requested";

    /// The body for `request`, with `link` to its card.
    pub(crate) fn body(&self, request: &ApprovalRequest, link: Option<&str>) -> Vec<u8> {
        let value = match self {
            WebhookFormat::Json => json!({ "event": Self::EVENT, "request": request, "link": link }),
            WebhookFormat::Slack => slack(request, link),
            WebhookFormat::Ntfy { topic } => ntfy(topic, request, link),
        };
        serde_json::to_vec(&value).unwrap_or_default()
    }
}

fn slack(req: &ApprovalRequest, link: Option<&str>) -> Value {
    let tool = mrkdwn(req.tool());
    let mut lines = vec![
        format!("*Approval needed:* {tool}"),
        format!("*Risk:* {}", req.risk().label()),
    ];
    for (label, value) in [
        ("Agent", req.agent_id()),
        ("Session", req.session_id()),
        ("Server", req.server()),
        ("Reason", req.reason()),
    ] {
        if let Some(value) = value {
            lines.push(format!("*{label}:* {}", mrkdwn(value)));
        }
    }
    lines.push(format!("*Expires:* {}", expires(req)));
    let params = mrkdwn(&params_text(req)).replace("```", "`\u{200B}``");
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": lines.join("\n")}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("```{params}```")}}),
    ];
    if let Some(link) = link {
        blocks.push(json!({"type": "actions", "elements": [{
            "type": "button",
            "text": {"type": "plain_text", "text": "Open the request"},
            "url": link,
        }]}));
    }
    blocks.push(json!({"type": "context", "elements": [
        {"type": "mrkdwn", "text": format!("agentguard request {}", req.request_id())}
    ]}));
    let text = match link {
        Some(link) => format!(
            "Approval needed: {tool} ({}) <{link}|Open the request>",
            req.risk().label()
        ),
        None => format!("Approval needed: {tool} ({})", req.risk().label()),
    };
    json!({ "text": text, "blocks": blocks })
}

fn ntfy(topic: &str, req: &ApprovalRequest, link: Option<&str>) -> Value {
    let mut lines = vec![format!("Risk: {}", req.risk().label())];
    for (label, value) in [
        ("Agent", req.agent_id()),
        ("Session", req.session_id()),
        ("Server", req.server()),
        ("Reason", req.reason()),
    ] {
        if let Some(value) = value {
            lines.push(format!("{label}: {}", escape_hidden(value)));
        }
    }
    lines.push(format!("Expires: {}", expires(req)));
    lines.push(format!("Params: {}", params_text(req)));
    let mut message = json!({
        "topic": topic,
        "title": format!("Approval needed: {}", escape_hidden(req.tool())),
        "message": lines.join("\n"),
        "priority": 4,
        "tags": ["warning"],
    });
    if let Some(link) = link {
        message["click"] = json!(link);
        message["actions"] = json!([{ "action": "view", "label": "Open the request", "url": link }]);
    }
    message
}

/// The redacted params as one line of JSON, hidden characters marked, cut to [`MAX_PARAMS_TEXT`].
fn params_text(req: &ApprovalRequest) -> String {
    let text = escape_hidden(&req.params().to_string()).into_owned();
    if text.len() <= MAX_PARAMS_TEXT {
        return text;
    }
    let mut end = MAX_PARAMS_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (cut; the page shows them all)", &text[..end])
}

/// "in 299 s (at 1767225600, Unix time)".
fn expires(req: &ApprovalRequest) -> String {
    let at = req.deadline().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let left = req
        .deadline()
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .as_secs();
    format!("in {left} s (at {at}, Unix time)")
}

/// Text a model wrote, safe in Slack's mrkdwn: hidden characters marked, and `&`, `<`, `>` escaped so it cannot
/// make a link or a mention (`<!channel>`).
fn mrkdwn(text: &str) -> String {
    escape_hidden(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
