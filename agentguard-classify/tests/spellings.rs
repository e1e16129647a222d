//! Every dangerous name of the corpus, spelled the ways a dispatcher that ignores case, separators, widths or edge
//! whitespace would still run (and the ways a person would not notice), is still gated; and no read-only name is
//! gated in its normal spelling.

mod common;

use agentguard_classify::{classify, Risk};

/// Latin letters and the Cyrillic letters that look like them.
const CYRILLIC: [(char, char); 12] = [
    ('a', '\u{0430}'),
    ('c', '\u{0441}'),
    ('e', '\u{0435}'),
    ('o', '\u{043E}'),
    ('p', '\u{0440}'),
    ('x', '\u{0445}'),
    ('y', '\u{0443}'),
    ('i', '\u{0456}'),
    ('s', '\u{0455}'),
    ('j', '\u{0458}'),
    ('A', '\u{0410}'),
    ('E', '\u{0415}'),
];

fn run_together(name: &str) -> String {
    name.chars().filter(char::is_ascii_alphanumeric).collect()
}

/// The eight spellings, by name.
fn spellings(name: &str) -> [(&'static str, String); 8] {
    let cyrillic = {
        let (i, c) = name
            .char_indices()
            .find_map(|(i, c)| CYRILLIC.iter().find(|(l, _)| *l == c).map(|&(_, cy)| (i, cy)))
            .unwrap_or_else(|| panic!("{name} has no letter with a Cyrillic look-alike"));
        let mut s = name.to_owned();
        s.replace_range(i..i + 1, &c.to_string());
        s
    };
    let fullwidth = name
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' => char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap(),
            c => c,
        })
        .collect();
    let zero_width = {
        let mut s = name.to_owned();
        s.insert(name.len() / 2, '\u{200B}');
        s
    };
    let mut letter = 0;
    let mixed_case = name
        .chars()
        .map(|c| {
            if !c.is_ascii_alphabetic() {
                return c;
            }
            letter += 1;
            if letter % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    [
        ("UPPER RUN-TOGETHER", run_together(name).to_ascii_uppercase()),
        ("lower run-together", run_together(name).to_ascii_lowercase()),
        ("leading U+00A0", format!("\u{00A0}{name}")),
        ("trailing U+3000", format!("{name}\u{3000}")),
        ("one Cyrillic letter", cyrillic),
        ("fullwidth", fullwidth),
        ("zero-width space inside", zero_width),
        ("mIxEd CaSe", mixed_case),
    ]
}

#[test]
fn every_spelling_of_every_dangerous_name_is_gated_and_no_safe_name_newly_is() {
    let catalog = common::catalog();
    // The dangerous names whose danger is in their words (the known misses are not gated in any spelling).
    let dangerous: Vec<&str> = catalog
        .iter()
        .filter(|t| t.expected.is_some() && !t.known_miss)
        .map(|t| t.name.as_str())
        .collect();
    let mut per_spelling: Vec<(&str, usize, usize)> = Vec::new();
    let mut missed = Vec::new();
    for name in &dangerous {
        assert!(classify(name).is_some(), "{name} is not gated in its own spelling");
        for (i, (how, spelled)) in spellings(name).into_iter().enumerate() {
            if per_spelling.len() <= i {
                per_spelling.push((how, 0, 0));
            }
            per_spelling[i].2 += 1;
            match classify(&spelled) {
                Some(_) => per_spelling[i].1 += 1,
                None => missed.push(format!("{how}: {spelled:?} (of {name})")),
            }
        }
    }
    let (gated, total) = per_spelling.iter().fold((0, 0), |(g, t), s| (g + s.1, t + s.2));
    for (how, g, t) in &per_spelling {
        println!("{how:>24}: gated {g} of {t}");
    }

    // Safe-labeled names outside the known-miss section: none is gated in its normal spelling (the known-miss
    // section's safe names, such as `add`, were gated before this change and are listed there as misses).
    let safe: Vec<&str> = catalog
        .iter()
        .filter(|t| t.expected.is_none() && !t.known_miss)
        .map(|t| t.name.as_str())
        .collect();
    let newly_gated: Vec<String> = safe
        .iter()
        .filter_map(|name| classify(name).map(|r| format!("{name}: {r:?}")))
        .collect();
    println!(
        "gated {gated} of {total} spellings of {} dangerous names; {} of {} safe names newly gated",
        dangerous.len(),
        newly_gated.len(),
        safe.len()
    );
    assert!(
        missed.is_empty(),
        "{} spellings not gated:\n{}",
        missed.len(),
        missed.join("\n")
    );
    assert!(newly_gated.is_empty(), "safe names gated:\n{}", newly_gated.join("\n"));
}

#[test]
fn disguised_spellings_are_labeled_suspicious_and_plain_ones_keep_their_category() {
    assert_eq!(classify("\u{00A0}delete_file"), Some(Risk::SuspiciousName));
    assert_eq!(classify("delete_file\u{3000}"), Some(Risk::SuspiciousName));
    assert_eq!(classify("d\u{0435}lete_file"), Some(Risk::SuspiciousName));
    assert_eq!(classify("dele\u{200B}te_file"), Some(Risk::SuspiciousName));
    assert_eq!(classify("DELETEFILE"), Some(Risk::Irreversible));
    assert_eq!(classify("SENDEMAIL"), Some(Risk::ExternalSend));
    assert_eq!(classify("RUNSHELLCOMMAND"), Some(Risk::SystemExecution));
    assert_eq!(classify("ｄｅｌｅｔｅ_ｆｉｌｅ"), Some(Risk::Irreversible));
    assert_eq!(classify("dElEtE_fIlE"), Some(Risk::Irreversible));
    assert_eq!(classify("\u{212A}ill_process"), Some(Risk::Irreversible));
}
