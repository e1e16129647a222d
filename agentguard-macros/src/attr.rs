//! The attribute grammar both macros share. A macro declares its options (a [`Grammar`]: each option's name, its
//! syntax and the places it may go); [`Grammar::parse_args`] and [`Grammar::parse_attrs`] read what the user wrote
//! against it. Unknown, duplicate and misplaced options, and options written in the wrong shape, are spanned errors
//! recorded in the [`Ctxt`]; parsing goes on after each one, so every error of an attribute shows in one compile.
//!
//! The shapes: a flag (`dangerous`), a string (`name = "..."`), an expression (`guard = <expr>`), a path
//! (`crate = path` or `crate = "path"`), and a list of names (`skip(a, b)`).

use agentguard_classify::Risk;
use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, Ident, LitStr, Path, Token};

use crate::ctxt::Ctxt;

/// The risks `risk = "..."` accepts.
const RISKS: &str = "irreversible, external_send, system_execution, data_mutation";

/// Where an attribute sits, as the messages name it ("a variant", "the enum").
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place(pub &'static str);

/// How an option is written.
#[derive(Clone, Copy)]
pub(crate) enum Syntax {
    /// `key`
    Flag,
    /// `key = "..."`
    Str,
    /// `key = <expr>`
    Expr,
    /// `key = path` or `key = "path"`
    Path,
    /// `key(name, ...)`
    List,
}

/// One option: its name, how it is written, and where it may go.
pub(crate) struct Opt {
    pub name: &'static str,
    pub syntax: Syntax,
    pub places: &'static [Place],
}

/// The options of one attribute (`#[gate(...)]`, `#[tool(...)]`).
pub(crate) struct Grammar {
    /// The attribute's name, without `#[]`.
    pub attr: &'static str,
    pub options: &'static [Opt],
}

/// A value as written, in the shape its option declares.
enum Value {
    Flag,
    Str(LitStr),
    Expr(Expr),
    Path(Path),
    List(Vec<Ident>),
}

/// The options given at one place, each once and well formed. Take them out by name with the accessor of the
/// option's syntax.
pub(crate) struct Given {
    grammar: &'static Grammar,
    values: Vec<(Ident, Value)>,
}

impl Grammar {
    /// The arguments of an attribute macro (`#[gate(<tokens>)]`).
    pub(crate) fn parse_args(&'static self, cx: &Ctxt, place: Place, tokens: TokenStream) -> Given {
        let mut given = Given {
            grammar: self,
            values: Vec::new(),
        };
        let parser = syn::meta::parser(|meta| self.option(cx, place, &mut given, &meta));
        if let Err(e) = parser.parse2(tokens) {
            cx.syn_error(e);
        }
        given
    }

    /// Every `#[<attr>(...)]` among `attrs` (a derive's helper attribute), as one set of options.
    pub(crate) fn parse_attrs(&'static self, cx: &Ctxt, place: Place, attrs: &[Attribute]) -> Given {
        let mut given = Given {
            grammar: self,
            values: Vec::new(),
        };
        for attr in attrs.iter().filter(|a| a.path().is_ident(self.attr)) {
            if !self.options.iter().any(|o| o.places.contains(&place)) {
                cx.error_spanned_by(
                    attr,
                    format!(
                        "misplaced #[{}(...)]: it goes on {}, not on {}",
                        self.attr,
                        or_list(self.places().iter().map(|p| p.0)),
                        place.0
                    ),
                );
                continue;
            }
            if let Err(e) = attr.parse_nested_meta(|meta| self.option(cx, place, &mut given, &meta)) {
                cx.syn_error(e);
            }
        }
        given
    }

    /// One `key`, `key = value` or `key(...)`. Every error is recorded and its tokens skipped, so that parsing goes
    /// on with the next option; `Err` only for what syn itself cannot get past.
    fn option(&self, cx: &Ctxt, place: Place, given: &mut Given, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        let key_text = meta.path.to_token_stream().to_string().replace(' ', "");
        let Some(opt) = self.options.iter().find(|o| meta.path.is_ident(o.name)) else {
            cx.error_spanned_by(
                &meta.path,
                format!(
                    "unknown #[{}] option `{key_text}`: expected {}",
                    self.attr,
                    or_list(self.usages(place))
                ),
            );
            return skip_option(meta.input);
        };
        if !opt.places.contains(&place) {
            cx.error_spanned_by(
                &meta.path,
                format!(
                    "misplaced #[{}] option `{key_text}`: it goes on {}, not on {}; on {} #[{}] takes {}",
                    self.attr,
                    or_list(opt.places.iter().map(|p| p.0)),
                    place.0,
                    place.0,
                    self.attr,
                    or_list(self.usages(place))
                ),
            );
            return skip_option(meta.input);
        }
        if given.values.iter().any(|(k, _)| meta.path.is_ident(k)) {
            cx.error_spanned_by(&meta.path, format!("duplicate option `{key_text}`: give it once"));
            return skip_option(meta.input);
        }
        let key = meta
            .path
            .get_ident()
            .expect("a declared option is one identifier")
            .clone();
        let has_value = meta.input.peek(Token![=]);
        let has_list = meta.input.peek(syn::token::Paren);
        let value = match opt.syntax {
            Syntax::Flag if !has_value && !has_list => Ok(Value::Flag),
            Syntax::Str if has_value => meta.value().and_then(|v| v.parse()).map(Value::Str),
            Syntax::Expr if has_value => meta.value().and_then(|v| v.parse()).map(Value::Expr),
            Syntax::Path if has_value => meta.value().and_then(parse_path).map(Value::Path),
            Syntax::List if has_list => parse_list(meta).map(Value::List),
            _ => {
                let shape = match opt.syntax {
                    Syntax::Flag => "is a flag, without a value",
                    Syntax::List => "takes a list of names",
                    _ => "takes a value",
                };
                cx.error_spanned_by(&meta.path, format!("`{key}` {shape}: write {}", usage(opt)));
                return skip_option(meta.input);
            }
        };
        match value {
            Ok(value) if meta.input.is_empty() || meta.input.peek(Token![,]) => given.values.push((key, value)),
            Ok(_) => {
                cx.error_at(
                    meta.input.span(),
                    format!("unexpected tokens after `{key}`: write {}", usage(opt)),
                );
                return skip_option(meta.input);
            }
            Err(e) => {
                cx.syn_error(e);
                return skip_option(meta.input);
            }
        }
        Ok(())
    }

    /// How each option accepted at `place` is written, in declaration order.
    fn usages(&self, place: Place) -> impl Iterator<Item = String> + '_ {
        self.options
            .iter()
            .filter(move |o| o.places.contains(&place))
            .map(usage)
    }

    /// Every place some option may go, in declaration order.
    fn places(&self) -> Vec<Place> {
        let mut places = Vec::new();
        for p in self.options.iter().flat_map(|o| o.places) {
            if !places.contains(p) {
                places.push(*p);
            }
        }
        places
    }
}

