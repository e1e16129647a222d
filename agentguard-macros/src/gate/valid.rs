//! Checks the grammar alone cannot: `skip`/`redact` name real arguments, no argument is both, no const fn.

use super::ast::Gated;
use crate::ctxt::Ctxt;

pub(crate) fn check(cx: &Ctxt, gated: &Gated<'_>) {
    let sig = &gated.original.sig;
    if let Some(c) = &sig.constness {
        cx.error_spanned_by(c, "#[gate] cannot go on a `const fn`: approval happens at run time");
    }
    let names: Vec<String> = gated.args.iter().map(|a| a.ident.to_string()).collect();
    for (list, what) in [(&gated.options.skip, "skip"), (&gated.options.redact, "redact")] {
        let mut seen: Vec<String> = Vec::new();
        for ident in list {
            let name = ident.to_string();
            if name == "self" {
                cx.error_spanned_by(
                    ident,
                    format!("`{what}(self)`: the receiver is never part of the params"),
                );
            } else if !names.contains(&name) {
                cx.error_spanned_by(
                    ident,
                    format!(
                        "`{what}({name})` names no parameter of `{}`; its parameters are: {}",
                        sig.ident,
                        if names.is_empty() {
                            "(none)".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                );
            } else if seen.contains(&name) {
                cx.error_spanned_by(ident, format!("`{name}` is listed twice in `{what}(...)`"));
            }
            seen.push(name);
        }
    }
    for ident in &gated.options.redact {
        if gated.options.skip.iter().any(|s| s == ident) {
            cx.error_spanned_by(
                ident,
                format!("`{ident}` is in both `skip` and `redact`: a skipped argument is not in the params at all"),
            );
        }
    }
}
