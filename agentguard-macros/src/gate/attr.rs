//! The `#[gate(...)]` options, declared on the shared grammar: `guard = <expr>`, `name = "..."`, `risk = "..."`,
//! `skip(a, b)`, `redact(a, b)`, `crate = path`.

use agentguard_classify::Risk;
use proc_macro2::TokenStream;
use syn::{Expr, Ident, LitStr, Path};

use crate::attr::{self, Grammar, Opt, Place, Syntax};
use crate::ctxt::Ctxt;

const FUNCTION: Place = Place("a function");

static GRAMMAR: Grammar = Grammar {
    attr: "gate",
    options: &[
        Opt {
            name: "guard",
            syntax: Syntax::Expr,
            places: &[FUNCTION],
        },
        Opt {
            name: "name",
            syntax: Syntax::Str,
            places: &[FUNCTION],
        },
        Opt {
            name: "risk",
            syntax: Syntax::Str,
            places: &[FUNCTION],
        },
        Opt {
            name: "skip",
            syntax: Syntax::List,
            places: &[FUNCTION],
        },
        Opt {
            name: "redact",
            syntax: Syntax::List,
            places: &[FUNCTION],
        },
        Opt {
            name: "crate",
            syntax: Syntax::Path,
            places: &[FUNCTION],
        },
    ],
};

pub(crate) struct GateOptions {
    pub guard: Option<Expr>,
    pub name: Option<LitStr>,
    pub risk: Option<Risk>,
    pub skip: Vec<Ident>,
    pub redact: Vec<Ident>,
    pub krate: Option<Path>,
}

pub(crate) fn parse(cx: &Ctxt, args: TokenStream) -> GateOptions {
    let mut given = GRAMMAR.parse_args(cx, FUNCTION, args);
    GateOptions {
        guard: given.expr("guard"),
        name: given.str("name").map(|lit| attr::tool_name(cx, lit)),
        risk: given.str("risk").and_then(|lit| attr::risk(cx, &lit)),
        skip: given.list("skip"),
        redact: given.list("redact"),
        krate: given.path("crate"),
    }
}
