//! Questions about types that both macros ask.

use quote::ToTokens;
use syn::visit::{self, Visit};
use syn::visit_mut::{self, VisitMut};
use syn::{Expr, Ident, Lifetime, Type, TypeImplTrait, TypeReference};

/// The first `impl Trait` anywhere in `ty`: at its top, in generic arguments (`Option<impl Serialize>`), behind
/// references and pointers (`&impl Fn()`), in tuples, arrays and slices, in associated-type bindings
/// (`Box<dyn Iterator<Item = impl Display>>`). Expressions inside the type (an array's length, a const generic
/// argument) are not part of it and are not searched; a type macro is opaque and counts as no `impl Trait`.
pub(crate) fn find_impl_trait(ty: &Type) -> Option<&TypeImplTrait> {
    struct Finder<'ast>(Option<&'ast TypeImplTrait>);

    impl<'ast> Visit<'ast> for Finder<'ast> {
        fn visit_type_impl_trait(&mut self, found: &'ast TypeImplTrait) {
            if self.0.is_none() {
                self.0 = Some(found);
            }
        }

        fn visit_type(&mut self, ty: &'ast Type) {
            if self.0.is_none() {
                visit::visit_type(self, ty);
            }
        }

        fn visit_expr(&mut self, _: &'ast Expr) {}
    }

    let mut finder = Finder(None);
    finder.visit_type(ty);
    finder.0
}

