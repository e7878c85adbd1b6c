//! The operation: what a semtimedop does, from the fast path to sleep.
//!
//! [`semtimedop`] runs the kernel's order of checks on a set found by the
//! layer above it (which checked the arguments that need no set), then the
//! fast path ([`SetView::fast_op`]), then the lock and the slow path
//! ([`Guard::semop`]: evaluate, apply or queue), then the sleep
//! ([`SetView::wait`]) until a waker hands the completed operation over.
//! A call only goes down from here: the layer above is reached through
//! [`Caller`].

use super::{distinct, sleep::deadline_after, Guard, Host, Me, SetView, LOCK_PATIENCE_NS};
use crate::engine::{self, Eval};
use crate::signal::HandlerMark;
use crate::sync::{self, Ordering};
use crate::sysv::{Sembuf, Timespec};
use crate::{Error, Result};
use shm_layout::{SemWord, IPC_NOWAIT};

/// What the operation needs from the layer above it.
pub(crate) trait Caller {
    /// The liveness host of this caller's calls.
    type Host: Host;
    /// The caller's identity in the set (registering on first use).
    fn me(&self) -> Result<Me>;
    /// The liveness host for this caller's calls (valid after `me`).
    fn host(&self) -> Self::Host;
    /// Whether the caller may alter (`true`) or read (`false`) the set.
    fn may(&self, alter: bool) -> Result<bool>;
    /// The caller's pid (cached; no system call).
    fn pid(&self) -> i32;
}

/// `semtimedop(2)` on set `v`, whose arguments the caller has checked
/// (`sops` is not empty nor longer than SEMOPM, `timeout` is valid).
/// `None` waits for ever.
#[cfg_attr(shmsem_loom, allow(dead_code))]
#[inline]
pub(crate) fn semtimedop<C: Caller>(
    v: &SetView<'_>,
    sops: &[Sembuf],
    timeout: Option<&Timespec>,
    c: &C,
) -> Result<()> {
    // (Short-circuiting scans: one fused loop gets vectorized, and its
    // set-up costs the one-op call more than the scans.)
    let undo = engine::has_undo(sops);
    let mut me = None;
    if undo {
        // The kernel makes the undo record before the EFBIG and EACCES
        // checks, and its existence alone sets otime at exit.
        let m = c.me()?;
        v.note_undo_record(m.slot);
        me = Some(m);
    }
    if sops.iter().any(|s| s.sem_num as usize >= v.nsems()) {
        return Err(Error::SemNumOutOfRange);
    }
    if !c.may(engine::alters(sops))? {
        return Err(Error::PermissionDenied);
    }
    if sops.len() == 1 && !undo {
        if let Some(r) = v.fast_op(sops[0], c.pid()) {
            return r;
        }
    }
    slow_path(v, sops, timeout, c, me)
}

/// The rest of [`semtimedop`] once the fast path declined: the lock, the
/// slow path under it, and the sleep. Out of line, so that the fast path
/// keeps few registers busy.
#[cfg_attr(shmsem_loom, allow(dead_code))]
#[inline(never)]
fn slow_path<C: Caller>(
    v: &SetView<'_>,
    sops: &[Sembuf],
    timeout: Option<&Timespec>,
    c: &C,
    me: Option<Me>,
) -> Result<()> {
    // From here the call may block. A handler that runs on this thread
    // from now on, while the call has not completed, makes a blocked call
    // return EINTR: in the kernel the signal would be pending when the call
    // goes to sleep. (One that ran during the fast path is one that ran
    // just before the call, as far as anyone can tell; the fast path does
    // not pay for the thread-local read.)
    let mark = HandlerMark::now();
    let deadline = deadline_after(timeout);
    let me = match me {
        Some(m) => m,
        None => c.me()?,
    };
    let host = c.host();
    // The deadline holds for the lock too: a holder that does not let go
    // (stopped, or long descheduled) makes the call fail with EAGAIN, and
    // nothing has changed.
    let Some(mut g) = v.lock_until(&me, &host, || lock_deadline(deadline, sops)) else {
        return Err(Error::WouldBlock);
    };
    let out = g.semop(&me, sops, &host);
    drop(g);
    match out {
        SlowOutcome::Now(r) => r,
        SlowOutcome::Queued(slot, st) => v.wait(&me, slot, st, deadline, mark, &host),
    }
}

