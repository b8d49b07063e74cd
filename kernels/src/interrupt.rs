//! Cooperative interruption of long loops: a caller's stop flag (Ctrl-C, SIGTERM) and deadline
//! (a time limit), seen inside every loop whose length a user sets (inner steps, CG and
//! Neumann iterations, randomized truncations, initialisation phases, the L_L estimate), not
//! only between a run's outer steps.
//!
//! The watch is per thread (the loops run on the calling thread; rayon only splits the
//! products inside an iteration): [`watching`] installs one for the duration of a closure,
//! [`with_deadline`] narrows the current one, and the loops call [`check`], which costs an
//! atomic load per call and reads the clock once every [`CLOCK_EVERY`] calls.

use crate::error::{KernelError, Result};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// What stops the loops: a flag some other thread (a signal handler) sets, and a deadline.
#[derive(Clone, Copy, Debug, Default)]
pub struct Watch {
    /// Set to stop (read with `Ordering::Relaxed`: the loop stops within a few iterations).
    pub flag: Option<&'static AtomicBool>,
    /// Stop once this instant has passed.
    pub deadline: Option<Instant>,
}

/// Why a loop stopped early ([`KernelError::Interrupted`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Cause {
    /// The watch's flag was set.
    Flag,
    /// The watch's deadline passed.
    Deadline,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cause::Flag => "the stop flag was set (a signal)",
            Cause::Deadline => "the time limit passed",
        })
    }
}

/// How many [`check`] calls share one reading of the clock (an iteration of the cheapest loop
/// here is a tiny dense product: reading the clock each time would double its cost).
pub const CLOCK_EVERY: u32 = 32;

thread_local! {
    static WATCH: Cell<Watch> = const { Cell::new(Watch { flag: None, deadline: None }) };
    static CALLS: Cell<u32> = const { Cell::new(0) };
}

/// The watch installed on this thread (none by default).
pub fn current() -> Watch {
    WATCH.with(Cell::get)
}

/// Runs `f` with `watch` installed on this thread, restoring the previous one afterwards
/// (also when `f` panics).
pub fn watching<R>(watch: Watch, f: impl FnOnce() -> R) -> R {
    struct Restore(Watch);
    impl Drop for Restore {
        fn drop(&mut self) {
            WATCH.with(|w| w.set(self.0));
        }
    }
    let _restore = Restore(WATCH.with(|w| w.replace(watch)));
    // A deadline that has passed is seen at the first check.
    CALLS.with(|c| c.set(0));
    f()
}

/// Runs `f` with the current watch's deadline moved to `deadline` where that is earlier (the
/// flag stays).
pub fn with_deadline<R>(deadline: Option<Instant>, f: impl FnOnce() -> R) -> R {
    let mut watch = current();
    watch.deadline = match (watch.deadline, deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    watching(watch, f)
}

/// `Err(KernelError::Interrupted)` once the watch's flag is set or its deadline has passed.
#[inline]
pub fn check() -> Result<()> {
    let watch = current();
    if watch.flag.is_some_and(|f| f.load(Ordering::Relaxed)) {
        return Err(KernelError::Interrupted { cause: Cause::Flag });
    }
    if let Some(deadline) = watch.deadline {
        let n = CALLS.with(|c| {
            let n = c.get();
            c.set(n.wrapping_add(1));
            n
        });
        if n.is_multiple_of(CLOCK_EVERY) && Instant::now() >= deadline {
            return Err(KernelError::Interrupted { cause: Cause::Deadline });
        }
    }
    Ok(())
}

/// Whether `e` is an interruption, and of which cause.
pub fn cause_of(e: &KernelError) -> Option<Cause> {
    match e {
        KernelError::Interrupted { cause } => Some(*cause),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    static FLAG: AtomicBool = AtomicBool::new(false);

    #[test]
    fn a_flag_and_a_deadline_stop_the_checks_inside_their_scope_only() {
        assert!(check().is_ok(), "no watch: never interrupted");
        let past = Instant::now() - Duration::from_millis(1);
        let r = watching(Watch { flag: None, deadline: Some(past) }, check);
        assert_eq!(r, Err(KernelError::Interrupted { cause: Cause::Deadline }));
        assert!(check().is_ok(), "the watch is removed after its scope");
        let far = Instant::now() + Duration::from_secs(3600);
        watching(Watch { flag: Some(&FLAG), deadline: Some(far) }, || {
            assert!(check().is_ok());
            FLAG.store(true, Ordering::SeqCst);
            assert_eq!(check(), Err(KernelError::Interrupted { cause: Cause::Flag }));
            FLAG.store(false, Ordering::SeqCst);
            // with_deadline narrows the deadline and keeps the flag.
            with_deadline(Some(past), || {
                assert_eq!(check(), Err(KernelError::Interrupted { cause: Cause::Deadline }));
                assert!(current().flag.is_some());
            });
            assert!(check().is_ok(), "the outer deadline is back");
        });
    }
}
