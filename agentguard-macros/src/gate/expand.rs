//! Writes the gated function: same signature (return type wrapped in `Result<_, ActionDenied>`), arguments frozen
//! into a params snapshot, approval through the guard, a recheck of the arguments, the arguments read back from an
//! approver's edit (or edits refused up front, saying which argument cannot be read back), then the original body in
//! its own closure so that its `return` and `?` keep their meaning.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ReturnType, Type};

use super::ast::{EditRule, Gated};
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
    let edits = Edits::of(g);
    // An argument read back from an edit is bound again, with its `mut`; the parameter itself is only moved.
    for input in &mut sig.inputs {
        if let syn::FnArg::Typed(pat_type) = input {
            if let syn::Pat::Ident(p) = &mut *pat_type.pat {
                if edits.reread.iter().any(|(arg, _)| *arg.ident == p.ident) {
                    p.mutability = None;
                }
            }
        }
    }
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

    let edit_rule = edits.rule(g);
    let prologue = quote! {
        #guard
        let __agentguard_snapshot = match (#build)() {
            ::core::result::Result::Ok(__agentguard_params) => __agentguard_params,
            ::core::result::Result::Err(__agentguard_error) => {
                return ::core::result::Result::Err(#private::invalid_params(#name, __agentguard_error));
            }
        };
        let __agentguard_call = #krate::ToolCall::new(#name, __agentguard_snapshot) #redact;
        #edit_rule
    };
    let reread = edits.reread(g);
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
            // The approval (borrowed by an edit's re-read) lives in a block that ends before the run is awaited: a
            // local borrowed in an async fn keeps its room in the future across every later await, and the future
            // is as large as its largest state (the run itself is boxed by `arun`).
            let __agentguard_run = {
                let __agentguard_approval = __agentguard_decided.finish(::core::option::Option::Some(&#build))?;
                #reread
                #private::arun(__agentguard_guard, __agentguard_approval, #async_body)
            };
            // Returned through `Ok(…)`, a coercion site, so a body returning `Box<Range<u32>>` fits a declared
            // `Box<dyn Iterator<…>>`.
            let __agentguard_out = __agentguard_run.await?;
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
            #reread
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

/// How a gated call takes an approver's edit of its params: the arguments read back from it, or why it is refused.
struct Edits<'g, 'a> {
    /// Why edits are refused whatever the types turn out to be (an argument borrows, or is an `impl Trait`).
    refused: Vec<String>,
    /// The arguments read back from an edit when their type is `DeserializeOwned`, with why edits are refused when it
    /// is not; empty when `refused` is not.
    reread: Vec<(&'g super::ast::Arg<'a>, String)>,
}

impl<'g, 'a> Edits<'g, 'a> {
    fn of(g: &'g Gated<'a>) -> Self {
        let mut refused = Vec::new();
        let mut reread = Vec::new();
        for arg in &g.args {
            match g.edit_rule(arg) {
                EditRule::Skipped => {}
                EditRule::Refused(why) => refused.push(why),
                EditRule::IfDeserialize(why) => reread.push((arg, why)),
            }
        }
        if !refused.is_empty() {
            reread.clear();
        }
        Edits { refused, reread }
    }

    /// Sets the edit rule on `__agentguard_call`: refused, or checked by a function that reads every editable
    /// argument from the edit (and refuses unknown names and changed skipped ones).
    fn rule(&self, g: &Gated<'_>) -> TokenStream {
        let private = g.krate.private();
        if !self.refused.is_empty() {
            let why = self.refused.join("; ");
            return quote! {
                let __agentguard_call = __agentguard_call.refuse_edits(#why);
            };
        }
        let function = g.original.sig.ident.to_string();
        let editable: Vec<String> = self.reread.iter().map(|(arg, _)| arg.ident.to_string()).collect();
        let skipped: Vec<String> = g.options.skip.iter().map(ToString::to_string).collect();
        // Spanned on the argument's type: a type whose `Deserialize` borrows behind a hidden lifetime (`Foo` for
        // `Foo<'a>`) is reported there.
        let refusals = self.reread.iter().map(|(arg, why)| {
            let (ident, span) = (arg.ident, arg.ty.span());
            let private = g.krate.private_at(span);
            quote_spanned!(span=> (&#private::EditArg::of(&#ident)).refusal(#why))
        });
        let checks = self.reread.iter().map(|(arg, _)| {
            let (ty, key, span) = (arg.ty, arg.ident.to_string(), arg.ty.span());
            let private = g.krate.private_at(span);
            quote_spanned!(span=> (&#private::EditArg::<#ty>::new()).check(__agentguard_edit, #key)?;)
        });
        quote! {
            let __agentguard_call = {
                #[allow(unused_imports)]
                use #private::{EditKeep as _, EditRead as _};
                #private::with_edits(
                    __agentguard_call,
                    #private::edit_refusal(&[#(#refusals),*]),
                    |__agentguard_edit: &#private::serde_json::Value| -> ::core::result::Result<(), ::std::string::String> {
                        #private::edit_names(__agentguard_edit, #function, &[#(#editable),*], &[#(#skipped),*])?;
                        #(#checks)*
                        ::core::result::Result::Ok(())
                    },
                )
            };
        }
    }

    /// After approval: each editable argument bound again, to its value in the approver's edit if there is one.
    fn reread(&self, g: &Gated<'_>) -> TokenStream {
        if self.reread.is_empty() {
            return TokenStream::new();
        }
        let private = g.krate.private();
        let rebinds = self.reread.iter().map(|(arg, _)| {
            let ident = arg.ident;
            let key = ident.to_string();
            let mutability = arg.mutable.then(|| quote!(mut));
            // An argument the body does not use is still used: it is part of the approved params.
            quote! {
                #[allow(unused_variables)]
                let #mutability #ident = match (&#private::EditArg::of(&#ident)).reread(__agentguard_edit, #key, #ident) {
                    ::core::result::Result::Ok(__agentguard_value) => __agentguard_value,
                    ::core::result::Result::Err(__agentguard_error) => {
                        return ::core::result::Result::Err(
                            #private::refuse_edited(__agentguard_guard, __agentguard_approval, __agentguard_error),
                        );
                    }
                };
            }
        });
        quote! {
            let __agentguard_edit = #private::edited_params(&__agentguard_approval);
            #[allow(unused_imports)]
            use #private::{EditKeep as _, EditRead as _};
            #(#rebinds)*
        }
    }
}
