//! Deadlines shared by the in-memory store's async waits: a wait registers its waker under the millisecond its
//! deadline falls in (rounded up), and one tokio timer per millisecond (and runtime) that has waits wakes them all,
//! instead of a tokio timer (`Sleep`, 112 bytes) in every wait.
//!
//! A million parked calls with one timeout fall due over the seconds it took to park them: a few thousand timers
//! here instead of a million, so tokio's timer wheel has few entries to move between its levels as they come
//! closer (a move touches each entry, and a million of them is a pause of every other timer), and a parked call
//! holds a 24-byte seat and a 16-byte waker instead of a timer. tokio's own timers have millisecond resolution, so
//! rounding the deadline up to its millisecond wakes no wait later than its own timer would have.
//!
//! A wait keeps its seat (runtime, millisecond, bucket, index) and gives it up when it ends, decided or dropped: the last
//! wait to leave a millisecond's bucket stops that millisecond's timer, so quickly answered calls with long
//! timeouts leave no timers behind. Buckets are kept per tokio runtime, and a bucket's timer is a task on that
//! runtime: a wait only ever relies on a timer of the runtime that polls it (one polled on another runtime than
//! before moves its seat), so a runtime kept but no longer driven holds up no other runtime's waits. A timer dropped
//! before its millisecond (its runtime shutting down) wakes its waits, which then end with an error saying so rather
//! than wait for a timer that will not come.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

use tokio::runtime::Id;

/// A wait's runtime is shutting down: its timer was dropped before its millisecond.
#[derive(Debug)]
pub(super) struct ShuttingDown;

/// The store's ticks: what its waits share. Cloned (one pointer) into each millisecond's timer task.
#[derive(Clone)]
pub(super) struct Ticks(Arc<Mutex<TickMap>>);

struct TickMap {
    /// Milliseconds are counted from here.
    base: Instant,
    /// By runtime and millisecond: a wait joins only a timer on the runtime that polls it (a timer on another one
    /// might never run again while that runtime is kept but idle).
    buckets: HashMap<(Id, u64), Bucket, foldhash::fast::RandomState>,
    /// The next bucket's number: a seat names its bucket's too, since a millisecond's bucket can be emptied (its
    /// timer stopped) and made again.
    next_bucket: u32,
}

struct Bucket {
    number: u32,
    /// The waits' wakers; a wait that leaves empties its place (no other seat moves).
    wakers: Vec<Option<Waker>>,
    /// How many places are filled.
    filled: usize,
    /// Stops the timer task once no wait is left (set right after the task is spawned).
    timer: Option<tokio::task::AbortHandle>,
}

/// A wait's place among the ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Seat {
    runtime: Id,
    tick: u64,
    bucket: u32,
    index: u32,
}

impl Default for Ticks {
    fn default() -> Self {
        Ticks(Arc::new(Mutex::new(TickMap {
            base: Instant::now(),
            buckets: HashMap::default(),
            next_bucket: 0,
        })))
    }
}

impl Ticks {
    fn lock(&self) -> MutexGuard<'_, TickMap> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `waker` to be woken once `until` has passed, by a timer on the current tokio runtime: in `seat`'s place
    /// if it still holds one there (its waker replaced if another), else in a new seat, written to `seat` (a wait
    /// polled on another runtime than before leaves its old seat first). Inside a tokio runtime: it may spawn the
    /// millisecond's timer there.
    ///
    /// An error when the timer of the seat this wait held on this runtime ended before its millisecond: the runtime
    /// is shutting down (its tasks are being dropped, or it refused the timer's task), and no timer will wake the
    /// wait; taking another seat would only be woken again at once.
    pub(super) fn sit(&self, seat: &mut Option<Seat>, until: Instant, waker: &Waker) -> Result<(), ShuttingDown> {
        let runtime = tokio::runtime::Handle::current().id();
        let (mut replaced, mut stop) = (None, None);
        let spawn = {
            let mut map = self.lock();
            if let Some(s) = *seat {
                if s.runtime == runtime {
                    match map.place(s) {
                        Some(place) => {
                            if !place.as_ref().is_some_and(|w| w.will_wake(waker)) {
                                replaced = place.replace(waker.clone());
                            }
                            drop(map);
                            drop(replaced); // a waker dropped outside the lock (it may end a task)
                            return Ok(());
                        }
                        // Its bucket is gone while the wait is before its deadline (a bucket is woken at or after
                        // it, and the caller looked): its timer was dropped unfired.
                        None => {
                            *seat = None;
                            return Err(ShuttingDown);
                        }
                    }
                }
                // Polled on another runtime than before: the old seat's timer may never run again from here.
                (replaced, stop) = map.vacate(s);
            }
            let tick = u64::try_from(until.saturating_duration_since(map.base).as_nanos().div_ceil(1_000_000))
                .unwrap_or(u64::MAX);
            let key = (runtime, tick);
            let number = map.next_bucket;
            // A new millisecond's timer is made before anything changes: without a time driver (a runtime built
            // without `enable_time`) tokio panics here, in this wait's poll, and the guard denies the call (see
            // `unwound`), rather than in a timer task whose end would wake this wait to try again.
            let sleep = match map.buckets.contains_key(&key) {
                true => None,
                false => {
                    let at = map.base.checked_add(Duration::from_millis(tick)).unwrap_or(until);
                    Some(tokio::time::sleep_until(at.into()))
                }
            };
            let bucket = map.buckets.entry(key).or_insert_with(|| Bucket {
                number,
                wakers: Vec::new(),
                filled: 0,
                timer: None,
            });
            let index = u32::try_from(bucket.wakers.len()).unwrap_or(u32::MAX);
            bucket.wakers.push(Some(waker.clone()));
            bucket.filled += 1;
            *seat = Some(Seat {
                runtime,
                tick,
                bucket: bucket.number,
                index,
            });
            if sleep.is_some() {
                map.next_bucket = map.next_bucket.wrapping_add(1);
            }
            sleep.map(|sleep| (key, number, sleep))
        };
        drop(replaced);
        if let Some(timer) = stop {
            timer.abort();
        }
        if let Some((key, number, sleep)) = spawn {
            let timer = tokio::spawn(fire(self.clone(), key, number, sleep)).abort_handle();
            let mut map = self.lock();
            match map.buckets.get_mut(&key) {
                Some(bucket) if bucket.number == number => bucket.timer = Some(timer),
                // Gone already: the runtime dropped the timer's task at once (it is shutting down); this wait was
                // woken by that and finds its seat gone at its next poll. (Every wait leaving in between cannot
                // happen: this one holds its seat.)
                _ => {
                    drop(map);
                    timer.abort();
                }
            }
        }
        Ok(())
    }

