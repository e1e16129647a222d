//! Reading a name: its words, its clauses, the first verb of each clause, and every way a run of letters splits
//! into known words.
//!
//! The reader keeps the *set* of clause states the name can be in so far. A name with one reading (every word known,
//! or split by case and separators) has one state at a time. A run of letters that splits into known words in more
//! than one way (`deletefile`, `dElEtE_fIlE`, `CANCel`) is read every way at once, and a risk found on any reading
//! counts, so a spelling cannot choose the harmless one.

use crate::vocab::{Class, MAX_WORD, VOCAB};
use crate::{Risk, Words};

/// The clause has not met its first verb yet.
const UNDECIDED: u8 = 1;
/// Undecided, and the last word was a past participle (`annotated`): the next word is a noun if it can be one.
const AFTER_PARTICIPLE: u8 = 2;
/// The clause's first verb has been read: the rest of the clause does not count.
const DECIDED: u8 = 4;

/// The most letters read together. A longer stretch is cut at a word boundary (rare: tool names are short).
const MAX_LETTERS: usize = 128;

/// The risk of a name (already case-folded or ASCII), `None` if no reading of it has a side-effect verb first in a
/// clause.
pub(crate) fn read(name: &str) -> Option<Risk> {
    one_reading(name).unwrap_or_else(|| every_reading(name))
}

/// A piece of a name: a run of ASCII letters, a run of digits, or a word with non-ASCII characters (which the
/// vocabulary does not hold, and which ends a stretch of letters like a digit does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Letters(usize, usize),
    Digits(usize, usize),
    Other,
}

/// The tokens of a name: its [`Words`], with letters and digits apart (`s3upload` is `s`, `3`, `upload`).
struct Tokens<'a> {
    bytes: &'a [u8],
    words: Words<'a>,
    /// The rest of the current word.
    word: (usize, usize),
}

impl<'a> Tokens<'a> {
    fn new(name: &'a str) -> Self {
        Tokens {
            bytes: name.as_bytes(),
            words: Words::new(name),
            word: (0, 0),
        }
    }
}

impl Iterator for Tokens<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        if self.word.0 == self.word.1 {
            let (start, end) = self.words.next()?;
            if !self.bytes[start..end].is_ascii() {
                return Some(Token::Other);
            }
            self.word = (start, end);
        }
        let (start, end) = self.word;
        let digits = self.bytes[start].is_ascii_digit();
        let stop = self.bytes[start..end]
            .iter()
            .position(|b| b.is_ascii_digit() != digits)
            .map_or(end, |n| start + n);
        self.word.0 = stop;
        Some(if digits {
            Token::Digits(start, stop)
        } else {
            Token::Letters(start, stop)
        })
    }
}

/// The common case, read word by word: every word is known and none runs on into the next as a longer known word,
/// so the name has exactly the one reading its words give. `None` when the name needs [`every_reading`].
fn one_reading(name: &str) -> Option<Option<Risk>> {
    let bytes = name.as_bytes();
    let vocab = &*VOCAB;
    let mut states = UNDECIDED;
    let mut worst = None;
    // Every word is looked at, even once the clause is decided: an unknown word later on would let the letters of
    // the earlier ones be read another way (`checkErpush` is `checker` + `push`).
    let mut words = Words::new(name);
    let mut next = words.next();
    // Whether the next word starts a stretch of letters (after the start, a digit or a non-ASCII word).
    let mut stretch_start = true;
    while let Some((start, end)) = next {
        next = words.next();
        let word = &bytes[start..end];
        if word.len() > MAX_WORD {
            return None; // no known word is this long: a run-together name, or unknown
        }
        // The word lowercased, as a vocabulary key.
        let mut lower = [0u8; MAX_WORD];
        let mut plain = true;
        for (o, &b) in lower.iter_mut().zip(word) {
            *o = b | 0x20;
            plain &= b.is_ascii_alphabetic();
        }
        let len = word.len();
        if !plain {
            if !word.is_ascii() {
                stretch_start = true;
                continue; // not a word of the vocabulary
            }
            // Letters and digits take turns (`s3upload`): each run of letters must be a known word. A word that ends
            // in letters could run on into the next word: leave that to `every_reading`.
            if word.last().is_some_and(u8::is_ascii_alphabetic) {
                return None;
            }
            let mut i = 0;
            while i < len {
                let digits = word[i].is_ascii_digit();
                let run = word[i..]
                    .iter()
                    .position(|b| b.is_ascii_digit() != digits)
                    .map_or(len, |n| i + n);
                let class = match vocab.lookup(&lower[i..run]).class {
                    _ if digits => None,
                    Some(class) => Some(class),
                    // One letter that is not a word, first in its stretch (`r2_bucket`, `d1`), reads only as itself.
                    None if run - i == 1 && (i > 0 || stretch_start) => None,
                    None => return None,
                };
                states = step(states, &lower[i..run], class, &mut worst);
                i = run;
            }
            stretch_start = true; // the word ends in digits
            continue;
        }
        stretch_start = false;
        let key = u128::from_le_bytes(lower);
        let entry = vocab.lookup_by_key(key, len);
        let class = entry.class?;
        if let Some((next, next_end)) = next {
            if entry.continues_with(bytes[next] | 0x20) {
                // A known word that goes on through the next word's letters (`up` + `date`) is another reading.
                let mut both = [0u8; 2 * MAX_WORD];
                both[..len].copy_from_slice(&lower[..len]);
                let letters = bytes[next..next_end].iter().take_while(|b| b.is_ascii_alphabetic());
                let mut n = len;
                for (o, b) in both[len..].iter_mut().zip(letters) {
                    *o = b | 0x20;
                    n += 1;
                }
                if vocab.entry(&both[..n]).is_some() {
                    return None;
                }
            }
        }
        states = step(states, &lower[..len], Some(class), &mut worst);
    }
    Some(worst)
}

