//! One semaphore set in shared memory, one room per concept:
//!
//! * this file — the set's view and geometry ([`SetView`]: bounds-checked
//!   regions, accessors, otime), the caller's identity ([`Me`]), the
//!   liveness [`Host`], and what several rooms share;
//! * [`seqlock`] — consistent lock-free reads (GETVAL, GETALL, IPC_STAT);
//! * [`reader`] — the read-only face of a set ([`Reader`]), all a process
//!   whose mapping is read-only gets: loads only, and its wait for zero;
//! * [`fast`] — the fast path, one op as one CAS;
//! * [`lock`] — the global lock and its mode ([`Guard`]);
//! * [`op`] — the operation, what a semtimedop does from the fast path to
//!   sleep;
//! * [`queue`] — the pending queue (enqueue, unlink, update_queue, the FIFO
//!   walk);
//! * [`sleep`] — sleeping and hand-off (the protocol is described there);
//! * [`intent`] — intent records and their application (every update goes
//!   through one);
//! * [`recovery`] — recovery after a dead lock holder;
//! * [`undo`] — undo, the kernel's exit_sem (sweeps and reaping);
//! * [`ctl`] — the semctl commands that change a set;
//! * [`report`] — diagnostics;
//! * `heap` — a heap-built set for tests and loom models (built only for
//!   them).
//!
//! A [`SetView`] issues no system call but the futex calls of
//! [`crate::sync`]; whatever needs the operating system (is a process
//! alive?) comes through [`Host`].
//!
//! Ownership of a semaphore word: outside global mode the fast path may CAS
//! a word whose slow bits are all clear. A lock holder *owns* a word once it
//! has set GLOBAL in it (or the set is in global mode, where every word has
//! GLOBAL); from then on only it writes the word. A word with WAITERS or
//! UNDO_HELD is also stable under the lock, but the holder marks it anyway
//! before writing, so one rule covers all. When a section ends it clears the
//! GLOBAL marks it made (or counts down the global-mode hysteresis) and
//! recomputes WAITERS / UNDO_HELD from the counters in [`SemEntry`].

mod ctl;
mod fast;
#[cfg(any(test, shmsem_loom))]
pub mod heap;
mod intent;
mod lock;
pub(crate) mod op;
mod queue;
#[cfg(not(shmsem_loom))]
mod reader;
mod recovery;
mod report;
mod seqlock;
mod sleep;
mod undo;

pub use lock::Guard;
pub use op::SlowOutcome;
#[cfg(not(shmsem_loom))]
pub use reader::{HeaderFields, Reader};
pub use report::{PendingOp, ProcessReport, SetReport, SlotUsage};
pub use undo::Sweep;

use crate::sync::{self, AtomicBool, AtomicI16, AtomicU32, AtomicU64, Ordering};
use crate::sysv::Sembuf;
use crate::{mapped, Error, Result};
use shm_layout::*;

/// How often a sleeper wakes to look for dead processes (their undo and
/// queue slots), and how long a lock waiter sleeps between checks of the
/// holder: the bound on how late a dead process's SEM_UNDO reaches a
/// sleeper.
pub const SWEEP_SLICE_NS: u64 = 50_000_000;

/// How long a call that must not wait (every op IPC_NOWAIT, or a timeout
/// shorter than this) waits for a held lock at least: a running holder's
/// section is over long before; a holder stopped (SIGSTOP, a debugger) or
/// long descheduled makes the call fail with EAGAIN after it, instead of
/// never. The kernel's lock is a spinlock no holder sleeps in.
pub const LOCK_PATIENCE_NS: u64 = 10_000_000;

// What differs between a production build and a loom model's, in two
// mirrored blocks that export the same items.
#[cfg(not(shmsem_loom))]
mod build {
    use super::lock::Buffers;

    /// Spins on a held global lock before sleeping.
    pub(super) const LOCK_SPINS: u32 = 100;

