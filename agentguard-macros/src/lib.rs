//! Procedural macros for `agentguard`.
//!
//! This crate is a skeleton: `#[gate]` and `#[derive(Tool)]` arrive with the macros issue. Until then the runtime
//! crate is used directly through [`AgentGuard::execute`](https://docs.rs/agentguard).
#![forbid(unsafe_code)]
