//! Consistent lock-free reads: GETVAL / GETPID ([`SetView::read_sem`]),
//! GETALL ([`SetView::snapshot`]) and IPC_STAT's header fields
//! ([`SetView::read_consistent`]), all through one seqlock read loop
//! ([`SetView::seq_read`]).
//!
//! A lock holder that writes makes the header's `seq` odd before its first
//! data write (`Guard::begin_write`) and even again when its section ends
//! (`Guard::close_seq`). A read that starts with `seq` even and finds the
//! same `seq` after its loads saw no writing section.

use super::SetView;
use crate::sync::{self, Ordering};
use shm_layout::*;

/// Lock-free snapshot attempts before GETALL takes the lock.
const SNAPSHOT_TRIES: u32 = 16;
/// Attempts of a lock-free consistent read before the reader takes the
/// lock (a writer that is slow, or died, mid-update).
const SEQ_TRIES: u32 = 1000;

/// How a seqlock read checks that no writer overlapped it. Only the loom
/// mutants turn `fence` or `seq` off.
#[derive(Clone, Copy)]
struct Recheck {
    /// An Acquire fence orders the read's loads before the re-check.
    fence: bool,
    /// The re-check compares with `seq` as the read began (off: with `seq`
    /// loaded again after the fence, which checks nothing).
    seq: bool,
    /// A spin hint after an overlapped attempt, as after an odd `seq`
    /// (GETALL retries at once instead: its two collections take longer
    /// than a hint).
    pause: bool,
}

impl Recheck {
    const FULL: Recheck = Recheck {
        fence: true,
        seq: true,
        pause: true,
    };
}

impl<'a> SetView<'a> {
    /// The seqlock read loop: `read` runs while `seq` is even, and its
    /// result counts only if `seq` has not moved by the end of it. `read`
    /// may refuse an attempt (`None`, e.g. two collections that differ):
    /// it is retried like an overlapped one. `None` after `tries` attempts
    /// (a writer slow, or dead, mid-update): the caller takes the lock.
    #[inline]
    fn seq_read<T>(
        &self,
        tries: u32,
        check: Recheck,
        mut read: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        for _ in 0..tries {
            // SYNC: Acquire pairs with the Release store that makes `seq`
            // even again at the end of a writing section (Guard::close_seq):
            // what that section wrote is visible to `read`.
            let s1 = self.hdr.seq.load(Ordering::Acquire);
            if SeqCount::from_raw(s1).is_writing() {
                sync::spin_hint();
                continue;
            }
            let v = read();
            if check.fence {
                // SYNC: orders `read`'s loads before the re-check of `seq`;
                // pairs with the writer's Release fence after it makes
                // `seq` odd (Guard::begin_write): a load that saw a write of
                // that section is followed by a re-check that sees the odd
                // `seq` (or later).
                sync::fence(Ordering::Acquire);
            }
            let s1 = if check.seq {
                s1
            } else {
                self.hdr.seq.load(Ordering::Relaxed)
            };
            if let Some(v) = v {
                if self.hdr.seq.load(Ordering::Relaxed) == s1 {
                    return Some(v);
                }
            }
            if check.pause {
                sync::spin_hint();
            }
        }
        None
    }

    /// Reads one word consistently with multi-word updates: retried while a
    /// lock holder is in the middle of writing several words. `None` after
    /// [`SEQ_TRIES`] (a holder slow or dead mid-update): take the lock.
    #[inline]
    fn read_word(&self, n: usize) -> Option<u64> {
        self.seq_read(SEQ_TRIES, Recheck::FULL, || {
            // SYNC: Acquire pairs with the Release stores of the word by a
            // lock holder (SetView::put_value, Guard::unmark) and with the
            // fast path's AcqRel CAS (SetView::fast_op).
            Some(self.sems[n].word.load(Ordering::Acquire))
        })
    }

    /// GETVAL / GETPID without the lock. `None` if a dead process's undo may
    /// be pending on the semaphore (UNDO_HELD), or a writer is in the way:
    /// the caller takes the lock (and sweeps). Inlined into GETVAL's short
    /// path (`Namespace::getval_fast`), in another codegen unit.
    #[inline]
    pub fn read_sem(&self, n: usize) -> Option<(i32, i32)> {
        let w = SemWord::from_raw(self.read_word(n)?);
        if w.undo_held() && !w.global() {
            return None;
        }
        if w.global() && self.sems[n].nundo.load(Ordering::Relaxed) != 0 {
            return None;
        }
        Some((w.value() as i32, w.pid()))
    }

    /// A consistent snapshot of every value, lock-free: two identical
    /// collections of the (versioned) words with no writing section in
    /// between. `None` after repeated interference, or when some semaphore
    /// may have undo pending.
    pub fn snapshot(&self, out: &mut [u16]) -> Option<()> {
        let mut first: Vec<u64> = vec![0; self.sems.len()];
        let check = Recheck {
            seq: !cfg!(shmsem_mutant = "snapshot_no_seq_recheck"),
            pause: false,
            ..Recheck::FULL
        };
        self.seq_read(SNAPSHOT_TRIES, check, || {
            for (f, e) in first.iter_mut().zip(self.sems) {
                // SYNC: Acquire as in SetView::read_word.
                *f = e.word.load(Ordering::Acquire);
            }
            if !cfg!(shmsem_mutant = "snapshot_single_read") {
                for (f, e) in first.iter().zip(self.sems) {
                    // SYNC: Acquire as in SetView::read_word.
                    if e.word.load(Ordering::Acquire) != *f {
                        return None;
                    }
                }
            }
            Some(())
        })?;
        if first.iter().any(|&w| SemWord::from_raw(w).undo_held())
            || (first.iter().any(|&w| SemWord::from_raw(w).global())
                && self
                    .sems
                    .iter()
                    .any(|e| e.nundo.load(Ordering::Relaxed) != 0))
        {
            return None;
        }
        for (o, w) in out.iter_mut().zip(&first) {
            *o = SemWord::from_raw(*w).value();
        }
        Some(())
    }

    /// Reads header fields consistently (IPC_STAT): `f` is retried until no
    /// writing section overlapped it. `None` after [`SEQ_TRIES`]: take the
    /// lock and read under it.
    pub fn read_consistent<T>(&self, f: impl Fn(&SetView<'a>) -> T) -> Option<T> {
        let check = Recheck {
            fence: !cfg!(shmsem_mutant = "stat_no_fence"),
            ..Recheck::FULL
        };
        self.seq_read(SEQ_TRIES, check, || Some(f(self)))
    }
}
