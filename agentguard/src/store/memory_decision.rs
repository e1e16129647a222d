//! The in-memory store's record of a request's decision: compact while pending, shared for a plain expiry.

use super::*;

/// A slot's decision, shared unless it is the plain pending one: a [`Decision`] is 160 bytes, and the map holds its
/// slots inline, so a million parked requests (a table of two million slots) would carry 320 MB of room for answers
/// none of them has yet. A plain expiry (no actor, no votes: every deadline of a plain request) points at one
/// decision shared by all of them, so a million deadlines allocate nothing for it, and the expired requests kept for
/// the retention window hold a pointer each, not 176 bytes.
pub(super) struct Compact(pub(super) Option<Arc<Decision>>);

/// The decision of every request that expired with nothing else recorded.
pub(super) fn plain_expired() -> &'static Arc<Decision> {
    static EXPIRED: std::sync::OnceLock<Arc<Decision>> = std::sync::OnceLock::new();
    EXPIRED.get_or_init(|| Arc::new(Decision::of(RequestState::Expired)))
}

impl Compact {
    pub(super) const PENDING: Compact = Compact(None);

    pub(super) fn state(&self) -> RequestState {
        self.0.as_ref().map_or(RequestState::Pending, |d| d.state)
    }

    pub(super) fn get(&self) -> Cow<'_, Decision> {
        match &self.0 {
            Some(d) => Cow::Borrowed(d),
            None => Cow::Owned(Decision::of(RequestState::Pending)),
        }
    }

    pub(super) fn votes(&self) -> Vec<crate::request::Vote> {
        self.0.as_ref().map(|d| d.votes.clone()).unwrap_or_default()
    }

    pub(super) fn set(&mut self, decision: Decision) {
        self.0 = if decision == Decision::of(RequestState::Pending) {
            None
        } else if decision == **plain_expired() {
            Some(Arc::clone(plain_expired()))
        } else {
            Some(Arc::new(decision))
        };
    }

    pub(super) fn set_state(&mut self, state: RequestState) {
        match &mut self.0 {
            // In place when this slot's own (an approval being claimed); a shared one is copied first.
            Some(decision) => Arc::make_mut(decision).state = state,
            None => self.set(Decision::of(state)),
        }
    }
}

/// A slot's deadline: nanoseconds on the monotonic clock since the first store was made (8 bytes where an `Instant`
/// takes 16, in every slot of a table sized for a million), saturating: a deadline centuries away stays far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Due(u64);

impl Due {
    fn base() -> Instant {
        static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *BASE.get_or_init(Instant::now)
    }

    /// Fixes the clock's start (when a store is made), before any deadline is taken.
    pub(super) fn start() {
        Self::base();
    }

    pub(super) fn now() -> Due {
        Due(u64::try_from(Self::base().elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// `after` from now (no panic for a duration past the clock's range: the deadline saturates).
    pub(super) fn after(after: Duration) -> Due {
        Due(Due::now()
            .0
            .saturating_add(u64::try_from(after.as_nanos()).unwrap_or(u64::MAX)))
    }
}