    /// How long a sleeper that gave up (timeout, signal) waits for the lock
    /// to discard its withdrawn slot itself before leaving it to the next
    /// lock holder: the most it returns after its deadline.
    pub(super) const CANCEL_GRACE_NS: u64 = 1_000_000;

    // One set of buffers per thread, boxed so that taking and giving it
    // back moves a pointer; a nested section (a signal handler's) gets a
    // new one.
    std::thread_local! {
        static BUFFERS: core::cell::Cell<Option<Box<Buffers>>> = const { core::cell::Cell::new(None) };
    }

    /// The thread's cached buffers (or new ones).
    #[inline]
    pub(super) fn take_buffers() -> Box<Buffers> {
        BUFFERS
            .try_with(|c| c.take())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Caches `b` (emptied) for the thread's next section.
    #[inline]
    pub(super) fn keep_buffers(b: Box<Buffers>) {
        let _ = BUFFERS.try_with(|c| c.set(Some(b)));
    }
}
#[cfg(shmsem_loom)]
mod build {
    use super::lock::Buffers;

    /// Loom models spin once, so that they reach the sleeping protocol too.
    pub(super) const LOCK_SPINS: u32 = 1;

    /// No grace under loom: its clock moves only when a model moves it, so
    /// a sleeper that gave up tries the lock once, then leaves its slot.
    pub(super) const CANCEL_GRACE_NS: u64 = 0;

    /// New buffers: loom has no thread-local cache worth modelling.
    pub(super) fn take_buffers() -> Box<Buffers> {
        Box::default()
    }

    /// Drops `b`.
    pub(super) fn keep_buffers(_: Box<Buffers>) {}
}
use build::{CANCEL_GRACE_NS, LOCK_SPINS};

/// What the engine needs from the operating system.
pub trait Host {
    /// Whether the process recorded in process-table entry `slot` is dead.
    fn is_dead(&self, view: &SetView<'_>, slot: u32) -> bool;
}

/// A host for which every process is alive (loom models, unit tests).
pub struct NoDeaths;
impl Host for NoDeaths {
    fn is_dead(&self, _: &SetView<'_>, _: u32) -> bool {
        false
    }
}

/// The calling process's identity in a set: its process-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Me {
    /// Process-table index.
    pub slot: u32,
    /// The entry's generation when we claimed it.
    pub gen: u32,
    /// Our pid.
    pub pid: i32,
    /// The calling thread is the process's lone locker (see
    /// [`crate::sync::lone_thread`]): it announces its lock sections in the
    /// entry's `holding` with plain stores, where any other thread pays a
    /// read-modify-write on `locking`.
    pub lone: bool,
}

/// A bounds-checked view of a set segment.
pub struct SetView<'a> {
    /// The header.
    pub hdr: &'a SetHeader,
    sems: &'a [SemEntry],
    procs: &'a [ProcEntry],
    undo: &'a [AtomicI16],
    queue: &'a [QueueSlot],
    intent: &'a IntentHeader,
    intent_entries: &'a [AtomicU64],
    geo: SetGeometry,
    /// Process-local: a thread of this process holds the lock now.
    held_here: AtomicBool,
}

/// The distinct semaphore numbers of a call, in first-mention order.
fn distinct(ops: &[Sembuf]) -> impl Iterator<Item = u16> + '_ {
    ops.iter()
        .enumerate()
        .filter(move |(i, o)| !ops[..*i].iter().any(|p| p.sem_num == o.sem_num))
        .map(|(_, o)| o.sem_num)
}

