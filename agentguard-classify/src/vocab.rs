//! The classifier's vocabulary: every word it knows and what the word means, kept with every prefix of every word so
//! that one table both looks a word up and finds the known words a run of letters starts with (for reading
//! run-together names such as `deletefile`).

use std::sync::LazyLock;

use crate::Risk;

/// What a known word means to the classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// `and`, `then`, `or`: split a name into clauses.
    Clause,
    /// A verb that only reads: the clause is safe.
    ReadOnly,
    /// A verb with a side effect.
    Danger(Risk),
    /// A known word that is not a verb: skipped, but read whole (never as the words inside it).
    Noun,
}

/// The words that split a name into clauses.
const CLAUSE: &[&str] = &["and", "then", "or"];

/// Verbs that only read: a clause that starts with one of these is safe.
#[rustfmt::skip] // a word list is data: many words to a line
const READ_ONLY: &[&str] = &[
    "get", "gets", "list", "lists", "read", "reads", "search", "find", "fetch", "query", "describe", "show", "view",
    "lookup", "look", "check", "count", "evaluate", "inspect", "preview", "explain", "estimate", "calculate", "compute",
    "summarize", "summarise", "analyze", "analyse", "validate", "verify", "watch", "poll", "ping", "is", "has", "can",
    "whoami", "browse", "retrieve", "load", "download", "open", "diff", "compare", "status", "translate", "parse",
    "render", "navigate", "screenshot", "capture", "test", "sample", "think", "convert", "format", "suggest",
    "recommend", "generate", "predict", "classify", "detect", "extract", "lint", "debug", "trace", "tail", "grep",
    "head", "cat", "ls", "stat", "echo", "print", "peek", "scan", "audit", "monitor", "measure", "retrieves", "fetches",
    "returns", "return",
];

/// [`Risk::Irreversible`]: deletes, destroys or resets something that cannot be undone.
#[rustfmt::skip] // a word list is data: many words to a line
const IRREVERSIBLE: &[&str] = &[
    "delete", "deletes", "del", "remove", "removes", "rm", "rmdir", "destroy", "drop", "truncate", "wipe", "erase",
    "purge", "kill", "terminate", "unlink", "shred", "reset", "revoke", "uninstall", "deprovision", "decommission",
    "clear", "flush", "discard", "cancel", "void", "expunge", "ban", "evict", "prune", "overwrite", "nuke", "empty",
    "obliterate", "deactivate", "suspend", "disconnect", "detach", "unpublish", "unregister", "delist",
];

/// [`Risk::SystemExecution`]: runs code or commands, deploys or restarts systems.
#[rustfmt::skip] // a word list is data: many words to a line
const SYSTEM_EXECUTION: &[&str] = &[
    "run", "runs", "rerun", "exec", "execute", "eval", "shell", "bash", "sh", "zsh", "powershell", "cmd", "spawn",
    "launch", "invoke", "trigger", "deploy", "redeploy", "install", "restart", "reboot", "shutdown", "start", "stop",
    "sudo", "script", "python", "repl", "terminal", "command", "execution", "rollout", "provision", "scale", "rollback",
    "migrate", "build", "compile", "interpret", "dispatch", "cron",
];

/// [`Risk::ExternalSend`]: sends data or money out of the system.
#[rustfmt::skip] // a word list is data: many words to a line
const EXTERNAL_SEND: &[&str] = &[
    "send", "sends", "resend", "email", "mail", "post", "publish", "tweet", "retweet", "notify", "message", "sms",
    "reply", "respond", "forward", "share", "invite", "broadcast", "upload", "transfer", "pay", "charge", "refund",
    "payout", "wire", "dm", "push", "webhook", "announce", "export", "purchase", "buy", "sell", "order", "checkout",
    "withdraw", "deposit", "tip", "donate", "call", "page", "escalate",
];

