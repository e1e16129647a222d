//! Procedural macros for [agentguard](https://docs.rs/agentguard): `#[gate]` and `#[derive(Tool)]`.
//!
//! Use them through the runtime crate (`agentguard::gate`, `agentguard::Tool`). Each macro is split the same way:
//! `attr` declares its options on the one attribute grammar both share (`attr.rs`), `ast` borrows the item and keeps
//! its spans, `valid` checks what the grammar alone cannot, `expand` writes the code. All errors of one item are
//! reported in one compile, and on error `#[gate]` still emits the original function so the user sees one error,
//! not a cascade.
//!
//! Generated code names the runtime crate `::agentguard`, or what `crate = path` says (one place decides:
//! `krate.rs`), and reaches its internals only through `agentguard::__private`.
#![forbid(unsafe_code)]

use proc_macro::TokenStream;

mod attr;
mod ctxt;
mod gate;
mod krate;
mod tool;
mod ty;

/// Routes a function through an `AgentGuard`: its arguments are frozen into a params snapshot, a person approves,
/// and only then does the body run. The return type `R` becomes `Result<R, agentguard::ActionDenied>`.
///
/// Options: `guard = <expr>`, `name = "..."`, `risk = "irreversible" | "external_send" | "system_execution" |
/// "data_mutation"`, `skip(arg, ...)`, `redact(arg, ...)`, `crate = path`. See the `agentguard` crate docs.
///
/// # Edits
///
/// An approver may approve with edited params (`Resolution::edit`). When every argument that is not skipped has a
/// type that is `serde::de::DeserializeOwned` (`String`, `u64`, `PathBuf`, your own `Deserialize` struct, a type
/// parameter bounded by `DeserializeOwned`), the edit is checked against those types when it is taken (an argument
/// that does not fit, an unknown name: the call is denied, `edit_rejected`, saying what does not fit) and the body runs
/// with each argument read back from the edit by name. The arguments as called are still checked against the params
/// the approver was shown. A function with an argument that cannot be read back from JSON (`&str`, `&Path`, an
/// `impl Trait`, a type that is not `Deserialize`) refuses edits up front: its requests say why
/// (`ApprovalRequest::edit_refused`, e.g. "argument `to` of `send` is a `&str`, which cannot be read back from JSON:
/// take an owned type (String) to let approvers edit it"), and an edit of them is answered `NotAllowedHere`.
///
/// A skipped argument (`skip(arg)`) is not part of the params: it keeps the value it was called with and cannot be
/// edited (an edit may leave out its placeholder or keep it, never change it). A type whose `Deserialize` borrows
/// behind a lifetime it does not write (`Token` for `Token<'a>`) is an error at that argument: write the lifetime
/// (`Token<'_>`, then edits are refused) or take an owned type.
///
/// # `crate = path`
///
/// The generated code names the runtime crate `::agentguard`. When your Cargo.toml renames the dependency
/// (`guard = { package = "agentguard", version = "..." }`), or you reach agentguard through a re-export, say where
/// it is: `#[guard::gate(crate = guard)]`. The path is written bare (`crate = guard`, `crate = ::guard`,
/// `crate = crate::deps::agentguard`) or, as in serde's `#[serde(crate = "...")]`, as a string
/// (`crate = "guard"`). Without it, a package whose Cargo.toml renames agentguard gets one error saying which
/// `crate = ...` to write.
#[proc_macro_attribute]
pub fn gate(attr: TokenStream, item: TokenStream) -> TokenStream {
    gate::expand(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Implements `agentguard::Tool` for an enum of tool calls and generates its `<Enum>Handler` and
/// `<Enum>AsyncHandler` traits. Variant options: `#[tool(name = "...")]`, `#[tool(risk = "...")]`,
/// `#[tool(dangerous)]`, `#[tool(safe)]`. Enum options: `#[tool(crate = path)]`, `#[tool(schema)]`.
///
/// # Edits
///
/// An approver may approve a gated variant with edited params (`Resolution::edit`): they must parse into the
/// variant's args struct (its fields, no unknown ones), or the call is denied (`edit_rejected`, with the path of what
/// does not fit) and the handler never runs. The handler method receives the edited arguments in its `Approval`
/// (`approval.edited()` says who edited and what ran). A variant whose handler takes its fields rather than an
/// `Approval` (one its declaration and name do not gate) refuses edits: it would not see them.
///
/// # `schema`
///
/// `#[tool(schema)]` on the enum also implements `agentguard::tool::ToolDefinitions` (needs agentguard's `schema`
/// feature, else one error at the option): each variant's name, doc comment, the JSON Schema of its fields (schemars,
/// with their doc comments and `#[serde(...)]` attributes) and MCP annotations from its risk. Every field type must
/// implement `schemars::JsonSchema`; one that does not is an error at that field, naming it.
///
/// # `crate = path`
///
/// As for `#[gate]`: when agentguard is renamed in your Cargo.toml or re-exported, put `#[tool(crate = path)]` on
/// the enum (`crate = guard` or `crate = "guard"`):
///
/// ```ignore
/// #[derive(guard::Tool, serde::Serialize, serde::Deserialize)]
/// #[tool(crate = guard)]
/// enum SupportTool {
///     ReadCustomer { id: u64 },
///     #[tool(risk = "irreversible")]
///     DeleteCustomer { id: u64 },
/// }
/// ```
#[proc_macro_derive(Tool, attributes(tool, serde))]
pub fn derive_tool(input: TokenStream) -> TokenStream {
    tool::expand(input.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
