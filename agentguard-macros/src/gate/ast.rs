//! The gated function, borrowed from the input with its spans: its arguments by name, its receiver, its options.

use syn::{FnArg, Ident, ItemFn, Pat, Type};

use super::attr::GateOptions;
use crate::ctxt::Ctxt;
use crate::krate::CratePath;
use crate::ty;

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
    /// Declared `mut`: the generated function rebinds it (read back from an edit) with the `mut`.
    pub mutable: bool,
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
                    mutable: p.mutability.is_some(),
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

    /// Whether an approver may edit `arg`, and if not, the words that say why (to the developer, through the
    /// approver who tries).
    pub(crate) fn edit_rule(&self, arg: &Arg<'_>) -> EditRule {
        if self.is_skipped(arg.ident) {
            return EditRule::Skipped;
        }
        let function = &self.original.sig.ident;
        let (name, shown) = (arg.ident, ty::text(arg.ty));
        let cannot = format!("argument `{name}` of `{function}` is a `{shown}`, which cannot be read back from JSON");
        if ty::find_impl_trait(arg.ty).is_some() {
            return EditRule::Refused(format!(
                "argument `{name}` of `{function}` is an `{shown}`, which cannot be read back from JSON: take a \
                 concrete type to let approvers edit it"
            ));
        }
        if ty::borrows(arg.ty) {
            return EditRule::Refused(match ty::owned(arg.ty) {
                Some(owned) => format!(
                    "{cannot}: take an owned type ({}) to let approvers edit it",
                    ty::text(&owned)
                ),
                None => format!("{cannot} (it borrows): take an owned type to let approvers edit it"),
            });
        }
        let generics: Vec<&Ident> = self.original.sig.generics.type_params().map(|p| &p.ident).collect();
        EditRule::IfDeserialize(if ty::mentions(arg.ty, &generics) {
            format!(
                "{cannot} here: bound its type parameters by `serde::de::DeserializeOwned` to let approvers edit it"
            )
        } else {
            format!(
                "{cannot} (it does not implement `serde::de::DeserializeOwned`): derive or implement \
                 `serde::Deserialize` for it to let approvers edit it"
            )
        })
    }
}

/// How an approver's edit treats one argument of a gated function.
pub(crate) enum EditRule {
    /// `skip(...)`: not in the params; it keeps its live value and cannot be edited.
    Skipped,
    /// Never editable (its type borrows or is an `impl Trait`): edits of the call are refused, saying this.
    Refused(String),
    /// Read back from the edit when its type is `DeserializeOwned` (decided by the compiler); else edits of the call
    /// are refused, saying this.
    IfDeserialize(String),
}
