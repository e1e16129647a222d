//! [`classify_const`](super::classify_const)'s vocabulary: the same word lists as the runtime's, hashed into the
//! same kind of open-addressing table, at compile time.

use crate::vocab::{Class, LISTS, MAX_WORD};
use crate::Risk;

// ---------------------------------------------------------------------------------------------------------------
// The vocabulary, as a table built at compile time.

/// How many (word or prefix, entry) pairs the lists give: one per letter of every word.
pub(super) const PAIRS: usize = {
    let mut n = 0;
    let mut l = 0;
    while l < LISTS.len() {
        let words = LISTS[l].0;
        let mut w = 0;
        while w < words.len() {
            n += words[w].len();
            w += 1;
        }
        l += 1;
    }
    n
};

/// Table size: at most half full, as the runtime's.
pub(super) const SLOTS: usize = (PAIRS * 2).next_power_of_two();
pub(super) const SHIFT: u32 = 128 - SLOTS.trailing_zeros();

/// No class (a prefix only).
pub(super) const NONE: u8 = 0;
pub(super) const CLAUSE: u8 = 1;
pub(super) const READ_ONLY: u8 = 2;
pub(super) const IRREVERSIBLE: u8 = 3;
pub(super) const SYSTEM_EXECUTION: u8 = 4;
pub(super) const EXTERNAL_SEND: u8 = 5;
pub(super) const DATA_MUTATION: u8 = 6;
pub(super) const NOUN: u8 = 7;

pub(super) const fn class_code(class: Class) -> u8 {
    match class {
        Class::Clause => CLAUSE,
        Class::ReadOnly => READ_ONLY,
        Class::Danger(Risk::Irreversible) => IRREVERSIBLE,
        Class::Danger(Risk::SystemExecution) => SYSTEM_EXECUTION,
        Class::Danger(Risk::ExternalSend) => EXTERNAL_SEND,
        Class::Danger(Risk::DataMutation) => DATA_MUTATION,
        // No list holds these two; a word of them would be a danger word of that risk.
        Class::Danger(_) => DATA_MUTATION,
        Class::Noun => NOUN,
    }
}

pub(super) const fn danger(code: u8) -> Option<Risk> {
    match code {
        IRREVERSIBLE => Some(Risk::Irreversible),
        SYSTEM_EXECUTION => Some(Risk::SystemExecution),
        EXTERNAL_SEND => Some(Risk::ExternalSend),
        DATA_MUTATION => Some(Risk::DataMutation),
        _ => None,
    }
}

/// An entry: the class code in bits 26..29, the letters a longer word continues with in bits 0..26.
pub(super) const CLASS_SHIFT: u32 = 26;
pub(super) const NEXT_MASK: u32 = (1 << CLASS_SHIFT) - 1;

pub(super) struct Table {
    keys: [u128; SLOTS],
    entries: [u32; SLOTS],
}

pub(super) const fn slot(key: u128) -> usize {
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) >> SHIFT) as usize
}

/// `letters[start..end]` (1 to [`MAX_WORD`] lowercase ASCII letters) as a key, `0` if they cannot be one.
pub(super) const fn key(letters: &[u8], start: usize, end: usize) -> u128 {
    if end <= start || end - start > MAX_WORD {
        return 0;
    }
    let mut key = 0u128;
    let mut i = start;
    while i < end {
        key |= (letters[i] as u128) << (8 * (i - start));
        i += 1;
    }
    key
}

pub(super) const fn truncate(key: u128, len: usize) -> u128 {
    key & ((1u128 << (8 * len)) - 1)
}

