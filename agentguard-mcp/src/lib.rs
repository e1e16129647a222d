//! The agentguard MCP gateway: put agentguard in front of any MCP server, for any MCP client.
//!
//! The gateway is an MCP server to the client (over stdio or streamable HTTP) and an MCP client to one or several
//! upstream servers (child processes over stdio, or streamable HTTP URLs). Everything passes through unchanged
//! except `tools/call`: each call becomes a [`ToolCall`](agentguard::ToolCall) with the server's name, gated by the
//! guard (policy, the server's annotations as a fallback — see [`gating_for`] — then the approval mode), and is
//! forwarded with the frozen arguments only if allowed. A denied call is a tool result with `isError: true` and the
//! denial in words, not a protocol error.
//!
//! Built on rmcp 3.11, the official Rust MCP SDK. The `agentguard mcp` command (agentguard-cli) is the usual way to
//! run it; [`run`] is what it calls.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod error;
mod gateway;
mod run;
mod upstream;

pub use config::{Config, ConfigError, ServerSpec, UpstreamSpec, SEPARATOR};
pub use error::GatewayError;
pub use gateway::{denial_text, gating_for, Gateway, GatewayOptions};
pub use run::{build_guard, http_service, run, serve_stdio, RunOptions};