/// Increments a lock-holder-only counter: no other writer, so no
/// read-modify-write.
fn inc(a: &AtomicU32) {
    a.store(a.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// Decrements a lock-holder-only counter, never below zero (the segment
/// is untrusted).
fn dec(a: &AtomicU32) {
    let x = a.load(Ordering::Relaxed);
    if x > 0 {
        a.store(x - 1, Ordering::Relaxed);
    }
}

impl<'a> SetView<'a> {
    /// Builds a view over a mapped segment, checking magic, version and
    /// every size against the mapping.
    ///
    /// # Safety
    ///
    /// * `base` must point to `len` bytes of mapped memory, 8-byte aligned,
    ///   that stay mapped for `'a`;
    /// * the memory is only ever accessed through atomics (by every process).
    pub unsafe fn from_raw(base: *mut u8, len: usize) -> Result<SetView<'a>> {
        if len < core::mem::size_of::<SetHeader>() || (base as usize) % 8 != 0 {
            return Err(Error::Corrupt);
        }
        // SAFETY: checked above that the header fits; the caller promises
        // the memory is mapped and only accessed atomically.
        let hdr: &SetHeader = unsafe { mapped::at(base, 0) };
        if hdr.magic.load(Ordering::Relaxed) != SET_MAGIC {
            return Err(Error::Corrupt);
        }
        // SYNC: pairs with the release store of `version` by the creator
        // (SetView::init), which comes after every initialising write.
        if hdr.version.load(Ordering::Acquire) != LAYOUT_VERSION {
            return Err(Error::Corrupt);
        }
        let nsems = hdr.nsems.load(Ordering::Relaxed);
        let procs = hdr.proc_slots.load(Ordering::Relaxed);
        let qs = hdr.queue_slots.load(Ordering::Relaxed);
        if nsems == 0
            || nsems > SEMMSL_MAX
            || procs == 0
            || procs > PROC_SLOTS_MAX
            || qs == 0
            || qs > QUEUE_SLOTS_MAX
        {
            return Err(Error::Corrupt);
        }
        let geo = SetGeometry::new(nsems, procs, qs);
        if geo.size != len || hdr.size.load(Ordering::Relaxed) != len as u64 {
            return Err(Error::Corrupt);
        }
        // SAFETY: the geometry places each region inside `len` bytes at an
        // offset aligned for its type; the regions do not overlap.
        unsafe {
            Ok(SetView {
                hdr,
                sems: mapped::slice_at(base, geo.sems_off, nsems as usize),
                procs: mapped::slice_at(base, geo.procs_off, procs as usize),
                undo: mapped::slice_at(base, geo.undo_off, geo.undo_row() / 2 * procs as usize),
                queue: mapped::slice_at(base, geo.queue_off, qs as usize),
                intent: mapped::at(base, geo.intent_off),
                intent_entries: mapped::slice_at(
                    base,
                    geo.intent_off + core::mem::size_of::<IntentHeader>(),
                    nsems as usize,
                ),
                geo,
                held_here: AtomicBool::new(false),
            })
        }
    }

    /// A view over separately allocated regions (loom models build a set on
    /// the heap this way).
    pub fn from_parts(
        hdr: &'a SetHeader,
        sems: &'a [SemEntry],
        procs: &'a [ProcEntry],
        undo: &'a [AtomicI16],
        queue: &'a [QueueSlot],
        (intent, intent_entries): (&'a IntentHeader, &'a [AtomicU64]),
    ) -> SetView<'a> {
        let geo = SetGeometry::new(sems.len() as u32, procs.len() as u32, queue.len() as u32);
        assert!(undo.len() >= geo.undo_row() / 2 * procs.len());
        assert!(intent_entries.len() >= sems.len());
        SetView {
            hdr,
            sems,
            procs,
            undo,
            queue,
            intent,
            intent_entries,
            geo,
            held_here: AtomicBool::new(false),
        }
    }

    /// Writes a fresh set's header and initial state (everything zero,
    /// queues empty), then publishes the version. The memory must be zeroed.
    #[allow(clippy::too_many_arguments)]
    pub fn init(
        hdr: &SetHeader,
        geo: &SetGeometry,
        key: i32,
        id: i32,
        uid: u32,
        gid: u32,
        mode: u32,
        now: i64,
    ) {
        hdr.magic.store(SET_MAGIC, Ordering::Relaxed);
        hdr.nsems.store(geo.nsems, Ordering::Relaxed);
        hdr.size.store(geo.size as u64, Ordering::Relaxed);
        hdr.key.store(key, Ordering::Relaxed);
        hdr.id.store(id, Ordering::Relaxed);
        hdr.proc_slots.store(geo.proc_slots, Ordering::Relaxed);
        hdr.queue_slots.store(geo.queue_slots, Ordering::Relaxed);
        for f in [&hdr.uid, &hdr.cuid] {
            f.store(uid, Ordering::Relaxed);
        }
        for f in [&hdr.gid, &hdr.cgid] {
            f.store(gid, Ordering::Relaxed);
        }
        hdr.mode.store(mode & 0o777, Ordering::Relaxed);
        for f in [
            &hdr.alter_head,
            &hdr.alter_tail,
            &hdr.const_head,
            &hdr.const_tail,
        ] {
            f.store(NIL, Ordering::Relaxed);
        }
        hdr.ctime.store(now, Ordering::Relaxed);
        // SYNC: publishes every store above to openers that acquire-load
        // `version` (SetView::from_raw).
        hdr.version.store(LAYOUT_VERSION, Ordering::Release);
    }

    /// Number of semaphores.
    pub fn nsems(&self) -> usize {
        self.sems.len()
    }

    /// Number of process-table entries.
    pub fn proc_slots(&self) -> u32 {
        self.procs.len() as u32
    }

    /// Process `p`'s adjustment for semaphore `n` (for the loom models).
    #[doc(hidden)]
    pub fn undo_adj(&self, p: u32, n: usize) -> i16 {
        if p >= self.proc_slots() || n >= self.nsems() {
            return 0;
        }
        // SYNC: SeqCst: the models read it after joining every actor (the
        // join orders it); the strongest ordering keeps the check simple.
        self.undo_cell(p, n).load(Ordering::SeqCst)
    }

    /// Semaphore entry `n` (for the loom models' invariants).
    #[doc(hidden)]
    pub fn sem(&self, n: usize) -> Option<&'a SemEntry> {
        self.sems.get(n)
    }

    /// Queue slot `i` (for the loom models' invariants).
    #[doc(hidden)]
    pub fn queue_slot(&self, i: u32) -> Option<&'a QueueSlot> {
        self.queue.get(i as usize)
    }

    /// Process-table entries that may be in use: those below the
    /// high-water mark (entries above it were never claimed).
    pub fn procs_in_use(&self) -> u32 {
        self.hdr
            .procs_hwm
            .load(Ordering::Relaxed)
            .min(self.proc_slots())
    }

    /// Records that entry `slot` was claimed (see [`Self::procs_in_use`]).
    pub fn note_claimed(&self, slot: u32) {
        self.hdr.procs_hwm.fetch_max(slot + 1, Ordering::Relaxed);
    }

    /// A process-table entry (bounds-checked).
    pub fn proc(&self, slot: u32) -> Option<&'a ProcEntry> {
        self.procs.get(slot as usize)
    }

    /// A queue slot (bounds-checked: an index read from the segment is
    /// untrusted).
    fn slot(&self, i: u32) -> Result<&'a QueueSlot> {
        self.queue.get(i as usize).ok_or(Error::Corrupt)
    }

    /// Process `proc_slot`'s adjustment cell for semaphore `sem`.
    fn undo_cell(&self, proc_slot: u32, sem: usize) -> &'a AtomicI16 {
        // Both indices are in range: proc_slot < procs (checked by callers
        // through `proc()`), sem < nsems.
        &self.undo[proc_slot as usize * (self.geo.undo_row() / 2) + sem]
    }

    /// Records the time of an operation on semaphore `e`. Read first: most calls in one second find it already set,
    /// and a load keeps the cache line shared.
    fn set_otime(&self, e: &SemEntry) {
        let now = sync::realtime_secs();
        if e.otime.load(Ordering::Relaxed) != now {
            e.otime.store(now, Ordering::Relaxed);
        }
    }

    /// The latest otime over the semaphores (IPC_STAT's sem_otime).
    pub fn otime(&self) -> i64 {
        self.sems
            .iter()
            .map(|e| e.otime.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }
}
