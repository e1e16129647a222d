//! The labeled tool names of the workspace's classifier corpus (`tests/data/tool_names.tsv` at the workspace root).

#![allow(dead_code)] // each test file uses part of this

use agentguard_classify::Risk;

/// One line of the corpus.
pub struct Labeled {
    pub name: String,
    /// `None` for a name labeled safe (read-only).
    pub expected: Option<Risk>,
    /// In the corpus's last section: names whose effect is not in their words (`puppeteer_evaluate`).
    pub known_miss: bool,
}

pub fn catalog() -> Vec<Labeled> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/tool_names.tsv");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let mut out = Vec::new();
    let mut known_miss = false;
    for line in text.lines().skip(1) {
        if let Some(comment) = line.strip_prefix('#') {
            known_miss = comment.trim() == "names whose effect is not in the words";
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 3, "malformed line in tool_names.tsv: {line:?}");
        let expected = match cols[1] {
            "safe" => None,
            key => Some(key.parse::<Risk>().unwrap_or_else(|e| panic!("{line:?}: {e}"))),
        };
        out.push(Labeled {
            name: cols[0].to_owned(),
            expected,
            known_miss,
        });
    }
    assert!(out.len() > 300, "the corpus is missing names: {}", out.len());
    out
}
