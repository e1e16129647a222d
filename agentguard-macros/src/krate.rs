//! The one place that decides how generated code names the runtime crate: `::agentguard`, unless the user writes
//! `crate = path` (as serde's `#[serde(crate = "...")]`). Every path the macros emit into the runtime starts with a
//! [`CratePath`].

use std::cell::RefCell;
use std::path::PathBuf;

use agentguard_classify::Risk;
use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::{LitStr, Path};

use crate::ctxt::Ctxt;

/// The path of the runtime crate in generated code; `quote!(#krate::ToolCall)`.
pub(crate) struct CratePath(Path);

impl CratePath {
    /// `given` by `crate = path`, else `::agentguard`.
    ///
    /// Without `crate = path`, a package whose Cargo.toml renames agentguard (`guard = { package = "agentguard",
    /// ... }`) and has no dependency named `agentguard` cannot reach `::agentguard`: that is reported here, with
    /// `fix(<the new name>)` saying what to write, instead of one unresolved path per generated item.
    pub(crate) fn new(cx: &Ctxt, given: Option<Path>, fix: impl FnOnce(&str) -> String) -> Self {
        if let Some(path) = given {
            return CratePath(path);
        }
        if let Some(name) = renamed_here() {
            cx.error_at(
                Span::call_site(),
                format!(
                    "agentguard is a dependency named `{name}` in this package's Cargo.toml, so the generated code \
                     cannot reach it as `::agentguard`: {}",
                    fix(&name)
                ),
            );
        }
        CratePath(syn::parse_quote!(::agentguard))
    }

    /// `#krate::__private`: what only generated code calls.
    pub(crate) fn private(&self) -> TokenStream {
        quote!(#self::__private)
    }

    /// [`private`](Self::private) with every token at `span`, for code spanned on the user's tokens so that its
    /// errors point there.
    pub(crate) fn private_at(&self, span: Span) -> TokenStream {
        self.private()
            .into_iter()
            .map(|mut token| {
                token.set_span(span);
                token
            })
            .collect()
    }

    /// `<crate>::<item>` as an intra-doc link target (no leading `::`).
    pub(crate) fn doc_path(&self, item: &str) -> String {
        let path = self.0.to_token_stream().to_string().replace(' ', "");
        format!("{}::{item}", path.trim_start_matches("::"))
    }

    /// The string serde's own `#[serde(crate = "...")]` wants: serde, as re-exported by the runtime.
    pub(crate) fn serde_crate(&self) -> LitStr {
        let path = self.0.to_token_stream().to_string().replace(' ', "");
        LitStr::new(&format!("{path}::__private::serde"), Span::call_site())
    }

    /// The string schemars' `#[schemars(crate = "...")]` wants: schemars, as re-exported by the runtime.
    pub(crate) fn schemars_crate(&self) -> LitStr {
        let path = self.0.to_token_stream().to_string().replace(' ', "");
        LitStr::new(&format!("{path}::__private::schemars"), Span::call_site())
    }

    /// `#krate::Risk::<Variant>`.
    pub(crate) fn risk(&self, risk: Risk) -> TokenStream {
        let variant = syn::Ident::new(
            match risk {
                Risk::Irreversible => "Irreversible",
                Risk::ExternalSend => "ExternalSend",
                Risk::SystemExecution => "SystemExecution",
                Risk::DataMutation => "DataMutation",
                Risk::ManuallyFlagged => "ManuallyFlagged",
                Risk::SuspiciousName => "SuspiciousName",
            },
            Span::call_site(),
        );
        quote!(#self::Risk::#variant)
    }
}

impl ToTokens for CratePath {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.0.to_tokens(tokens);
    }
}

/// The name the package being compiled gives agentguard, when its Cargo.toml renames it and has no dependency named
/// `agentguard`. Read once per package (a proc-macro server may expand several).
fn renamed_here() -> Option<String> {
    thread_local! {
        static CACHE: RefCell<Option<(PathBuf, Option<String>)>> = const { RefCell::new(None) };
    }
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((cached_dir, name)) = &*cache {
            if *cached_dir == dir {
                return name.clone();
            }
        }
        let name = std::fs::read_to_string(dir.join("Cargo.toml"))
            .ok()
            .and_then(|m| renamed(&m));
        *cache = Some((dir, name.clone()));
        name
    })
}

