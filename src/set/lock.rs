//! The global lock and its mode.
//!
//! The lock is one word in the header naming its holder (process-table
//! entry and generation, see [`Me`]), with CONTENDED when someone may sleep
//! on it. A waiter that finds the holder dead takes the lock over and
//! recovers the set (see [`super::recovery`]). Holding it, a section owns
//! the semaphore words it marks ([`Guard::own`]), or every word in global
//! mode ([`Guard::enter_global`], the kernel's complexmode_enter); when the
//! section ends, [`Guard::tryleave`] (complexmode_tryleave) unmarks them or
//! counts the mode down, the sequence counter closes, the lock is released
//! and the sleepers completed in the section are woken.

use super::{build, Host, Me, SetView, LOCK_SPINS, SWEEP_SLICE_NS};
use crate::engine::Scratch;
use crate::sync::{self, Ordering, Wake};
use crate::sysv::Sembuf;
use core::mem::ManuallyDrop;
use shm_layout::*;

/// A section that would mark more words than this enters global mode.
const MAX_MARKS: usize = 8;

/// What a waiter makes of the process a lock word names.
enum Owner {
    /// Dead (or no such entry): take the lock over.
    Dead,
    /// Alive but neither taking nor holding the lock: the word is garbage
    /// (taken over if it stays so for a slice).
    Idle,
    /// Alive and taking or holding it: wait.
    Holding,
}

/// Decrements a process's own counter, never below zero (the segment is
/// untrusted).
fn dec16(a: &crate::sync::AtomicU16) {
    let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| x.checked_sub(1));
}

