//! One normalized form for names: Unicode NFKC, case folded, camel-case boundaries kept as `_`; the keys the
//! guard's lists match on; and what makes a name suspicious.

use std::borrow::Cow;

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;
use unicode_security::{skeleton, GeneralSecurityProfile, RestrictionLevel, RestrictionLevelDetection};

use crate::{is_hidden, Words};

/// A name in its normalized form: Unicode NFKC, case folded (full Unicode case folding), with an `_` where a case
/// change split two words (`deleteFile` → `delete_file`, so the words survive the lowercasing). Everything else is
/// kept, including whitespace and invisible characters, so the normalized form is exactly as suspicious as the
/// name. Fullwidth `ＤＥＬＥＴＥ` and the Kelvin sign in `\u{212A}ill` become `delete` and `kill`.
///
/// Normalizing twice changes nothing, and [`classify`](crate::classify) reads a name and its normalized form the
/// same way. Borrows when the name is already normalized (lowercase ASCII, the common case).
pub fn fold_name(name: &str) -> Cow<'_, str> {
    if name.is_ascii() {
        if !name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Cow::Borrowed(name);
        }
        let mut out = mark_case_boundaries(name);
        out.make_ascii_lowercase();
        return Cow::Owned(out);
    }
    let nfkc: String = name.nfkc().collect();
    let mut out = mark_case_boundaries(&nfkc);
    // Case folding can leave text that NFKC changes again, and the other way round: repeat to a fixed point.
    for _ in 0..4 {
        let next: String = caseless::Caseless::default_case_fold(out.chars()).nfkc().collect();
        if next == out {
            break;
        }
        out = next;
    }
    Cow::Owned(out)
}

/// `name` with an `_` between two words that only a case change separates (`HTTPRequest` → `HTTP_Request`).
fn mark_case_boundaries(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut last = 0;
    for (start, end) in Words::new(name) {
        out.push_str(&name[last..start]);
        if start == last && last != 0 {
            out.push('_');
        }
        out.push_str(&name[start..end]);
        last = end;
    }
    out.push_str(&name[last..]);
    out
}

/// A name in one canonical spelling: the words of its [normalized form](fold_name), joined by `_` (`deleteUser`,
/// `Delete-User`, `DELETE_USER` and fullwidth `ＤＥＬＥＴＥ_ＵＳＥＲ` all give `delete_user`).
pub fn normalize_name(name: &str) -> String {
    let folded = fold_name(name);
    let mut out = String::with_capacity(folded.len());
    for (s, e) in Words::new(&folded) {
        if !out.is_empty() {
            out.push('_');
        }
        out.push_str(&folded[s..e]);
    }
    out
}

/// The key a name matches `safe_tools` by: its [normalized form](fold_name) with everything but letters, digits and
/// combining marks removed. `loyaltyBonus`, `LOYALTYBONUS`, `loyalty-bonus` and `Loyalty Bonus` share one key.
pub fn name_key(name: &str) -> String {
    fold_name(name)
        .chars()
        .filter(|&c| c.is_alphanumeric() || is_combining_mark(c))
        .collect()
}

/// The key a name matches `dangerous_tools` by: the UTS #39 confusable skeleton of its [`name_key`], letters and
/// digits only. A name spelled with look-alike letters from another script (`lоyalty_bonus` with a Cyrillic `о`),
/// accents or invisible characters has the same key as the name it imitates. Wider than [`name_key`] on purpose:
/// a look-alike of a dangerous tool is dangerous.
pub fn confusable_key(name: &str) -> String {
    skeleton(&name_key(name)).filter(|c| c.is_alphanumeric()).collect()
}

/// Whether an ASCII name has a space at either end, or a control character (tab, newline, escape, …) anywhere.
pub(crate) fn ascii_suspicious(name: &[u8]) -> bool {
    name.first() == Some(&b' ') || name.last() == Some(&b' ') || name.iter().any(u8::is_ascii_control)
}