/// [`Risk::DataMutation`]: creates or changes stored state.
#[rustfmt::skip] // a word list is data: many words to a line
const DATA_MUTATION: &[&str] = &[
    "write", "writes", "create", "creates", "add", "adds", "insert", "put", "set", "update", "updates", "upsert",
    "patch", "modify", "edit", "change", "save", "store", "append", "prepend", "replace", "merge", "fork", "assign",
    "unassign", "submit", "dismiss", "move", "mv", "rename", "copy", "cp", "approve", "reject", "grant", "enable",
    "disable", "lock", "unlock", "archive", "unarchive", "restore", "import", "commit", "apply", "register",
    "subscribe", "unsubscribe", "close", "reopen", "mark", "label", "unlabel", "tag", "untag", "star", "unstar", "pin",
    "unpin", "follow", "unfollow", "like", "unlike", "react", "comment", "schedule", "reschedule", "book", "finalize",
    "link", "attach", "upgrade", "downgrade", "configure", "sync", "rotate", "reorder", "transition", "accept",
    "decline", "mute", "unmute", "kick", "promote", "demote", "revert", "rebase", "cherry", "squash", "stage",
    "unstage", "toggle", "increment", "decrement", "record", "init", "initialize", "setup", "allocate", "reserve",
    "claim", "release", "duplicate", "clone", "sign", "activate", "invalidate", "fill", "mkdir", "touch", "chmod",
    "chown", "resize", "refresh", "reindex", "complete", "resume", "pause", "hide", "unhide", "block", "unblock",
    "report", "vote", "rate", "review", "manage", "click", "drag", "redeem", "upvote", "downvote",
];

