//! `classify_const` (the classifier as a `const fn`) agrees with `classify`: on every name of the catalog, on the
//! ASCII spellings of each, on random names made of vocabulary pieces, and at compile time.

mod common;

use agentguard_classify::{classify, classify_const, is_dangerous_const, Risk};
use proptest::prelude::*;

/// The ways an ASCII name can be spelled and still be read the same by `classify`.
fn ascii_spellings(name: &str) -> Vec<String> {
    let run_together: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
    let mut mixed = String::new();
    for (i, c) in name.chars().enumerate() {
        mixed.push(if i % 2 == 0 {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
    }
    let camel: String = name
        .split(['_', '-', '.', ' '])
        .enumerate()
        .map(|(i, w)| {
            let mut cs = w.chars();
            match cs.next() {
                Some(f) if i > 0 => f.to_ascii_uppercase().to_string() + cs.as_str(),
                Some(f) => f.to_string() + cs.as_str(),
                None => String::new(),
            }
        })
        .collect();
    vec![
        name.to_owned(),
        name.to_ascii_uppercase(),
        name.to_ascii_lowercase(),
        run_together.to_ascii_uppercase(),
        run_together.to_ascii_lowercase(),
        mixed,
        camel,
        name.replace('_', "-"),
        name.replace('_', "."),
        name.replace('_', " "),
        format!(" {name}"),
        format!("{name} "),
        format!("{name}\t"),
        format!("v2_{name}_3"),
    ]
}

#[test]
fn const_classifier_agrees_with_classify_on_every_catalog_name() {
    let catalog = common::catalog();
    for labeled in &catalog {
        let name = &labeled.name;
        assert_eq!(classify_const(name), classify(name), "{name:?}");
    }
    assert!(catalog.len() > 300);
}

#[test]
fn const_classifier_agrees_with_classify_on_every_ascii_spelling_of_the_catalog() {
    let mut checked = 0;
    for labeled in common::catalog() {
        for spelling in ascii_spellings(&labeled.name) {
            assert_eq!(
                classify_const(&spelling),
                classify(&spelling),
                "{spelling:?} (from {:?})",
                labeled.name
            );
            checked += 1;
        }
    }
    assert!(checked > 4_000, "{checked}");
}

#[test]
fn a_non_ascii_name_is_suspicious_to_the_const_classifier_whenever_classify_gates_it() {
    for name in [
        "ｄｅｌｅｔｅ_ｆｉｌｅ",
        "d\u{0435}lete_file",
        "\u{00A0}get_user",
        "del\u{200B}ete",
        "dèlete_file",
        "caf\u{00E9}_menu",
        "удалить_файл",
    ] {
        assert_eq!(classify_const(name), Some(Risk::SuspiciousName), "{name:?}");
        if classify(name).is_some() {
            assert!(is_dangerous_const(name), "{name:?}");
        }
    }
}

// Evaluated by the compiler: these fail the build, not the test run, if the const classifier is wrong.
const _: () = assert!(matches!(classify_const("delete_file"), Some(Risk::Irreversible)));
const _: () = assert!(matches!(classify_const("RUNSHELLCOMMAND"), Some(Risk::SystemExecution)));
const _: () = assert!(matches!(classify_const("slack_post_message"), Some(Risk::ExternalSend)));
const _: () = assert!(matches!(classify_const("updateEmail"), Some(Risk::DataMutation)));
const _: () = assert!(classify_const("get_run_logs").is_none());
const _: () = assert!(classify_const("annotatedMessage").is_none());
const _: () = assert!(!is_dangerous_const("weather"));

#[test]
fn const_classifier_runs_at_compile_time() {
    const RISKS: [Option<Risk>; 3] = [
        classify_const("forksAve"),
        classify_const("checkErpush"),
        classify_const("evaluate_model"),
    ];
    assert_eq!(
        RISKS,
        [
            classify("forksAve"),
            classify("checkErpush"),
            classify("evaluate_model")
        ]
    );
}

/// Pieces names are made of: known words (verbs of each kind, nouns, clause words), fragments and digits.
const PIECES: &[&str] = &[
    "delete",
    "get",
    "run",
    "time",
    "send",
    "email",
    "list",
    "update",
    "up",
    "date",
    "file",
    "files",
    "and",
    "or",
    "then",
    "annotated",
    "message",
    "post",
    "fork",
    "save",
    "forks",
    "ave",
    "check",
    "er",
    "push",
    "s",
    "3",
    "42",
    "x",
    "branch",
    "es",
    "shell",
    "command",
    "evaluate",
    "eval",
    "runtime",
    "mail",
    "box",
    "stats",
    "forced",
    "q",
];

fn name_from(pieces: Vec<(usize, u8)>) -> String {
    let mut name = String::new();
    for (piece, style) in pieces {
        let word = PIECES[piece % PIECES.len()];
        match style % 6 {
            0 => name.push_str(word),
            1 => {
                name.push('_');
                name.push_str(word);
            }
            2 => name.push_str(&word.to_ascii_uppercase()),
            3 => {
                let mut cs = word.chars();
                if let Some(f) = cs.next() {
                    name.push(f.to_ascii_uppercase());
                    name.push_str(cs.as_str());
                }
            }
            4 => {
                name.push('-');
                name.push_str(word);
            }
            _ => {
                name.push('.');
                name.push_str(word);
            }
        }
    }
    name
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    #[test]
    fn const_classifier_agrees_with_classify_on_names_of_vocabulary_pieces(
        pieces in prop::collection::vec((0usize..64, 0u8..6), 0..7)
    ) {
        let name = name_from(pieces);
        prop_assert_eq!(classify_const(&name), classify(&name), "{:?}", name);
    }

    #[test]
    fn const_classifier_agrees_with_classify_on_any_printable_ascii(name in "[ -~]{0,40}") {
        prop_assert_eq!(classify_const(&name), classify(&name), "{:?}", name);
    }
}
