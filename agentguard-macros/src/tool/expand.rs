//! Writes `impl Tool`, the `<Enum>Handler` / `<Enum>AsyncHandler` traits and their `Dispatch` impls, and the
//! hidden args structs that parse (and snapshot) each variant's fields.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::ast::{ToolEnum, ToolVariant, VariantGating};

pub(crate) fn expand(tools: &ToolEnum<'_>) -> TokenStream {
    let input = tools.original;
    let krate = &tools.krate;
    let private = krate.private();
    let serde_crate = krate.serde_crate();
    let ident = &input.ident;
    let vis = &input.vis;
    let handler = format_ident!("{}Handler", ident);
    let async_handler = format_ident!("{}AsyncHandler", ident);

    let names: Vec<&str> = tools.variants.iter().map(|v| v.name.as_str()).collect();
    let patterns: Vec<TokenStream> = tools.variants.iter().map(|v| pattern(ident, v)).collect();

    let name_arms = tools.variants.iter().zip(&patterns).map(|(v, pat)| {
        let name = &v.name;
        quote!(#pat => #name)
    });
    let gating_arms = tools.variants.iter().zip(&patterns).map(|(v, pat)| {
        let gating = match v.gating() {
            VariantGating::Always(risk) => {
                let risk = krate.risk(risk);
                quote!(#krate::guard::Gating::Always(#risk))
            }
            VariantGating::Never => quote!(#krate::guard::Gating::Never),
            VariantGating::Auto { .. } => quote!(#krate::guard::Gating::Auto),
        };
        quote!(#pat => #gating)
    });

    let mut helpers = Vec::new();
    let mut public_args = Vec::new();
    let mut params_arms = Vec::new();
    let mut edit_arms = Vec::new();
    let mut parse_arms = Vec::new();
    let mut handler_methods = Vec::new();
    let mut async_handler_methods = Vec::new();
    let mut dispatch_arms = Vec::new();
    let mut async_dispatch_arms = Vec::new();
    let mut schema_items = Vec::new();
    let mut definitions = Vec::new();
    let schemars_crate = krate.schemars_crate();

    for v in &tools.variants {
        let vident = &v.original.ident;
        let name = &v.name;
        // A gated tool's args are a public struct, `<Enum><Variant>`: its handler method receives them inside an
        // Approval. A safe tool's stay hidden (they only parse).
        let args_ty = if v.takes_approval() {
            format_ident!("{}{}", ident, vident)
        } else {
            format_ident!("__AgentguardArgs{}", vident)
        };
        let ref_ty = format_ident!("__AgentguardRef{}", vident);
        let fields: Vec<_> = v.fields.iter().map(|f| f.ident).collect();
        let types: Vec<_> = v.fields.iter().map(|f| f.ty).collect();
        let serde_attrs: Vec<TokenStream> = v
            .fields
            .iter()
            .map(|f| {
                let attrs = &f.serde_attrs;
                quote!(#(#attrs)*)
            })
            .collect();
        let bound: Vec<_> = (0..fields.len())
            .map(|i| format_ident!("__agentguard_f{}", i))
            .collect();
        let binding = if v.fields.is_empty() && matches!(v.original.fields, syn::Fields::Unit) {
            quote!(#ident::#vident)
        } else {
            quote!(#ident::#vident { #(#fields: #bound),* })
        };

        if v.takes_approval() {
            let always_ask = matches!(v.gating(), VariantGating::Always(_));
            let doc = format!(
                " The arguments of tool `{name}` (`{ident}::{vident}`), as its handler method receives them in an \
                 [`Approval`]({}).",
                krate.doc_path("Approval")
            );
            public_args.push(quote! {
                #[doc = #doc]
                #[derive(#private::serde::Serialize, #private::serde::Deserialize)]
                #[serde(crate = #serde_crate, deny_unknown_fields)]
                #vis struct #args_ty {
                    #( #serde_attrs pub #fields: #types, )*
                }

                #[automatically_derived]
                impl #krate::tool::ToolArgs for #args_ty {
                    const NAME: &'static str = #name;
                    const ALWAYS_ASK: bool = #always_ask;
                }
            });
        } else {
            helpers.push(quote! {
                #[derive(#private::serde::Deserialize)]
                #[serde(crate = #serde_crate, deny_unknown_fields)]
                #[allow(non_camel_case_types)]
                struct #args_ty {
                    #( #serde_attrs #fields: #types, )*
                }
            });
        }
        helpers.push(quote! {
            #[derive(#private::serde::Serialize)]
            #[serde(crate = #serde_crate)]
            #[allow(non_camel_case_types, dead_code)] // a `skip_serializing` field is never read here
            struct #ref_ty<'__agentguard> {
                #( #serde_attrs #fields: &'__agentguard #types, )*
                #[serde(skip)]
                __agentguard_marker: ::core::marker::PhantomData<&'__agentguard ()>,
            }
        });
        params_arms.push(quote! {
            #binding => #private::finite_json(&#ref_ty {
                #(#fields: #bound,)*
                __agentguard_marker: ::core::marker::PhantomData,
            })
        });
        // How an approver's edit is checked: a gated variant's handler gets its args from the approved (edited)
        // snapshot, so an edit must parse into them; an ungated variant's handler takes the fields the agent sent,
        // so it would not see an edit: refused up front.
        let pat = pattern(ident, v);
        edit_arms.push(if v.takes_approval() {
            quote!(#pat => __agentguard_call.check_edits(#private::edit_fits::<#args_ty>))
        } else {
            let why = format!(
                "tool `{name}` is not gated by its declaration, so its handler takes the fields the agent sent (not an \
                 Approval) and would not see an edit: approve or deny it as shown (to let approvers edit it, mark the \
                 variant #[tool(dangerous)] or give it a risk)"
            );
            quote!(#pat => __agentguard_call.refuse_edits(#why))
        });
        let build = if matches!(v.original.fields, syn::Fields::Unit) {
            quote!(#ident::#vident)
        } else {
            quote!(#ident::#vident { #(#fields: __agentguard_args.#fields),* })
        };
        parse_arms.push(quote! {
            #name => {
                let __agentguard_args: #args_ty = #private::parse_args(#name, __agentguard_params)?;
                let _ = &__agentguard_args;
                ::core::result::Result::Ok(#build)
            }
        });

        // Tool definitions (feature `schema`): a params struct with the fields' docs and serde attributes for schemars,
        // and a check per field, spanned on its type, whose error names the field.
        let schema_ty = format_ident!("__AgentguardSchema{}", vident);
        let field_docs: Vec<TokenStream> = v
            .fields
            .iter()
            .map(|f| {
                let docs = &f.docs;
                quote!(#(#docs)*)
            })
            .collect();
        // Each field's schema goes through a unit type of its own (`#[schemars(with = ...)]`) whose `JsonSchema` impl
        // delegates to the field's type through a local trait: a type without a schema fails that one bound, at the
        // field's type, with a message naming the field (not also inside schemars' derive).
        let mut field_types = Vec::new();
        for (i, f) in v.fields.iter().enumerate() {
            let ty = f.ty;
            let via = format_ident!("__AgentguardField{}{}", vident, i);
            let message = format!(
                "field `{}` of tool `{name}` has no JSON Schema: `{{Self}}` does not implement `schemars::JsonSchema`",
                f.ident
            );
            let note = "#[tool(schema)] describes every field to the model: derive `schemars::JsonSchema` for this \
                        type (`#[derive(schemars::JsonSchema)]`), or implement it";
            let trait_name = format_ident!("__AgentguardHasSchema{}{}", vident, i);
            let sc = quote!(#private::schemars);
            let delegate = |method: TokenStream| quote_spanned!(ty.span()=> <#ty as #trait_name>::#method);
            let (name_m, id_m, inline_m, schema_m, non_opt_m, is_opt_m) = (
                delegate(quote!(name())),
                delegate(quote!(id())),
                delegate(quote!(inline())),
                delegate(quote!(schema(generator))),
                delegate(quote!(non_optional(generator))),
                delegate(quote!(is_option())),
            );
            schema_items.push(quote! {
                #[diagnostic::on_unimplemented(message = #message, label = "this field's type has no JSON Schema", note = #note)]
                #[allow(non_camel_case_types)]
                trait #trait_name {
                    fn name() -> ::std::borrow::Cow<'static, str>;
                    fn id() -> ::std::borrow::Cow<'static, str>;
                    fn inline() -> bool;
                    fn schema(generator: &mut #sc::SchemaGenerator) -> #sc::Schema;
                    fn non_optional(generator: &mut #sc::SchemaGenerator) -> #sc::Schema;
                    fn is_option() -> bool;
                }
                impl<__AgentguardT: ?::core::marker::Sized + #sc::JsonSchema> #trait_name for __AgentguardT {
                    fn name() -> ::std::borrow::Cow<'static, str> { <__AgentguardT as #sc::JsonSchema>::schema_name() }
                    fn id() -> ::std::borrow::Cow<'static, str> { <__AgentguardT as #sc::JsonSchema>::schema_id() }
                    fn inline() -> bool { <__AgentguardT as #sc::JsonSchema>::inline_schema() }
                    fn schema(generator: &mut #sc::SchemaGenerator) -> #sc::Schema {
                        <__AgentguardT as #sc::JsonSchema>::json_schema(generator)
                    }
                    fn non_optional(generator: &mut #sc::SchemaGenerator) -> #sc::Schema {
                        <__AgentguardT as #sc::JsonSchema>::_schemars_private_non_optional_json_schema(generator)
                    }
                    fn is_option() -> bool { <__AgentguardT as #sc::JsonSchema>::_schemars_private_is_option() }
                }
                #[allow(non_camel_case_types)]
                struct #via;
                impl #sc::JsonSchema for #via {
                    fn schema_name() -> ::std::borrow::Cow<'static, str> { #name_m }
                    fn schema_id() -> ::std::borrow::Cow<'static, str> { #id_m }
                    fn inline_schema() -> bool { #inline_m }
                    fn json_schema(generator: &mut #sc::SchemaGenerator) -> #sc::Schema { #schema_m }
                    fn _schemars_private_non_optional_json_schema(generator: &mut #sc::SchemaGenerator) -> #sc::Schema {
                        #non_opt_m
                    }
                    fn _schemars_private_is_option() -> bool { #is_opt_m }
                }
            });
            field_types.push(syn::LitStr::new(&via.to_string(), proc_macro2::Span::call_site()));
        }
        schema_items.push(quote! {
            #[derive(#private::schemars::JsonSchema)]
            #[schemars(crate = #schemars_crate)]
            #[serde(deny_unknown_fields)]
            #[allow(non_camel_case_types, dead_code)]
            struct #schema_ty {
                #( #field_docs #serde_attrs #[schemars(with = #field_types)] #fields: #types, )*
            }
        });
        let description = v.description();
        let risk = match v.risk() {
            Some(risk) => {
                let risk = krate.risk(risk);
                quote!(::core::option::Option::Some(#risk))
            }
            None => quote!(::core::option::Option::None),
        };
        definitions.push(quote! {
            #private::schema_definition::<#schema_ty>(#name, #description, #risk)
        });

        let method = v.method();
        let docs = v.original.attrs.iter().filter(|a| a.path().is_ident("doc"));
        let docs: Vec<_> = docs.collect();
        let gate_doc = if v.takes_approval() {
            format!(" Tool `{name}`: gated. Runs only with the guard's `Approval` of this very call, which carries its arguments.")
        } else {
            format!(" Tool `{name}`: not gated by its declaration or name.")
        };
        // A gated tool's method takes only its Approval (which carries the approved arguments); a safe one its fields.
        let params = if v.takes_approval() {
            quote!(approval: #krate::Approval<'_, #args_ty>)
        } else {
            quote!(#(#fields: #types),*)
        };
        handler_methods.push(quote! {
            #(#docs)*
            #[doc = ""]
            #[doc = #gate_doc]
            fn #method(&mut self, #params) -> Self::Output;
        });
        async_handler_methods.push(quote! {
            #(#docs)*
            #[doc = ""]
            #[doc = #gate_doc]
            fn #method(&mut self, #params)
                -> impl ::core::future::Future<Output = Self::Output> + ::core::marker::Send;
        });
        let (prepare, args) = if v.takes_approval() {
            (
                quote! {
                    let __agentguard_approval =
                        __agentguard_grant.approve(#args_ty { #(#fields: #bound),* })?;
                },
                quote!(__agentguard_approval),
            )
        } else {
            // No `Approval` for a handler that takes its fields, but a parked approval is still claimed (once)
            // before it runs.
            (quote!(__agentguard_grant.proceed()?;), quote!(#(#bound),*))
        };
        dispatch_arms.push(quote! {
            #binding => {
                #prepare
                ::core::result::Result::Ok(__agentguard_handler.#method(#args))
            }
        });
        async_dispatch_arms.push(quote! {
            #binding => {
                #prepare
                ::core::result::Result::Ok(__agentguard_handler.#method(#args).await)
            }
        });
    }

    // `#[tool(schema)]`: the definitions, kept by the runtime's `if_schema!` when its `schema` feature is on; with it
    // off, one error at the option saying to turn it on.
    let schema = match tools.schema {
        Some(span) => {
            let missing = quote_spanned! {span=>
                ::core::compile_error!(
                    "#[tool(schema)] needs agentguard's `schema` feature: `agentguard = { version = \"...\", features = [\"schema\"] }` in Cargo.toml"
                );
            };
            quote! {
                #private::if_schema! {
                    then {
                        #(#schema_items)*

                        #[automatically_derived]
                        impl #krate::tool::ToolDefinitions for #ident {
                            fn definitions() -> #krate::tool::Definitions {
                                #krate::tool::Definitions::new(::std::vec![#(#definitions),*])
                            }
                        }
                    }
                    else { #missing }
                }
            }
        }
        None => TokenStream::new(),
    };

    let approval = krate.doc_path("Approval");
    let handler_doc = format!(
        " The handler of [`{ident}`]: one method per tool. Methods of gated tools take an [`Approval`]({approval}) of \
         the call with its arguments, which only the guard can create, so they cannot be called without it. Run one \
         with `guard.dispatch(tool, &mut handler)`."
    );
    let async_handler_doc = format!(
        " The async handler of [`{ident}`]: like [`{handler}`], with methods returning futures (write them as \
         `async fn`). Run one with `guard.adispatch(tool, &mut handler).await`."
    );

    quote! {
        #(#public_args)*

        #[doc = #handler_doc]
        #vis trait #handler {
            /// What every method returns.
            type Output;
            #(#handler_methods)*
        }

        #[doc = #async_handler_doc]
        #vis trait #async_handler: ::core::marker::Send {
            /// What every method's future resolves to.
            type Output;
            #(#async_handler_methods)*
        }

        const _: () = {
            #(#helpers)*

            #[automatically_derived]
            impl #krate::Tool for #ident {
                const NAMES: &'static [&'static str] = &[#(#names),*];

                fn name(&self) -> &'static str {
                    match self { #(#name_arms,)* }
                }

                fn gating(&self) -> #krate::guard::Gating {
                    match self { #(#gating_arms,)* }
                }

                fn params(&self) -> ::core::result::Result<
                    #private::serde_json::Value,
                    #private::serde_json::Error,
                > {
                    match self { #(#params_arms,)* }
                }

                fn to_call(&self) -> ::core::result::Result<#krate::ToolCall, #private::serde_json::Error> {
                    let __agentguard_call = #krate::ToolCall::new(
                        <Self as #krate::Tool>::name(self),
                        <Self as #krate::Tool>::params(self)?,
                    );
                    ::core::result::Result::Ok(match self { #(#edit_arms,)* })
                }

                fn parse(
                    __agentguard_name: &str,
                    __agentguard_params: #private::serde_json::Value,
                ) -> ::core::result::Result<Self, #krate::tool::ToolParseError> {
                    match __agentguard_name {
                        #(#parse_arms)*
                        _ => ::core::result::Result::Err(#krate::tool::ToolParseError::UnknownTool {
                            name: ::std::string::String::from(__agentguard_name),
                            known: <Self as #krate::Tool>::NAMES,
                        }),
                    }
                }
            }

            #schema
            #[automatically_derived]
            impl<__AgentguardH: #handler + ?Sized> #krate::tool::Dispatch<__AgentguardH> for #ident {
                type Output = <__AgentguardH as #handler>::Output;

                fn call(
                    self,
                    __agentguard_grant: #krate::tool::Grant<'_>,
                    __agentguard_handler: &mut __AgentguardH,
                ) -> ::core::result::Result<Self::Output, #krate::ActionDenied> {
                    match self { #(#dispatch_arms)* }
                }
            }

            #[automatically_derived]
            impl<__AgentguardH: #async_handler + ?Sized> #krate::tool::AsyncDispatch<__AgentguardH> for #ident {
                type Output = <__AgentguardH as #async_handler>::Output;

                fn call<'__agentguard>(
                    self,
                    __agentguard_grant: #krate::tool::Grant<'__agentguard>,
                    __agentguard_handler: &'__agentguard mut __AgentguardH,
                ) -> impl ::core::future::Future<
                    Output = ::core::result::Result<Self::Output, #krate::ActionDenied>,
                > + ::core::marker::Send + '__agentguard {
                    async move { match self { #(#async_dispatch_arms)* } }
                }
            }
        };
    }
}

/// `Enum::Variant { .. }` (or `Enum::Variant` for a unit variant).
fn pattern(ident: &syn::Ident, v: &ToolVariant<'_>) -> TokenStream {
    let vident = &v.original.ident;
    match v.original.fields {
        syn::Fields::Unit => quote!(#ident::#vident),
        _ => quote!(#ident::#vident { .. }),
    }
}