/// Words that are not verbs: the objects, services and qualifiers tool names are made of. Known so that a run of
/// letters can be split into words (`deletefile`) and so that a word made of other words (`runtime`, `output`,
/// `dataset`) is read whole, never as the verb inside it. A noun ending in `s` or `es` is also known.
#[rustfmt::skip] // a word list is data: many words to a line
const NOUNS: &[&str] = &[
    "a", "the", "to", "in", "on", "at", "by", "of", "for", "from", "with", "into", "onto", "via", "per", "up", "down",
    "out", "off", "over", "under", "about", "after", "before", "between", "within", "without", "across", "through",
    "all", "any", "each", "every", "some", "none", "new", "old", "my", "me", "self", "your", "our", "their", "this",
    "that", "these", "those", "other", "another", "same", "both", "either", "current", "default", "main", "base",
    "custom", "generic", "auto", "manual", "async", "live", "raw", "full", "long", "short", "tiny", "small", "large",
    "big", "recent", "latest", "next", "previous", "prev", "last", "first", "pending", "active", "inactive", "failed",
    "running", "signed", "unstaged", "staged", "simulated", "based", "remote", "local", "public", "private", "global",
    "internal", "external", "shared", "single", "multi", "bulk", "batch", "batched", "basic", "advanced", "simple",
    "quick", "fast", "slow", "safe", "secure", "sequential", "closed", "draft", "final", "temp", "tmp", "temporary",
    "blank", "primary", "secondary", "similar", "related", "nested", "child", "parent", "upstream", "downstream",
    "available", "unread", "user", "users", "person", "people", "member", "members", "team", "teams", "group", "groups",
    "org", "orgs", "organization", "owner", "owners", "admin", "admins", "customer", "customers", "client", "clients",
    "contact", "contacts", "account", "accounts", "profile", "profiles", "role", "roles", "agent", "agents",
    "assistant", "bot", "bots", "author", "reviewer", "reviewers", "assignee", "assignees", "collaborator",
    "collaborators", "employee", "employees", "manager", "recipient", "recipients", "sender", "subscriber",
    "subscribers", "follower", "followers", "friend", "friends", "guest", "guests", "vendor", "vendors", "partner",
    "partners", "lead", "leads", "usergroup", "usergroups", "audience", "file", "files", "folder", "folders",
    "directory", "directories", "dir", "dirs", "path", "paths", "tree", "trees", "disk", "disks", "drive", "drives",
    "volume", "volumes", "bucket", "buckets", "blob", "blobs", "object", "objects", "document", "documents", "doc",
    "docs", "documentation", "sheet", "sheets", "spreadsheet", "spreadsheets", "cell", "cells", "row", "rows", "column",
    "columns", "table", "tables", "field", "fields", "schema", "schemas", "index", "indexes", "indices", "key", "keys",
    "value", "values", "entry", "entries", "item", "items", "map", "maps", "dict", "dictionary", "array", "string",
    "str", "text", "texts", "note", "notes", "memo", "memos", "content", "contents", "data", "dataset", "datasets",
    "database", "databases", "db", "dbs", "sql", "collection", "collections", "image", "images", "photo", "photos",
    "picture", "pictures", "video", "videos", "audio", "media", "attachment", "attachments", "artifact", "artifacts",
    "asset", "assets", "resource", "resources", "package", "packages", "module", "modules", "library", "libraries",
    "dependency", "dependencies", "plugin", "plugins", "extension", "extensions", "snapshot", "snapshots", "backup",
    "backups", "storage", "kv", "cache", "caches", "memory", "memories", "knowledge", "kb", "entity", "entities",
    "relation", "relations", "observation", "observations", "embedding", "embeddings", "vector", "vectors", "graph",
    "graphs", "node", "nodes", "edge", "edges", "property", "properties", "attribute", "attributes", "metadata",
    "detail", "details", "info", "information", "summary", "summaries", "description", "line", "lines", "word", "words",
    "char", "chars", "character", "characters", "byte", "bytes", "size", "type", "types", "kind", "formats", "version",
    "versions", "revision", "revisions", "history", "pdf", "csv", "json", "xml", "yaml", "html", "markdown", "md",
    "txt", "zip", "log", "logs", "logging", "metric", "metrics", "app", "apps", "application", "applications",
    "service", "services", "server", "servers", "host", "hosts", "machine", "machines", "vm", "vms", "container",
    "containers", "pod", "pods", "cluster", "clusters", "namespace", "namespaces", "instance", "instances", "process",
    "processes", "thread", "threads", "job", "jobs", "task", "tasks", "workflow", "workflows", "pipeline", "pipelines",
    "step", "steps", "action", "actions", "event", "events", "hook", "hooks", "timer", "timers", "time", "times",
    "date", "dates", "calendar", "calendars", "deployment", "deployments", "env", "environment", "environments",
    "variable", "variables", "secret", "secrets", "token", "tokens", "credential", "credentials", "password",
    "passwords", "cert", "certs", "certificate", "certificates", "session", "sessions", "cookie", "cookies", "config",
    "configs", "configuration", "configurations", "setting", "settings", "option", "options", "preference",
    "preferences", "policy", "policies", "permission", "permissions", "rule", "rules", "firewall", "network",
    "networks", "port", "ports", "route", "routes", "proxy", "gateway", "endpoint", "endpoints", "url", "urls", "uri",
    "domain", "domains", "dns", "ip", "address", "addresses", "api", "apis", "sdk", "cli", "gui", "ui", "ux", "web",
    "website", "site", "sites", "browser", "tab", "tabs", "window", "windows", "screen", "screens", "element",
    "elements", "button", "buttons", "selector", "form", "forms", "input", "inputs", "output", "outputs", "keyboard",
    "mouse", "cursor", "editor", "editors", "console", "code", "source", "sources", "function", "functions", "method",
    "methods", "class", "classes", "interface", "interfaces", "expression", "queries", "result", "results", "response",
    "responses", "error", "errors", "exception", "exceptions", "warning", "warnings", "issue", "issues", "bug", "bugs",
    "ticket", "tickets", "incident", "incidents", "alert", "problem", "problems", "queue", "queues", "topic", "topics",
    "worker", "workers", "runtime", "framework", "frameworks", "language", "languages", "model", "models", "prompt",
    "prompts", "completion", "completions", "chat", "chats", "conversation", "conversations", "context", "tool",
    "tools", "toolkit", "toolset", "skill", "skills", "capability", "capabilities", "feature", "features", "flag",
    "flags", "operation", "operations", "request", "requests", "migration", "migrations", "offset", "subset", "preset",
    "charset", "ruleset", "throughput", "checkpoint", "callback", "callbacks", "startup", "login", "logout", "signup",
    "playbook", "notebook", "notebooks", "template", "templates", "stack", "stacks", "region", "regions", "zone",
    "zones", "location", "locations", "place", "places", "area", "areas", "city", "country", "geocode", "direction",
    "directions", "weather", "forecast", "distance", "repo", "repos", "repository", "repositories", "branch",
    "branches", "branching", "commits", "pull", "pulls", "pr", "prs", "patches", "releases", "tags", "gist", "gists",
    "forks", "stars", "milestone", "milestones", "project", "projects", "board", "boards", "card", "cards", "sprint",
    "sprints", "epic", "epics", "story", "stories", "labels", "comments", "reviews", "discussion", "discussions",
    "reaction", "reactions", "emoji", "notification", "notifications", "subscription", "subscriptions", "inbox",
    "mailbox", "drafts", "subject", "body", "header", "headers", "footer", "messages", "emails", "calls", "meeting",
    "meetings", "appointment", "appointments", "reminder", "reminders", "invitation", "invitations", "invites",
    "channel", "channels", "forum", "forums", "posts", "pages", "wiki", "blog", "article", "articles", "replies",
    "feed", "feeds", "invoice", "invoices", "payment", "payments", "charges", "refunds", "payouts", "balance",
    "balances", "transaction", "transactions", "orders", "cart", "carts", "product", "products", "price", "prices",
    "plan", "plans", "coupon", "coupons", "discount", "discounts", "tax", "taxes", "quote", "quotes", "deal", "deals",
    "opportunity", "opportunities", "campaign", "campaigns", "dispute", "disputes", "wallet", "wallets", "bank", "fee",
    "fees", "cost", "costs", "budget", "budgets", "bill", "bills", "receipt", "receipts", "shipment", "shipments",
    "inventory", "stock", "sku", "aws", "gcp", "azure", "github", "gitlab", "bitbucket", "git", "slack", "discord",
    "telegram", "whatsapp", "gmail", "gdrive", "outlook", "notion", "jira", "confluence", "linear", "asana", "trello",
    "stripe", "paypal", "twilio", "sendgrid", "mailchimp", "hubspot", "salesforce", "zendesk", "shopify", "sentry",
    "datadog", "grafana", "pagerduty", "docker", "kubernetes", "kubectl", "helm", "istio", "terraform", "vercel",
    "netlify", "heroku", "cloudflare", "hyperdrive", "supabase", "firebase", "mongo", "mongodb", "postgres",
    "postgresql", "mysql", "sqlite", "redis", "elastic", "elasticsearch", "dropbox", "box", "figma", "airtable",
    "zapier", "puppeteer", "playwright", "selenium", "brave", "tavily", "exa", "youtube", "twitter", "reddit",
    "linkedin", "instagram", "facebook", "google", "microsoft", "openai", "anthropic", "claude", "copilot", "seer",
    "typescript", "javascript", "npm", "pip", "cargo", "rust", "golang", "java", "anon", "back", "checker", "compose",
    "confirm", "dsn", "force", "insight", "intent", "intents", "name", "names", "publishable", "sum", "take",
    "thinking", "usage", "xy", "select", "children", "sub", "links", "chart", "charts", "category", "categories",
    "activity", "activities", "company", "companies", "identity", "identities", "id", "ids", "uuid", "title", "state",
    "states", "space", "spaces", "workspace", "workspaces", "organizations", "histories", "countries", "cities",
    "deliveries", "priority", "priorities", "severity", "level", "levels", "score", "scores", "rating", "ratings",
    "total", "totals", "number", "numbers", "amount", "amounts", "commands", "scripts", "alerts", "transfers",
    "exports", "imports", "builds", "uploads", "downloads", "shares", "reports", "records", "books", "pins", "likes",
    "stores", "stages", "blocks", "installs", "deploys", "computer", "computers", "annotated", "broadcasts", "stats",
    "statistics", "lambda", "lambdas", "manifest", "manifests", "filesystem", "filesystems", "crm", "dyno", "dynos",
    "trash",
];

