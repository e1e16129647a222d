//! `#[derive(Tool)]`.

mod ast;
mod attr;
mod expand;
mod valid;

use proc_macro2::TokenStream;

use crate::ctxt::Ctxt;

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let input = match syn::parse2::<syn::DeriveInput>(input) {
        Ok(i) => i,
        Err(e) => return e.into_compile_error(),
    };
    let cx = Ctxt::new();
    let parsed = ast::ToolEnum::from_input(&cx, &input);
    if let Some(parsed) = &parsed {
        valid::check(&cx, parsed);
    }
    // A derive adds items next to the enum, which stays as written; on error, emit only the errors.
    match (cx.check(), parsed) {
        (Ok(()), Some(parsed)) => expand::expand(&parsed),
        (Err(e), _) => e.into_compile_error(),
        (Ok(()), None) => TokenStream::new(),
    }
}
