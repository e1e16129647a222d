//! Writes the gated function: same signature (return type wrapped in `Result<_, ActionDenied>`), arguments frozen
//! into a params snapshot, approval through the guard, a recheck of the arguments, then the original body in its
//! own closure so that its `return` and `?` keep their meaning.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ReturnType, Type};

use super::ast::Gated;
use crate::ty::find_impl_trait;

pub(crate) fn expand(g: &Gated<'_>) -> TokenStream {
    let f = g.original;
    let attrs = &f.attrs;
    let vis = &f.vis;
    let body = &f.block;
    let name = g.tool_name();
    let krate = &g.krate;
    let private = krate.private();

    let ret: Type = match &f.sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    let mut sig = f.sig.clone();
    sig.output = syn::parse_quote!(-> ::core::result::Result<#ret, #krate::ActionDenied>);
    // A closure's return type and a turbofish cannot name an `impl Trait`, at the top of the type or nested in it
    // (`Option<impl Iterator>`); let inference find the type then.
    let ret_is_opaque = find_impl_trait(&ret).is_some();
    let ret_annotation = if ret_is_opaque { quote!() } else { quote!(-> #ret) };

    let entries = g.args.iter().map(|arg| {
        let ident = arg.ident;
        let key = ident.to_string();
        if g.is_skipped(ident) {
            quote! {
                __agentguard_map.insert(
                    ::std::string::String::from(#key),
                    #private::serde_json::Value::String(
                        ::std::string::String::from(#private::SKIPPED),
                    ),
                );
            }
        } else {
            // Spanned on the argument's type: a type that is not Serialize is reported there, suggesting `skip`.
            let span = arg.ty.span();
            let private = krate.private_at(span);
            let value = quote_spanned!(span=> #private::GateArg::to_json(&#ident, #key));
            quote! {
                __agentguard_map.insert(::std::string::String::from(#key), #value?);
            }
        }
    });
    let build = quote! {
        || -> ::core::result::Result<#private::serde_json::Value, ::std::string::String> {
            let mut __agentguard_map = #private::serde_json::Map::new();
            #(#entries)*
            ::core::result::Result::Ok(#private::serde_json::Value::Object(__agentguard_map))
        }
    };

    let guard = match &g.options.guard {
        Some(expr) => quote! {
            let __agentguard_guard_src = &#expr;
            let __agentguard_guard = #private::Which::Named(#private::named_guard(__agentguard_guard_src));
        },
        None => quote! {
            let __agentguard_guard: #private::Which<'_> = #private::Which::Installed;
        },
    };
    let risk = match g.options.risk {
        Some(risk) => {
            let risk = krate.risk(risk);
            quote!(::core::option::Option::Some(#risk))
        }
        None => quote!(::core::option::Option::None),
    };
    let redact = if g.options.redact.is_empty() {
        quote!()
    } else {
        let keys = g.options.redact.iter().map(ToString::to_string);
        quote!(.redact_keys([#(#keys),*]))
    };

    let prologue = quote! {
        #guard
        let __agentguard_snapshot = match (#build)() {
            ::core::result::Result::Ok(__agentguard_params) => __agentguard_params,
            ::core::result::Result::Err(__agentguard_error) => {
                return ::core::result::Result::Err(#private::invalid_params(#name, __agentguard_error));
            }
        };
        let __agentguard_call = #krate::ToolCall::new(#name, __agentguard_snapshot) #redact;
    };
    // The body as an async block (not an async closure, whose call would borrow it and make the future `Send` only
    // for `Sync` arguments), typed by `typed_future` so that `?` inside it knows its error type.
    let async_body = if ret_is_opaque {
        quote!(async move #body)
    } else {
        quote!(#private::typed_future::<#ret, _>(async move #body))
    };
    let gated_body = if f.sig.asyncness.is_some() {
        quote! {
            #prologue
            let __agentguard_decided = #private::adecide(
                __agentguard_guard,
                __agentguard_call,
                #private::always(#risk),
            )
            .await?;
            let __agentguard_approval = __agentguard_decided.finish(::core::option::Option::Some(&#build))?;
            // Returned through `Ok(…)`, a coercion site, so a body returning `Box<Range<u32>>` fits a declared
            // `Box<dyn Iterator<…>>`.
            let __agentguard_out = #private::arun(__agentguard_guard, __agentguard_approval, #async_body).await?;
            ::core::result::Result::Ok(__agentguard_out)
        }
    } else {
        quote! {
            #prologue
            let __agentguard_approval = #private::approve(
                __agentguard_guard,
                __agentguard_call,
                #private::always(#risk),
                ::core::option::Option::Some(&#build),
            )?;
            let __agentguard_out =
                #private::run(__agentguard_guard, __agentguard_approval, move || #ret_annotation #body)?;
            ::core::result::Result::Ok(__agentguard_out)
        }
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            #gated_body
        }
    }
}