/// Every word list with its class.
pub(crate) const LISTS: [(&[&str], Class); 7] = [
    (CLAUSE, Class::Clause),
    (READ_ONLY, Class::ReadOnly),
    (IRREVERSIBLE, Class::Danger(Risk::Irreversible)),
    (SYSTEM_EXECUTION, Class::Danger(Risk::SystemExecution)),
    (EXTERNAL_SEND, Class::Danger(Risk::ExternalSend)),
    (DATA_MUTATION, Class::Danger(Risk::DataMutation)),
    (NOUNS, Class::Noun),
];

/// The vocabulary, built on first use.
pub(crate) static VOCAB: LazyLock<Vocab> = LazyLock::new(Vocab::build);

/// Every known word and every prefix of one, by its letters: an open-addressing table keyed by the letters packed
/// into a `u128` (no known word is longer than [`MAX_WORD`] letters), so a lookup is one hash and one compare per
/// probe. The keys are the fixed vocabulary: a caller choosing what to look up cannot make lookups slow.
#[derive(Debug)]
pub(crate) struct Vocab {
    keys: Box<[u128]>,
    entries: Box<[Entry]>,
    shift: u32,
}

/// The longest known word, in letters.
pub(crate) const MAX_WORD: usize = 16;

/// What a string of letters is in the vocabulary.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Entry {
    /// The class of the word these letters spell, if they spell one.
    pub(crate) class: Option<Class>,
    /// The letters a longer known word continues these letters with (bit 0: `a`), `0` if none does.
    pub(crate) next: u32,
}

