//! Which upstream MCP servers the gateway fronts: one from the command line, or several from a TOML file.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;

use serde::Deserialize;

/// Between a server's name and its tool's name in multi-server mode: `fs__write_file` is `write_file` of server `fs`.
pub const SEPARATOR: &str = "__";

/// How to reach one upstream MCP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamSpec {
    /// A program started as a child process, spoken to over its stdin and stdout.
    Command {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Environment variables set for it (on top of the gateway's own environment).
        env: BTreeMap<String, String>,
    },
    /// A server speaking MCP's streamable HTTP transport at this URL.
    Url(String),
}

impl UpstreamSpec {
    /// A child-process server with no extra environment.
    pub fn command(command: impl Into<String>, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        UpstreamSpec::Command {
            command: command.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: BTreeMap::new(),
        }
    }

    /// The name a single server gets when none is given: the command's file name, or the URL's host and port, with
    /// every character other than letters, digits, `-` and `_` made a `-` (`127.0.0.1:9000` → `127-0-0-1-9000`).
    pub fn default_name(&self) -> String {
        let name = match self {
            UpstreamSpec::Command { command, .. } => Path::new(command)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| command.clone()),
            UpstreamSpec::Url(url) => url
                .split_once("://")
                .map_or(url.as_str(), |(_, rest)| rest)
                .split(['/', '?', '#'])
                .next()
                .unwrap_or(url)
                .to_owned(),
        };
        let mut clean: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        while clean.contains(SEPARATOR) {
            clean = clean.replace(SEPARATOR, "_");
        }
        if clean.is_empty() {
            "upstream".to_owned()
        } else {
            clean
        }
    }
}

impl fmt::Display for UpstreamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamSpec::Command { command, args, .. } => {
                write!(f, "{command}")?;
                for arg in args {
                    write!(f, " {arg}")?;
                }
                Ok(())
            }
            UpstreamSpec::Url(url) => f.write_str(url),
        }
    }
}

/// One upstream server and the name its calls are recorded under ([`ToolCall::server`](agentguard::ToolCall::server)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// The server's name: in the audit, on the approval page, in a policy's `servers = [...]`, and (in multi-server
    /// mode) the prefix of its tools' names.
    pub name: String,
    /// How to reach it.
    pub upstream: UpstreamSpec,
}

/// The gateway's config file: several upstream servers, each a `[server.NAME]` table.
///
/// ```toml
/// [server.fs]
/// command = "npx"
/// args = ["-y", "@modelcontextprotocol/server-filesystem", "/home/me/notes"]
///
/// [server.tickets]
/// url = "http://127.0.0.1:9000/mcp"
///
/// [server.git]
/// command = "uvx"
/// args = ["mcp-server-git"]
/// env = { GIT_AUTHOR_NAME = "agent" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The servers, in name order.
    pub servers: Vec<ServerSpec>,
}

/// A config file that could not be used: which file, and what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: BTreeMap<String, RawServer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    url: Option<String>,
}

impl Config {
    /// Reads and checks a config file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(format!("cannot read the config file {}: {e}", path.display())))?;
        Config::parse(&text).map_err(|e| ConfigError::new(format!("{}: {e}", path.display())))
    }

    /// Parses and checks a config file's text: at least one server; each has `command` or `url`, not both; names
    /// are non-empty, made of letters, digits, `-` and `_`, and contain no [`SEPARATOR`].
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::new(e.to_string()))?;
        if raw.server.is_empty() {
            return Err(ConfigError::new(
                "no servers: add a [server.NAME] table with `command` (and `args`) or `url`",
            ));
        }
        let mut servers = Vec::new();
        for (name, server) in raw.server {
            check_name(&name)?;
            let upstream = match (server.command, server.url) {
                (Some(command), None) => {
                    if command.trim().is_empty() {
                        return Err(ConfigError::new(format!("[server.{name}]: `command` is empty")));
                    }
                    UpstreamSpec::Command {
                        command,
                        args: server.args,
                        env: server.env,
                    }
                }
                (None, Some(url)) => {
                    if !server.args.is_empty() || !server.env.is_empty() {
                        return Err(ConfigError::new(format!(
                            "[server.{name}]: `args` and `env` are for a `command`, not a `url`"
                        )));
                    }
                    check_url(&url).map_err(|e| ConfigError::new(format!("[server.{name}]: {e}")))?;
                    UpstreamSpec::Url(url)
                }
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(format!(
                        "[server.{name}]: give `command` or `url`, not both"
                    )))
                }
                (None, None) => {
                    return Err(ConfigError::new(format!(
                        "[server.{name}]: give `command` (and `args`) to start the server, or `url` to reach it"
                    )))
                }
            };
            servers.push(ServerSpec { name, upstream });
        }
        Ok(Config { servers })
    }
}