impl Given {
    /// `Some` with the flag's span when it was given.
    pub(crate) fn flag(&mut self, name: &str) -> Option<Span> {
        self.take(name).map(|(key, value)| match value {
            Value::Flag => key.span(),
            _ => unreachable!("`{name}` is not declared as a flag"),
        })
    }

    pub(crate) fn str(&mut self, name: &str) -> Option<LitStr> {
        self.take(name).map(|(_, value)| match value {
            Value::Str(lit) => lit,
            _ => unreachable!("`{name}` is not declared as a string"),
        })
    }

    pub(crate) fn expr(&mut self, name: &str) -> Option<Expr> {
        self.take(name).map(|(_, value)| match value {
            Value::Expr(expr) => expr,
            _ => unreachable!("`{name}` is not declared as an expression"),
        })
    }

    pub(crate) fn path(&mut self, name: &str) -> Option<Path> {
        self.take(name).map(|(_, value)| match value {
            Value::Path(path) => path,
            _ => unreachable!("`{name}` is not declared as a path"),
        })
    }

    /// The names in `name(...)`, empty when the option was not given.
    pub(crate) fn list(&mut self, name: &str) -> Vec<Ident> {
        self.take(name).map_or_else(Vec::new, |(_, value)| match value {
            Value::List(idents) => idents,
            _ => unreachable!("`{name}` is not declared as a list"),
        })
    }

    fn take(&mut self, name: &str) -> Option<(Ident, Value)> {
        debug_assert!(
            self.grammar.options.iter().any(|o| o.name == name),
            "#[{}] declares no option `{name}`",
            self.grammar.attr
        );
        let i = self.values.iter().position(|(k, _)| k == name)?;
        Some(self.values.remove(i))
    }
}

/// `name = "..."`: the tool name, which cannot be empty.
pub(crate) fn tool_name(cx: &Ctxt, lit: LitStr) -> LitStr {
    if lit.value().trim().is_empty() {
        cx.error_spanned_by(&lit, "the tool name cannot be empty");
    }
    lit
}

/// `risk = "..."`: one of the [`RISKS`] keys.
pub(crate) fn risk(cx: &Ctxt, lit: &LitStr) -> Option<Risk> {
    let value = lit.value();
    match value.parse::<Risk>() {
        // `suspicious_name` is what classify says of a disguised name, not something a tool declares.
        Ok(risk) if risk.key() == value && risk != Risk::SuspiciousName => Some(risk),
        _ => {
            cx.error_spanned_by(lit, format!("unknown risk {value:?}: expected one of {RISKS}"));
            None
        }
    }
}

/// How `opt` is written, for messages: `` `name = "..."` ``.
fn usage(opt: &Opt) -> String {
    let name = opt.name;
    match opt.syntax {
        Syntax::Flag => format!("`{name}`"),
        Syntax::Str => format!("`{name} = \"...\"`"),
        Syntax::Expr => format!("`{name} = <expr>`"),
        Syntax::Path => format!("`{name} = path`"),
        Syntax::List => format!("`{name}(arg, ...)`"),
    }
}

/// `a`, `a or b`, `a, b or c`.
fn or_list<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let items: Vec<S> = items.into_iter().collect();
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.as_ref().to_owned(),
        Some((last, rest)) => {
            let rest: Vec<&str> = rest.iter().map(AsRef::as_ref).collect();
            format!("{} or {}", rest.join(", "), last.as_ref())
        }
    }
}