/// How long a call waits for a contended lock (absolute CLOCK_MONOTONIC
/// ns), asked only when the lock is held: its own `deadline`, but at least
/// [`LOCK_PATIENCE_NS`] from now, so that a short timeout does not fail
/// behind a running holder's section; a call whose every op has IPC_NOWAIT
/// never sleeps on a semaphore and waits that long at most. (The kernel
/// takes a spinlock whose holder never sleeps: no wait there is long.)
#[cold]
fn lock_deadline(deadline: u64, sops: &[Sembuf]) -> u64 {
    let patience = sync::monotonic_ns().saturating_add(LOCK_PATIENCE_NS);
    if sops.iter().all(|s| s.sem_flg as i32 & IPC_NOWAIT != 0) {
        patience
    } else {
        deadline.max(patience)
    }
}

/// How a slow-path semop ended before any sleeping.
#[derive(Debug, PartialEq, Eq)]
pub enum SlowOutcome {
    /// Completed (or failed) at once.
    Now(Result<()>),
    /// Queued in slot `.0`; sleep on its status until it leaves `.1`.
    Queued(u32, u32),
}

impl Guard<'_, '_> {
    /// The slow path of semop, under the lock: try, and either finish or
    /// queue. `me` is the caller.
    pub fn semop(&mut self, me: &Me, sops: &[Sembuf], host: &dyn Host) -> SlowOutcome {
        if !cfg!(shmsem_mutant = "rmid_no_removed_check")
            && self.v.hdr.removed.load(Ordering::Relaxed) != 0
        {
            return SlowOutcome::Now(Err(Error::Removed));
        }
        if sops.len() > 1 {
            self.enter_global(true);
        }
        if !self.global {
            for n in distinct(sops) {
                self.own(n as usize);
            }
        }
        let mut eval = self.evaluate(sops, me.slot);
        // The outcome depends only on the semaphores evaluated (touched).
        // Another process's adjustment on one (ours is no dead process's):
        // that process may have died, and its undo must be applied before
        // this call can see the values.
        let sems = self.v.sems;
        let undo_held =
            self.b.scratch.touched.iter().any(|t| {
                sems[t.num as usize].nundo.load(Ordering::Relaxed) > (t.old_adj != 0) as u32
            });
        if undo_held {
            // (A copy: reaping evaluates, and reuses the scratch.)
            let mut named = core::mem::take(&mut self.b.named);
            named.clear();
            named.extend(self.b.scratch.touched.iter().map(|t| t.num));
            self.sweep_undo_on(me, host, &named);
            self.b.named = named;
            eval = self.evaluate(sops, me.slot);
        }
        match eval {
            Eval::Done => {
                if let Err(e) = self.apply(me.slot, me.pid, sops[0].sem_num, None) {
                    return SlowOutcome::Now(Err(e));
                }
                // A queued operation's outcome depends only on the
                // semaphores it names (their values, and its process's
                // adjustments on them), and `nwait` counts the queued
                // operations naming each: if none names a semaphore this
                // call changed, none can have become runnable, and the
                // queue is not walked (the kernel's per-semaphore lists
                // spare it the same walk).
                let sems = self.v.sems;
                let wakes_someone = self.b.scratch.touched.iter().any(|t| {
                    (t.value != t.old_value || t.adj != t.old_adj)
                        && sems[t.num as usize].nwait.load(Ordering::Relaxed) != 0
                });
                if wakes_someone {
                    self.update_queue();
                }
                SlowOutcome::Now(Ok(()))
            }
            Eval::Fail(e) => SlowOutcome::Now(Err(e)),
            Eval::Block(i) => match self.enqueue(me, sops, i) {
                Ok((slot, st)) => SlowOutcome::Queued(slot, st),
                Err(e) => SlowOutcome::Now(Err(e)),
            },
        }
    }

    /// Evaluates `sops` for process `p` (its undo row) against the owned
    /// words. The result's new values are in `self.b.scratch`.
    pub(super) fn evaluate(&mut self, sops: &[Sembuf], p: u32) -> Eval {
        let v = self.v;
        engine::evaluate(
            sops,
            &mut self.b.scratch,
            |n| SemWord::from_raw(v.sems[n as usize].word.load(Ordering::Relaxed)).value() as i32,
            |n| v.undo_cell(p, n as usize).load(Ordering::Relaxed) as i32,
        )
    }
}
