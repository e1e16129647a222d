//! Canonical JSON: compact, keys sorted by their bytes at every depth, written without recursion.

use std::io::{self, Write};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Canonical JSON of `value`, or `None` once it grows past `limit` bytes. Iterative: any depth is safe (a value
/// nested deeper than the stack could hold is written, or refused at the limit, without recursion).
pub fn canonical_json(value: &Value, limit: usize) -> Option<String> {
    let mut out = Counted {
        out: Vec::with_capacity(128),
        len: 0,
    };
    write_canonical(value, &mut out, limit)?;
    // Every piece written is serde_json's own (valid UTF-8) output or ASCII punctuation.
    Some(String::from_utf8(out.out).expect("canonical JSON is UTF-8"))
}

/// SHA-256 of [`canonical_json`]`(value, limit)`, hashed as it is written (no copy of the text is kept), or `None`
/// past `limit` bytes. What an audit line's `params_digest` needs, without the text a frozen snapshot keeps.
pub(crate) fn canonical_sha256(value: &Value, limit: usize) -> Option<[u8; 32]> {
    // sha2's hasher is an `io::Write` (its `std` feature): the text goes straight into the hash.
    let mut out = Counted {
        out: Sha256::new(),
        len: 0,
    };
    write_canonical(value, &mut out, limit)?;
    Some(out.out.finalize().into())
}

/// A writer that counts what it is given.
struct Counted<W> {
    out: W,
    len: usize,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write_all(buf)?;
        self.len += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What is left to write: a value, or the punctuation that closes a container or separates its items.
#[derive(Clone, Copy)]
enum Step<'a> {
    Value(&'a Value),
    Key(&'a str),
    Byte(u8),
}

/// The steps left, last first: the first [`Todo::INLINE`] on the stack, any beyond on the heap. Typical params (a
/// flat object of a few fields) need no allocation; a `Vec` from one step grew twice for them (a tenth of an
/// audited safe call's own time went to those reallocations).
struct Todo<'a> {
    inline: [Step<'a>; Todo::INLINE],
    len: usize,
    spill: Vec<Step<'a>>,
}

impl<'a> Todo<'a> {
    const INLINE: usize = 16;

    fn new(first: Step<'a>) -> Self {
        let mut todo = Todo {
            inline: [Step::Byte(0); Todo::INLINE],
            len: 0,
            spill: Vec::new(),
        };
        todo.push(first);
        todo
    }

    /// Onto the stack while it has room and nothing is spilled (so the newest step is always the one popped).
    fn push(&mut self, step: Step<'a>) {
        if self.len < Todo::INLINE && self.spill.is_empty() {
            self.inline[self.len] = step;
            self.len += 1;
        } else {
            self.spill.push(step);
        }
    }

    fn pop(&mut self) -> Option<Step<'a>> {
        if let Some(step) = self.spill.pop() {
            return Some(step);
        }
        self.len = self.len.checked_sub(1)?;
        Some(self.inline[self.len])
    }
}

fn write_canonical<'a, W: Write>(value: &'a Value, out: &mut Counted<W>, limit: usize) -> Option<()> {
    let mut todo = Todo::new(Step::Value(value));
    while let Some(step) = todo.pop() {
        match step {
            Step::Byte(b) => out.write_all(&[b]).ok()?,
            Step::Key(k) => {
                serde_json::to_writer(&mut *out, k).ok()?;
                out.write_all(b":").ok()?;
            }
            Step::Value(Value::Object(map)) => {
                out.write_all(b"{").ok()?;
                todo.push(Step::Byte(b'}'));
                // serde_json's default map is a BTreeMap, whose order is already the byte order of the keys. Only a
                // map in insertion order (serde_json's `preserve_order` feature) needs sorting.
                // Pushed in reverse so the first entry is written first.
                let mut push = |i: usize, k: &'a String, v: &'a Value| {
                    todo.push(Step::Value(v));
                    todo.push(Step::Key(k));
                    if i > 0 {
                        todo.push(Step::Byte(b','));
                    }
                };
                if in_byte_order(map.keys()) {
                    for (i, (k, v)) in map.iter().enumerate().rev() {
                        push(i, k, v);
                    }
                } else {
                    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                    for (i, (k, v)) in entries.into_iter().enumerate().rev() {
                        push(i, k, v);
                    }
                }
            }
            Step::Value(Value::Array(items)) => {
                out.write_all(b"[").ok()?;
                todo.push(Step::Byte(b']'));
                for (i, v) in items.iter().enumerate().rev() {
                    todo.push(Step::Value(v));
                    if i > 0 {
                        todo.push(Step::Byte(b','));
                    }
                }
            }
            // Strings, numbers, booleans and null: serde_json's own compact text is already canonical. Writing into
            // a Vec or a hash cannot fail.
            Step::Value(other) => serde_json::to_writer(&mut *out, other).ok()?,
        }
        if out.len > limit {
            return None;
        }
    }
    Some(())
}

/// Whether `keys` are in ascending byte order (equal neighbours allowed).
pub(super) fn in_byte_order<'a>(mut keys: impl Iterator<Item = &'a String>) -> bool {
    let Some(mut prev) = keys.next() else { return true };
    for k in keys {
        if prev.as_bytes() > k.as_bytes() {
            return false;
        }
        prev = k;
    }
    true
}
