// `impl Trait` anywhere in an argument or the return type, nested too: the gated function compiles, with the return
// type left to inference where it is opaque and named where it is not (so `?` in the body still knows its error).
use std::sync::LazyLock;

use agentguard::{gate, ActionDenied, AgentGuard};

static GUARD: LazyLock<AgentGuard> = LazyLock::new(|| AgentGuard::callback(|_| true).no_audit().build());

#[gate(guard = GUARD)]
fn nested_arg(tag: Option<impl serde::Serialize>, tags: Vec<(u8, impl serde::Serialize)>) -> usize {
    usize::from(tag.is_some()) + tags.len()
}

#[gate(guard = GUARD, skip(callback))]
fn fn_by_ref(callback: &impl Fn() -> u8) -> u8 {
    callback()
}

#[gate(guard = GUARD)]
fn nested_return(n: u32) -> Option<impl Iterator<Item = u32>> {
    Some(0..n)
}

#[gate(guard = GUARD)]
fn return_in_binding(n: u32) -> Box<dyn Iterator<Item = impl std::fmt::Display>> {
    Box::new(0..n)
}

#[gate(guard = GUARD)]
fn return_with_question_mark(n: &str) -> Result<Box<impl Iterator<Item = u32>>, std::num::ParseIntError> {
    let n: u32 = n.parse()?;
    Ok(Box::new(0..n))
}

#[gate(guard = GUARD)]
async fn async_nested_return(n: u32) -> Option<impl Iterator<Item = u32>> {
    Some(0..n)
}

// An `impl` inside an expression of the type is not an `impl Trait`: the return type is still named.
#[gate(guard = GUARD)]
fn impl_block_in_array_length() -> Result<[u8; { struct Four; impl Four { const N: usize = 4; } Four::N }], String> {
    let bytes = "abcd".as_bytes().try_into().map_err(|_| String::from("not four bytes"))?;
    Ok(bytes)
}

fn main() {
    let _: Result<usize, ActionDenied> = nested_arg(Some(1), vec![(1, "a")]);
    let _: Result<u8, ActionDenied> = fn_by_ref(&|| 1);
    let _ = nested_return(3).map(|it| it.map(Iterator::count));
    let _ = return_in_binding(3).map(|it| it.count());
    let _ = return_with_question_mark("3").map(|r| r.map(|it| it.count()));
    let _ = async_nested_return(3);
    let _: Result<Result<[u8; 4], String>, ActionDenied> = impl_block_in_array_length();
}
