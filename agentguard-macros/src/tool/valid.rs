//! Checks the grammar alone cannot: conflicting options, duplicate tool names, generics, `impl Trait` fields, and
//! field names that clash with the generated handler's arguments.

use std::collections::HashMap;

use super::ast::ToolEnum;
use crate::ctxt::Ctxt;
use crate::ty::find_impl_trait;

pub(crate) fn check(cx: &Ctxt, tools: &ToolEnum<'_>) {
    let input = tools.original;
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(
            &input.generics,
            "#[derive(Tool)] does not support generic enums: tool params must have concrete types to be parsed from \
             an LLM's JSON",
        );
    }
    if matches!(&input.data, syn::Data::Enum(e) if e.variants.is_empty()) {
        cx.error_spanned_by(&input.ident, "#[derive(Tool)] needs at least one variant (one tool)");
    }
    let mut names: HashMap<&str, &syn::Ident> = HashMap::new();
    for v in &tools.variants {
        let o = &v.options;
        if let (Some(safe), Some(_)) = (o.safe, o.dangerous) {
            cx.error_at(
                safe,
                "conflicting options: a tool cannot be both `safe` and `dangerous`; keep one",
            );
        }
        if let (Some(safe), Some(_)) = (o.safe, o.risk) {
            cx.error_at(safe, "conflicting options: a `safe` tool has no `risk`; keep one");
        }
        if let (Some(dangerous), Some(_)) = (o.dangerous, o.risk) {
            cx.error_at(
                dangerous,
                "`dangerous` is implied by `risk = \"...\"` (both always ask); remove it",
            );
        }
        match names.get(v.name.as_str()) {
            Some(first) => cx.error_at(
                v.name_span,
                format!(
                    "duplicate tool name {:?}: variant `{first}` already uses it; rename one with #[tool(name = \"...\")]",
                    v.name
                ),
            ),
            None => {
                names.insert(&v.name, &v.original.ident);
            }
        }
        for f in &v.fields {
            if let Some(found) = find_impl_trait(f.ty) {
                cx.error_spanned_by(
                    found,
                    format!(
                        "field `{}` of tool `{}` needs a concrete type: its value is parsed from the model's JSON, \
                         and `impl Trait` names no type to parse into; write the type (`String`, `u64`, \
                         `serde_json::Value`, your own `Deserialize` struct)",
                        f.ident, v.name
                    ),
                );
            }
            if f.ident == "approval" && v.takes_approval() {
                cx.error_spanned_by(
                    f.ident,
                    "a field named `approval` clashes with the `approval: Approval` argument of the generated handler \
                     method; rename the field (add #[serde(rename = \"approval\")] to keep the param's JSON name)",
                );
            }
        }
    }
}
