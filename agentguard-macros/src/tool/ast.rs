//! The tool enum, borrowed from the input with its spans.

use agentguard_classify::{classify, Risk, Words};
use proc_macro2::Span;
use syn::{Attribute, Data, DeriveInput, Fields, Ident, Type, Variant};

use super::attr::{self, VariantOptions};
use crate::ctxt::Ctxt;
use crate::krate::CratePath;

pub(crate) struct ToolEnum<'a> {
    pub original: &'a DeriveInput,
    pub variants: Vec<ToolVariant<'a>>,
    /// How the generated code names the runtime crate.
    pub krate: CratePath,
    /// `#[tool(schema)]`, where it was written: generate `ToolDefinitions`.
    pub schema: Option<Span>,
}

pub(crate) struct ToolVariant<'a> {
    pub original: &'a Variant,
    pub name: String,
    pub name_span: Span,
    pub options: VariantOptions,
    pub fields: Vec<ToolField<'a>>,
}

pub(crate) struct ToolField<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub serde_attrs: Vec<&'a Attribute>,
    /// The field's doc comment, which describes it in the tool's params schema.
    pub docs: Vec<&'a Attribute>,
}

/// How a variant is gated, from its options (validated later).
pub(crate) enum VariantGating {
    Always(Risk),
    Never,
    Auto { classified: Option<Risk> },
}

impl<'a> ToolEnum<'a> {
    pub(crate) fn from_input(cx: &Ctxt, input: &'a DeriveInput) -> Option<Self> {
        let options = attr::parse_enum(cx, &input.attrs);
        let data = match &input.data {
            Data::Enum(data) => data,
            Data::Struct(s) => {
                cx.error_spanned_by(
                    s.struct_token,
                    "#[derive(Tool)] goes on an enum whose variants are tool calls (`enum MyTool { Search { query: \
                     String }, DeleteFile { path: String } }`); to gate one function, use #[agentguard::gate]",
                );
                return None;
            }
            Data::Union(u) => {
                cx.error_spanned_by(
                    u.union_token,
                    "#[derive(Tool)] goes on an enum whose variants are tool calls; a union cannot carry params",
                );
                return None;
            }
        };
        let variants = data
            .variants
            .iter()
            .filter_map(|v| ToolVariant::from_variant(cx, v))
            .collect();
        let krate = CratePath::new(cx, options.krate, |name| {
            format!("add #[tool(crate = {name})] to the enum")
        });
        Some(ToolEnum {
            original: input,
            variants,
            krate,
            schema: options.schema,
        })
    }
}

impl<'a> ToolVariant<'a> {
    fn from_variant(cx: &Ctxt, original: &'a Variant) -> Option<Self> {
        let options = attr::parse_variant(cx, &original.attrs);
        let fields = match &original.fields {
            Fields::Named(named) => named
                .named
                .iter()
                .map(|f| {
                    attr::parse_field(cx, &f.attrs);
                    ToolField {
                        ident: f.ident.as_ref().expect("named field"),
                        ty: &f.ty,
                        serde_attrs: f.attrs.iter().filter(|a| a.path().is_ident("serde")).collect(),
                        docs: f.attrs.iter().filter(|a| a.path().is_ident("doc")).collect(),
                    }
                })
                .collect(),
            Fields::Unit => Vec::new(),
            Fields::Unnamed(unnamed) => {
                cx.error_spanned_by(
                    unnamed,
                    format!(
                        "tuple variant `{}`: tool params need names, so use named fields (`{} {{ name: Type }}`) or a \
                         unit variant",
                        original.ident, original.ident
                    ),
                );
                return None;
            }
        };
        let (name, name_span) = match &options.name {
            Some(lit) => (lit.value(), lit.span()),
            None => (snake_case(&original.ident.to_string()), original.ident.span()),
        };
        Some(ToolVariant {
            original,
            name,
            name_span,
            options,
            fields,
        })
    }

    pub(crate) fn gating(&self) -> VariantGating {
        if self.options.safe.is_some() {
            VariantGating::Never
        } else if let Some((risk, _)) = self.options.risk {
            VariantGating::Always(risk)
        } else if self.options.dangerous.is_some() {
            VariantGating::Always(classify(&self.name).unwrap_or(Risk::ManuallyFlagged))
        } else {
            VariantGating::Auto {
                classified: classify(&self.name),
            }
        }
    }

    /// Whether the handler method takes an `Approval`: every variant the declaration or the classifier gates.
    pub(crate) fn takes_approval(&self) -> bool {
        match self.gating() {
            VariantGating::Always(_) => true,
            VariantGating::Never => false,
            VariantGating::Auto { classified } => classified.is_some(),
        }
    }

    /// The risk the tool definitions show: the declared one, or the name's; `None` for a tool that is not gated.
    pub(crate) fn risk(&self) -> Option<Risk> {
        match self.gating() {
            VariantGating::Always(risk) => Some(risk),
            VariantGating::Never => None,
            VariantGating::Auto { classified } => classified,
        }
    }

    /// The variant's doc comment as text: one leading space of each line removed, lines joined, ends trimmed.
    pub(crate) fn description(&self) -> String {
        let mut lines = Vec::new();
        for attr in &self.original.attrs {
            if !attr.path().is_ident("doc") {
                continue;
            }
            if let syn::Meta::NameValue(syn::MetaNameValue {
                value: syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s), ..
                }),
                ..
            }) = &attr.meta
            {
                let line = s.value();
                lines.push(line.strip_prefix(' ').unwrap_or(&line).to_owned());
            }
        }
        lines.join("\n").trim().to_owned()
    }

    /// The handler method's name: the variant's name in snake_case.
    pub(crate) fn method(&self) -> Ident {
        let name = snake_case(&self.original.ident.to_string());
        syn::parse_str::<Ident>(&name).unwrap_or_else(|_| Ident::new_raw(&name, self.original.ident.span()))
    }
}

/// `DeleteCustomer` → `delete_customer`, `HTTPGet` → `http_get`.
pub(crate) fn snake_case(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len() + 4);
    for (s, e) in Words::new(ident) {
        if !out.is_empty() {
            out.push('_');
        }
        out.push_str(&ident[s..e].to_ascii_lowercase());
    }
    out
}