/// The dependency key under which `manifest` (a Cargo.toml) takes the `agentguard` package, when that key is not
/// `agentguard` itself and no dependency is keyed `agentguard`. A line scanner for the usual shapes
/// (`guard = { package = "agentguard", ... }`, `guard.package = "agentguard"`, `[dependencies.guard]` with
/// `package = "agentguard"`, in any dependency table), not a TOML parser: it only adds a hint, so when unsure it
/// answers `None` and the user gets the compiler's unresolved-path error alone.
fn renamed(manifest: &str) -> Option<String> {
    enum Table {
        Other,
        Deps,
        Dep(String),
    }
    let mut table = Table::Other;
    let mut keys: Vec<String> = Vec::new();
    let mut renamed: Vec<String> = Vec::new();
    // A dependency's inline table that goes on past its line, and how deep in braces we are.
    let mut open: Option<(String, i32)> = None;
    let agentguard = |value: &str| matches!(unquote(value), Some("agentguard"));
    let inline_package = |value: &str| {
        let flat: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        flat.contains("package=\"agentguard\"") || flat.contains("package='agentguard'")
    };
    let depth = |s: &str| s.matches('{').count() as i32 - s.matches('}').count() as i32;

    for line in manifest.lines() {
        let line = strip_comment(line).trim();
        if let Some((key, d)) = &mut open {
            if inline_package(line) {
                renamed.push(key.clone());
            }
            *d += depth(line);
            if *d <= 0 {
                open = None;
            }
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_start_matches('[').trim_end_matches(']');
            let parts = split_dotted(header);
            let at = match parts.first().map(String::as_str) {
                Some("target") => 2,
                _ => 0,
            };
            table = match parts.get(at).map(String::as_str) {
                Some("dependencies" | "dev-dependencies" | "build-dependencies" | "dev_dependencies")
                | Some("build_dependencies") => match &parts[at + 1..] {
                    [] => Table::Deps,
                    [key] => {
                        keys.push(key.clone());
                        Table::Dep(key.clone())
                    }
                    _ => Table::Other,
                },
                _ => Table::Other,
            };
            continue;
        }
        let Some((key, value)) = split_key_value(line) else {
            continue;
        };
        let key = split_dotted(key);
        match &table {
            Table::Other => {}
            Table::Deps => {
                let Some(name) = key.first() else { continue };
                keys.push(name.clone());
                match &key[1..] {
                    [] if inline_package(value) => renamed.push(name.clone()),
                    [] if depth(value) > 0 => open = Some((name.clone(), depth(value))),
                    [field] if field == "package" && agentguard(value) => renamed.push(name.clone()),
                    _ => {}
                }
            }
            Table::Dep(name) => {
                if key == ["package"] && agentguard(value) {
                    renamed.push(name.clone());
                }
            }
        }
    }
    if keys.iter().any(|k| k == "agentguard") {
        return None;
    }
    renamed.into_iter().find(|k| k != "agentguard")
}

/// The line without a `#` comment (a `#` inside a string stays).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// `key = value` at the first `=` outside quotes.
fn split_key_value(line: &str) -> Option<(&str, &str)> {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '=') => return Some((line[..i].trim(), line[i + 1..].trim())),
            _ => {}
        }
    }
    None
}

/// `a."b.c".d` → `[a, b.c, d]`.
fn split_dotted(key: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut quote = None;
    for c in key.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '.') => parts.push(std::mem::take(&mut part).trim().to_owned()),
            _ => part.push(c),
        }
    }
    parts.push(part.trim().to_owned());
    parts
}

/// The text of a one-line TOML string.
fn unquote(value: &str) -> Option<&str> {
    let value = value.trim();
    ["\"", "'"]
        .iter()
        .find_map(|q| value.strip_prefix(q).and_then(|v| v.strip_suffix(q)))
}

#[cfg(test)]
mod tests {
    use super::renamed;

    #[test]
    fn an_inline_table_rename_is_found() {
        let toml = "[package]\nname = \"app\"\n\n[dependencies]\nserde = \"1\"\nguard = { package = \"agentguard\", \
                    path = \"../agentguard\" } # renamed\n";
        assert_eq!(renamed(toml).as_deref(), Some("guard"));
    }

    #[test]
    fn dotted_keys_dependency_tables_and_target_tables_are_found() {
        let dotted = "[dev-dependencies]\nguard.package = \"agentguard\"\nguard.version = \"0.1\"\n";
        assert_eq!(renamed(dotted).as_deref(), Some("guard"));
        let table = "[dependencies.guard]\nversion = \"0.1\"\npackage = 'agentguard'\n";
        assert_eq!(renamed(table).as_deref(), Some("guard"));
        let target = "[target.'cfg(unix)'.dependencies]\ng = { version = \"0.1\", package = \"agentguard\" }\n";
        assert_eq!(renamed(target).as_deref(), Some("g"));
        let multi_line = "[dependencies]\nguard = {\n  version = \"0.1\",\n  package = \"agentguard\",\n}\n";
        assert_eq!(renamed(multi_line).as_deref(), Some("guard"));
    }

    #[test]
    fn nothing_is_reported_without_a_rename_or_when_agentguard_is_also_a_name() {
        for toml in [
            "[dependencies]\nagentguard = \"0.1\"\n",
            "[dependencies]\nagentguard = { path = \"../agentguard\", features = [\"http\"] }\n",
            "[dependencies]\nguard = { package = \"agentguard-ext\" }\n",
            "[dependencies]\nagentguard = \"0.1\"\n[dev-dependencies]\nguard = { package = \"agentguard\" }\n",
            "[package]\nname = \"x\" # package = \"agentguard\"\n[dependencies]\nguard = { workspace = true }\n",
            "[workspace.dependencies]\nguard = { package = \"agentguard\" }\n",
            "",
        ] {
            assert_eq!(renamed(toml), None, "{toml}");
        }
    }
}