/// `path` or `"path"`, a module-style path (no generic arguments).
fn parse_path(input: ParseStream<'_>) -> syn::Result<Path> {
    if input.peek(LitStr) {
        input.parse::<LitStr>()?.parse_with(Path::parse_mod_style)
    } else {
        Path::parse_mod_style(input)
    }
}

/// `(a, b)`: names; keywords too, so that `skip(self)` gets its own message from the validation.
fn parse_list(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<Ident>> {
    let content;
    syn::parenthesized!(content in meta.input);
    let names = Punctuated::<Ident, Token![,]>::parse_terminated_with(&content, |input| {
        Ident::parse_any(input).map_err(|e| syn::Error::new(e.span(), "expected an argument name"))
    })?;
    Ok(names.into_iter().collect())
}

/// Skips what is left of an option we reject, up to the next `,`, so that parsing can go on with the next one.
fn skip_option(input: ParseStream<'_>) -> syn::Result<()> {
    input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            if matches!(&tt, TokenTree::Punct(p) if p.as_char() == ',') {
                break;
            }
            rest = next;
        }
        Ok(((), rest))
    })
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    const HERE: Place = Place("here");
    const THERE: Place = Place("there");
    static GRAMMAR: Grammar = Grammar {
        attr: "demo",
        options: &[
            Opt {
                name: "crate",
                syntax: Syntax::Path,
                places: &[THERE],
            },
            Opt {
                name: "name",
                syntax: Syntax::Str,
                places: &[HERE],
            },
            Opt {
                name: "guard",
                syntax: Syntax::Expr,
                places: &[HERE],
            },
            Opt {
                name: "skip",
                syntax: Syntax::List,
                places: &[HERE],
            },
            Opt {
                name: "safe",
                syntax: Syntax::Flag,
                places: &[HERE],
            },
        ],
    };

    fn errors(cx: Ctxt) -> Vec<String> {
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn every_shape_parses_and_is_taken_out_by_name() {
        let cx = Ctxt::new();
        let mut given = GRAMMAR.parse_args(&cx, HERE, quote!(name = "rm", guard = GUARD.get(), skip(a, self), safe));
        assert_eq!(given.str("name").unwrap().value(), "rm");
        assert!(given.expr("guard").is_some());
        assert_eq!(
            given.list("skip").iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["a", "self"]
        );
        assert!(given.flag("safe").is_some());
        assert!(given.flag("safe").is_none(), "taken once");
        assert!(errors(cx).is_empty());
    }

    #[test]
    fn a_path_is_written_bare_or_as_a_string() {
        for tokens in [quote!(crate = guard), quote!(crate = "guard"), quote!(crate = ::guard)] {
            let cx = Ctxt::new();
            let mut given = GRAMMAR.parse_args(&cx, THERE, tokens);
            let path = given.path("crate").unwrap();
            assert_eq!(path.segments.last().unwrap().ident, "guard");
            assert!(errors(cx).is_empty());
        }
    }

    #[test]
    fn every_error_of_an_attribute_is_reported_and_the_good_options_are_kept() {
        let cx = Ctxt::new();
        let mut given = GRAMMAR.parse_args(
            &cx,
            HERE,
            quote!(retries = 3, crate = guard, name = "a", name = "b", safe = true, skip, guard = a b, skip(x)),
        );
        assert_eq!(given.str("name").unwrap().value(), "a");
        assert_eq!(given.list("skip").len(), 1);
        assert_eq!(
            errors(cx),
            [
                "unknown #[demo] option `retries`: expected `name = \"...\"`, `guard = <expr>`, `skip(arg, ...)` or \
                 `safe`",
                "misplaced #[demo] option `crate`: it goes on there, not on here; on here #[demo] takes \
                 `name = \"...\"`, `guard = <expr>`, `skip(arg, ...)` or `safe`",
                "duplicate option `name`: give it once",
                "`safe` is a flag, without a value: write `safe`",
                "`skip` takes a list of names: write `skip(arg, ...)`",
                "unexpected tokens after `guard`: write `guard = <expr>`",
            ]
        );
    }

    #[test]
    fn an_attribute_where_no_option_goes_is_misplaced_as_a_whole() {
        let cx = Ctxt::new();
        let attrs: Vec<Attribute> = vec![syn::parse_quote!(#[demo(safe)])];
        let _ = GRAMMAR.parse_attrs(&cx, Place("nowhere"), &attrs);
        assert_eq!(
            errors(cx),
            ["misplaced #[demo(...)]: it goes on there or here, not on nowhere"]
        );
    }

    #[test]
    fn options_are_one_set_across_attributes() {
        let cx = Ctxt::new();
        let attrs: Vec<Attribute> = vec![syn::parse_quote!(#[demo(safe)]), syn::parse_quote!(#[demo(safe)])];
        let _ = GRAMMAR.parse_attrs(&cx, HERE, &attrs);
        assert_eq!(errors(cx), ["duplicate option `safe`: give it once"]);
    }
}
