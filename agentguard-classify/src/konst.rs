//! [`classify_const`]: the classifier as a `const fn`, for names known at compile time (a rig tool's `Tool::NAME`).
//!
//! The same rules as [`classify`](crate::classify), written again with what `const fn` allows (no traits, closures,
//! iterators or heap): the same vocabulary lists, hashed into the same kind of table at compile time, the same word
//! splitting, and the same two readers (one reading word by word; every reading of run-together letters). The tests
//! check that both agree on every name of the catalog, on its spellings and on random names.
//!
//! Only the Unicode part is left out: a name with a non-ASCII character is reported as
//! [`Risk::SuspiciousName`], since a `const fn` cannot run NFKC, case folding or the UTS #39 checks. That errs on the
//! side of asking: where `classify` finds such a name dangerous, so does this, and where it finds it safe
//! (`café_menu`), this does not.

use crate::vocab::{Class, LISTS, MAX_WORD};
use crate::Risk;

// ---------------------------------------------------------------------------------------------------------------
// The vocabulary, as a table built at compile time.

/// How many (word or prefix, entry) pairs the lists give: one per letter of every word.
const PAIRS: usize = {
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
const SLOTS: usize = (PAIRS * 2).next_power_of_two();
const SHIFT: u32 = 128 - SLOTS.trailing_zeros();

/// No class (a prefix only).
const NONE: u8 = 0;
const CLAUSE: u8 = 1;
const READ_ONLY: u8 = 2;
const IRREVERSIBLE: u8 = 3;
const SYSTEM_EXECUTION: u8 = 4;
const EXTERNAL_SEND: u8 = 5;
const DATA_MUTATION: u8 = 6;
const NOUN: u8 = 7;

const fn class_code(class: Class) -> u8 {
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

const fn danger(code: u8) -> Option<Risk> {
    match code {
        IRREVERSIBLE => Some(Risk::Irreversible),
        SYSTEM_EXECUTION => Some(Risk::SystemExecution),
        EXTERNAL_SEND => Some(Risk::ExternalSend),
        DATA_MUTATION => Some(Risk::DataMutation),
        _ => None,
    }
}

/// An entry: the class code in bits 26..29, the letters a longer word continues with in bits 0..26.
const CLASS_SHIFT: u32 = 26;
const NEXT_MASK: u32 = (1 << CLASS_SHIFT) - 1;

struct Table {
    keys: [u128; SLOTS],
    entries: [u32; SLOTS],
}

const fn slot(key: u128) -> usize {
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) >> SHIFT) as usize
}

