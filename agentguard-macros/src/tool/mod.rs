//! `#[derive(Tool)]`: attr → ast → valid → expand.

mod ast;
mod attr;
mod expand;
mod valid;

use proc_macro2::TokenStream;

use crate::ctxt::Ctxt;

/// The items derived for the enum, or every error found. A derive adds items next to the enum, which stays as
/// written, so on error there is nothing to fall back on: only the errors are emitted.
pub(crate) fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let input = syn::parse2::<syn::DeriveInput>(input)?;
    let cx = Ctxt::new();
    let parsed = ast::ToolEnum::from_input(&cx, &input);
    if let Some(parsed) = &parsed {
        valid::check(&cx, parsed);
    }
    cx.check()?;
    Ok(parsed.map_or_else(TokenStream::new, |parsed| expand::expand(&parsed)))
}