/// A server name: what a policy and the audit show, and (in multi-server mode) the tools' prefix.
pub(crate) fn check_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::new("a server name is empty"));
    }
    if name.contains(SEPARATOR) {
        return Err(ConfigError::new(format!(
            "server name `{name}` contains `{SEPARATOR}`, the separator between a server's name and its tools' names"
        )));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(ConfigError::new(format!(
            "server name `{name}`: use letters, digits, `-` and `_` only (it prefixes tool names)"
        )));
    }
    Ok(())
}

/// An upstream URL: http or https.
pub(crate) fn check_url(url: &str) -> Result<(), ConfigError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "`{url}` is not an http:// or https:// URL (the streamable HTTP endpoint, e.g. http://127.0.0.1:8000/mcp)"
        )))
    }
}

/// A tool's (or prompt's) name as the client sees it in multi-server mode: `fs__write_file`. Prefixed names of two
/// servers can never collide: server names are unique and hold no [`SEPARATOR`], so the first separator always ends
/// the server's name (`a` + `b__c` is `a__b__c`, and there can be no server `a__b`).
pub(crate) fn prefixed(server: &str, tool: &str) -> String {
    format!("{server}{SEPARATOR}{tool}")
}

/// Finds duplicates among names.
pub(crate) fn first_duplicate<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut seen = HashSet::new();
    names.into_iter().find(|n| !seen.insert(*n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_command_and_url_servers() {
        let config = Config::parse(
            r#"
            [server.fs]
            command = "npx"
            args = ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]
            env = { A = "1" }
            [server.web]
            url = "http://127.0.0.1:9000/mcp"
            "#,
        )
        .unwrap();
        assert_eq!(config.servers.len(), 2);
        assert_eq!(config.servers[0].name, "fs");
        assert!(matches!(&config.servers[0].upstream, UpstreamSpec::Command { env, .. } if env["A"] == "1"));
        assert_eq!(
            config.servers[1].upstream,
            UpstreamSpec::Url("http://127.0.0.1:9000/mcp".into())
        );
    }

    #[test]
    fn refuses_a_server_with_both_command_and_url() {
        let e = Config::parse("[server.x]\ncommand = \"a\"\nurl = \"http://h/mcp\"\n").unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
    }

    #[test]
    fn refuses_a_server_with_neither() {
        let e = Config::parse("[server.x]\nargs = [\"a\"]\n").unwrap_err();
        assert!(e.to_string().contains("give `command`"), "{e}");
    }

    #[test]
    fn refuses_a_name_holding_the_separator() {
        let e = Config::parse("[server.a__b]\ncommand = \"a\"\n").unwrap_err();
        assert!(e.to_string().contains("separator"), "{e}");
    }

    #[test]
    fn refuses_unknown_keys_and_empty_files() {
        assert!(Config::parse("[server.x]\ncommand = \"a\"\nargz = []\n").is_err());
        assert!(Config::parse("").unwrap_err().to_string().contains("no servers"));
    }

    #[test]
    fn refuses_a_url_that_is_not_http() {
        let e = Config::parse("[server.x]\nurl = \"ftp://h\"\n").unwrap_err();
        assert!(e.to_string().contains("http://"), "{e}");
    }

    #[test]
    fn default_names() {
        assert_eq!(
            UpstreamSpec::command("/usr/bin/mcp-server-git", ["x"]).default_name(),
            "mcp-server-git"
        );
        assert_eq!(
            UpstreamSpec::Url("http://127.0.0.1:9/mcp".into()).default_name(),
            "127-0-0-1-9"
        );
        assert_eq!(
            UpstreamSpec::command("./my__server.py", ["x"]).default_name(),
            "my_server-py"
        );
        for spec in [
            UpstreamSpec::Url("https://mcp.example.com/x".into()),
            UpstreamSpec::command("a b.c", [""; 0]),
        ] {
            assert!(check_name(&spec.default_name()).is_ok(), "{}", spec.default_name());
        }
    }

    #[test]
    fn finds_duplicates() {
        assert_eq!(first_duplicate(["a", "b", "a"]), Some("a"));
        assert_eq!(first_duplicate(["a", "b"]), None);
    }
}
