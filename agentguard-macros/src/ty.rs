//! Questions about types that both macros ask.

use syn::visit::{self, Visit};
use syn::{Expr, Type, TypeImplTrait};

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