pub(super) const TABLE: Table = {
    let mut table = Table {
        keys: [0; SLOTS],
        entries: [0; SLOTS],
    };
    let mut l = 0;
    while l < LISTS.len() {
        let (words, class) = LISTS[l];
        let code = class_code(class) as u32;
        let mut w = 0;
        while w < words.len() {
            let word = words[w].as_bytes();
            assert!(!word.is_empty() && word.len() <= MAX_WORD);
            let mut end = 1;
            while end <= word.len() {
                let entry = if end == word.len() {
                    code << CLASS_SHIFT
                } else {
                    1 << (word[end] - b'a')
                };
                let k = key(word, 0, end);
                let mut s = slot(k);
                while table.keys[s] != 0 && table.keys[s] != k {
                    s = (s + 1) & (SLOTS - 1);
                }
                table.keys[s] = k;
                let old = table.entries[s];
                // The first class given wins, as at run time (`e.class.or(entry.class)`).
                let class = if old >> CLASS_SHIFT != 0 {
                    old & !NEXT_MASK
                } else {
                    entry & !NEXT_MASK
                };
                table.entries[s] = class | ((old | entry) & NEXT_MASK);
                end += 1;
            }
            w += 1;
        }
        l += 1;
    }
    table
};

/// The entry of a key (`0`: not in the table).
pub(super) const fn entry_by_key(key: u128) -> Option<u32> {
    if key == 0 {
        return None;
    }
    let table = &TABLE;
    let mut s = slot(key);
    loop {
        let k = table.keys[s];
        if k == 0 {
            return None;
        }
        if k == key {
            return Some(table.entries[s]);
        }
        s = (s + 1) & (SLOTS - 1);
    }
}

pub(super) const fn class_of(entry: u32) -> u8 {
    (entry >> CLASS_SHIFT) as u8
}

/// The class of a whole word given by key and length, with the letters longer words continue it with; a plural
/// of a noun is a noun. As `Vocab::lookup_by_key`.
pub(super) const fn lookup_by_key(key: u128, len: usize) -> u32 {
    let entry = match entry_by_key(key) {
        Some(e) => e,
        None => 0,
    };
    if class_of(entry) == NONE && is_plural(key, len) {
        return (entry & NEXT_MASK) | ((NOUN as u32) << CLASS_SHIFT);
    }
    entry
}

pub(super) const fn is_noun_key(key: u128) -> bool {
    match entry_by_key(key) {
        Some(e) => class_of(e) == NOUN,
        None => false,
    }
}

pub(super) const fn is_plural(key: u128, len: usize) -> bool {
    if len <= 3 {
        return false;
    }
    if (key >> (8 * (len - 1))) as u8 != b's' {
        return false;
    }
    is_noun_key(truncate(key, len - 1))
        || (len > 4 && (key >> (8 * (len - 2))) as u8 == b'e' && is_noun_key(truncate(key, len - 2)))
}

/// The class of `letters[start..end]` (lowercase ASCII letters) as a word, `NONE` if unknown. As `Vocab::get`.
pub(super) const fn get(letters: &[u8], start: usize, end: usize) -> u8 {
    if end <= start || end - start > MAX_WORD {
        return NONE;
    }
    class_of(lookup_by_key(key(letters, start, end), end - start))
}

/// The most words [`words_at`] can find: one per length, and two plurals after a noun.
pub(super) const MAX_FOUND: usize = 3 * MAX_WORD;

/// Every known word `letters[start..end]` with `end <= limit`: `(end, class)` pairs, as `Vocab::words_at`.
pub(super) const fn words_at(letters: &[u8], limit: usize, start: usize) -> ([(usize, u8); MAX_FOUND], usize) {
    let mut found = [(0usize, NONE); MAX_FOUND];
    let mut n = 0;
    let last = if limit < start + MAX_WORD {
        limit
    } else {
        start + MAX_WORD
    };
    let mut end = start + 1;
    while end <= last {
        let Some(entry) = entry_by_key(key(letters, start, end)) else {
            break;
        };
        let class = class_of(entry);
        if class == NOUN {
            found[n] = (end, NOUN);
            n += 1;
            if end - start >= 3 {
                if end < limit && letters[end] == b's' {
                    found[n] = (end + 1, NOUN);
                    n += 1;
                } else if end + 1 < limit && letters[end] == b'e' && letters[end + 1] == b's' {
                    found[n] = (end + 2, NOUN);
                    n += 1;
                }
            }
        } else if class != NONE {
            found[n] = (end, class);
            n += 1;
        }
        if entry & NEXT_MASK == 0 {
            break;
        }
        end += 1;
    }
    (found, n)
}

pub(super) const fn continues_with(entry: u32, letter: u8) -> bool {
    letter.is_ascii_lowercase() && entry & (1 << (letter - b'a')) != 0
}
