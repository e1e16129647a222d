//! Store URLs: the one parser for `--store`, `AGENTGUARD_STORE` and [`open_store`], with the password masked in
//! everything it prints.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use super::{ApprovalStore, InMemoryStore, StoreError};

/// What a store URL accepts, for error messages.
const ACCEPTED: &str = "expected sqlite:PATH or postgres://user@host/db (or memory: for tests)";

/// A parsed store URL.
///
/// - `sqlite:PATH` (or `sqlite://PATH`): a `SqliteStore` file shared by processes on one host (feature `sqlite`);
/// - `postgres://user@host:port/db` (or `postgresql://`): a `PostgresStore` shared by hosts (feature `postgres`).
///   The optional `schema=NAME` query parameter is agentguard's own (the schema to keep the tables in);
///   `sslmode` (`disable`, the default; `prefer`, `require`, `verify-ca`, `verify-full`) and `sslrootcert=PATH` choose
///   TLS (see `PostgresStore`); every other parameter (`password`, `connect_timeout`, …) is passed to the
///   PostgreSQL client as written;
/// - `memory:`: a fresh [`InMemoryStore`], for tests.
///
/// Schemes are matched in any case. `Display` and `Debug` mask a password (in the user info or a `password=`
/// parameter) as `***`, and so does every error message, so a URL can be printed safely.
///
/// ```
/// use agentguard::store::StoreUrl;
///
/// let url: StoreUrl = "postgres://app:S3cr3t@db.internal/agentguard?schema=ops&sslmode=require".parse().unwrap();
/// assert_eq!(url.to_string(), "postgres://app:***@db.internal/agentguard?schema=ops&sslmode=require");
/// assert!(url.is_postgres());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    kind: Kind,
    /// The URL as given (trimmed), for [`Display`](fmt::Display) after masking.
    given: String,
}

// No Debug outside tests: `conn` may hold a password.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
enum Kind {
    Memory,
    Sqlite(PathBuf),
    Postgres {
        /// The URL for the PostgreSQL client: scheme in lower case, `schema=` taken out, everything else kept.
        conn: String,
        schema: Option<String>,
    },
}

impl StoreUrl {
    /// Parses a store URL; an error says what is accepted (with any password masked).
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let given = url.trim();
        let (scheme, rest) = given.split_once(':').ok_or_else(|| {
            StoreError::new(format!(
                "store URL {:?} has no scheme: {ACCEPTED}",
                mask_password(given)
            ))
        })?;
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "memory" if rest.is_empty() => Kind::Memory,
            "sqlite" => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.is_empty() {
                    return Err(StoreError::new(
                        "store URL `sqlite:` needs a file path, e.g. sqlite:/var/lib/agentguard.db",
                    ));
                }
                Kind::Sqlite(PathBuf::from(path))
            }
            scheme @ ("postgres" | "postgresql") => {
                let Some(after) = rest.strip_prefix("//") else {
                    return Err(StoreError::new(format!(
                        "store URL {:?} is not a PostgreSQL URL: write {scheme}://user@host:port/db",
                        mask_password(given)
                    )));
                };
                let (conn, schema) = split_schema(&format!("{scheme}://{after}"));
                Kind::Postgres { conn, schema }
            }
            _ => {
                // The scheme is named only when it is one (text before a `:` in a keyword string may hold a
                // password).
                let what = if is_scheme(scheme) {
                    format!("unknown store URL scheme {scheme:?}")
                } else {
                    "no store URL scheme".to_owned()
                };
                return Err(StoreError::new(format!(
                    "{what} in {:?}: {ACCEPTED}",
                    mask_password(given)
                )));
            }
        };
        Ok(StoreUrl {
            kind,
            given: given.to_owned(),
        })
    }

    /// Opens the store this URL names. A store whose feature is not compiled in is an error that names the feature.
    pub fn open(&self) -> Result<Arc<dyn ApprovalStore>, StoreError> {
        match &self.kind {
            Kind::Memory => Ok(Arc::new(InMemoryStore::new())),
            #[cfg(feature = "sqlite")]
            Kind::Sqlite(path) => Ok(Arc::new(super::SqliteStore::open(path)?)),
            #[cfg(not(feature = "sqlite"))]
            Kind::Sqlite(_) => Err(StoreError::new(
                "this build of agentguard has no sqlite store: enable the `sqlite` feature",
            )),
            #[cfg(feature = "postgres")]
            Kind::Postgres { .. } => Ok(Arc::new(self.connect_postgres()?)),
            #[cfg(not(feature = "postgres"))]
            Kind::Postgres { .. } => Err(StoreError::new(
                "this build of agentguard has no PostgreSQL store: enable the `postgres` feature",
            )),
        }
    }

    /// Opens the store this URL names only if it already exists, for tools that read or answer requests (the CLI):
    /// a SQLite path with no file, or a file or PostgreSQL schema without agentguard's tables, is an error naming
    /// it, and nothing is created. `memory:` is refused (a fresh in-memory store holds no one's requests).
    pub fn open_existing(&self) -> Result<Arc<dyn ApprovalStore>, StoreError> {
        match &self.kind {
            Kind::Memory => Err(StoreError::new(
                "store URL memory: names a store inside one process, with no requests of any agent: give the \
                 agents' store, sqlite:PATH or postgres://user@host/db",
            )),
            #[cfg(feature = "sqlite")]
            Kind::Sqlite(path) => Ok(Arc::new(super::SqliteStore::open_existing(path)?)),
            #[cfg(feature = "postgres")]
            Kind::Postgres { conn, schema } => Ok(Arc::new(super::PostgresStore::connect_existing(
                conn,
                schema.as_deref(),
            )?)),
            #[allow(unreachable_patterns)]
            _ => self.open(),
        }
    }

    /// Connects to the PostgreSQL store this URL names (e.g. to verify its audit table); an error for another kind.
    #[cfg(feature = "postgres")]
    pub fn connect_postgres(&self) -> Result<super::PostgresStore, StoreError> {
        match &self.kind {
            Kind::Postgres { conn, schema } => super::PostgresStore::connect(conn, schema.as_deref()),
            _ => Err(StoreError::new(format!("store URL {self} is not a PostgreSQL URL"))),
        }
    }

    /// `true` for a `postgres://` URL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.kind, Kind::Postgres { .. })
    }
}