/// `letters[start..end]` (1 to [`MAX_WORD`] lowercase ASCII letters) as a key, `0` if they cannot be one.
const fn key(letters: &[u8], start: usize, end: usize) -> u128 {
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

const fn truncate(key: u128, len: usize) -> u128 {
    key & ((1u128 << (8 * len)) - 1)
}

const TABLE: Table = {
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
const fn entry_by_key(key: u128) -> Option<u32> {
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

const fn class_of(entry: u32) -> u8 {
    (entry >> CLASS_SHIFT) as u8
}

/// The class of a whole word given by key and length, with the letters longer words continue it with; a plural
/// of a noun is a noun. As `Vocab::lookup_by_key`.
const fn lookup_by_key(key: u128, len: usize) -> u32 {
    let entry = match entry_by_key(key) {
        Some(e) => e,
        None => 0,
    };
    if class_of(entry) == NONE && is_plural(key, len) {
        return (entry & NEXT_MASK) | ((NOUN as u32) << CLASS_SHIFT);
    }
    entry
}

const fn is_noun_key(key: u128) -> bool {
    match entry_by_key(key) {
        Some(e) => class_of(e) == NOUN,
        None => false,
    }
}

const fn is_plural(key: u128, len: usize) -> bool {
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
const fn get(letters: &[u8], start: usize, end: usize) -> u8 {
    if end <= start || end - start > MAX_WORD {
        return NONE;
    }
    class_of(lookup_by_key(key(letters, start, end), end - start))
}

/// The most words [`words_at`] can find: one per length, and two plurals after a noun.
const MAX_FOUND: usize = 3 * MAX_WORD;

/// Every known word `letters[start..end]` with `end <= limit`: `(end, class)` pairs, as `Vocab::words_at`.
const fn words_at(letters: &[u8], limit: usize, start: usize) -> ([(usize, u8); MAX_FOUND], usize) {
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

const fn continues_with(entry: u32, letter: u8) -> bool {
    letter.is_ascii_lowercase() && entry & (1 << (letter - b'a')) != 0
}

// ---------------------------------------------------------------------------------------------------------------
// Words, as `crate::Words`.

const fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// The next word of `bytes` at or after `pos`: `(start, end)`, or `None`.
const fn next_word(bytes: &[u8], pos: usize) -> Option<(usize, usize)> {
    let mut pos = pos;
    while pos < bytes.len() && !is_word_byte(bytes[pos]) {
        pos += 1;
    }
    if pos >= bytes.len() {
        return None;
    }
    let start = pos;
    let mut i = start + 1;
    while i < bytes.len() && is_word_byte(bytes[i]) {
        let prev = bytes[i - 1];
        let cur = bytes[i];
        if cur.is_ascii_uppercase() && (prev.is_ascii_lowercase() || prev.is_ascii_digit()) {
            break;
        }
        if cur.is_ascii_uppercase()
            && prev.is_ascii_uppercase()
            && i + 1 < bytes.len()
            && bytes[i + 1].is_ascii_lowercase()
        {
            break;
        }
        i += 1;
    }
    Some((start, i))
}

// ---------------------------------------------------------------------------------------------------------------
// Clause states, as `read::step`.

const UNDECIDED: u8 = 1;
const AFTER_PARTICIPLE: u8 = 2;
const DECIDED: u8 = 4;
const MAX_LETTERS: usize = 128;

const fn severity(risk: Risk) -> u8 {
    match risk {
        Risk::SuspiciousName => 0,
        Risk::Irreversible => 1,
        Risk::SystemExecution => 2,
        Risk::ExternalSend => 3,
        Risk::DataMutation => 4,
        Risk::ManuallyFlagged => 5,
    }
}

const fn bytes_eq(a: &[u8], start: usize, end: usize, b: &[u8]) -> bool {
    if end - start != b.len() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if a[start + i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const NOUN_VERBS: [&[u8]; 28] = [
    b"message",
    b"post",
    b"email",
    b"mail",
    b"order",
    b"call",
    b"page",
    b"comment",
    b"record",
    b"report",
    b"review",
    b"tag",
    b"label",
    b"book",
    b"link",
    b"star",
    b"pin",
    b"like",
    b"store",
    b"stage",
    b"block",
    b"command",
    b"script",
    b"alert",
    b"transfer",
    b"export",
    b"import",
    b"request",
];

/// `word[start..end]` is one of `read::is_noun_verb`'s words (lowercase letters; `word` may be any case: compared
/// lowercased, as the runtime reader sees it).
const fn is_noun_verb(word: &[u8], start: usize, end: usize) -> bool {
    let mut i = 0;
    while i < NOUN_VERBS.len() {
        if bytes_eq(word, start, end, NOUN_VERBS[i]) {
            return true;
        }
        i += 1;
    }
    false
}

const fn is_participle(word: &[u8], start: usize, end: usize) -> bool {
    end - start > 4 && word[end - 2] == b'e' && word[end - 1] == b'd'
}

/// The clause states after reading `word[start..end]` of class `class`, as `read::step`.
const fn step(from: u8, word: &[u8], start: usize, end: usize, class: u8, worst: &mut Option<Risk>) -> u8 {
    if class == CLAUSE {
        return UNDECIDED;
    }
    let mut to = from & DECIDED;
    let mut live = from & (UNDECIDED | AFTER_PARTICIPLE);
    if live & AFTER_PARTICIPLE != 0 && is_noun_verb(word, start, end) {
        to |= UNDECIDED;
        live &= !AFTER_PARTICIPLE;
    }
    if live == 0 {
        return to;
    }
    if let Some(risk) = danger(class) {
        let worse = match *worst {
            None => true,
            Some(w) => severity(risk) < severity(w),
        };
        if worse {
            *worst = Some(risk);
        }
        return to | DECIDED;
    }
    if class == READ_ONLY {
        return to | DECIDED;
    }
    if is_participle(word, start, end) {
        return to | AFTER_PARTICIPLE;
    }
    to | UNDECIDED
}

// ---------------------------------------------------------------------------------------------------------------
// The two readers, as `read::one_reading` and `read::every_reading`.

const fn lowercase(word: &[u8], start: usize, end: usize) -> [u8; MAX_WORD] {
    let mut lower = [0u8; MAX_WORD];
    let mut i = start;
    while i < end {
        lower[i - start] = word[i] | 0x20;
        i += 1;
    }
    lower
}

/// `Some(risk)` when the name has exactly the reading its words give; `None` when it needs [`every_reading`].
const fn one_reading(bytes: &[u8]) -> Option<Option<Risk>> {
    let mut states = UNDECIDED;
    let mut worst = None;
    let mut next = next_word(bytes, 0);
    let mut stretch_start = true;
    while let Some((start, end)) = next {
        next = next_word(bytes, end);
        let len = end - start;
        if len > MAX_WORD {
            return None;
        }
        let lower = lowercase(bytes, start, end);
        let mut plain = true;
        let mut ascii = true;
        let mut i = start;
        while i < end {
            plain &= bytes[i].is_ascii_alphabetic();
            ascii &= bytes[i].is_ascii();
            i += 1;
        }
        if !plain {
            if !ascii {
                stretch_start = true;
                continue;
            }
            if bytes[end - 1].is_ascii_alphabetic() {
                return None;
            }
            let mut i = 0;
            while i < len {
                let digits = bytes[start + i].is_ascii_digit();
                let mut run = i;
                while run < len && bytes[start + run].is_ascii_digit() == digits {
                    run += 1;
                }
                let class = if digits {
                    NONE
                } else {
                    let c = class_of(lookup_by_key(key(&lower, i, run), run - i));
                    if c == NONE && !(run - i == 1 && (i > 0 || stretch_start)) {
                        return None;
                    }
                    c
                };
                states = step(states, &lower, i, run, class, &mut worst);
                i = run;
            }
            stretch_start = true;
            continue;
        }
        stretch_start = false;
        let entry = lookup_by_key(key(&lower, 0, len), len);
        let class = class_of(entry);
        if class == NONE {
            return None;
        }
        if let Some((next_start, next_end)) = next {
            if continues_with(entry, bytes[next_start] | 0x20) {
                let mut both = [0u8; 2 * MAX_WORD];
                let mut n = 0;
                while n < len {
                    both[n] = lower[n];
                    n += 1;
                }
                let mut j = next_start;
                while j < next_end && bytes[j].is_ascii_alphabetic() && n < 2 * MAX_WORD {
                    both[n] = bytes[j] | 0x20;
                    n += 1;
                    j += 1;
                }
                if n <= MAX_WORD && entry_by_key(key(&both, 0, n)).is_some() {
                    return None;
                }
            }
        }
        states = step(states, &lower, 0, len, class, &mut worst);
    }
    Some(worst)
}

/// A stretch of words lowercased into one run of letters, as `read::Reader`.
struct Reader {
    states: u8,
    worst: Option<Risk>,
    letters: [u8; MAX_LETTERS],
    len: usize,
    words: usize,
    word_end: [usize; MAX_LETTERS],
    /// `NONE`: not a known word.
    word_class: [u8; MAX_LETTERS],
    cut: [bool; MAX_LETTERS + 1],
    unknown: bool,
}

const fn new_reader() -> Reader {
    Reader {
        states: UNDECIDED,
        worst: None,
        letters: [0; MAX_LETTERS],
        len: 0,
        words: 0,
        word_end: [0; MAX_LETTERS],
        word_class: [NONE; MAX_LETTERS],
        cut: [true; MAX_LETTERS + 1],
        unknown: false,
    }
}

/// Adds the word `bytes[start..end]` (ASCII letters) to the stretch.
const fn push(r: &mut Reader, bytes: &[u8], start: usize, end: usize) {
    let wlen = end - start;
    if wlen > MAX_LETTERS {
        flush(r);
        // A word this long is unknown: read as written.
        r.states = step(r.states, bytes, start, end, NONE, &mut r.worst);
        return;
    }
    if r.len + wlen > MAX_LETTERS {
        flush(r);
    }
    let (s, e) = (r.len, r.len + wlen);
    let mut i = 0;
    while i < wlen {
        r.letters[s + i] = bytes[start + i].to_ascii_lowercase();
        i += 1;
    }
    let class = get(&r.letters, s, e);
    r.word_end[s] = e;
    r.word_class[s] = class;
    r.cut[s] = true;
    let mut i = s + 1;
    while i < e {
        r.cut[i] = class == NONE;
        i += 1;
    }
    r.cut[e] = true;
    r.unknown |= class == NONE;
    r.len = e;
    r.words += 1;
}

const fn flush(r: &mut Reader) {
    let n = r.len;
    if n == 0 {
        return;
    }
    if r.unknown {
        let mut unknown_before = [0usize; MAX_LETTERS + 1];
        let mut p = 0;
        while p < n {
            let end = r.word_end[p];
            let unknown = r.word_class[p] == NONE;
            let mut i = p;
            while i < end {
                unknown_before[i + 1] = unknown_before[i] + if unknown { 1 } else { 0 };
                i += 1;
            }
            p = end;
        }
        let mut extra = [false; MAX_LETTERS + 1];
        let mut p = 0;
        while p < n {
            let (found, count) = words_at(&r.letters, n, p);
            let mut f = 0;
            while f < count {
                let end = found[f].0;
                if unknown_before[end] > unknown_before[p] {
                    extra[p] = true;
                    extra[end] = true;
                }
                f += 1;
            }
            p += 1;
        }
        let mut i = 0;
        while i <= n {
            r.cut[i] |= extra[i];
            i += 1;
        }
    }
    if r.words == 1 && r.word_class[0] != NONE {
        r.states = step(r.states, &r.letters, 0, n, r.word_class[0], &mut r.worst);
    } else {
        let mut ok = [false; MAX_LETTERS + 1];
        ok[n] = true;
        let mut p = n;
        while p > 0 {
            p -= 1;
            if !r.cut[p] {
                continue;
            }
            ok[p] = if r.word_end[p] != 0 {
                true
            } else {
                let (found, count) = words_at(&r.letters, n, p);
                let mut any = false;
                let mut f = 0;
                while f < count {
                    let end = found[f].0;
                    any |= r.cut[end] && ok[end];
                    f += 1;
                }
                any
            };
        }
        let mut states = [0u8; MAX_LETTERS + 1];
        states[0] = r.states;
        let mut p = 0;
        while p < n {
            let from = states[p];
            if from == 0 || !ok[p] {
                p += 1;
                continue;
            }
            let end = r.word_end[p];
            if end != 0 && r.word_class[p] == NONE {
                states[end] |= step(from, &r.letters, p, end, NONE, &mut r.worst);
            }
            let (found, count) = words_at(&r.letters, n, p);
            let mut f = 0;
            while f < count {
                let (end, class) = found[f];
                if r.cut[end] && ok[end] {
                    states[end] |= step(from, &r.letters, p, end, class, &mut r.worst);
                }
                f += 1;
            }
            p += 1;
        }
        r.states = states[n];
    }
    let mut i = 0;
    while i < n {
        r.word_end[i] = 0;
        i += 1;
    }
    let mut i = 0;
    while i <= n {
        r.cut[i] = true;
        i += 1;
    }
    r.len = 0;
    r.words = 0;
    r.unknown = false;
}

/// Every reading of an ASCII name, as `read::every_reading` over `read::Tokens`.
const fn every_reading(bytes: &[u8]) -> Option<Risk> {
    let mut r = new_reader();
    let mut next = next_word(bytes, 0);
    while let Some((start, end)) = next {
        next = next_word(bytes, end);
        // Tokens: runs of letters and runs of digits.
        let mut i = start;
        while i < end {
            let digits = bytes[i].is_ascii_digit();
            let mut stop = i;
            while stop < end && bytes[stop].is_ascii_digit() == digits {
                stop += 1;
            }
            if digits {
                flush(&mut r);
                r.states = step(r.states, bytes, i, stop, NONE, &mut r.worst);
            } else {
                push(&mut r, bytes, i, stop);
            }
            i = stop;
        }
    }
    flush(&mut r);
    r.worst
}

/// [`classify`](crate::classify) as a `const fn`, for names known at compile time.
///
/// For an ASCII name it gives exactly what `classify` gives (tested on every name of the catalog, their spellings
/// and random names). A name with any non-ASCII character is [`Risk::SuspiciousName`]: the Unicode rules (NFKC,
/// case folding, UTS #39) cannot run in a `const fn`, so such a name is always treated as needing approval; where
/// `classify` finds it dangerous, this does too.
///
/// ```
/// use agentguard_classify::{classify_const, Risk};
///
/// const DELETE: Option<Risk> = classify_const("deleteFile");
/// assert_eq!(DELETE, Some(Risk::Irreversible));
/// const _: () = assert!(classify_const("get_weather").is_none());
/// const _: () = assert!(classify_const("SENDEMAIL").is_some());
/// ```
pub const fn classify_const(name: &str) -> Option<Risk> {
    let bytes = name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !b.is_ascii() {
            return Some(Risk::SuspiciousName);
        }
        if b.is_ascii_control() {
            return Some(Risk::SuspiciousName);
        }
        i += 1;
    }
    if !bytes.is_empty() && (bytes[0] == b' ' || bytes[bytes.len() - 1] == b' ') {
        return Some(Risk::SuspiciousName);
    }
    match one_reading(bytes) {
        Some(risk) => risk,
        None => every_reading(bytes),
    }
}

/// Whether [`classify_const`] finds `name` dangerous: `classify_const(name).is_some()`, usable in `const` asserts.
pub const fn is_dangerous_const(name: &str) -> bool {
    classify_const(name).is_some()
}