impl Entry {
    /// Whether a longer known word starts with these letters.
    pub(crate) fn longer(&self) -> bool {
        self.next != 0
    }

    /// Whether a longer known word continues these letters with `letter` (lowercase ASCII).
    pub(crate) fn continues_with(&self, letter: u8) -> bool {
        letter.is_ascii_lowercase() && self.next & (1 << (letter - b'a')) != 0
    }
}

/// `letters` (1 to [`MAX_WORD`] lowercase ASCII letters) as a table key; `None` if they cannot be one.
pub(crate) fn key(letters: &[u8]) -> Option<u128> {
    if letters.is_empty() || letters.len() > MAX_WORD {
        return None;
    }
    let mut key = 0u128;
    for (i, &b) in letters.iter().enumerate() {
        key |= u128::from(b) << (8 * i);
    }
    Some(key)
}

/// The first `len` letters of a key.
fn truncate(key: u128, len: usize) -> u128 {
    key & ((1u128 << (8 * len)) - 1)
}

impl Vocab {
    fn build() -> Vocab {
        let mut all: Vec<(&[u8], Entry)> = Vec::new();
        for (words, class) in LISTS {
            for word in words {
                let word = word.as_bytes();
                assert!(
                    !word.is_empty() && word.len() <= MAX_WORD && word.iter().all(u8::is_ascii_lowercase),
                    "{word:?}"
                );
                all.push((
                    word,
                    Entry {
                        class: Some(class),
                        next: 0,
                    },
                ));
                for end in 1..word.len() {
                    all.push((
                        &word[..end],
                        Entry {
                            class: None,
                            next: 1 << (word[end] - b'a'),
                        },
                    ));
                }
            }
        }
        // At most half full.
        let slots = (all.len() * 2).next_power_of_two();
        let mut vocab = Vocab {
            keys: vec![0; slots].into_boxed_slice(),
            entries: vec![Entry::default(); slots].into_boxed_slice(),
            shift: 128 - slots.trailing_zeros(),
        };
        for (letters, entry) in all {
            let key = key(letters).unwrap_or_default();
            let mut slot = vocab.slot(key);
            while vocab.keys[slot] != 0 && vocab.keys[slot] != key {
                slot = (slot + 1) & (slots - 1);
            }
            vocab.keys[slot] = key;
            let e = &mut vocab.entries[slot];
            e.class = e.class.or(entry.class);
            e.next |= entry.next;
        }
        vocab
    }

