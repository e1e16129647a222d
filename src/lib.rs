//! Nothing here: the examples are in `examples/`, and `cargo run` at the root runs `src/main.rs`.
//!
//! This empty library exists for one reason: `agentguard-tests` (`tests/Cargo.toml`) depends on this package with
//! its `web` and `sqlite` features, so that `cargo test --workspace` builds every example, including the ones that
//! need those features, and cargo ignores (with a warning) a dependency on a package that has no library.