impl<'a> SetView<'a> {
    /// Takes the set's global lock. A holder found dead is replaced: its
    /// committed intent record is redone, the derived state recomputed, and
    /// the queue retried, before the caller's section begins.
    pub fn lock<'v>(&'v self, me: &Me, host: &'v dyn Host) -> Guard<'v, 'a> {
        loop {
            // No deadline: the wait only ends with the lock.
            if let Some(g) = self.lock_until(me, host, || u64::MAX) {
                return g;
            }
        }
    }

    /// Takes the set's global lock, or gives up once the absolute
    /// CLOCK_MONOTONIC time `deadline()` has passed (`None`: nothing was
    /// changed). `deadline` is asked only if the lock is contended, so an
    /// uncontended section reads no clock. A holder found dead is replaced
    /// as in [`Self::lock`], at the deadline too; a live one, however long
    /// it holds the lock (stopped, preempted), makes the caller give up.
    #[inline]
    pub fn lock_until<'v>(
        &'v self,
        me: &Me,
        host: &'v dyn Host,
        deadline: impl FnOnce() -> u64,
    ) -> Option<Guard<'v, 'a>> {
        let tok = LockWord::token(me.slot, me.gen);
        let l = &self.hdr.lock;
        // "Taking or holding" before the lock word names us: a waiter that
        // sees our token sees this (our acquiring CAS releases it).
        self.announce(me, true);
        // SYNC: Acquire pairs with the Release swap in Guard::unlock;
        // Release publishes the `holding`/`locking` count to waiters that
        // read our token (SetView::lock_slow's Acquire load).
        let recovered = if l
            .compare_exchange(0, tok.raw(), Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            match self.lock_slow(me, host, deadline()) {
                Some(r) => r,
                None => {
                    self.announce(me, false);
                    return None;
                }
            }
        } else {
            false
        };
        Some(self.guard(me, host, recovered))
    }

    /// Takes the lock if it is free now or within [`LOCK_SPINS`] spins:
    /// never sleeps, and never takes the lock over (a dead holder is left
    /// to a caller that waits). For reads, which never wait for a holder.
    pub fn try_lock<'v>(&'v self, me: &Me, host: &'v dyn Host) -> Option<Guard<'v, 'a>> {
        let tok = LockWord::token(me.slot, me.gen);
        self.announce(me, true);
        // SYNC: AcqRel as in SetView::lock_until.
        if self
            .hdr
            .lock
            .compare_exchange(0, tok.raw(), Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
            || self.spin_for_lock(tok)
        {
            return Some(self.guard(me, host, false));
        }
        self.announce(me, false);
        None
    }

    /// The section that begins once the lock is ours (`recovered`: taken
    /// over from a dead holder, whose section is finished first).
    #[inline]
    fn guard<'v>(&'v self, me: &Me, host: &'v dyn Host, recovered: bool) -> Guard<'v, 'a> {
        self.held_here.store(true, Ordering::Relaxed);
        sync::wrote();
        let mut g = Guard {
            v: self,
            global: false,
            wrote: false,
            me: *me,
            host,
            b: ManuallyDrop::new(Buffers::take()),
        };
        if GlobalMode::from_raw(g.v.hdr.global_mode.load(Ordering::Relaxed)).is_on() {
            g.global = true;
        }
        if recovered {
            // What the dead holder's section would have done next.
            g.update_queue();
        }
        g
    }

    /// Counts the caller in (or out of) the threads of its process taking
    /// or holding the lock. The lone thread is the only writer of
    /// `holding`, so a load and a store do (a signal handler that nests a
    /// section restores the count before the interrupted code resumes);
    /// other threads share `locking` and need a read-modify-write.
    #[inline]
    fn announce(&self, me: &Me, on: bool) {
        let Some(pe) = self.proc(me.slot) else {
            return;
        };
        if me.lone {
            let h = pe.holding.load(Ordering::Relaxed);
            let h = if on {
                h.wrapping_add(1)
            } else {
                h.wrapping_sub(1)
            };
            pe.holding.store(h, Ordering::Relaxed);
        } else if on {
            pe.locking.fetch_add(1, Ordering::Relaxed);
        } else {
            dec16(&pe.locking);
        }
    }

    /// The contended lock: a short spin, then sleeps of at most a slice,
    /// checking the holder in between, until `deadline` (absolute
    /// CLOCK_MONOTONIC ns; `u64::MAX`: none). Returns whether the lock was
    /// taken over from a dead holder, or `None` at the deadline: the
    /// holder, checked once more then, is alive.
    #[cold]
    fn lock_slow(&self, me: &Me, host: &dyn Host, deadline: u64) -> Option<bool> {
        let deadline = if cfg!(shmsem_mutant = "lock_ignores_deadline") {
            u64::MAX
        } else {
            deadline
        };
        let tok = LockWord::token(me.slot, me.gen);
        let l = &self.hdr.lock;
        if self.spin_for_lock(tok) {
            return Some(false);
        }
        // Check the holder after every slice without a wake-up (and, with
        // no system call, before the first sleep: an entry that is free or
        // of another generation names nobody): a live holder, however slow
        // (stopped, preempted), is never robbed (see Self::take_over).
        let mut check = false;
        let mut first = true;
        let mut suspect = LockWord::FREE;
        loop {
            // The slice is measured from the check: time that passes while
            // we decide to sleep counts.
            let now = sync::monotonic_ns();
            let slice_end = now.saturating_add(SWEEP_SLICE_NS).min(deadline);
            // SYNC: Acquire pairs with the holder's AcqRel CAS (SetView::lock_until):
            // its `locking` increment is visible once we see its token.
            let cur = LockWord::from_raw(l.load(Ordering::Acquire));
            if cur.is_free() {
                // Others may sleep: keep CONTENDED so our unlock wakes one.
                let mine = tok.with_contended(!cfg!(shmsem_mutant = "lock_drops_contended"));
                // SYNC: AcqRel as in SetView::lock_until.
                if l.compare_exchange(0, mine.raw(), Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return Some(false);
                }
                continue;
            }
            // (Loom models check fully before the first sleep too: their
            // clock only moves when a model moves it, so a first sleep could
            // outlast every timeout the model provides.)
            if first && (cfg!(shmsem_loom) || (cur.owner() != tok && self.names_nobody(cur))) {
                check = true;
            }
            first = false;
            let late = now >= deadline;
            // At the deadline only a dead holder is replaced: the slower
            // rule for a word naming an idle process needs a slice between
            // two checks.
            let replace = if late {
                matches!(self.owner(cur, tok, host), Owner::Dead)
            } else {
                check && self.take_over(cur, tok, host, &mut suspect)
            };
            if replace {
                // SYNC: Acquire as for a normal acquisition (the dead
                // holder's writes are visible); repair makes them whole.
                if l.compare_exchange(
                    cur.raw(),
                    tok.with_contended(true).raw(),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
                {
                    self.repair();
                    return Some(true);
                }
                // The word moved: look again, checking again.
                continue;
            }
            if late {
                return None;
            }
            check = false;
            if !cur.is_contended()
                && l.compare_exchange(
                    cur.raw(),
                    cur.with_contended(true).raw(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue;
            }
            if sync::futex_wait(l, cur.with_contended(true).raw(), slice_end) == Wake::TimedOut {
                check = true;
            }
        }
    }

    /// Spins [`LOCK_SPINS`] times for a free lock; whether we took it.
    fn spin_for_lock(&self, tok: LockWord) -> bool {
        let l = &self.hdr.lock;
        for _ in 0..LOCK_SPINS {
            sync::spin_hint();
            // SYNC: AcqRel as in SetView::lock_until.
            if l.load(Ordering::Relaxed) == 0
                && l.compare_exchange(0, tok.raw(), Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                return true;
            }
        }
        false
    }

    /// The takeover decision: whether the holder lock word `cur` names is
    /// to be replaced. A dead one is, at once. A word naming a live process
    /// that is not taking or holding the lock (garbage, or a scribble) is
    /// replaced when seen so at two consecutive checks a slice apart
    /// (`suspect` remembers the first); a live holder never is.
    fn take_over(
        &self,
        cur: LockWord,
        tok: LockWord,
        host: &dyn Host,
        suspect: &mut LockWord,
    ) -> bool {
        match self.owner(cur, tok, host) {
            Owner::Dead => true,
            Owner::Idle => {
                let again = *suspect == cur;
                *suspect = cur;
                again
            }
            Owner::Holding => {
                *suspect = LockWord::FREE;
                false
            }
        }
    }

    /// Who the lock word `word` names, as seen by a waiter with token `tok`.
    fn owner(&self, word: LockWord, tok: LockWord, host: &dyn Host) -> Owner {
        if word.owner() == tok {
            // This process: our own descriptor cannot see our OFD lock, but
            // we know whether one of our threads holds the lock.
            return if self.held_here.load(Ordering::Relaxed) {
                Owner::Holding
            } else {
                Owner::Idle
            };
        }
        if self.owner_dead(word, host) {
            return Owner::Dead;
        }
        match self.proc(word.slot()) {
            Some(p)
                if p.locking.load(Ordering::Relaxed) == 0
                    && p.holding.load(Ordering::Relaxed) == 0 =>
            {
                Owner::Idle
            }
            _ => Owner::Holding,
        }
    }

    /// Whether the process lock word `word` names is gone.
    fn owner_dead(&self, word: LockWord, host: &dyn Host) -> bool {
        self.names_nobody(word) || host.is_dead(self, word.slot())
    }

    /// Whether lock word `word` names no claimed process-table entry (no
    /// such entry, not ACTIVE, or another generation). No system call.
    fn names_nobody(&self, word: LockWord) -> bool {
        let Some(p) = self.proc(word.slot()) else {
            return true;
        };
        // SYNC: Acquire pairs with the Release store that makes an entry
        // ACTIVE (`activate` in liveness/membership.rs, `HeapSet::register`).
        !word.names_entry(ProcState::from_raw(p.state_gen.load(Ordering::Acquire)))
    }
}

/// A section's working memory, kept per thread between sections so that
/// a section allocates nothing in the common case.
#[derive(Default)]
pub(super) struct Buffers {
    /// The words this section marked (outside global mode).
    pub(super) marked: Vec<u32>,
    /// Queue slots whose sleepers are woken when the section ends.
    pub(super) wakes: Vec<u32>,
    /// The engine's working memory.
    pub(super) scratch: Scratch,
    /// A queued operation's ops, read from its slots.
    pub(super) ops: Vec<Sembuf>,
    /// The intent record being built.
    pub(super) intent: super::intent::Intent,
    /// The semaphores a call names, while their adjustment holders are
    /// checked.
    pub(super) named: Vec<u16>,
}

impl Buffers {
    /// The thread's buffers (see [`build::take_buffers`]).
    #[inline]
    fn take() -> Box<Buffers> {
        build::take_buffers()
    }

    /// Empties the buffers and gives them back to the thread.
    #[inline]
    fn give_back(mut self: Box<Self>) {
        self.marked.clear();
        self.wakes.clear();
        self.scratch.touched.clear();
        self.ops.clear();
        self.intent.entries.clear();
        build::keep_buffers(self);
    }
}

/// The global lock, held. Dropping it ends the section: marks are cleared
/// (or the hysteresis counts down), the sequence counter closes, the lock
/// is released, and the sleepers completed in the section are woken.
pub struct Guard<'v, 'a> {
    pub(super) v: &'v SetView<'a>,
    /// The set is in global mode for this section: every word is ours.
    pub(super) global: bool,
    /// The section has made `seq` odd (see [`Guard::begin_write`]).
    wrote: bool,
    /// The holder.
    pub(super) me: Me,
    /// The liveness host of the holder's call: a queued operation is
    /// completed only for a live process (see `Guard::try_list`).
    pub(super) host: &'v dyn Host,
    /// Taken back (into the thread's cache) only by `drop`.
    pub(super) b: ManuallyDrop<Box<Buffers>>,
}

impl<'v, 'a> Guard<'v, 'a> {
    /// The view the guard locks.
    pub fn view(&self) -> &'v SetView<'a> {
        self.v
    }

    /// Enters global mode: every word marked. `complex` sections (multi-op
    /// calls, semctl, undo) restart the hysteresis, like the kernel's
    /// complexmode_enter; others only keep an existing mode going.
    pub(super) fn enter_global(&mut self, complex: bool) {
        let hdr = self.v.hdr;
        let m = GlobalMode::from_raw(hdr.global_mode.load(Ordering::Relaxed));
        if m.is_off() {
            if !cfg!(shmsem_mutant = "no_global_marks") {
                for e in self.v.sems {
                    // SYNC: AcqRel: Acquire sees the last fast-path CAS on
                    // the word (SetView::fast_op); from here on every
                    // fast-path CAS on it fails.
                    e.word.fetch_or(SEM_GLOBAL, Ordering::AcqRel);
                    sync::wrote();
                }
            }
            self.b.marked.clear();
        }
        if let Some(want) = m.entered(complex) {
            hdr.global_mode.store(want.raw(), Ordering::Relaxed);
            sync::wrote();
        }
        self.global = true;
    }

    /// Makes semaphore `n`'s word ours for the rest of the section.
    pub(super) fn own(&mut self, n: usize) {
        if self.global || self.b.marked.contains(&(n as u32)) {
            return;
        }
        if self.b.marked.len() >= MAX_MARKS {
            self.enter_global(false);
            return;
        }
        // SYNC: as in Guard::enter_global.
        self.v.sems[n].word.fetch_or(SEM_GLOBAL, Ordering::AcqRel);
        sync::wrote();
        self.b.marked.push(n as u32);
    }

    /// Makes `seq` odd before the section's first data write (once).
    pub(super) fn begin_write(&mut self) {
        if !self.wrote {
            self.wrote = true;
            let s = SeqCount::from_raw(self.v.hdr.seq.load(Ordering::Relaxed));
            self.v
                .hdr
                .seq
                .store(s.begin_write().raw(), Ordering::Relaxed);
            // SYNC: orders the odd `seq` before the data writes that follow;
            // pairs with the readers' Acquire fence before their re-check
            // (SetView::seq_read).
            sync::fence(Ordering::Release);
            sync::wrote();
        }
    }

    /// Semaphore `n`'s value (a word the holder owns).
    pub(super) fn value(&self, n: usize) -> i32 {
        SemWord::from_raw(self.v.sems[n].word.load(Ordering::Relaxed)).value() as i32
    }

    /// The kernel's complexmode_tryleave: global mode counts down and is
    /// left when it reaches zero (every word unmarked); outside it the
    /// words this section marked are unmarked. A removed set never leaves.
    fn tryleave(&mut self) {
        let hdr = self.v.hdr;
        if self.global {
            let m = GlobalMode::from_raw(hdr.global_mode.load(Ordering::Relaxed));
            if let Some(next) = m.ended() {
                hdr.global_mode.store(next.raw(), Ordering::Relaxed);
                sync::wrote();
                if next.is_off() {
                    for n in 0..self.v.nsems() {
                        self.unmark(n);
                    }
                }
            }
        } else {
            for &n in &self.b.marked {
                self.unmark(n as usize);
            }
        }
    }

    /// Gives word `n` back to the fast path: GLOBAL cleared, WAITERS and
    /// UNDO_HELD recomputed from the counts.
    fn unmark(&self, n: usize) {
        let e = &self.v.sems[n];
        let w = SemWord::from_raw(e.word.load(Ordering::Relaxed));
        let waiters =
            !cfg!(shmsem_mutant = "no_waiters_bit") && e.nwait.load(Ordering::Relaxed) != 0;
        let undo_held = e.nundo.load(Ordering::Relaxed) != 0;
        // SYNC: Release pairs with the fast path's Acquire load/CAS
        // (SetView::fast_op): all of this section's writes happen before
        // any later fast-path op.
        e.word
            .store(w.unmarked(waiters, undo_held).raw(), Ordering::Release);
        sync::wrote();
    }

    /// Makes `seq` even again if the section wrote.
    fn close_seq(&mut self) {
        if self.wrote {
            let hdr = self.v.hdr;
            let s = SeqCount::from_raw(hdr.seq.load(Ordering::Relaxed));
            // SYNC: Release pairs with readers' Acquire load of `seq`
            // (SetView::seq_read).
            hdr.seq.store(s.end_write().raw(), Ordering::Release);
            sync::wrote();
        }
    }

    /// Releases the lock word, and wakes one lock waiter if it was
    /// CONTENDED.
    fn unlock(&mut self) {
        let hdr = self.v.hdr;
        self.v.held_here.store(false, Ordering::Relaxed);
        // SYNC: Release pairs with the Acquire CAS of the next locker
        // (SetView::lock_until, SetView::try_lock, SetView::lock_slow).
        let prev = LockWord::from_raw(hdr.lock.swap(0, Ordering::Release));
        sync::wrote();
        self.v.announce(&self.me, false);
        if !cfg!(shmsem_mutant = "no_lock_wake") && prev.is_contended() {
            sync::futex_wake(&hdr.lock, 1);
        }
    }
}

impl Drop for Guard<'_, '_> {
    fn drop(&mut self) {
        // A loom model's "dead process" unwinds through here: like a
        // SIGKILLed one, it releases nothing (`crashing` is a constant
        // false in production).
        if sync::crashing() {
            return;
        }
        self.tryleave();
        self.close_seq();
        self.unlock();
        self.wake_completed();
        // SAFETY: `b` is not used again: this is the guard's last act.
        unsafe { ManuallyDrop::take(&mut self.b) }.give_back();
    }
}