/// Whether a normalized, non-ASCII name hides or imitates something: whitespace at either end (a dispatcher that
/// trims would run the name without it), a control, invisible (default-ignorable, zero-width, bidi), unassigned,
/// private-use or other character not allowed in identifiers by UTS #39, letters of scripts that are not normally
/// mixed (Latin with Cyrillic or Greek: less than UTS #39's highly restrictive level), or letters that are all
/// look-alikes of ASCII (`сору` in Cyrillic).
pub(crate) fn suspicious(folded: &str) -> bool {
    if folded.starts_with(char::is_whitespace) || folded.ends_with(char::is_whitespace) {
        return true;
    }
    // Hidden characters (the crate's one definition, shared with every place that shows text), and anything else
    // UTS #39 does not allow in identifiers (U+2800 braille blank, private use, unassigned, symbols).
    let disallowed = |c: char| is_hidden(c) || (!c.is_ascii() && !c.identifier_allowed());
    if folded.chars().any(disallowed) {
        return true;
    }
    if folded.is_ascii() {
        return false;
    }
    let letters: String = folded.chars().filter(|c| c.is_alphanumeric()).collect();
    if letters.as_str().detect_restriction_level() > RestrictionLevel::HighlyRestrictive {
        return true;
    }
    skeleton(folded).all(|c| c.is_ascii())
}

/// A non-ASCII name with its accents removed (`dèlete_file` → `delete_file`), if that changes it.
pub(crate) fn without_accents(folded: &str) -> Option<String> {
    if folded.is_ascii() {
        return None;
    }
    let plain: String = folded.nfd().filter(|&c| !is_combining_mark(c)).collect();
    (plain != folded).then_some(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_width_and_compatibility_spellings_keeping_word_boundaries() {
        assert_eq!(fold_name("delete_file"), "delete_file");
        assert!(matches!(fold_name("delete_file"), Cow::Borrowed(_)));
        assert_eq!(fold_name("deleteFile"), "delete_file");
        assert_eq!(fold_name("HTTPRequest"), "http_request");
        assert_eq!(fold_name("DELETEFILE"), "deletefile");
        assert_eq!(fold_name("ＤｅｌｅｔｅＦｉｌｅ"), "delete_file");
        assert_eq!(fold_name("\u{212A}ill_process"), "kill_process");
        assert_eq!(fold_name("STRAẞE"), "strasse");
        assert_eq!(fold_name("\u{00A0}delete"), " delete");
        assert_eq!(fold_name("del\u{200B}ete"), "del\u{200B}ete");
    }

    #[test]
    fn keys_ignore_case_separators_width_and_for_the_danger_list_look_alikes() {
        for spelling in [
            "loyaltyBonus",
            "LOYALTYBONUS",
            "loyalty-bonus",
            "Loyalty Bonus",
            "ｌｏｙａｌｔｙ_ｂｏｎｕｓ",
        ] {
            assert_eq!(name_key(spelling), "loyaltybonus", "{spelling}");
        }
        let key = confusable_key("loyalty_bonus");
        for spelling in [
            "l\u{043E}yalty_bonus",
            "loyalty\u{200B}_bonus",
            "\u{00A0}loyaltyBonus\u{3000}",
        ] {
            assert_eq!(confusable_key(spelling), key, "{spelling}");
        }
        assert_ne!(name_key("l\u{043E}yalty_bonus"), "loyaltybonus");
    }

    #[test]
    fn finds_hidden_edge_and_look_alike_characters() {
        for name in [
            " delete",
            "delete ",
            "del\u{200B}ete",
            "del\u{200D}ete",
            "del\u{00AD}ete",
            "delete\u{202E}elif",
            "delete\u{2800}",
            "d\u{0435}lete",
            "\u{0441}\u{043E}\u{0440}\u{0443}",
            "k\u{0131}ll",
            "tool\u{E000}",
        ] {
            assert!(suspicious(&fold_name(name)), "{name:?}");
        }
        for name in [
            "delete file",
            "caf\u{00E9}_menu",
            "удалить_файл",
            "日本語_tool",
            "straße",
        ] {
            assert!(!suspicious(&fold_name(name)), "{name:?}");
        }
        assert!(ascii_suspicious(b" delete") && ascii_suspicious(b"delete\t") && ascii_suspicious(b"de\x00l"));
        assert!(!ascii_suspicious(b"send email"));
    }
}
