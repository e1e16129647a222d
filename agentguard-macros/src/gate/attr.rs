//! The `#[gate(...)]` grammar: `guard = <expr>`, `name = "..."`, `risk = "..."`, `skip(a, b)`, `redact(a, b)`.
//! Unknown and duplicate options are spanned errors; every error is collected.

use agentguard_classify::Risk;
use proc_macro2::TokenStream;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Expr, Ident, LitStr};

use crate::ctxt::Ctxt;

pub(crate) const RISKS: &str = "irreversible, external_send, system_execution, data_mutation";

#[derive(Default)]
pub(crate) struct GateOptions {
    pub guard: Option<Expr>,
    pub name: Option<LitStr>,
    pub risk: Option<Risk>,
    pub skip: Vec<Ident>,
    pub redact: Vec<Ident>,
}

pub(crate) fn parse(cx: &Ctxt, attr: TokenStream) -> GateOptions {
    let mut opts = GateOptions::default();
    let mut seen: Vec<String> = Vec::new();
    let parser =
        syn::meta::parser(|meta| {
            let key = meta.path.get_ident().map(Ident::to_string).unwrap_or_default();
            if !key.is_empty() && seen.contains(&key) {
                cx.error_spanned_by(&meta.path, format!("duplicate option `{key}`: give it once"));
                skip_value(&meta);
                return Ok(());
            }
            seen.push(key.clone());
            match key.as_str() {
                "guard" => opts.guard = Some(meta.value()?.parse()?),
                "name" => opts.name = Some(parse_name(cx, &meta)?),
                "risk" => {
                    let lit: LitStr = meta.value()?.parse()?;
                    opts.risk = parse_risk(cx, &lit);
                }
                "skip" => opts.skip = idents(&meta)?,
                "redact" => opts.redact = idents(&meta)?,
                _ => {
                    cx.error_spanned_by(
                        &meta.path,
                        format!(
                        "unknown #[gate] option `{}`: expected `guard = <expr>`, `name = \"...\"`, `risk = \"...\"`, \
                         `skip(arg, ...)` or `redact(arg, ...)`",
                        quote::ToTokens::to_token_stream(&meta.path).to_string().replace(' ', "")
                    ),
                    );
                    skip_value(&meta);
                }
            }
            Ok(())
        });
    if let Err(e) = parser.parse2(attr) {
        cx.syn_error(e);
    }
    opts
}

/// `name = "..."`: a non-empty tool name.
pub(crate) fn parse_name(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<LitStr> {
    let lit: LitStr = meta.value()?.parse()?;
    if lit.value().trim().is_empty() {
        cx.error_spanned_by(&lit, "the tool name cannot be empty");
    }
    Ok(lit)
}

pub(crate) fn parse_risk(cx: &Ctxt, lit: &LitStr) -> Option<Risk> {
    let value = lit.value();
    match value.parse::<Risk>() {
        Ok(risk) if risk.key() == value => Some(risk),
        _ => {
            cx.error_spanned_by(lit, format!("unknown risk {value:?}: expected one of {RISKS}"));
            None
        }
    }
}

fn idents(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<Ident>> {
    let mut out = Vec::new();
    meta.parse_nested_meta(|inner| {
        match inner.path.get_ident() {
            Some(id) => out.push(id.clone()),
            None => return Err(inner.error("expected an argument name")),
        }
        Ok(())
    })?;
    Ok(out)
}

/// Consumes the value of an option we reject, so parsing can go on and report the next error too.
fn skip_value(meta: &ParseNestedMeta<'_>) {
    if meta.input.peek(syn::Token![=]) {
        let _ = meta.value().and_then(|v| v.parse::<Expr>());
    } else if meta.input.peek(syn::token::Paren) {
        let _ = meta.input.step(|cursor| {
            let mut rest = *cursor;
            if let Some((_, _, next)) = rest.group(proc_macro2::Delimiter::Parenthesis) {
                rest = next;
            }
            Ok(((), rest))
        });
    }
}
