//! [`GatewayError`]: why the gateway could not start or serve.

use std::fmt;
use std::time::Duration;

use crate::config::ConfigError;

/// Why the gateway could not start or keep serving. Each says which server and what to do.
#[derive(Debug)]
#[non_exhaustive]
pub enum GatewayError {
    /// The config (file or flags) is unusable.
    Config(ConfigError),
    /// An upstream server's program could not be started.
    Spawn {
        /// The server's name.
        server: String,
        /// The command line.
        command: String,
        /// The operating system's error.
        error: String,
    },
    /// An upstream server did not complete the MCP handshake or its tool listing.
    Handshake {
        /// The server's name.
        server: String,
        /// What went wrong.
        error: String,
    },
    /// An upstream server did not answer in time.
    NoAnswer {
        /// The server's name.
        server: String,
        /// The request it did not answer (`initialize`, `tools/list`).
        what: &'static str,
        /// How long the gateway waited.
        after: Duration,
    },
    /// Two servers publish tools whose names collide.
    Collision {
        /// The tool name seen twice.
        tool: String,
    },
    /// Serving the client failed (the transport could not be opened, the address could not be bound).
    Serve(String),
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayError::Config(e) => write!(f, "{e}"),
            GatewayError::Spawn { server, command, error } => write!(
                f,
                "server `{server}`: cannot start `{command}`: {error} (is the program installed and on PATH?)"
            ),
            GatewayError::Handshake { server, error } => write!(f, "server `{server}`: MCP handshake failed: {error}"),
            GatewayError::NoAnswer { server, what, after } => write!(
                f,
                "server `{server}` did not answer {what} within {}s: check that it is an MCP server speaking on this \
                 transport, or raise --list-timeout",
                after.as_secs_f64()
            ),
            GatewayError::Collision { tool } => write!(
                f,
                "two servers publish a tool named `{tool}` after prefixing; rename one server in the config"
            ),
            GatewayError::Serve(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for GatewayError {}

impl From<ConfigError> for GatewayError {
    fn from(e: ConfigError) -> Self {
        GatewayError::Config(e)
    }
}
