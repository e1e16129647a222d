//! The synchronization the in-memory store is built on: std's `Mutex` and `event_listener`'s `Event`, or, with the
//! `agentguard_model` cfg (model checking only, never in a build anyone runs), shuttle's mutex and a condition-variable event, so that
//! shuttle can explore every interleaving of waiters, answers, deadlines and drops over the real store code.

#[cfg(not(agentguard_model))]
pub(crate) use event_listener::{Event, Listener};
#[cfg(not(agentguard_model))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(agentguard_model)]
pub(crate) use model::{Event, Listener};
#[cfg(agentguard_model)]
pub(crate) use shuttle::sync::{Mutex, MutexGuard};

#[cfg(agentguard_model)]
mod model {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use std::time::Instant;

    use shuttle::sync::{Condvar, Mutex};

    /// A notification: a generation counter under a mutex, and a condition variable.
    #[derive(Default)]
    pub(crate) struct Event(Arc<Shared>);

    #[derive(Default)]
    struct Shared {
        generation: Mutex<u64>,
        changed: Condvar,
    }

    impl Event {
        pub(crate) fn new() -> Self {
            Self::default()
        }

        pub(crate) fn notify(&self, _n: usize) {
            *self.0.generation.lock().unwrap_or_else(|p| p.into_inner()) += 1;
            self.0.changed.notify_all();
        }

        pub(crate) fn listen(&self) -> EventListener {
            let seen = *self.0.generation.lock().unwrap_or_else(|p| p.into_inner());
            EventListener {
                shared: Arc::clone(&self.0),
                seen,
            }
        }
    }

    /// A listener: done once the generation moved past the one it saw when it started listening.
    pub(crate) struct EventListener {
        shared: Arc<Shared>,
        seen: u64,
    }

    /// `event_listener`'s blocking wait, as the store uses it. There is no time in a model: a deadline is another
    /// thread's `expire`, which notifies.
    pub(crate) trait Listener {
        fn wait_deadline(self, until: Instant) -> Option<()>;
    }

    impl Listener for EventListener {
        fn wait_deadline(self, _until: Instant) -> Option<()> {
            let mut generation = self.shared.generation.lock().unwrap_or_else(|p| p.into_inner());
            while *generation == self.seen {
                generation = self.shared.changed.wait(generation).unwrap_or_else(|p| p.into_inner());
            }
            Some(())
        }
    }

    impl Future for EventListener {
        type Output = ();

        // The async wait is not modelled (the model drives the blocking one); this only keeps it compiling.
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if *self.shared.generation.lock().unwrap_or_else(|p| p.into_inner()) != self.seen {
                Poll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}
