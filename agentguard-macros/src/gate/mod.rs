//! `#[gate]`: attr → ast → valid → expand.

mod ast;
mod attr;
mod expand;
mod valid;

use proc_macro2::TokenStream;
use quote::quote;

use crate::ctxt::Ctxt;

/// The gated function. On an error in the attribute or the function, the errors followed by the original item, so
/// the user sees those errors and not a cascade of "cannot find function" at every call site (thiserror's
/// `fallback.rs`): that is why this never returns `Err`, whose tokens would replace the item.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let options = attr::parse(&cx, args);
    let func = match syn::parse2::<syn::ItemFn>(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            cx.syn_error(not_a_function(&item));
            return Ok(fallback(cx, item));
        }
    };
    let gated = ast::Gated::from_fn(&cx, &func, options);
    valid::check(&cx, &gated);
    if cx.check_ref() {
        return Ok(fallback(cx, item));
    }
    Ok(expand::expand(&gated))
}

/// The errors, then the original item.
fn fallback(cx: Ctxt, item: TokenStream) -> TokenStream {
    let err = cx.check().err().map(syn::Error::into_compile_error);
    quote!(#err #item)
}

fn not_a_function(item: &TokenStream) -> syn::Error {
    let mut tokens = item.clone().into_iter();
    // Point at the item's keyword (`struct`, `trait`, …) when there is one.
    let span = tokens
        .find(|t| matches!(t, proc_macro2::TokenTree::Ident(_)))
        .map_or_else(proc_macro2::Span::call_site, |t| t.span());
    syn::Error::new(
        span,
        "#[gate] goes on a function with a body (a free fn, or a method in an impl block); for an enum of tool \
         calls use #[derive(agentguard::Tool)]",
    )
}
