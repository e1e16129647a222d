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

use crate::vocab::MAX_WORD;
use crate::Risk;

#[path = "konst_table.rs"]
mod table;
use table::*;

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