/// Every reading of a name: words read as written, unknown words split into known ones, and known words read across
/// case changes and separators; the most severe risk of any complete reading.
fn every_reading(name: &str) -> Option<Risk> {
    let mut reader = Reader::new();
    let bytes = name.as_bytes();
    for token in Tokens::new(name) {
        match token {
            Token::Other => reader.flush(),
            Token::Digits(start, end) => {
                reader.flush();
                reader.step(&bytes[start..end], None);
            }
            Token::Letters(start, end) => reader.push(&bytes[start..end]),
        }
    }
    reader.flush();
    reader.worst
}

/// A stretch of words (separated by case changes or separators, not by digits or non-ASCII words), lowercased into
/// one run of letters, with where each word starts and whether it is known.
struct Reader {
    states: u8,
    worst: Option<Risk>,
    letters: [u8; MAX_LETTERS],
    len: usize,
    words: usize,
    /// Where the word starting at a position ends (0: no word starts there).
    word_end: [u8; MAX_LETTERS],
    /// The class of the word starting at a position (`None`: not a known word).
    word_class: [Option<Class>; MAX_LETTERS],
    /// Positions a reading may cut at: word boundaries and the inside of unknown words. The inside of a known word is
    /// never cut, so `runtime` is never `run` + `time` and `evaluate` never holds `eval`; unless the stretch also
    /// has an unknown word, see [`flush`](Self::flush).
    cut: [bool; MAX_LETTERS + 1],
    /// Whether a word of the stretch is unknown.
    unknown: bool,
}

impl Reader {
    fn new() -> Self {
        Reader {
            states: UNDECIDED,
            worst: None,
            letters: [0; MAX_LETTERS],
            len: 0,
            words: 0,
            word_end: [0; MAX_LETTERS],
            word_class: [None; MAX_LETTERS],
            cut: [true; MAX_LETTERS + 1],
            unknown: false,
        }
    }

    /// Adds a word of ASCII letters to the stretch.
    fn push(&mut self, word: &[u8]) {
        if word.len() > MAX_LETTERS {
            self.flush();
            self.step(word, None);
            return;
        }
        if self.len + word.len() > MAX_LETTERS {
            self.flush();
        }
        let (start, end) = (self.len, self.len + word.len());
        for (o, b) in self.letters[start..end].iter_mut().zip(word) {
            *o = b.to_ascii_lowercase();
        }
        let class = VOCAB.get(&self.letters[start..end]);
        self.word_end[start] = end as u8;
        self.word_class[start] = class;
        self.cut[start] = true;
        for c in &mut self.cut[start + 1..end] {
            *c = class.is_none();
        }
        self.cut[end] = true;
        self.unknown |= class.is_none();
        self.len = end;
        self.words += 1;
    }

