//! Sleeping and hand-off.
//!
//! The protocol, once:
//!
//! 1. A call that must wait is queued under the lock ([`Guard::enqueue`]):
//!    its head queue slot's status becomes QUEUED (with a new generation).
//!    The caller releases the lock and sleeps on that status word
//!    ([`SetView::wait`]), expecting the QUEUED value.
//! 2. A waker is whichever lock holder finds the operation runnable
//!    ([`Guard::update_queue`]) or failed, or removes the set. It
//!    completes the operation through an intent record: applying the
//!    record begins with the **waker's completion store**, a Release
//!    compare-and-swap of the status from QUEUED to DONE (with an errno
//!    for a failure) in [`SetView::complete`] (an APPLY record), or to DONE
//!    with EIDRM for every queued slot in [`SetView::apply_rmid`]
//!    (IPC_RMID); the values, sempids and adjustments are written after it,
//!    and only if it won (a sleeper that withdrew first keeps its units).
//!    The result is decided there; nothing of the slot is written after it.
//! 3. The waker unlinks the slot ([`Guard::finish`]) and notes it in the
//!    section's wake list. The futex wake comes after the lock is released
//!    ([`Guard::wake_completed`], the last step of the guard's drop), as the
//!    kernel's wake_up_q defers its wakes past the unlock: the sleeper does
//!    not wake into a held lock.
//! 4. The **sleeper's load**: the Acquire load of its status
//!    ([`SetView::spin`], [`SetView::sleep_loop`]) that sees it leave
//!    QUEUED pairs with the completion store, so everything the waker wrote
//!    before it is visible: the committed record, the odd `seq` and the
//!    GLOBAL marks of its section (the values may follow: whatever the
//!    sleeper reads next waits for the section or reads its committed
//!    state). The sleeper then collects the result ([`SetView::collect`])
//!    and frees the slot (a Release store of FREE, for the next
//!    allocator's Acquire load in `Guard::alloc_slot`).
//! 5. A sleeper whose deadline passes, or which a signal interrupts (the
//!    futex call's EINTR, or a handler that ran on its thread in user space
//!    since the call began: [`crate::signal`]), cancels
//!    ([`SetView::cancel`]) without waiting for the lock: the
//!    **withdrawal**, a compare-and-swap of its status from QUEUED to
//!    WITHDRAWN, races the completion store; a completion that won is
//!    reported, as the kernel does. A withdrawn slot is unlinked and freed
//!    under the lock: by the sleeper if it gets the lock within
//!    `CANCEL_GRACE_NS`, else by the next holder that meets it
//!    ([`Guard::discard`], [`Guard::tidy`]), so that a lock holder stopped
//!    (SIGSTOP, a debugger) delays no deadline.
//! 6. A waker that dies between its completion store and its wake leaves
//!    a DONE slot: recovery wakes every DONE slot ([`SetView::repair`]).
//!
//! A sleeper also wakes every [`SWEEP_SLICE_NS`]: one of the set's sleepers
//! per slice sweeps dead processes, so that their undo reaches the
//! sleepers even if nobody else looks. A sleeper at the head of its FIFO
//! whose partner is running on another processor spins briefly first.

use super::{Guard, Host, Me, SetView, Sweep, CANCEL_GRACE_NS, SWEEP_SLICE_NS};
use crate::signal::HandlerMark;
use crate::sync::{self, Ordering, Wake};
use crate::sysv::Timespec;
use crate::{Error, Result};
use shm_layout::*;

/// How long a sleeper spins before sleeping when a partner is running on
/// another processor (see [`SetView::partner_running`]).
const SPIN_NS: u64 = 30_000;
/// Queue slots below the allocation hint that [`SetView::partner_running`]
/// looks at for a sleeper that has been woken but has not run yet.
const WOKEN_WINDOW: u32 = 8;

