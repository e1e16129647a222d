//! The `#[tool(...)]` grammar on a variant: `name = "..."`, `risk = "..."`, `dangerous`, `safe`.

use agentguard_classify::Risk;
use proc_macro2::Span;
use syn::{Attribute, LitStr};

use crate::ctxt::Ctxt;
use crate::gate::{parse_name, parse_risk};

#[derive(Default)]
pub(crate) struct VariantOptions {
    pub name: Option<LitStr>,
    pub risk: Option<(Risk, Span)>,
    pub dangerous: Option<Span>,
    pub safe: Option<Span>,
}

pub(crate) fn parse(cx: &Ctxt, attrs: &[Attribute]) -> VariantOptions {
    let mut opts = VariantOptions::default();
    let mut seen: Vec<String> = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("tool")) {
        let result =
            attr.parse_nested_meta(|meta| {
                let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
                if !key.is_empty() && seen.contains(&key) {
                    cx.error_spanned_by(&meta.path, format!("duplicate option `{key}`: give it once"));
                    if meta.input.peek(syn::Token![=]) {
                        let _ = meta.value()?.parse::<syn::Expr>();
                    }
                    return Ok(());
                }
                seen.push(key.clone());
                match key.as_str() {
                    "name" => opts.name = Some(parse_name(cx, &meta)?),
                    "risk" => {
                        let lit: LitStr = meta.value()?.parse()?;
                        opts.risk = parse_risk(cx, &lit).map(|r| (r, lit.span()));
                    }
                    "dangerous" => opts.dangerous = Some(meta.path.span()),
                    "safe" => opts.safe = Some(meta.path.span()),
                    _ => {
                        cx.error_spanned_by(
                            &meta.path,
                            format!(
                            "unknown #[tool] option `{}`: expected `name = \"...\"`, `risk = \"...\"`, `dangerous` \
                             or `safe`",
                            quote::ToTokens::to_token_stream(&meta.path).to_string().replace(' ', "")
                        ),
                        );
                        if meta.input.peek(syn::Token![=]) {
                            let _ = meta.value()?.parse::<syn::Expr>();
                        }
                    }
                }
                Ok(())
            });
        if let Err(e) = result {
            cx.syn_error(e);
        }
    }
    opts
}

use syn::spanned::Spanned;