    fn slot(&self, key: u128) -> usize {
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) >> self.shift) as usize
    }

    /// What `letters` (lowercase ASCII) are in the vocabulary: a word, the start of one, or nothing (`None`).
    pub(crate) fn entry(&self, letters: &[u8]) -> Option<Entry> {
        self.entry_by_key(key(letters)?)
    }

    /// [`entry`](Self::entry) by [`key`].
    pub(crate) fn entry_by_key(&self, key: u128) -> Option<Entry> {
        let mask = self.keys.len() - 1;
        let mut slot = self.slot(key);
        loop {
            match self.keys[slot] {
                0 => return None,
                k if k == key => return Some(self.entries[slot]),
                _ => slot = (slot + 1) & mask,
            }
        }
    }

    /// The class of a whole word (lowercase ASCII letters), if it is known: the word itself, or the plural (`s`,
    /// `es`) of a noun.
    pub(crate) fn get(&self, word: &[u8]) -> Option<Class> {
        self.lookup(word).class
    }

    /// [`get`](Self::get), with the letters a longer known word continues `word` with.
    pub(crate) fn lookup(&self, word: &[u8]) -> Entry {
        key(word).map_or_else(Entry::default, |key| self.lookup_by_key(key, word.len()))
    }

    /// [`lookup`](Self::lookup) by [`key`] and length.
    pub(crate) fn lookup_by_key(&self, key: u128, len: usize) -> Entry {
        let entry = self.entry_by_key(key).unwrap_or_default();
        if entry.class.is_none() && self.is_plural(key, len) {
            return Entry {
                class: Some(Class::Noun),
                ..entry
            };
        }
        entry
    }

    fn is_plural(&self, key: u128, len: usize) -> bool {
        let byte = |i: usize| (key >> (8 * i)) as u8;
        let noun = |l: usize| {
            self.entry_by_key(truncate(key, l))
                .is_some_and(|e| e.class == Some(Class::Noun))
        };
        // Only nouns of three letters or more: `bys` is not the plural of `by`.
        len > 3 && byte(len - 1) == b's' && (noun(len - 1) || (len > 4 && byte(len - 2) == b'e' && noun(len - 2)))
    }

    /// Calls `found(end, class)` for every known word `letters[start..end]` (lowercase ASCII letters), including the
    /// plural (`s`, `es`) of a noun.
    pub(crate) fn words_at(&self, letters: &[u8], start: usize, mut found: impl FnMut(usize, Class)) {
        for end in start + 1..=letters.len().min(start + MAX_WORD) {
            let Some(entry) = self.entry(&letters[start..end]) else {
                return;
            };
            match entry.class {
                Some(Class::Noun) if end - start < 3 => found(end, Class::Noun),
                Some(Class::Noun) => {
                    found(end, Class::Noun);
                    match &letters[end..] {
                        [b's', ..] => found(end + 1, Class::Noun),
                        [b'e', b's', ..] => found(end + 2, Class::Noun),
                        _ => {}
                    }
                }
                Some(class) => found(end, class),
                None => {}
            }
            if !entry.longer() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_is_lowercase_ascii_and_in_one_list() {
        let mut seen = std::collections::HashMap::new();
        for (words, class) in LISTS {
            for word in words {
                assert!(
                    !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase()),
                    "{word:?}"
                );
                if let Some(other) = seen.insert(*word, class) {
                    panic!("{word:?} is both {other:?} and {class:?}");
                }
            }
        }
    }

    #[test]
    fn looks_up_words_and_noun_plurals() {
        assert_eq!(VOCAB.get(b"delete"), Some(Class::Danger(Risk::Irreversible)));
        assert_eq!(VOCAB.get(b"file"), Some(Class::Noun));
        assert_eq!(VOCAB.get(b"files"), Some(Class::Noun));
        assert_eq!(VOCAB.get(b"branches"), Some(Class::Noun));
        assert_eq!(VOCAB.get(b"and"), Some(Class::Clause));
        assert_eq!(VOCAB.get(b"posts"), Some(Class::Noun));
        assert_eq!(VOCAB.get(b"deletes"), Some(Class::Danger(Risk::Irreversible)));
        assert_eq!(VOCAB.get(b"xyzzy"), None);
        assert_eq!(VOCAB.get(b""), None);
    }

    #[test]
    fn finds_every_known_word_a_run_starts_with() {
        let mut found = Vec::new();
        VOCAB.words_at(b"runshellcommand", 0, |end, _| found.push(end));
        assert_eq!(found, [3, 4]); // run, runs
        found.clear();
        VOCAB.words_at(b"filesystem", 0, |end, _| found.push(end));
        found.dedup();
        assert_eq!(found, [4, 5, 10]); // file, files, filesystem
    }
}
