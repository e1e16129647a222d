//! Characters that hide, reorder or fake text: controls, format characters (zero-width, bidi controls, tag
//! characters), line and paragraph separators, and every Default_Ignorable_Code_Point (variation selectors, Hangul
//! fillers, …). One definition, generated from the Unicode Character Database (`gen/hidden_chars.py`), used by the
//! classifier (a tool name holding one is suspicious) and by everything that shows text a model wrote: the terminal
//! prompt, the CLI and the approval page.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::hidden_table::HIDDEN;

/// `true` for a character that hides, reorders or fakes text (see the module docs): show it escaped, never as is.
///
/// ```
/// use agentguard_classify::is_hidden;
/// assert!(is_hidden('\u{202E}')); // right-to-left override
/// assert!(is_hidden('\u{E0041}')); // tag letter A ("ASCII smuggling")
/// assert!(is_hidden('\u{FE0F}')); // variation selector
/// assert!(is_hidden('\n'));
/// assert!(!is_hidden('é') && !is_hidden(' '));
/// ```
pub fn is_hidden(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    HIDDEN
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// `text` with every [hidden](is_hidden) character written as a visible `\u{XXXX}` mark (upper-case hex, at least
/// four digits), the same mark the approval page shows. Borrowed when there is nothing to escape.
///
/// ```
/// use agentguard_classify::escape_hidden;
/// assert_eq!(escape_hidden("report\u{202E}fdp.exe"), "report\\u{202E}fdp.exe");
/// assert_eq!(escape_hidden("\x1b[2A"), "\\u{001B}[2A");
/// assert_eq!(escape_hidden("plain"), "plain");
/// ```
pub fn escape_hidden(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_hidden(c) {
            let _ = write!(out, "\\u{{{:04X}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The hidden set as a JavaScript regular expression character class (for a `/[…]/gu` literal), so the approval
/// page marks exactly the characters the terminal and the CLI escape.
pub fn hidden_js_class() -> String {
    let mut class = String::from("[");
    for &(lo, hi) in HIDDEN {
        let _ = write!(class, "\\u{{{:X}}}", lo as u32);
        if hi != lo {
            let _ = write!(class, "-\\u{{{:X}}}", hi as u32);
        }
    }
    class.push(']');
    class
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_of_hidden_character_is_marked() {
        let classes: &[(&str, &[char])] = &[
            (
                "C0 and C1 controls",
                &['\0', '\x1b', '\n', '\r', '\t', '\u{7F}', '\u{85}', '\u{9B}'],
            ),
            (
                "zero-width",
                &['\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}'],
            ),
            (
                "bidi controls",
                &[
                    '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}',
                ],
            ),
            (
                "tag characters",
                &['\u{E0000}', '\u{E0001}', '\u{E0020}', '\u{E0041}', '\u{E007F}'],
            ),
            (
                "variation selectors",
                &['\u{FE00}', '\u{FE0F}', '\u{E0100}', '\u{E01EF}', '\u{180B}', '\u{180F}'],
            ),
            ("combining grapheme joiner", &['\u{034F}']),
            ("Mongolian", &['\u{180B}', '\u{180C}', '\u{180D}', '\u{180E}']),
            ("Khmer inherent vowels", &['\u{17B4}', '\u{17B5}']),
            ("Hangul fillers", &['\u{115F}', '\u{1160}', '\u{3164}', '\u{FFA0}']),
            ("soft hyphen", &['\u{00AD}']),
            ("line and paragraph separators", &['\u{2028}', '\u{2029}']),
            ("interlinear annotation", &['\u{FFF9}', '\u{FFFB}']),
        ];
        for (class, chars) in classes {
            for &c in *chars {
                assert!(is_hidden(c), "{class}: U+{:04X} is not marked", c as u32);
                let text = format!("a{c}b");
                let shown = escape_hidden(&text);
                assert_eq!(shown, format!("a\\u{{{:04X}}}b", c as u32), "{class}");
            }
        }
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for text in ["delete_file", "Grüße, 東京", "a b", "emoji 🙂", "€100", "Ünïcödé"] {
            assert!(matches!(escape_hidden(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn the_table_is_sorted_and_disjoint() {
        for pair in HIDDEN.windows(2) {
            assert!(pair[0].1 < pair[1].0, "{pair:?}");
        }
        assert!(HIDDEN.iter().all(|(lo, hi)| lo <= hi));
    }

    #[test]
    fn the_table_matches_the_unicode_data_files() {
        // The generator's --check compares the committed table with one made from /usr/share/unicode (Debian's
        // unicode-data). CI installs it; elsewhere the check is skipped with a note.
        let ucd = std::env::var("AGENTGUARD_UCD").unwrap_or_else(|_| "/usr/share/unicode".into());
        if !std::path::Path::new(&ucd).join("DerivedCoreProperties.txt").exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must install unicode-data (apt-get install unicode-data) for this check"
            );
            eprintln!("skipped: no Unicode data at {ucd} (apt-get install unicode-data)");
            return;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/gen/hidden_chars.py");
        let out = std::process::Command::new("python3")
            .args([script, "--check"])
            .output()
            .expect("python3 runs the generator");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
