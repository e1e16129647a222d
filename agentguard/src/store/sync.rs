//! The synchronization the in-memory store is built on: std's `Mutex`, threads and atomics and `event_listener`'s
//! `Event`, or, with the `agentguard_model` cfg (model checking only, never in a build anyone runs), shuttle's mutex,
//! threads and atomics and a condition-variable event, so that shuttle can explore every interleaving of waiters,
//! answers, deadlines and drops over the real store code.

use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::Instant;

#[cfg(not(agentguard_model))]
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(agentguard_model))]
use std::thread;

#[cfg(agentguard_model)]
use shuttle::sync::atomic::{AtomicBool, Ordering};
#[cfg(agentguard_model)]
use shuttle::thread;

#[cfg(not(agentguard_model))]
pub(crate) use event_listener::Event;
#[cfg(not(agentguard_model))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(agentguard_model)]
pub(crate) use model::Event;
#[cfg(agentguard_model)]
pub(crate) use shuttle::sync::{Mutex, MutexGuard};

/// A [`Waker`] that wakes a blocked thread: what [`InMemoryStore::wait_blocking`](super::InMemoryStore) keeps in a
/// request's slot, so a blocking waiter and an async one are woken by the same code.
pub(crate) struct ThreadWaker {
    thread: thread::Thread,
    woken: AtomicBool,
}

impl ThreadWaker {
    /// A waker for the calling thread, and the handle it parks on.
    pub(crate) fn current() -> (Arc<ThreadWaker>, Waker) {
        let parker = Arc::new(ThreadWaker {
            thread: thread::current(),
            woken: AtomicBool::new(false),
        });
        let waker = Waker::from(Arc::clone(&parker));
        (parker, waker)
    }

    /// Blocks the calling thread (the one that made this waker) until it is woken (`true`) or `until` passes
    /// (`false`). Spurious unparks are absorbed.
    pub(crate) fn park_until(&self, until: Instant) -> bool {
        loop {
            if self.woken.swap(false, Ordering::AcqRel) {
                return true;
            }
            #[cfg(not(agentguard_model))]
            {
                let now = Instant::now();
                if now >= until {
                    return self.woken.swap(false, Ordering::AcqRel);
                }
                thread::park_timeout(until - now);
            }
            // There is no time in a model: a deadline is another thread's `expire`, which wakes.
            #[cfg(agentguard_model)]
            {
                let _ = until;
                thread::park();
            }
        }
    }
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

#[cfg(agentguard_model)]
mod model {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use shuttle::sync::{Condvar, Mutex};

    /// A notification: a generation counter under a mutex, and a condition variable (the store's `changed`).
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

    impl Future for EventListener {
        type Output = ();

        // The store's change notification is not modelled (the model drives a request's blocking wait); this only
        // keeps it compiling.
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