    /// Gives up a seat (its wait ended); the last one out of its bucket stops the bucket's timer.
    pub(super) fn leave(&self, seat: Seat) {
        let (waker, timer) = self.lock().vacate(seat);
        drop(waker);
        if let Some(timer) = timer {
            timer.abort();
        }
    }

    /// Takes a bucket out (its millisecond came, or its timer was dropped) and wakes its waits.
    fn wake_bucket(&self, key: (Id, u64), number: u32) {
        let bucket = {
            let mut map = self.lock();
            match map.buckets.get(&key) {
                Some(b) if b.number == number => map.buckets.remove(&key),
                _ => None,
            }
        };
        if let Some(bucket) = bucket {
            bucket.wakers.into_iter().flatten().for_each(Waker::wake);
        }
    }

    /// How many milliseconds have waits (tests).
    #[cfg(test)]
    pub(super) fn buckets(&self) -> usize {
        self.lock().buckets.len()
    }

    /// How many waits hold a seat (tests).
    #[cfg(test)]
    pub(super) fn seats(&self) -> usize {
        self.lock().buckets.values().map(|b| b.filled).sum()
    }
}

impl TickMap {
    /// The place of a seat still held.
    fn place(&mut self, seat: Seat) -> Option<&mut Option<Waker>> {
        let bucket = self
            .buckets
            .get_mut(&(seat.runtime, seat.tick))
            .filter(|b| b.number == seat.bucket)?;
        bucket
            .wakers
            .get_mut(seat.index as usize)
            .filter(|place| place.is_some())
    }

    /// Empties a seat's place if it is still held: its waker, to be dropped once the lock is released, and the
    /// bucket's timer to stop if it was the last.
    fn vacate(&mut self, seat: Seat) -> (Option<Waker>, Option<tokio::task::AbortHandle>) {
        let Some(waker) = self.place(seat).and_then(Option::take) else {
            return (None, None);
        };
        let key = (seat.runtime, seat.tick);
        let Some(bucket) = self.buckets.get_mut(&key) else {
            return (Some(waker), None);
        };
        bucket.filled -= 1;
        let timer = match bucket.filled {
            0 => self.buckets.remove(&key).and_then(|b| b.timer),
            _ => None,
        };
        (Some(waker), timer)
    }
}

/// A millisecond's timer: wakes its bucket's waits when the millisecond comes, or when the task is dropped before
/// (its runtime went away; stopped because its bucket emptied, it finds no bucket to wake).
fn fire(
    ticks: Ticks,
    key: (Id, u64),
    number: u32,
    sleep: tokio::time::Sleep,
) -> impl std::future::Future<Output = ()> + Send {
    struct WakeOnDrop(Ticks, (Id, u64), u32);
    impl Drop for WakeOnDrop {
        fn drop(&mut self) {
            self.0.wake_bucket(self.1, self.2);
        }
    }
    // Made before the future, so that a future dropped before its first poll (spawned on a runtime that is
    // shutting down) wakes the bucket too.
    let wake = WakeOnDrop(ticks, key, number);
    async move {
        let _wake = wake;
        sleep.await;
    }
}
