//! The guard: [`AgentGuard`] and how it is configured ([`GuardBuilder`], the approval [`mode`]s, [`Gating`]), and
//! the process-wide guard ([`installed`], [`AlreadyInstalled`]).
//!
//! Every entry point (`execute`, `aexecute`, `dispatch`, the macros' expansion) goes through one decision core
//! (`decide.rs`): classify the call, audit a safe one, freeze a gated one's params, ask (blocking or async, `ask.rs`,
//! waiting on the store in `wait.rs`), record the verdict; then one ending runs the allowed code and records how it
//! ended (`approval.rs`).

pub(crate) mod agent;
mod answers;
pub(crate) mod approval;
mod ask;
mod builder;
mod decide;
pub(crate) mod global;
mod plan;
mod trace;
mod wait;

pub(crate) use agent::{AgentGuard, Inner, Recheck};
pub use agent::{Executed, Gating};
pub(crate) use approval::Allowed;
pub use approval::Edited;
pub use builder::{mode, GuardBuilder, DEFAULT_TIMEOUT, MAX_TIMEOUT};
pub(crate) use decide::Claim;
#[cfg(feature = "tokio")]
pub(crate) use decide::{Decided, Started, Waiting};
pub use global::{installed, AlreadyInstalled};