impl FromStr for StoreUrl {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask_password(&self.given))
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({:?})", mask_password(&self.given))
    }
}

/// Opens a store from a URL, as the CLI's `--store` and `AGENTGUARD_STORE` take it; see [`StoreUrl`] for the forms.
/// Anything else is an error that lists what is accepted.
pub fn open_store(url: &str) -> Result<Arc<dyn ApprovalStore>, StoreError> {
    StoreUrl::parse(url)?.open()
}

/// Opens an existing store from a URL, as the CLI's read and answer commands do: see [`StoreUrl::open_existing`].
pub fn open_existing_store(url: &str) -> Result<Arc<dyn ApprovalStore>, StoreError> {
    StoreUrl::parse(url)?.open_existing()
}

/// Takes agentguard's own `schema=NAME` query parameter out of a PostgreSQL URL.
fn split_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("schema=") {
            Some(name) => {
                schema = Some(name.to_owned());
                false
            }
            None => true,
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, schema)
}

/// The URL with any password masked, for messages: `postgres://app:***@db/agentguard`. A password may sit in the
/// user info (and hold `:`, `/`, `?` or `@`), in a `password=` query parameter, or in a keyword/value string
/// (`host=db password=…`); all are masked.
pub(crate) fn mask_password(url: &str) -> String {
    // A keyword/value connection string (`host=db user=app password=…`), or anything without a URL scheme: mask
    // every `password=` value, whatever else it holds.
    let scheme_end = url.find(':').filter(|&i| is_scheme(&url[..i]));
    let Some(scheme_end) = scheme_end else {
        return mask_keywords(url);
    };
    let (scheme, rest) = (&url[..scheme_end], &url[scheme_end + 1..]);
    // `postgres://…`, but also misspellings such as `postgres:/…` or `postgres:…`: mask those too.
    let after_slashes = rest.trim_start_matches('/');
    let slashes = &rest[..rest.len() - after_slashes.len()];
    let rest = after_slashes;
    // The user info runs from the start to an `@`; a password may hold `:`, `/`, `?` and even `@`, and clients
    // differ on which `@` ends it. So everything from the first `:` to the last `@` is masked (masking too much is
    // safe; a host or query holds no `:` before an `@` in any URL we accept).
    let (shown_auth, after_auth) = match (rest.find(':'), rest.rfind('@')) {
        (Some(colon), Some(at)) if colon < at => (format!("{}:***", &rest[..colon]), &rest[at..]),
        _ => (String::new(), rest),
    };
    let (before_query, query) = match after_auth.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (after_auth, None),
    };
    let mut shown = format!("{scheme}:{slashes}{shown_auth}{before_query}");
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&params.join("&"));
    }
    shown
}

/// A URL scheme: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `password=…` values in a keyword/value string masked (quoted values too).
fn mask_keywords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_ignore_case(rest, "password") {
        let after = &rest[at + "password".len()..];
        let value = after.trim_start();
        let Some(value) = value.strip_prefix('=') else {
            out.push_str(&rest[..at + "password".len()]);
            rest = after;
            continue;
        };
        out.push_str(&rest[..at]);
        out.push_str("password=***");
        let value = value.trim_start();
        let end = if let Some(quoted) = value.strip_prefix('\'') {
            quoted.find('\'').map_or(value.len(), |i| i + 2)
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_read_in_any_case_and_every_postgres_parameter_but_schema_is_kept() {
        let url = StoreUrl::parse("  Postgres://app:pw@h:5433/db?schema=ops&sslmode=require&password=x ").unwrap();
        assert_eq!(
            url.kind,
            Kind::Postgres {
                conn: "postgres://app:pw@h:5433/db?sslmode=require&password=x".into(),
                schema: Some("ops".into())
            }
        );
        assert_eq!(
            StoreUrl::parse("SQLITE:///tmp/a.db").unwrap().kind,
            Kind::Sqlite("/tmp/a.db".into())
        );
        assert_eq!(StoreUrl::parse("memory:").unwrap().kind, Kind::Memory);
    }

    #[test]
    fn passwords_are_masked_in_display_debug_and_every_error() {
        let url = StoreUrl::parse("postgresql://app:S3/cr@t@h/db?Password=S3cr3t&sslrootcert=/ca.pem").unwrap();
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(!shown.contains("S3"), "{shown}");
            assert!(
                shown.contains("app:***@h/db") && shown.contains("Password=***"),
                "{shown}"
            );
        }
        for bad in [
            "postgres:/app:S3cr3t@h/db",
            "bogus://app:S3cr3t@h/db",
            "mysql://u:S3cr3t@h/db?password=S3cr3t",
        ] {
            let e = StoreUrl::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("S3cr3t"), "{e}");
        }
    }

    #[test]
    fn unknown_schemes_and_empty_paths_say_what_is_accepted() {
        for bad in ["bogus:x", "no-scheme", "memory:x"] {
            let e = StoreUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains("sqlite:PATH") && e.contains("postgres://"), "{bad}: {e}");
        }
        let e = StoreUrl::parse("sqlite:").unwrap_err().to_string();
        assert!(e.contains("needs a file path"), "{e}");
    }
}