/// The absolute CLOCK_MONOTONIC deadline (ns) of a wait of `t` from now
/// (`u64::MAX`: none). `t` is valid (checked by the caller).
#[inline]
pub(crate) fn deadline_after(t: Option<&Timespec>) -> u64 {
    match t {
        None => u64::MAX,
        Some(t) => sync::monotonic_ns().saturating_add(
            (t.tv_sec as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(t.tv_nsec as u64),
        ),
    }
}

impl SetView<'_> {
    /// Sleeps in queue slot `slot` until its operation is completed, the
    /// deadline passes (`WouldBlock`) or a signal arrives (`Interrupted`):
    /// the futex call is interrupted, or a handler has run on this thread
    /// since `mark` (taken where the call could start blocking).
    /// Between slices it sweeps dead processes, so that their undo reaches
    /// us even if nobody else looks.
    pub fn wait(
        &self,
        me: &Me,
        slot: u32,
        expected: u32,
        deadline: u64,
        mark: HandlerMark,
        host: &dyn Host,
    ) -> Result<()> {
        let q = self.slot(slot)?;
        self.spin(me, slot, q, expected, deadline, mark);
        self.sleep_loop(me, slot, q, expected, deadline, mark, host)
    }

    /// The spin phase: records where we run, and, at the head of a FIFO
    /// with a partner running elsewhere, spins a bounded while for the
    /// completion (a partner on another processor is likely to wake us
    /// within microseconds, far sooner than a sleep and a wake-up take).
    /// A handler that runs meanwhile ends the spin (the sleep loop then
    /// gives up with EINTR).
    fn spin(
        &self,
        me: &Me,
        slot: u32,
        q: &QueueSlot,
        expected: u32,
        deadline: u64,
        mark: HandlerMark,
    ) {
        let cpu = sync::current_cpu();
        if let Some(pe) = self.proc(me.slot) {
            pe.cpu.store(CpuTag::of(cpu).raw(), Ordering::Relaxed);
        }
        // One spinner per set at a time: more would take the processors
        // the processes that will wake them need.
        // SYNC: Relaxed: a stale head only makes us spin or not, wrongly.
        let head = self.hdr.alter_head.load(Ordering::Relaxed) == slot
            || self.hdr.const_head.load(Ordering::Relaxed) == slot;
        let spin = if head && self.partner_running(me, cpu) {
            self.claim_spin()
        } else {
            None
        };
        if let Some((start, stamp)) = spin {
            let until = start.saturating_add(SPIN_NS).min(deadline);
            let mut i = 0u32;
            // SYNC: Acquire pairs with the waker's Release completion store
            // (SetView::apply_ops, SetView::apply_rmid).
            while q.status.load(Ordering::Acquire) == expected {
                sync::spin_hint();
                i += 1;
                if i % 64 == 0 && (sync::monotonic_ns() >= until || mark.ran_since()) {
                    break;
                }
            }
            // Only if still ours (a claim taken over as stale is not).
            let _ = self.hdr.spinners.compare_exchange(
                stamp.raw(),
                SpinStamp::FREE.raw(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// The sleep loop: futex sleeps of at most a slice until the status
    /// leaves `expected` (collected), the deadline passes or a signal
    /// arrives (cancelled); a slice that ends without either sweeps.
    ///
    /// A signal is the futex call's EINTR, or a handler that ran in user
    /// space since `mark` (in the slow path, the spin, a sweep, between
    /// slices, or at the end of a slice that timed out with the signal
    /// pending), looked for just before each futex call: as in the kernel,
    /// a blocked call returns EINTR once a handler ran, with or without
    /// SA_RESTART, and a completion seen first wins (the status is read
    /// first, and `cancel`'s withdrawal loses to a completion stored
    /// before it). What is left:
    /// a handler that runs in the few instructions between that look and
    /// the system call is seen when the slice ends (up to a slice late);
    /// and a slice that times out at the deadline is EAGAIN even if a
    /// handler ran as the futex call returned (the kernel's timeout wins
    /// over a signal that comes after it, as here; one that came in those
    /// few instructions before the call is taken for one of those).
    #[allow(clippy::too_many_arguments)]
    fn sleep_loop(
        &self,
        me: &Me,
        slot: u32,
        q: &QueueSlot,
        expected: u32,
        deadline: u64,
        mark: HandlerMark,
        host: &dyn Host,
    ) -> Result<()> {
        let pe = self.proc(me.slot);
        loop {
            // SYNC: Acquire pairs with the waker's Release completion store
            // (SetView::apply_ops, SetView::apply_rmid): the waker's writes
            // are visible to us.
            let st = q.status.load(Ordering::Acquire);
            if st != expected {
                return self.collect(me, slot, st);
            }
            let now = sync::monotonic_ns();
            let slice = deadline.min(now.saturating_add(SWEEP_SLICE_NS));
            if let Some(pe) = pe {
                pe.asleep.fetch_add(1, Ordering::Relaxed);
            }
            // The last look for a handler, as close to the futex call as
            // it can be.
            let woke = if mark.ran_since() {
                Wake::Interrupted
            } else {
                sync::futex_wait(&q.status, expected, slice)
            };
            if let Some(pe) = pe {
                pe.asleep.fetch_sub(1, Ordering::Relaxed);
            }
            match woke {
                Wake::Woken => {}
                Wake::TimedOut if sync::monotonic_ns() >= deadline => {
                    return self.cancel(me, slot, expected, Error::WouldBlock, host)
                }
                Wake::TimedOut => self.slice_sweep(me, host, deadline),
                Wake::Interrupted => {
                    return self.cancel(me, slot, expected, Error::Interrupted, host)
                }
            }
        }
    }

    /// The slice sweep: one sleeper per slice sweeps for the whole set
    /// (with N sleepers each sweeping, the lock would do N^2 liveness
    /// checks per slice). It waits for the lock no longer than the
    /// sleeper's `deadline`.
    fn slice_sweep(&self, me: &Me, host: &dyn Host, deadline: u64) {
        let now = sync::monotonic_ns();
        let last = self.hdr.last_sweep_ns.load(Ordering::Relaxed);
        if now.wrapping_sub(last) >= SWEEP_SLICE_NS
            && self
                .hdr
                .last_sweep_ns
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            if let Some(mut g) = self.lock_until(me, host, || deadline) {
                g.sweep_dead(me, host, Sweep::Holding);
            }
        }
    }

    /// Whether a sleeper on `cpu` (at the head of its FIFO: the next to be
    /// served) should spin before sleeping: some other process of the set
    /// is running or about to run, every such one last slept on another
    /// known processor, and fewer of them than there are other processors
    /// — so the partner is plausibly running now, and the spin does not
    /// take a processor it or others need. Never on one processor.
    ///
    /// A process counts when it is not asleep on the set, or when it is
    /// asleep but one of its operations was completed and not yet collected
    /// (it has been woken and is on its way: see [`Self::woken`]). A process
    /// that has never slept on the set (`cpu` unknown: one that only created
    /// or set up the set, or only ever posts) neither counts nor vetoes:
    /// nothing says whether or where it runs.
    fn partner_running(&self, me: &Me, cpu: u32) -> bool {
        let others = sync::online_cpus().saturating_sub(1);
        if others == 0 {
            return false;
        }
        let woken = self.woken();
        let mut awake = 0;
        for p in 0..self.procs_in_use() {
            let pe = &self.procs[p as usize];
            if p == me.slot
                || !ProcState::from_raw(pe.state_gen.load(Ordering::Relaxed)).is_active()
                || (pe.asleep.load(Ordering::Relaxed) != 0 && !woken.contains(&p))
            {
                continue;
            }
            let c = CpuTag::from_raw(pe.cpu.load(Ordering::Relaxed));
            if !c.is_known() {
                continue;
            }
            if c == CpuTag::of(cpu) {
                // Running on our processor: it may not run while we spin.
                return false;
            }
            awake += 1;
            if awake > others {
                return false;
            }
        }
        awake > 0
    }

    /// Claims the set's one spinner place: returns (now, the claim's
    /// stamp), or None when another sleeper spins. The place holds the
    /// spinner's start time (in units of 1024 ns, never 0), so a claim left
    /// by a spinner that died or was stopped mid-spin is taken over once it
    /// is older than any spin lasts, instead of barring spinning on the set
    /// for ever.
    fn claim_spin(&self) -> Option<(u64, SpinStamp)> {
        let now = sync::monotonic_ns();
        let stamp = SpinStamp::at(now);
        // SYNC: Relaxed: the place only limits spinning; nothing is
        // published through it.
        let cur = SpinStamp::from_raw(self.hdr.spinners.load(Ordering::Relaxed));
        // A claim older than twice the longest spin was left by a spinner
        // that died or was stopped (compared signed: a claim stamped just
        // after our clock read is fresh).
        if cur.is_busy(now, 2 * SPIN_NS) {
            return None;
        }
        self.hdr
            .spinners
            .compare_exchange(cur.raw(), stamp.raw(), Ordering::Relaxed, Ordering::Relaxed)
            .ok()
            .map(|_| (now, stamp))
    }

    /// Process-table entries of sleepers that have been woken but have not
    /// run yet: owners of completed, uncollected slots among the last
    /// [`WOKEN_WINDOW`] below the allocation hint (where the most recent
    /// sleepers' slots are). NIL where nothing was found.
    fn woken(&self) -> [u32; WOKEN_WINDOW as usize] {
        let mut out = [NIL; WOKEN_WINDOW as usize];
        let n = self.queue.len() as u32;
        if n == 0 {
            return out;
        }
        // SYNC: Relaxed: a stale hint or status only makes us spin or not,
        // wrongly; the spin is bounded.
        let hint = self.hdr.alloc_hint.load(Ordering::Relaxed) % n;
        for k in 1..=WOKEN_WINDOW.min(n) {
            let q = &self.queue[((hint + n - k) % n) as usize];
            if SlotStatus::from_raw(q.status.load(Ordering::Relaxed)).is_done() {
                out[(k - 1) as usize] = q.proc_slot.load(Ordering::Relaxed);
            }
        }
        out
    }

    /// Takes the result a waker handed over and frees the slot.
    fn collect(&self, me: &Me, slot: u32, st: u32) -> Result<()> {
        let st = SlotStatus::from_raw(st);
        if !st.is_done() {
            return Err(Error::Corrupt);
        }
        let q = &self.queue[slot as usize];
        // The slot is ours until we free it; the waker no longer touches it.
        // SYNC: Release pairs with the next allocator's Acquire load
        // (Guard::alloc_slot): our reads of the slot come before its reuse.
        q.status.store(st.freed().raw(), Ordering::Release);
        if let Some(p) = self.proc(me.slot) {
            p.queued.fetch_sub(1, Ordering::Relaxed);
        }
        match st.errno() {
            0 => Ok(()),
            // Only what a waker hands over; anything else was scribbled.
            e => Err(match Error::from_errno(e as i32) {
                x @ (Error::Removed
                | Error::OutOfRange
                | Error::SemNumOutOfRange
                | Error::WouldBlock
                | Error::Corrupt) => x,
                _ => Error::Corrupt,
            }),
        }
    }

    /// Gives up waiting in slot `slot` with `why`, unless a completion won
    /// the race. The race is decided without the lock, by one
    /// compare-and-swap against the waker's completion store
    /// ([`SetView::complete`]): a lock holder that is stopped delays
    /// nothing. The withdrawn slot is then discarded under the lock if the
    /// lock comes within [`CANCEL_GRACE_NS`], else left to the next holder
    /// (counted in the header's `withdrawn`).
    fn cancel(&self, me: &Me, slot: u32, expected: u32, why: Error, host: &dyn Host) -> Result<()> {
        if cfg!(shmsem_mutant = "cancel_waits_for_lock") {
            // The protocol before: the decision under the lock.
            drop(self.lock(me, host));
        }
        let q = &self.queue[slot as usize];
        let gone = SlotStatus::from_raw(expected).withdrawn().raw();
        if cfg!(shmsem_mutant = "cancel_no_recheck") {
            q.status.store(gone, Ordering::Relaxed);
        } else if let Err(st) =
            // SYNC: Acquire (on failure: the one that matters) pairs with
            // the waker's Release completion store (SetView::complete,
            // SetView::apply_rmid), as the sleeper's load. Of this CAS and
            // the completion store, the one first in the word's order wins.
            q.status.compare_exchange(
                expected,
                gone,
                Ordering::Acquire,
                Ordering::Acquire,
            )
        {
            // A completion (or removal) won the race with our timeout or
            // signal: report it, as the kernel does.
            return self.collect(me, slot, st);
        }
        sync::wrote();
        if let Some(p) = self.proc(me.slot) {
            let _ = p
                .queued
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| x.checked_sub(1));
        }
        let grace = || sync::monotonic_ns().saturating_add(CANCEL_GRACE_NS);
        match self.lock_until(me, host, grace) {
            Some(mut g) => {
                // Still ours and withdrawn, unless a holder discarded it
                // meanwhile (and the slot may be another sleeper's now).
                if q.status.load(Ordering::Relaxed) == gone {
                    g.discard(slot);
                }
            }
            None => {
                // SYNC: Release pairs with the Acquire swap in Guard::tidy:
                // our WITHDRAWN status is visible to the holder that sees
                // the count.
                self.hdr.withdrawn.fetch_add(1, Ordering::Release);
            }
        }
        Err(why)
    }
}

impl Guard<'_, '_> {
    /// The deferred wake (the kernel's wake_up_q): after the lock is
    /// released, each sleeper whose operation this section completed is
    /// woken on its status word.
    pub(super) fn wake_completed(&self) {
        if !cfg!(shmsem_mutant = "no_wake") {
            for &i in &self.b.wakes {
                sync::futex_wake(&self.v.queue[i as usize].status, 1);
            }
        }
    }
}
