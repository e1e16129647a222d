//! Properties of the one normalized form names are compared in, and of `classify` over it.

mod common;

use std::sync::LazyLock;

use agentguard_classify::{classify, fold_name, is_known_word, name_key, normalize_name, Risk};
use proptest::prelude::*;

/// The corpus's names.
static NAMES: LazyLock<Vec<String>> = LazyLock::new(|| common::catalog().into_iter().map(|t| t.name).collect());

/// The corpus's names that `classify` gates.
static GATED: LazyLock<Vec<String>> =
    LazyLock::new(|| NAMES.iter().filter(|n| classify(n).is_some()).cloned().collect());

/// The words of the corpus's names (lowercase, letters only).
static WORDS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut words: Vec<String> = NAMES
        .iter()
        .flat_map(|n| normalize_name(n).split('_').map(str::to_owned).collect::<Vec<_>>())
        .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        .collect();
    words.sort();
    words.dedup();
    words
});

/// Characters that render as nothing.
const INVISIBLE: &[char] = &[
    '\u{200B}',
    '\u{200C}',
    '\u{200D}',
    '\u{2060}',
    '\u{FEFF}',
    '\u{00AD}',
    '\u{180E}',
    '\u{034F}',
    '\u{FE0F}',
    '\u{E0041}',
    '\u{202E}',
    '\u{2066}',
    '\u{3164}',
];

/// Whitespace a dispatcher's `trim()` removes.
const WHITESPACE: &[char] = &[
    ' ', '\t', '\n', '\r', '\u{0B}', '\u{0C}', '\u{85}', '\u{A0}', '\u{1680}', '\u{2002}', '\u{2003}', '\u{2009}',
    '\u{200A}', '\u{2028}', '\u{2029}', '\u{202F}', '\u{205F}', '\u{3000}',
];

/// Characters that make names tricky: look-alikes, compatibility forms, case oddities, marks, separators.
const TRICKY: &[char] = &[
    '\u{0430}',
    '\u{0435}',
    '\u{043E}',
    '\u{0440}',
    '\u{0441}',
    '\u{0445}',
    '\u{0456}',
    '\u{03BF}',
    '\u{0391}',
    '\u{FF24}',
    '\u{FF45}',
    '\u{FF4C}',
    '\u{212A}',
    '\u{212B}',
    '\u{2126}',
    '\u{017F}',
    '\u{0130}',
    '\u{0131}',
    '\u{00DF}',
    '\u{1E9E}',
    '\u{FB01}',
    '\u{0301}',
    '\u{0300}',
    '\u{0345}',
    '\u{03A3}',
    '\u{1D41D}',
    '\u{24D3}',
    '\u{00E9}',
    '\u{0065}',
    '_',
    '-',
    '.',
    ' ',
    '/',
    '0',
    '1',
    'I',
    'l',
];

/// A string with tool-name pieces and tricky characters mixed in.
fn tricky_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(NAMES.clone()),
        3 => prop::sample::select(TRICKY).prop_map(String::from),
        1 => prop::sample::select(INVISIBLE).prop_map(String::from),
        1 => prop::sample::select(WHITESPACE).prop_map(String::from),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|p| p.concat())
}

/// Any string, or a tricky one.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), tricky_string()]
}

/// `name` with the ASCII letters whose bit in `mask` is set swapped to the other case.
fn recase(name: &str, mask: &[bool]) -> String {
    name.chars()
        .zip(mask.iter().cycle())
        .map(|(c, &flip)| match c {
            c if flip && c.is_ascii_lowercase() => c.to_ascii_uppercase(),
            c if flip && c.is_ascii_uppercase() => c.to_ascii_lowercase(),
            c => c,
        })
        .collect()
}

/// `name` with `c` inserted before its `at`-th character (modulo its length + 1).
fn insert(name: &str, at: usize, c: char) -> String {
    let at = at % (name.chars().count() + 1);
    let byte = name.char_indices().nth(at).map_or(name.len(), |(i, _)| i);
    let mut out = name.to_owned();
    out.insert(byte, c);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn normalizing_twice_changes_nothing(name in name()) {
        let once = fold_name(&name).into_owned();
        prop_assert_eq!(fold_name(&once), once.as_str());
        let canonical = normalize_name(&name);
        prop_assert_eq!(normalize_name(&canonical), canonical.as_str());
        prop_assert_eq!(name_key(&once), name_key(&name));
    }

    #[test]
    fn classify_reads_a_name_and_its_normalized_form_alike(name in name()) {
        prop_assert_eq!(classify(&name), classify(&fold_name(&name)), "{:?} folds to {:?}", name, fold_name(&name));
    }

    #[test]
    fn no_change_of_case_makes_a_gated_name_safe(
        name in prop::sample::select(GATED.clone()),
        mask in prop::collection::vec(any::<bool>(), 1..40),
    ) {
        let recased = recase(&name, &mask);
        prop_assert!(classify(&recased).is_some(), "{:?} is gated as {:?} but {:?} is not", name, classify(&name), recased);
    }

    /// Names made of the corpus's words, camelCase or snake_case. The one way a case change can make such a name
    /// safe is by joining two words into a compound the classifier knows as a noun (`toolSet` → `TOOLSET`, read
    /// `toolset`): `runtime` must stay a noun in `runtime_info`, so that case is left out here.
    #[test]
    fn no_change_of_case_makes_a_gated_name_of_known_words_safe(
        words in prop::collection::vec(prop::sample::select(WORDS.clone()), 1..4),
        camel in any::<bool>(),
        mask in prop::collection::vec(any::<bool>(), 1..40),
    ) {
        prop_assume!(words.windows(2).all(|w| !is_known_word(&format!("{}{}", w[0], w[1]))));
        let name = if camel {
            words.iter().enumerate().map(|(i, w)| if i == 0 { w.clone() } else { w[..1].to_uppercase() + &w[1..] }).collect()
        } else {
            words.join("_")
        };
        let recased = recase(&name, &mask);
        prop_assert!(
            classify(&name).is_none() || classify(&recased).is_some(),
            "{:?} is gated as {:?} but {:?} is not", name, classify(&name), recased
        );
    }

    #[test]
    fn an_invisible_character_anywhere_makes_any_name_suspicious(
        name in name(),
        at in any::<usize>(),
        c in prop::sample::select(INVISIBLE),
    ) {
        prop_assert_eq!(classify(&insert(&name, at, c)), Some(Risk::SuspiciousName));
    }

    #[test]
    fn whitespace_at_either_end_makes_any_name_suspicious(
        name in name(),
        c in prop::sample::select(WHITESPACE),
        front in any::<bool>(),
    ) {
        let spaced = if front { format!("{c}{name}") } else { format!("{name}{c}") };
        prop_assert_eq!(classify(&spaced), Some(Risk::SuspiciousName), "{:?}", spaced);
    }

    #[test]
    fn a_gated_name_with_an_invisible_character_or_edge_whitespace_stays_gated(
        name in prop::sample::select(GATED.clone()),
        at in any::<usize>(),
        c in prop::sample::select(INVISIBLE),
        w in prop::sample::select(WHITESPACE),
    ) {
        let (before, after) = (format!("{w}{name}"), format!("{name}{w}"));
        prop_assert!(classify(&insert(&name, at, c)).is_some());
        prop_assert!(classify(&before).is_some());
        prop_assert!(classify(&after).is_some());
    }
}