/// Whether `ty` borrows: a reference or a lifetime anywhere in it (expressions inside it not searched). Such a type
/// cannot be read back from JSON as an owned value.
pub(crate) fn borrows(ty: &Type) -> bool {
    struct Finder(bool);

    impl<'ast> Visit<'ast> for Finder {
        fn visit_type_reference(&mut self, _: &'ast TypeReference) {
            self.0 = true;
        }

        fn visit_lifetime(&mut self, _: &'ast Lifetime) {
            self.0 = true;
        }

        fn visit_expr(&mut self, _: &'ast Expr) {}
    }

    let mut finder = Finder(false);
    finder.visit_type(ty);
    finder.0
}

/// The owned type to take instead of a borrowing one: each reference replaced by what owns its target (`&str` →
/// `String`, `&Path` → `PathBuf`, `&[T]` → `Vec<T>`, `&T` → `T`); `None` when that still borrows (a lifetime
/// parameter, a `dyn` or `fn` type).
pub(crate) fn owned(ty: &Type) -> Option<Type> {
    struct Owner;

    impl VisitMut for Owner {
        fn visit_type_mut(&mut self, ty: &mut Type) {
            visit_mut::visit_type_mut(self, ty);
            if let Type::Reference(r) = ty {
                let target = (*r.elem).clone();
                *ty = match &target {
                    Type::Slice(slice) => {
                        let elem = &slice.elem;
                        syn::parse_quote!(Vec<#elem>)
                    }
                    Type::Path(p) if p.qself.is_none() => match p.path.segments.last() {
                        Some(last) if last.ident == "str" => syn::parse_quote!(String),
                        Some(last) if last.ident == "Path" => syn::parse_quote!(PathBuf),
                        Some(last) if last.ident == "OsStr" => syn::parse_quote!(OsString),
                        Some(last) if last.ident == "CStr" => syn::parse_quote!(CString),
                        _ => target,
                    },
                    _ => target,
                };
            }
        }

        fn visit_expr_mut(&mut self, _: &mut Expr) {}
    }

    let mut owned = ty.clone();
    Owner.visit_type_mut(&mut owned);
    let opaque = matches!(owned, Type::TraitObject(_) | Type::BareFn(_) | Type::ImplTrait(_));
    (!borrows(&owned) && !opaque).then_some(owned)
}

/// Whether `ty` names one of `params` (the function's type parameters) anywhere.
pub(crate) fn mentions(ty: &Type, params: &[&Ident]) -> bool {
    struct Finder<'p>(&'p [&'p Ident], bool);

    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_ident(&mut self, ident: &'ast Ident) {
            if self.0.contains(&ident) {
                self.1 = true;
            }
        }
    }

    let mut finder = Finder(params, false);
    finder.visit_type(ty);
    finder.1
}

/// A type as a person writes it (`Option<&str>`, `Cow<'a, str>`), for messages.
pub(crate) fn text(ty: &Type) -> String {
    let mut text = ty.to_token_stream().to_string();
    for (from, to) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" < ", "<"),
        ("< ", "<"),
        (" <", "<"),
        (" >", ">"),
        (" ,", ","),
        (" ;", ";"),
        ("& ", "&"),
        ("' ", "'"),
        ("[ ", "["),
        (" ]", "]"),
        ("( ", "("),
        (" )", ")"),
    ] {
        text = text.replace(from, to);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::find_impl_trait;

    fn found(ty: &str) -> Option<String> {
        let ty: syn::Type = syn::parse_str(ty).unwrap();
        find_impl_trait(&ty).map(|t| quote::ToTokens::to_token_stream(t).to_string())
    }

    #[test]
    fn impl_trait_is_found_wherever_it_is_nested() {
        assert_eq!(
            found("impl Iterator<Item = u32>").as_deref(),
            Some("impl Iterator < Item = u32 >")
        );
        assert_eq!(
            found("Option<impl serde::Serialize>").as_deref(),
            Some("impl serde :: Serialize")
        );
        assert_eq!(found("&impl Fn()").as_deref(), Some("impl Fn ()"));
        assert_eq!(found("&mut [impl Copy]").as_deref(), Some("impl Copy"));
        assert_eq!(found("(u8, Vec<Box<impl Send>>)").as_deref(), Some("impl Send"));
        assert_eq!(
            found("Result<Box<dyn Iterator<Item = impl std::fmt::Display>>, E>").as_deref(),
            Some("impl std :: fmt :: Display")
        );
        assert_eq!(found("(impl A, impl B)").as_deref(), Some("impl A"), "the first one");
    }

    #[test]
    fn types_without_impl_trait_and_impl_inside_expressions_are_not_reported() {
        for ty in [
            "u32",
            "Box<dyn Fn(u8) -> u8>",
            "std::io::Result<()>",
            "&'a mut dyn std::io::Write",
            "[u8; { struct S; impl S { fn f() -> impl Sized {} } 4 }]",
            "Array<{ impl_count() }>",
        ] {
            assert_eq!(found(ty), None, "{ty}");
        }
    }
}

#[cfg(test)]
mod borrow_tests {
    use super::{borrows, owned, text};

    fn ty(text: &str) -> syn::Type {
        syn::parse_str(text).unwrap()
    }

    #[test]
    fn references_and_lifetimes_borrow_and_owned_types_do_not() {
        for t in [
            "&str",
            "&'static str",
            "Option<&Path>",
            "Cow<'a, str>",
            "Foo<'_>",
            "&mut Vec<u8>",
        ] {
            assert!(borrows(&ty(t)), "{t}");
        }
        for t in ["String", "Vec<Option<u8>>", "[u8; { let r = &1; *r }]", "T"] {
            assert!(!borrows(&ty(t)), "{t}");
        }
    }

    #[test]
    fn the_owned_type_replaces_each_reference_by_what_owns_its_target() {
        let shown = |t: &str| owned(&ty(t)).map(|o| text(&o));
        assert_eq!(shown("&str").as_deref(), Some("String"));
        assert_eq!(shown("&'a std::path::Path").as_deref(), Some("PathBuf"));
        assert_eq!(shown("Option<&[u8]>").as_deref(), Some("Option<Vec<u8>>"));
        assert_eq!(shown("&mut Config").as_deref(), Some("Config"));
        assert_eq!(shown("Cow<'a, str>"), None, "a lifetime parameter is not a reference");
        assert_eq!(shown("&dyn std::io::Write"), None);
    }

    #[test]
    fn types_are_shown_as_written() {
        assert_eq!(text(&ty("Option < & str >")), "Option<&str>");
        assert_eq!(text(&ty("Cow<'a, str>")), "Cow<'a, str>");
        assert_eq!(
            text(&ty("std::collections::HashMap<(u8, u8), u8>")),
            "std::collections::HashMap<(u8, u8), u8>"
        );
        assert_eq!(text(&ty("&'a mut [u8; 4]")), "&'a mut [u8; 4]");
    }
}
