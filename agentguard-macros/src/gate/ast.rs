//! The gated function, borrowed from the input with its spans: its arguments by name, its receiver, its options.

use syn::{FnArg, Ident, ItemFn, Pat, Type};

use super::attr::GateOptions;
use crate::ctxt::Ctxt;
use crate::krate::CratePath;

pub(crate) struct Gated<'a> {
    pub original: &'a ItemFn,
    pub options: GateOptions,
    pub args: Vec<Arg<'a>>,
    /// How the generated code names the runtime crate.
    pub krate: CratePath,
}

pub(crate) struct Arg<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
}

impl<'a> Gated<'a> {
    pub(crate) fn from_fn(cx: &Ctxt, original: &'a ItemFn, mut options: GateOptions) -> Self {
        let krate = CratePath::new(cx, options.krate.take(), |name| {
            format!("write #[gate(crate = {name})]")
        });
        let mut args = Vec::new();
        for input in &original.sig.inputs {
            let FnArg::Typed(pat_type) = input else { continue }; // the receiver is never part of the params
            match &*pat_type.pat {
                Pat::Ident(p) if p.subpat.is_none() && p.by_ref.is_none() => args.push(Arg {
                    ident: &p.ident,
                    ty: &pat_type.ty,
                }),
                other => cx.error_spanned_by(
                    other,
                    "#[gate] needs a named argument here: a pattern cannot be frozen into the params by name; \
                     bind it to a name (`point: Point`) and destructure it inside the body",
                ),
            }
        }
        Gated {
            original,
            options,
            args,
            krate,
        }
    }

    /// The tool name: `name = "..."` or the function's name.
    pub(crate) fn tool_name(&self) -> String {
        self.options
            .name
            .as_ref()
            .map_or_else(|| self.original.sig.ident.to_string(), syn::LitStr::value)
    }

    pub(crate) fn is_skipped(&self, ident: &Ident) -> bool {
        self.options.skip.iter().any(|s| s == ident)
    }
}
