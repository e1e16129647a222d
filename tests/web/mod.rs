//! A real approval server on a loopback port, over an external guard, for the HTTP and browser tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use agentguard::guard::GuardBuilder;
use agentguard::http::{ApprovalApi, ServeLimits};
use agentguard::{ActionDenied, AgentGuard, ApprovalRequest, ToolCall};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Alice's token. Tests use it as the credential the page and the API clients present.
pub const ALICE: &str = "alice-token-0123456789abcdef";

/// Bob's, Carol's and Dave's tokens, for the tests of quorum requests (add them with [`Web::start_with`]).
pub const BOB: &str = "bob-token-0123456789abcdef";
pub const CAROL: &str = "carol-token-0123456789abcdef";
pub const DAVE: &str = "dave-token-0123456789abcdef";

/// A token whose actor is the agent the tests' calls come from (`support-bot`): it may not answer its own requests.
pub const BOT: &str = "bot-token-0123456789abcdef";

/// The tokens above, as an API configuration: alice (already there), bob, carol, dave, and support-bot.
pub fn everyone(api: ApprovalApi) -> ApprovalApi {
    api.token(BOB, "bob")
        .token(CAROL, "carol")
        .token(DAVE, "dave")
        .token(BOT, "support-bot")
}

/// The server, the guard its agent calls through, and the requests the guard has parked, in order.
pub struct Web {
    /// `http://127.0.0.1:PORT/agentguard/`
    pub base: String,
    /// `127.0.0.1:PORT`, for raw TCP clients.
    pub addr: SocketAddr,
    pub guard: AgentGuard,
    pub parked: mpsc::UnboundedReceiver<ApprovalRequest>,
}

impl Web {
    /// Starts a server for an external guard built from `builder` (timeout etc. already set).
    pub async fn start(builder: GuardBuilder<agentguard::guard::mode::External>) -> Web {
        Self::start_with(builder, |api| api).await
    }

    /// Like [`start`](Self::start), with the API configured further by `configure`.
    pub async fn start_with(
        builder: GuardBuilder<agentguard::guard::mode::External>,
        configure: impl FnOnce(ApprovalApi) -> ApprovalApi,
    ) -> Web {
        Self::start_limited(builder, configure, ServeLimits::default()).await
    }

    /// Like [`start_with`](Self::start_with), served by `agentguard::http::serve` with `limits`.
    pub async fn start_limited(
        builder: GuardBuilder<agentguard::guard::mode::External>,
        configure: impl FnOnce(ApprovalApi) -> ApprovalApi,
        limits: ServeLimits,
    ) -> Web {
        let (tx, parked) = mpsc::unbounded_channel();
        let guard = builder
            .on_request(move |req| {
                let _ = tx.send(req.clone());
            })
            .build();
        let app = configure(ApprovalApi::for_guard(&guard).token(ALICE, "alice"))
            .router()
            .expect("a valid configuration");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(agentguard::http::serve(listener, app, limits));
        Web {
            base: format!("http://{addr}/agentguard/"),
            addr,
            guard,
            parked,
        }
    }

    /// The URL of a route: `url("pending")`.
    pub fn url(&self, route: &str) -> String {
        format!("{}{route}", self.base)
    }

    /// Starts an agent call of `tool` through the guard; the call's result (`"ran"` if its executor ran) comes out
    /// of the handle.
    pub fn call(&self, tool: &str, params: Value) -> JoinHandle<Result<&'static str, ActionDenied>> {
        let guard = self.guard.clone();
        let call = ToolCall::new(tool, params).agent_id("support-bot").session_id("s-42");
        tokio::spawn(async move { guard.aexecute(call, |_, _| async { "ran" }).await })
    }

    /// Starts `call` through the guard; its executor returns the params it was given, so a test sees what ran.
    pub fn run(&self, call: ToolCall) -> JoinHandle<Result<Value, ActionDenied>> {
        let guard = self.guard.clone();
        tokio::spawn(async move { guard.aexecute(call, |_, params| async move { params }).await })
    }

    /// Like [`call`](Self::call), but the result is the params the executor ran with.
    pub fn call_echo(&self, tool: &str, params: Value) -> JoinHandle<Result<Value, ActionDenied>> {
        self.run(ToolCall::new(tool, params).agent_id("support-bot").session_id("s-42"))
    }

    /// `true` when the guard has parked nothing since the last [`next_parked`](Self::next_parked). The guard tells
    /// `on_request` as it parks, before its call can return, so after a call returned this is exact.
    pub fn nothing_parked(&mut self) -> bool {
        self.parked.try_recv().is_err()
    }

    /// Where the request is in its life, as the store says.
    pub fn state(&self, id: &agentguard::RequestId) -> agentguard::store::RequestState {
        self.guard
            .store()
            .get(id)
            .unwrap()
            .expect("a known request")
            .decision
            .state
    }

    /// The next request parked by the guard.
    pub async fn next_parked(&mut self) -> ApprovalRequest {
        tokio::time::timeout(Duration::from_secs(30), self.parked.recv())
            .await
            .expect("a request is parked within 30 s")
            .expect("the guard is alive")
    }
}
