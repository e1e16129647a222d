//! The `#[tool(...)]` options, declared on the shared grammar: on the enum `crate = path` and `schema`; on a variant
//! `name = "..."`, `risk = "..."`, `dangerous`, `safe`; none on a field.

use agentguard_classify::Risk;
use proc_macro2::Span;
use syn::{Attribute, LitStr, Path};

use crate::attr::{self, Grammar, Opt, Place, Syntax};
use crate::ctxt::Ctxt;

const ENUM: Place = Place("the enum");
const VARIANT: Place = Place("a variant");
const FIELD: Place = Place("a field");

static GRAMMAR: Grammar = Grammar {
    attr: "tool",
    options: &[
        Opt {
            name: "crate",
            syntax: Syntax::Path,
            places: &[ENUM],
        },
        Opt {
            name: "schema",
            syntax: Syntax::Flag,
            places: &[ENUM],
        },
        Opt {
            name: "name",
            syntax: Syntax::Str,
            places: &[VARIANT],
        },
        Opt {
            name: "risk",
            syntax: Syntax::Str,
            places: &[VARIANT],
        },
        Opt {
            name: "dangerous",
            syntax: Syntax::Flag,
            places: &[VARIANT],
        },
        Opt {
            name: "safe",
            syntax: Syntax::Flag,
            places: &[VARIANT],
        },
    ],
};

pub(crate) struct EnumOptions {
    pub krate: Option<Path>,
    /// `#[tool(schema)]`: generate tool definitions (needs the runtime's `schema` feature).
    pub schema: Option<Span>,
}

pub(crate) struct VariantOptions {
    pub name: Option<LitStr>,
    pub risk: Option<(Risk, Span)>,
    pub dangerous: Option<Span>,
    pub safe: Option<Span>,
}

pub(crate) fn parse_enum(cx: &Ctxt, attrs: &[Attribute]) -> EnumOptions {
    let mut given = GRAMMAR.parse_attrs(cx, ENUM, attrs);
    EnumOptions {
        krate: given.path("crate"),
        schema: given.flag("schema"),
    }
}

pub(crate) fn parse_variant(cx: &Ctxt, attrs: &[Attribute]) -> VariantOptions {
    let mut given = GRAMMAR.parse_attrs(cx, VARIANT, attrs);
    VariantOptions {
        name: given.str("name").map(|lit| attr::tool_name(cx, lit)),
        risk: given
            .str("risk")
            .and_then(|lit| Some((attr::risk(cx, &lit)?, lit.span()))),
        dangerous: given.flag("dangerous"),
        safe: given.flag("safe"),
    }
}

/// A field takes no `#[tool]`: each one there is reported as misplaced.
pub(crate) fn parse_field(cx: &Ctxt, attrs: &[Attribute]) {
    GRAMMAR.parse_attrs(cx, FIELD, attrs);
}
