//! Procedural macros for [agentguard](https://docs.rs/agentguard): `#[gate]` and `#[derive(Tool)]`.
//!
//! Use them through the runtime crate (`agentguard::gate`, `agentguard::Tool`), which they expand against with
//! absolute `::agentguard::…` paths. Each macro is split the same way: `attr` declares its options on the one
//! attribute grammar both share (`attr.rs`), `ast` borrows the item and keeps its spans, `valid` checks what the
//! grammar alone cannot, `expand` writes the code. All errors of one item are reported in one compile, and on error
//! the original item is still emitted so the user sees one error, not a cascade.
#![forbid(unsafe_code)]

use proc_macro::TokenStream;

mod attr;
mod ctxt;
mod gate;
mod tool;
mod ty;

/// Routes a function through an `AgentGuard`: its arguments are frozen into a params snapshot, a person approves,
/// and only then does the body run. The return type `R` becomes `Result<R, agentguard::ActionDenied>`.
///
/// Options: `guard = <expr>`, `name = "..."`, `risk = "irreversible" | "external_send" | "system_execution" |
/// "data_mutation"`, `skip(arg, ...)`, `redact(arg, ...)`. See the `agentguard` crate docs.
#[proc_macro_attribute]
pub fn gate(attr: TokenStream, item: TokenStream) -> TokenStream {
    gate::expand(attr.into(), item.into()).into()
}

/// Implements `agentguard::Tool` for an enum of tool calls and generates its `<Enum>Handler` and
/// `<Enum>AsyncHandler` traits. Variant options: `#[tool(name = "...")]`, `#[tool(risk = "...")]`,
/// `#[tool(dangerous)]`, `#[tool(safe)]`.
#[proc_macro_derive(Tool, attributes(tool, serde))]
pub fn derive_tool(input: TokenStream) -> TokenStream {
    tool::expand(input.into()).into()
}