    /// Reads the stretch every way it splits into words and moves the clause states past it.
    fn flush(&mut self) {
        let n = self.len;
        if n == 0 {
            return;
        }
        let letters = &self.letters[..n];
        if self.unknown {
            // Where words were cut was chosen by whoever spelled the name: a case change can make a known word that
            // swallows part of a verb, leaving the rest unknown (`forksAve` for `forkSave`). So a known word that
            // overlaps an unknown one is also read, and its ends become places to cut the known words it starts
            // or ends inside (`forks|Ave` reads `fork` + `save`). A known word next to nothing unknown stays whole
            // (`mailbox_stats` is never `mail` + ...).
            let mut unknown_before = [0u8; MAX_LETTERS + 1];
            let mut p = 0;
            while p < n {
                let end = usize::from(self.word_end[p]);
                let unknown = self.word_class[p].is_none();
                for i in p..end {
                    unknown_before[i + 1] = unknown_before[i] + u8::from(unknown);
                }
                p = end;
            }
            let mut extra = [false; MAX_LETTERS + 1];
            for p in 0..n {
                VOCAB.words_at(letters, p, |end, _| {
                    if unknown_before[end] > unknown_before[p] {
                        extra[p] = true;
                        extra[end] = true;
                    }
                });
            }
            for (cut, extra) in self.cut[..=n].iter_mut().zip(extra) {
                *cut |= extra;
            }
        }
        if self.words == 1 && self.word_class[0].is_some() {
            // One known word: one reading.
            self.states = step(self.states, letters, self.word_class[0], &mut self.worst);
        } else {
            // `ok[p]`: the letters from `p` on can be read to the end (as known words, or as the words they were
            // written as). Every word boundary can, by reading each word as written.
            let mut ok = [false; MAX_LETTERS + 1];
            ok[n] = true;
            for p in (0..n).rev() {
                if !self.cut[p] {
                    continue;
                }
                ok[p] = self.word_end[p] != 0 || {
                    let mut any = false;
                    VOCAB.words_at(letters, p, |end, _| any |= self.cut[end] && ok[end]);
                    any
                };
            }
            // Every reading from the start, as the set of clause states at each position. A risk is only recorded on
            // an edge that both the start reaches and the end can be reached from, i.e. on a complete reading.
            let mut states = [0u8; MAX_LETTERS + 1];
            states[0] = self.states;
            for p in 0..n {
                let from = states[p];
                if from == 0 || !ok[p] {
                    continue;
                }
                let end = usize::from(self.word_end[p]);
                if end != 0 && self.word_class[p].is_none() {
                    // An unknown word, read as written.
                    states[end] |= step(from, &letters[p..end], None, &mut self.worst);
                }
                let (cut, worst) = (&self.cut, &mut self.worst);
                VOCAB.words_at(letters, p, |end, class| {
                    if cut[end] && ok[end] {
                        states[end] |= step(from, &letters[p..end], Some(class), worst);
                    }
                });
            }
            self.states = states[n];
        }
        self.word_end[..n].fill(0);
        self.cut[..=n].fill(true);
        self.len = 0;
        self.words = 0;
        self.unknown = false;
    }

    /// A word outside any stretch (digits, or a word too long to read).
    fn step(&mut self, word: &[u8], class: Option<Class>) {
        self.states = step(self.states, word, class, &mut self.worst);
    }
}

/// The clause states after reading `word` (of class `class`, `None` if unknown) from each of the states `from`.
fn step(from: u8, word: &[u8], class: Option<Class>, worst: &mut Option<Risk>) -> u8 {
    if class == Some(Class::Clause) {
        return UNDECIDED;
    }
    let mut to = from & DECIDED;
    let mut live = from & (UNDECIDED | AFTER_PARTICIPLE);
    if live & AFTER_PARTICIPLE != 0 && is_noun_verb(word) {
        // After a participle, a verb that is also a common noun is a noun: `annotatedMessage`.
        to |= UNDECIDED;
        live &= !AFTER_PARTICIPLE;
    }
    if live == 0 {
        return to;
    }
    to | match class {
        Some(Class::Danger(risk)) => {
            if worst.is_none_or(|w| risk.severity() < w.severity()) {
                *worst = Some(risk);
            }
            DECIDED
        }
        Some(Class::ReadOnly) => DECIDED,
        _ if is_participle(word) => AFTER_PARTICIPLE,
        _ => UNDECIDED,
    }
}

/// Verbs that are also common nouns: only these are read as nouns after a participle. A real danger verb after
/// one (`forced_delete_user`, `scheduled_run`) still counts.
fn is_noun_verb(word: &[u8]) -> bool {
    matches!(
        word,
        b"message"
            | b"post"
            | b"email"
            | b"mail"
            | b"order"
            | b"call"
            | b"page"
            | b"comment"
            | b"record"
            | b"report"
            | b"review"
            | b"tag"
            | b"label"
            | b"book"
            | b"link"
            | b"star"
            | b"pin"
            | b"like"
            | b"store"
            | b"stage"
            | b"block"
            | b"command"
            | b"script"
            | b"alert"
            | b"transfer"
            | b"export"
            | b"import"
            | b"request"
    )
}

/// A past participle used as an adjective: a word of five or more letters ending in `ed` (`annotated`, `scheduled`).
fn is_participle(word: &[u8]) -> bool {
    word.len() > 4 && word.ends_with(b"ed")
}
