//! One semaphore set in shared memory: the fast path, the global lock and
//! its mode, the pending queue with hand-off, undo, and the sweep of dead
//! processes.
//!
//! A [`SetView`] is a bounds-checked view of a set segment's regions. It
//! issues no system call but the futex calls of [`crate::sync`]; whatever
//! needs the operating system (is a process alive?) comes through [`Host`].
//!
//! Ownership of a semaphore word: outside global mode the fast path may CAS
//! a word whose slow bits are all clear. A lock holder *owns* a word once it
//! has set GLOBAL in it (or the set is in global mode, where every word has
//! GLOBAL); from then on only it writes the word. A word with WAITERS or
//! UNDO_HELD is also stable under the lock, but the holder marks it anyway
//! before writing, so one rule covers all. When a section ends it clears the
//! GLOBAL marks it made (or counts down the global-mode hysteresis) and
//! recomputes WAITERS / UNDO_HELD from the counters in [`SemEntry`].

use crate::engine::{self, Eval, Scratch};
use crate::sync::{self, AtomicBool, AtomicI16, Ordering, Wake};
use crate::sysv::{IpcPerm, Sembuf, SemidDs};
use crate::{Error, Result};
use core::mem::ManuallyDrop;
use shm_layout::*;

/// How often a sleeper wakes to look for dead processes (their undo and
/// queue slots): the bound on how late a dead process's SEM_UNDO reaches a
/// sleeper.
pub const SWEEP_SLICE_NS: u64 = 50_000_000;
/// How long a sleeper spins before sleeping when a partner is running on
/// another processor (see [`SetView::partner_running`]).
const SPIN_NS: u64 = 30_000;
/// Queue slots below the allocation hint that [`SetView::partner_running`]
/// looks at for a sleeper that has been woken but has not run yet.
const WOKEN_WINDOW: u32 = 8;
/// Spins on a held global lock before sleeping.
#[cfg(not(shmsem_loom))]
const LOCK_SPINS: u32 = 100;
/// Loom models spin once, so that they reach the sleeping protocol too.
#[cfg(shmsem_loom)]
const LOCK_SPINS: u32 = 1;
/// A section that would mark more words than this enters global mode.
const MAX_MARKS: usize = 8;
/// Global-mode value of a removed set: never left.
const GLOBAL_FOREVER: u32 = u32::MAX;
/// Sections that global mode lasts after a complex one (the kernel's
/// USE_GLOBAL_LOCK_HYSTERESIS). Loom models use 1, so that a model's own
/// few sections reach the exit from global mode.
#[cfg(not(shmsem_loom))]
const HYSTERESIS: u32 = USE_GLOBAL_LOCK_HYSTERESIS;
#[cfg(shmsem_loom)]
const HYSTERESIS: u32 = 1;
/// Lock-free snapshot attempts before GETALL takes the lock.
const SNAPSHOT_TRIES: u32 = 16;
/// Attempts of a lock-free consistent read before the reader takes the
/// lock (a writer that is slow, or died, mid-update).
const SEQ_TRIES: u32 = 1000;

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

impl Me {
    fn token(&self) -> u32 {
        (self.slot + 1) | ((self.gen & LOCK_GEN_MASK) << LOCK_GEN_SHIFT)
    }
}

/// A queued operation (see [`Guard::report`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingOp {
    /// Its queue slot.
    pub slot: u32,
    /// The sleeper's pid.
    pub pid: i32,
    /// Its operations.
    pub ops: Vec<Sembuf>,
    /// CLOCK_MONOTONIC nanoseconds when it was queued.
    pub queued_at_ns: u64,
    /// Its place in the FIFO order.
    pub ticket: u64,
}

/// A process-table entry (see [`Guard::report`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessReport {
    /// Its index in the table.
    pub slot: u32,
    /// The process's pid.
    pub pid: i32,
    /// Whether it is alive (a dead one is not yet swept).
    pub alive: bool,
    /// Its non-zero SEM_UNDO adjustments: (semaphore, adjustment).
    pub adjustments: Vec<(u16, i16)>,
    /// Whether it has made a SEM_UNDO call on the set.
    pub undo_record: bool,
    /// Queue slots it has queued or not yet collected.
    pub queued: u32,
}

/// Use of the pending-queue arena (see [`Guard::report`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotUsage {
    /// Free slots.
    pub free: u32,
    /// Head slots of queued operations.
    pub queued: u32,
    /// Completed operations not yet collected by their sleeper.
    pub done: u32,
    /// Continuation slots (and slots being filled).
    pub cont: u32,
}

/// A set as a diagnostic tool shows it (see [`Guard::report`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetReport {
    /// Values.
    pub values: Vec<u16>,
    /// sempid of each semaphore.
    pub sempids: Vec<i32>,
    /// GETNCNT of each semaphore.
    pub ncnt: Vec<u32>,
    /// GETZCNT of each semaphore.
    pub zcnt: Vec<u32>,
    /// Queued operations in FIFO order.
    pub pending: Vec<PendingOp>,
    /// Processes in the set's table.
    pub processes: Vec<ProcessReport>,
    /// The queue arena.
    pub slots: SlotUsage,
    /// What IPC_STAT would return, read without IPC_STAT's sweep of dead
    /// processes (so otime may predate an exit not yet noticed).
    pub status: SemidDs,
}

/// Which process-table entries a sweep checks for death.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sweep {
    /// Those holding undo adjustments (before using their semaphores).
    Undo,
    /// Those holding adjustments, an undo record or queue slots.
    Holding,
    /// Every entry, idle ones too (their entries are freed).
    All,
}

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

/// How a slow-path semop ended before any sleeping.
#[derive(Debug, PartialEq, Eq)]
pub enum SlowOutcome {
    /// Completed (or failed) at once.
    Now(Result<()>),
    /// Queued in slot `.0`; sleep on its status until it leaves `.1`.
    Queued(u32, u32),
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
    /// Where otime is mirrored for processes that cannot open the segment
    /// (the registry entry's tagged word) and the set's sequence tag.
    otime_mirror: Option<(&'a AtomicU64, u32)>,
}

fn state(status: u32) -> u32 {
    (status >> SLOT_STATE_SHIFT) & SLOT_STATE_MASK
}
fn gen_of(status: u32) -> u32 {
    status >> SLOT_GEN_SHIFT
}
fn make_status(gen: u32, st: u32, errno: u32) -> u32 {
    (gen << SLOT_GEN_SHIFT) | (st << SLOT_STATE_SHIFT) | (errno & SLOT_ERRNO_MASK)
}
fn word_value(w: u64) -> i32 {
    (w & SEM_VALUE_MASK) as i32
}
fn word_pid(w: u64) -> i32 {
    (w >> SEM_PID_SHIFT) as u32 as i32
}
/// `w` with a new value and sempid, the version bumped, flags kept.
fn word_with(w: u64, value: i32, pid: i32) -> u64 {
    let ver = ((w >> SEM_VERSION_SHIFT) + 1) & SEM_VERSION_MASK;
    (w & (SEM_SLOW_BITS))
        | (value as u64 & SEM_VALUE_MASK)
        | (ver << SEM_VERSION_SHIFT)
        | ((pid as u32 as u64) << SEM_PID_SHIFT)
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
        let hdr = unsafe { &*(base as *const SetHeader) };
        if hdr.magic.load(Ordering::Relaxed) != SET_MAGIC {
            return Err(Error::Corrupt);
        }
        // SYNC: pairs with the release store of `version` by the creator,
        // which comes after every initialising write.
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
                sems: core::slice::from_raw_parts(
                    base.add(geo.sems_off) as *const SemEntry,
                    nsems as usize,
                ),
                procs: core::slice::from_raw_parts(
                    base.add(geo.procs_off) as *const ProcEntry,
                    procs as usize,
                ),
                undo: core::slice::from_raw_parts(
                    base.add(geo.undo_off) as *const AtomicI16,
                    geo.undo_row() / 2 * procs as usize,
                ),
                queue: core::slice::from_raw_parts(
                    base.add(geo.queue_off) as *const QueueSlot,
                    qs as usize,
                ),
                intent: &*(base.add(geo.intent_off) as *const IntentHeader),
                intent_entries: core::slice::from_raw_parts(
                    base.add(geo.intent_off + core::mem::size_of::<IntentHeader>())
                        as *const AtomicU64,
                    nsems as usize,
                ),
                geo,
                held_here: AtomicBool::new(false),
                otime_mirror: None,
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
            otime_mirror: None,
        }
    }

    /// Writes a fresh set's header and initial state (everything zero,
    /// queues empty), then publishes the version. The memory must be zeroed.
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

    fn slot(&self, i: u32) -> Result<&'a QueueSlot> {
        self.queue.get(i as usize).ok_or(Error::Corrupt)
    }

    fn undo_cell(&self, proc_slot: u32, sem: usize) -> &'a AtomicI16 {
        // Both indices are in range: proc_slot < procs (checked by callers
        // through `proc()`), sem < nsems.
        &self.undo[proc_slot as usize * (self.geo.undo_row() / 2) + sem]
    }

    // -----------------------------------------------------------------
    // Lock-free paths
    // -----------------------------------------------------------------

    /// The fast path: one op without SEM_UNDO on a word with no slow bits
    /// is one CAS. `None` means "take the slow path".
    #[inline]
    pub fn fast_op(&self, op: Sembuf, pid: i32) -> Option<Result<()>> {
        let e = self.sems.get(op.sem_num as usize)?;
        let mut w = e.word.load(Ordering::Acquire);
        loop {
            if w & SEM_SLOW_BITS != 0 {
                return None;
            }
            let cur = word_value(w);
            let delta = op.sem_op as i32;
            let new = cur + delta;
            if (delta == 0 && cur != 0) || new < 0 {
                // Would block: a decision on one word read, linearizable
                // at that read.
                if op.sem_flg as i32 & IPC_NOWAIT != 0 {
                    return Some(Err(Error::WouldBlock));
                }
                return None;
            }
            if new > SEMVMX {
                return Some(Err(Error::OutOfRange));
            }
            // SYNC: AcqRel pairs with the lock holder's release store when
            // it clears GLOBAL (unmark) and with other fast-path CASes.
            match e.word.compare_exchange_weak(
                w,
                word_with(w, new, pid),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.set_otime(e);
                    return Some(Ok(()));
                }
                Err(x) => w = x,
            }
        }
    }

    /// Reads one word consistently with multi-word updates: retried while a
    /// lock holder is in the middle of writing several words. `None` after
    /// [`SEQ_TRIES`] (a holder slow or dead mid-update): take the lock.
    fn read_word(&self, n: usize) -> Option<u64> {
        for _ in 0..SEQ_TRIES {
            // SYNC: pairs with the release store that makes `seq` even again
            // at the end of a writing section.
            let s1 = self.hdr.seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let w = self.sems[n].word.load(Ordering::Acquire);
                sync::fence(Ordering::Acquire);
                if self.hdr.seq.load(Ordering::Relaxed) == s1 {
                    return Some(w);
                }
            }
            sync::spin_hint();
        }
        None
    }

    /// GETVAL / GETPID without the lock. `None` if a dead process's undo may
    /// be pending on the semaphore (UNDO_HELD), or a writer is in the way:
    /// the caller takes the lock (and sweeps).
    pub fn read_sem(&self, n: usize) -> Option<(i32, i32)> {
        let w = self.read_word(n)?;
        if w & SEM_UNDO_HELD != 0 && w & SEM_GLOBAL == 0 {
            return None;
        }
        if w & SEM_GLOBAL != 0 && self.sems[n].nundo.load(Ordering::Relaxed) != 0 {
            return None;
        }
        Some((word_value(w), word_pid(w)))
    }

    /// A consistent snapshot of every value, lock-free: two identical
    /// collections of the (versioned) words with no writing section in
    /// between. `None` after repeated interference, or when some semaphore
    /// may have undo pending.
    pub fn snapshot(&self, out: &mut [u16]) -> Option<()> {
        let mut first: Vec<u64> = vec![0; self.sems.len()];
        for _ in 0..SNAPSHOT_TRIES {
            let s1 = self.hdr.seq.load(Ordering::Acquire);
            if s1 & 1 != 0 {
                sync::spin_hint();
                continue;
            }
            for (f, e) in first.iter_mut().zip(self.sems) {
                *f = e.word.load(Ordering::Acquire);
            }
            let mut same = true;
            #[cfg(not(shmsem_mutant = "snapshot_single_read"))]
            for (f, e) in first.iter().zip(self.sems) {
                if e.word.load(Ordering::Acquire) != *f {
                    same = false;
                    break;
                }
            }
            sync::fence(Ordering::Acquire);
            #[cfg(shmsem_mutant = "snapshot_no_seq_recheck")]
            let s1 = self.hdr.seq.load(Ordering::Relaxed);
            if same && self.hdr.seq.load(Ordering::Relaxed) == s1 {
                if first.iter().any(|w| w & SEM_UNDO_HELD != 0)
                    || (first.iter().any(|w| w & SEM_GLOBAL != 0)
                        && self
                            .sems
                            .iter()
                            .any(|e| e.nundo.load(Ordering::Relaxed) != 0))
                {
                    return None;
                }
                for (o, w) in out.iter_mut().zip(&first) {
                    *o = word_value(*w) as u16;
                }
                return Some(());
            }
        }
        None
    }

    /// Reads header fields consistently (IPC_STAT): `f` is retried until no
    /// writing section overlapped it. `None` after [`SEQ_TRIES`]: take the
    /// lock and read under it.
    pub fn read_consistent<T>(&self, f: impl Fn(&SetView<'a>) -> T) -> Option<T> {
        for _ in 0..SEQ_TRIES {
            let s1 = self.hdr.seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let v = f(self);
                #[cfg(not(shmsem_mutant = "stat_no_fence"))]
                sync::fence(Ordering::Acquire);
                if self.hdr.seq.load(Ordering::Relaxed) == s1 {
                    return Some(v);
                }
            }
            sync::spin_hint();
        }
        None
    }

    /// Mirrors otime into `word` (a registry entry's tagged word) for
    /// processes that cannot open the segment; `seq` is the set's tag.
    pub fn set_otime_mirror(&mut self, word: &'a AtomicU64, seq: u32) {
        self.otime_mirror = Some((word, seq));
    }

    /// Records the time of an operation on semaphore `e` (and in the
    /// mirror). Read first: most calls in one second find it already set,
    /// and a load keeps the cache line shared.
    fn set_otime(&self, e: &SemEntry) {
        let now = sync::realtime_secs();
        if e.otime.load(Ordering::Relaxed) != now {
            e.otime.store(now, Ordering::Relaxed);
            if let Some((w, seq)) = self.otime_mirror {
                store_tagged_time(w, seq, now);
            }
        }
    }

    /// Notes that process table entry `slot` made a SEM_UNDO call (the
    /// kernel's undo record: its exit sets otime).
    pub fn note_undo_record(&self, slot: u32) {
        if let Some(p) = self.proc(slot) {
            if p.undo_record.load(Ordering::Relaxed) == 0 {
                p.undo_record.store(1, Ordering::Relaxed);
            }
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

    // -----------------------------------------------------------------
    // The global lock
    // -----------------------------------------------------------------

    /// Takes the set's global lock. A holder found dead is replaced: its
    /// committed intent record is redone, the derived state recomputed, and
    /// the queue retried, before the caller's section begins.
    pub fn lock<'v>(&'v self, me: &Me, host: &dyn Host) -> Guard<'v, 'a> {
        let tok = me.token();
        let l = &self.hdr.lock;
        // "Taking or holding" before the lock word names us: a waiter that
        // sees our token sees this (our acquiring CAS releases it).
        self.announce(me, true);
        // SYNC: Acquire pairs with the Release swap in Guard::drop; Release
        // publishes the `holding`/`locking` count to waiters that read our
        // token.
        let recovered = if l
            .compare_exchange(0, tok, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow(me, host)
        } else {
            false
        };
        self.held_here.store(true, Ordering::Relaxed);
        sync::wrote();
        let mut g = Guard {
            v: self,
            global: false,
            wrote: false,
            me: *me,
            b: ManuallyDrop::new(Buffers::take()),
        };
        if g.v.hdr.global_mode.load(Ordering::Relaxed) > 0 {
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

    /// Returns whether the lock was taken over from a dead holder.
    #[cold]
    fn lock_slow(&self, me: &Me, host: &dyn Host) -> bool {
        let tok = me.token();
        let l = &self.hdr.lock;
        for _ in 0..LOCK_SPINS {
            sync::spin_hint();
            if l.load(Ordering::Relaxed) == 0
                && l.compare_exchange(0, tok, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                return false;
            }
        }
        // Check the holder after every slice without a wake-up (and, with
        // no system call, before the first sleep: an entry that is free or
        // of another generation names nobody): a live holder, however slow
        // (stopped, preempted), is never robbed. A word naming a live
        // process that is not taking or holding the lock (garbage, or a
        // scribble) is replaced when seen so at two consecutive checks a
        // slice apart.
        let mut check = false;
        let mut first = true;
        let mut suspect = 0;
        loop {
            // The slice is measured from the check: time that passes while
            // we decide to sleep counts.
            let slice_end = sync::monotonic_ns() + SWEEP_SLICE_NS;
            // SYNC: Acquire pairs with the holder's AcqRel CAS: its
            // `locking` increment is visible once we see its token.
            let cur = l.load(Ordering::Acquire);
            if cur == 0 {
                #[cfg(shmsem_mutant = "lock_drops_contended")]
                const LOCK_CONTENDED: u32 = 0;
                // Others may sleep: keep CONTENDED so our unlock wakes one.
                if l.compare_exchange(0, tok | LOCK_CONTENDED, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return false;
                }
                continue;
            }
            // (Loom models check fully before the first sleep too: their
            // clock only moves when a model moves it, so a first sleep could
            // outlast every timeout the model provides.)
            if first
                && (cfg!(shmsem_loom) || ((cur & !LOCK_CONTENDED) != tok && self.names_nobody(cur)))
            {
                check = true;
            }
            first = false;
            if check {
                let take = match self.owner(cur, tok, host) {
                    Owner::Dead => true,
                    Owner::Idle => {
                        let again = suspect == cur;
                        suspect = cur;
                        again
                    }
                    Owner::Holding => {
                        suspect = 0;
                        false
                    }
                };
                // SYNC: Acquire as for a normal acquisition (the dead
                // holder's writes are visible); repair makes them whole.
                if take
                    && l.compare_exchange(
                        cur,
                        tok | LOCK_CONTENDED,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    self.repair();
                    return true;
                }
                if take {
                    continue;
                }
            }
            check = false;
            if cur & LOCK_CONTENDED == 0
                && l.compare_exchange(
                    cur,
                    cur | LOCK_CONTENDED,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue;
            }
            if sync::futex_wait(l, cur | LOCK_CONTENDED, slice_end) == Wake::TimedOut {
                check = true;
            }
        }
    }

    /// Who the lock word `word` names, as seen by a waiter with token `tok`.
    fn owner(&self, word: u32, tok: u32, host: &dyn Host) -> Owner {
        let named = word & !LOCK_CONTENDED;
        if named == tok {
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
        let slot = (word & LOCK_SLOT_MASK).wrapping_sub(1);
        match self.proc(slot) {
            Some(p)
                if p.locking.load(Ordering::Relaxed) == 0
                    && p.holding.load(Ordering::Relaxed) == 0 =>
            {
                Owner::Idle
            }
            _ => Owner::Holding,
        }
    }

    fn owner_dead(&self, word: u32, host: &dyn Host) -> bool {
        self.names_nobody(word) || host.is_dead(self, (word & LOCK_SLOT_MASK).wrapping_sub(1))
    }

    /// Whether lock word `word` names no claimed process-table entry (no
    /// such entry, not ACTIVE, or another generation). No system call.
    fn names_nobody(&self, word: u32) -> bool {
        let slot = (word & LOCK_SLOT_MASK).wrapping_sub(1);
        let Some(p) = self.proc(slot) else {
            return true;
        };
        let sg = p.state_gen.load(Ordering::Acquire);
        let gen = (sg >> PROC_GEN_SHIFT) & LOCK_GEN_MASK;
        sg & PROC_STATE_MASK != PROC_ACTIVE || gen != (word >> LOCK_GEN_SHIFT) & LOCK_GEN_MASK
    }

    /// After taking the lock from a dead holder: finish its update (redo a
    /// committed intent record, drop an uncommitted one), close the
    /// sequence counter, and recompute everything derived: marks and
    /// global mode, waiter and undo counts, the FIFO links (from the
    /// tickets), continuation slots nobody owns; then wake every sleeper
    /// whose operation was completed (its waker may have died before
    /// waking it). Every step is idempotent: a recoverer that dies here is
    /// recovered in turn.
    fn repair(&self) {
        for e in self.sems {
            e.word.fetch_or(SEM_GLOBAL, Ordering::AcqRel);
        }
        if self.hdr.global_mode.load(Ordering::Relaxed) != GLOBAL_FOREVER {
            self.hdr.global_mode.store(HYSTERESIS, Ordering::Relaxed);
        }
        // SYNC: Acquire pairs with the Release store of INTENT_COMMITTED:
        // a committed record is complete.
        #[cfg(not(shmsem_mutant = "no_redo"))]
        if self.intent.commit.load(Ordering::Acquire) == INTENT_COMMITTED {
            // A corrupt record cannot be applied; nothing better to do.
            let _ = self.redo(true);
        }
        self.intent.commit.store(INTENT_NONE, Ordering::Release);
        let s = self.hdr.seq.load(Ordering::Relaxed);
        if s & 1 != 0 {
            self.hdr.seq.store(s.wrapping_add(1), Ordering::Release);
        }
        self.recount();
        self.relink();
        for q in self.queue {
            if state(q.status.load(Ordering::Relaxed)) == SLOT_DONE {
                sync::futex_wake(&q.status, 1);
            }
        }
    }

    /// Recomputes the undo and waiter counts from the undo rows and queue.
    fn recount(&self) {
        for e in self.sems {
            e.nwait.store(0, Ordering::Relaxed);
            e.nundo.store(0, Ordering::Relaxed);
        }
        for p in 0..self.proc_slots() {
            let mut n = 0;
            for s in 0..self.nsems() {
                if self.undo_cell(p, s).load(Ordering::Relaxed) != 0 {
                    n += 1;
                    self.sems[s].nundo.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.procs[p as usize]
                .undo_count
                .store(n, Ordering::Relaxed);
            self.procs[p as usize].queued.store(0, Ordering::Relaxed);
        }
        let mut ops = Vec::new();
        for (i, q) in self.queue.iter().enumerate() {
            let st = state(q.status.load(Ordering::Relaxed));
            if st == SLOT_QUEUED || st == SLOT_DONE {
                if let Some(p) = self.proc(q.proc_slot.load(Ordering::Relaxed)) {
                    p.queued.fetch_add(1, Ordering::Relaxed);
                }
            }
            if st == SLOT_QUEUED && self.read_ops(i as u32, &mut ops).is_ok() {
                for s in distinct(&ops) {
                    self.sems[s as usize].nwait.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Rebuilds both FIFOs from the queued slots in ticket order, and frees
    /// continuation slots that no queued operation reaches.
    fn relink(&self) {
        let mut reached = vec![false; self.queue.len()];
        let mut lists: [Vec<(u64, u32)>; 2] = [Vec::new(), Vec::new()];
        for (i, q) in self.queue.iter().enumerate() {
            if state(q.status.load(Ordering::Relaxed)) != SLOT_QUEUED {
                continue;
            }
            let alter = q.flags.load(Ordering::Relaxed) & SLOT_F_ALTER != 0;
            lists[alter as usize].push((q.ticket.load(Ordering::Relaxed), i as u32));
            let mut c = q.cont.load(Ordering::Relaxed);
            let mut hops = 0;
            while let Some(cq) = self.queue.get(c as usize) {
                if hops > self.queue.len() || reached[c as usize] {
                    break;
                }
                hops += 1;
                reached[c as usize] = true;
                c = cq.cont.load(Ordering::Relaxed);
            }
        }
        for (i, q) in self.queue.iter().enumerate() {
            let st = q.status.load(Ordering::Relaxed);
            if state(st) == SLOT_CONT && !reached[i] {
                q.status
                    .store(make_status(gen_of(st), SLOT_FREE, 0), Ordering::Release);
            }
        }
        let heads = [
            (&self.hdr.const_head, &self.hdr.const_tail),
            (&self.hdr.alter_head, &self.hdr.alter_tail),
        ];
        for (list, (head, tail)) in lists.iter_mut().zip(heads) {
            list.sort_unstable();
            let mut prev = NIL;
            for &(_, i) in list.iter() {
                let q = &self.queue[i as usize];
                q.prev.store(prev, Ordering::Relaxed);
                q.next.store(NIL, Ordering::Relaxed);
                match self.queue.get(prev as usize) {
                    Some(p) => p.next.store(i, Ordering::Relaxed),
                    None => head.store(i, Ordering::Relaxed),
                }
                prev = i;
            }
            if prev == NIL {
                head.store(NIL, Ordering::Relaxed);
            }
            tail.store(prev, Ordering::Relaxed);
        }
    }

    // -----------------------------------------------------------------
    // The intent record
    // -----------------------------------------------------------------

    /// Sets process `p`'s adjustment for semaphore `n`, keeping the counts.
    /// Idempotent.
    fn put_adj(&self, p: u32, n: usize, adj: i32) {
        let cell = self.undo_cell(p, n);
        let old = cell.load(Ordering::Relaxed) as i32;
        if old == adj {
            return;
        }
        cell.store(adj as i16, Ordering::Relaxed);
        sync::wrote();
        let pe = &self.procs[p as usize];
        let e = &self.sems[n];
        if old == 0 {
            inc(&pe.undo_count);
            inc(&e.nundo);
        } else if adj == 0 {
            dec(&pe.undo_count);
            dec(&e.nundo);
        }
        sync::wrote();
    }

    /// Writes value and sempid of semaphore `n` (a word the writer owns).
    fn put_value(&self, n: usize, value: i32, pid: i32) {
        let e = &self.sems[n].word;
        let w = e.load(Ordering::Relaxed);
        e.store(word_with(w, value, pid), Ordering::Release);
        sync::wrote();
    }

    /// Clears every process's adjustment for semaphore `only` (or all).
    /// `exhaustive` reads every row; otherwise rows whose count says they
    /// hold nothing are skipped (the counts are exact outside recovery).
    fn clear_adjs(&self, only: Option<usize>, exhaustive: bool) {
        let n = if exhaustive {
            self.proc_slots()
        } else {
            self.procs_in_use()
        };
        for p in 0..n {
            if !exhaustive && self.procs[p as usize].undo_count.load(Ordering::Relaxed) == 0 {
                continue;
            }
            match only {
                Some(n) => self.put_adj(p, n, 0),
                None => (0..self.nsems()).for_each(|n| self.put_adj(p, n, 0)),
            }
        }
    }

    /// Frees queue slot `i`'s continuation slots (only those still CONT).
    fn free_conts(&self, i: u32) {
        let Some(q) = self.queue.get(i as usize) else {
            return;
        };
        let mut c = q.cont.load(Ordering::Relaxed);
        let mut hops = 0;
        while let Some(cq) = self.queue.get(c as usize) {
            let st = cq.status.load(Ordering::Relaxed);
            if state(st) != SLOT_CONT || hops > self.queue.len() {
                break;
            }
            hops += 1;
            cq.status
                .store(make_status(gen_of(st), SLOT_FREE, 0), Ordering::Release);
            sync::wrote();
            c = cq.cont.load(Ordering::Relaxed);
        }
    }

    /// Applies the committed intent record. Idempotent: values are
    /// absolute, a status or a process entry changes by compare-and-swap
    /// from the value the record names. The record is untrusted: anything
    /// out of range makes it `Corrupt` before any of it is applied.
    /// `recovering`: counts may be stale, so nothing is skipped by them.
    fn redo(&self, recovering: bool) -> Result<()> {
        let ih = self.intent;
        let kind = ih.kind.load(Ordering::Relaxed);
        let count = ih.count.load(Ordering::Relaxed) as usize;
        let entries = self.intent_entries.get(..count).ok_or(Error::Corrupt)?;
        let nsems = self.nsems();
        let mut adjs = false;
        for w in entries {
            let (n, val, adj) = unpack_intent(w.load(Ordering::Relaxed));
            if n as usize >= nsems || val as i32 > SEMVMX {
                return Err(Error::Corrupt);
            }
            adjs |= adj.is_some();
        }
        let pid = ih.pid.load(Ordering::Relaxed);
        let p = ih.proc_slot.load(Ordering::Relaxed);
        let values = || {
            for w in entries {
                let (n, val, _) = unpack_intent(w.load(Ordering::Relaxed));
                self.put_value(n as usize, val as i32, pid);
            }
        };
        match kind {
            INTENT_APPLY => {
                if adjs && p >= self.proc_slots() {
                    return Err(Error::Corrupt);
                }
                for w in entries {
                    let (n, val, adj) = unpack_intent(w.load(Ordering::Relaxed));
                    self.put_value(n as usize, val as i32, pid);
                    if let Some(a) = adj {
                        self.put_adj(p, n as usize, a as i32);
                    }
                }
                if let Some(e) = self.sems.get(ih.otime_sem.load(Ordering::Relaxed) as usize) {
                    self.set_otime(e);
                }
                if let Some(q) = self.queue.get(ih.q_slot.load(Ordering::Relaxed) as usize) {
                    let (from, to) = (
                        ih.q_from.load(Ordering::Relaxed),
                        ih.q_to.load(Ordering::Relaxed),
                    );
                    // SYNC: Release pairs with the sleeper's Acquire load of
                    // its status (SetView::wait): the values written for it
                    // happen before it returns.
                    let _ =
                        q.status
                            .compare_exchange(from, to, Ordering::Release, Ordering::Relaxed);
                    sync::wrote();
                }
            }
            INTENT_SETVAL | INTENT_SETALL => {
                for w in entries {
                    let (n, _, _) = unpack_intent(w.load(Ordering::Relaxed));
                    if kind == INTENT_SETVAL {
                        self.clear_adjs(Some(n as usize), recovering);
                    }
                }
                if kind == INTENT_SETALL {
                    self.clear_adjs(None, recovering);
                }
                values();
                self.hdr
                    .ctime
                    .store(ih.time.load(Ordering::Relaxed), Ordering::Relaxed);
                sync::wrote();
            }
            INTENT_REAP => {
                let pe = self.procs.get(p as usize).ok_or(Error::Corrupt)?;
                let sg = ih.proc_sg.load(Ordering::Relaxed);
                values();
                for n in 0..nsems {
                    self.put_adj(p, n, 0);
                }
                for (i, q) in self.queue.iter().enumerate() {
                    let st = q.status.load(Ordering::Relaxed);
                    if q.proc_slot.load(Ordering::Relaxed) != p
                        || (state(st) != SLOT_QUEUED && state(st) != SLOT_DONE)
                    {
                        continue;
                    }
                    self.free_conts(i as u32);
                    q.status
                        .store(make_status(gen_of(st), SLOT_FREE, 0), Ordering::Release);
                    sync::wrote();
                }
                // Only while the entry is still the dead process's: once
                // freed, a newcomer may already have claimed it.
                if pe.state_gen.load(Ordering::Acquire) == sg {
                    // As exit_sem: an undo record sets otime (of semaphore
                    // 0) at exit, whatever its adjustments were.
                    if pe.undo_record.load(Ordering::Relaxed) != 0
                        && self.hdr.removed.load(Ordering::Relaxed) == 0
                    {
                        self.set_otime(&self.sems[0]);
                    }
                    pe.undo_count.store(0, Ordering::Relaxed);
                    pe.queued.store(0, Ordering::Relaxed);
                    pe.undo_record.store(0, Ordering::Relaxed);
                    sync::wrote();
                    let free = (sg & !PROC_STATE_MASK) | PROC_FREE;
                    let _ = pe.state_gen.compare_exchange(
                        sg,
                        free,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    );
                    sync::wrote();
                }
            }
            INTENT_RMID => {
                self.hdr
                    .global_mode
                    .store(GLOBAL_FOREVER, Ordering::Relaxed);
                // SYNC: Release pairs with the Acquire loads of `removed` in
                // lookups: whoever sees it sees the set as it was left.
                self.hdr.removed.store(1, Ordering::Release);
                sync::wrote();
                let eidrm = Error::Removed.errno() as u32;
                for q in self.queue {
                    let st = q.status.load(Ordering::Relaxed);
                    if state(st) == SLOT_QUEUED {
                        // SYNC: as for APPLY's completion.
                        let _ = q.status.compare_exchange(
                            st,
                            make_status(gen_of(st), SLOT_DONE, eidrm),
                            Ordering::Release,
                            Ordering::Relaxed,
                        );
                        sync::wrote();
                    }
                }
            }
            INTENT_SETPERM => {
                let h = self.hdr;
                h.uid
                    .store(ih.uid.load(Ordering::Relaxed), Ordering::Relaxed);
                sync::wrote();
                h.gid
                    .store(ih.gid.load(Ordering::Relaxed), Ordering::Relaxed);
                sync::wrote();
                h.mode
                    .store(ih.mode.load(Ordering::Relaxed) & 0o777, Ordering::Relaxed);
                sync::wrote();
                h.ctime
                    .store(ih.time.load(Ordering::Relaxed), Ordering::Relaxed);
                sync::wrote();
                // SYNC: Release: a reader that sees the new count sees the
                // new owner and mode (pairs with the Acquire load in
                // Namespace::granted). Redone twice, it moves twice: no harm.
                h.perm_seq.store(
                    h.perm_seq.load(Ordering::Relaxed).wrapping_add(1),
                    Ordering::Release,
                );
                sync::wrote();
            }
            _ => return Err(Error::Corrupt),
        }
        Ok(())
    }

    /// The operations stored in queue slot `i` and its continuations,
    /// validated (every index and count is untrusted).
    fn read_ops(&self, i: u32, out: &mut Vec<Sembuf>) -> Result<()> {
        out.clear();
        let head = self.slot(i)?;
        let n = head.nsops.load(Ordering::Relaxed) as usize;
        if n == 0 || n > SEMOPM_MAX as usize {
            return Err(Error::Corrupt);
        }
        let mut cur = head;
        let mut hops = 0;
        while out.len() < n {
            for w in &cur.ops {
                if out.len() == n {
                    break;
                }
                let (num, op, flg) = unpack_op(w.load(Ordering::Relaxed));
                if num as usize >= self.nsems() {
                    return Err(Error::Corrupt);
                }
                out.push(Sembuf::new(num, op, flg));
            }
            if out.len() < n {
                hops += 1;
                if hops > self.queue.len() {
                    return Err(Error::Corrupt);
                }
                cur = self.slot(cur.cont.load(Ordering::Relaxed))?;
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------
    // Sleeping
    // -----------------------------------------------------------------

    /// Sleeps in queue slot `slot` until its operation is completed, the
    /// deadline passes (`WouldBlock`) or a signal arrives (`Interrupted`).
    /// Between slices it sweeps dead processes, so that their undo reaches
    /// us even if nobody else looks.
    pub fn wait(
        &self,
        me: &Me,
        slot: u32,
        expected: u32,
        deadline: u64,
        host: &dyn Host,
    ) -> Result<()> {
        let q = self.slot(slot)?;
        let pe = self.proc(me.slot);
        let cpu = sync::current_cpu();
        if let Some(pe) = pe {
            pe.cpu.store(cpu_tag(cpu), Ordering::Relaxed);
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
            // A bounded spin: a partner running on another processor is
            // likely to wake us within microseconds, far sooner than a
            // sleep and a wake-up take.
            let until = start.saturating_add(SPIN_NS).min(deadline);
            let mut i = 0u32;
            // SYNC: Acquire as below.
            while q.status.load(Ordering::Acquire) == expected {
                sync::spin_hint();
                i += 1;
                if i % 64 == 0 && sync::monotonic_ns() >= until {
                    break;
                }
            }
            // Only if still ours (a claim taken over as stale is not).
            let _ =
                self.hdr
                    .spinners
                    .compare_exchange(stamp, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
        loop {
            // SYNC: Acquire pairs with the Release store of DONE in
            // Guard::complete: the waker's writes are visible to us.
            let st = q.status.load(Ordering::Acquire);
            if st != expected {
                return self.collect(me, slot, st);
            }
            let now = sync::monotonic_ns();
            let slice = deadline.min(now.saturating_add(SWEEP_SLICE_NS));
            if let Some(pe) = pe {
                pe.asleep.fetch_add(1, Ordering::Relaxed);
            }
            let woke = sync::futex_wait(&q.status, expected, slice);
            if let Some(pe) = pe {
                pe.asleep.fetch_sub(1, Ordering::Relaxed);
            }
            match woke {
                Wake::Woken => {}
                Wake::TimedOut if sync::monotonic_ns() >= deadline => {
                    return self.cancel(me, slot, expected, Error::WouldBlock, host)
                }
                Wake::TimedOut => {
                    // One sleeper per slice sweeps for the whole set: with
                    // N sleepers each sweeping, the lock would do N^2
                    // liveness checks per slice.
                    let now = sync::monotonic_ns();
                    let last = self.hdr.last_sweep_ns.load(Ordering::Relaxed);
                    if now.wrapping_sub(last) >= SWEEP_SLICE_NS
                        && self
                            .hdr
                            .last_sweep_ns
                            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                            .is_ok()
                    {
                        let mut g = self.lock(me, host);
                        g.sweep_dead(me, host, Sweep::Holding);
                    }
                }
                Wake::Interrupted => {
                    return self.cancel(me, slot, expected, Error::Interrupted, host)
                }
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
                || pe.state_gen.load(Ordering::Relaxed) & PROC_STATE_MASK != PROC_ACTIVE
                || (pe.asleep.load(Ordering::Relaxed) != 0 && !woken.contains(&p))
            {
                continue;
            }
            let c = pe.cpu.load(Ordering::Relaxed);
            if c == 0 {
                continue;
            }
            if c == cpu_tag(cpu) {
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
    fn claim_spin(&self) -> Option<(u64, u32)> {
        let now = sync::monotonic_ns();
        let units = (now >> 10) as u32;
        let stamp = units.max(1);
        // SYNC: Relaxed: the place only limits spinning; nothing is
        // published through it.
        let cur = self.hdr.spinners.load(Ordering::Relaxed);
        // Signed: a claim stamped just after our clock read is fresh.
        let stale = units.wrapping_sub(cur) as i32 > (2 * SPIN_NS >> 10) as i32;
        if cur != 0 && !stale {
            return None;
        }
        self.hdr
            .spinners
            .compare_exchange(cur, stamp, Ordering::Relaxed, Ordering::Relaxed)
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
            if state(q.status.load(Ordering::Relaxed)) == SLOT_DONE {
                out[(k - 1) as usize] = q.proc_slot.load(Ordering::Relaxed);
            }
        }
        out
    }

    /// Takes the result a waker handed over and frees the slot.
    fn collect(&self, me: &Me, slot: u32, st: u32) -> Result<()> {
        if state(st) != SLOT_DONE {
            return Err(Error::Corrupt);
        }
        let q = &self.queue[slot as usize];
        // The slot is ours until we free it; the waker no longer touches it.
        q.status
            .store(make_status(gen_of(st), SLOT_FREE, 0), Ordering::Release);
        if let Some(p) = self.proc(me.slot) {
            p.queued.fetch_sub(1, Ordering::Relaxed);
        }
        match st & SLOT_ERRNO_MASK {
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

    fn cancel(&self, me: &Me, slot: u32, expected: u32, why: Error, host: &dyn Host) -> Result<()> {
        let mut g = self.lock(me, host);
        let q = &self.queue[slot as usize];
        let st = q.status.load(Ordering::Acquire);
        #[cfg(not(shmsem_mutant = "cancel_no_recheck"))]
        if st != expected {
            // A completion (or removal) won the race with our timeout or
            // signal: report it, as the kernel does.
            drop(g);
            return self.collect(me, slot, st);
        }
        // Unlinking is derived state; the FREE status is the one write that
        // cancels; the continuations are freed after it (recovery frees
        // them too if we die in between).
        #[cfg(not(shmsem_mutant = "cancel_no_dequeue"))]
        g.unlink(slot);
        q.status
            .store(make_status(gen_of(st), SLOT_FREE, 0), Ordering::Release);
        sync::wrote();
        self.free_conts(slot);
        if let Some(p) = self.proc(me.slot) {
            dec(&p.queued);
        }
        Err(why)
    }
}

/// Stores `secs` in a tagged time word (see [`TIME_TAG_BITS`]) if the word
/// still carries tag `seq`, i.e. still belongs to this set.
pub fn store_tagged_time(word: &AtomicU64, seq: u32, secs: i64) {
    let tag = seq as u64 & TIME_TAG_MASK;
    let new = ((secs as u64) << TIME_TAG_BITS) | tag;
    let mut cur = word.load(Ordering::Relaxed);
    // Relaxed: the mirror is advisory (only processes that cannot open the
    // segment read it, under the registry lock); the CAS only guards the tag.
    while cur & TIME_TAG_MASK == tag && cur != new {
        match word.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(x) => cur = x,
        }
    }
}

/// The seconds of a tagged time word.
#[cfg_attr(shmsem_loom, allow(dead_code))]
pub fn tagged_time_secs(w: u64) -> i64 {
    (w >> TIME_TAG_BITS) as i64
}

/// The distinct semaphore numbers of a call, in first-mention order.
fn distinct(ops: &[Sembuf]) -> impl Iterator<Item = u16> + '_ {
    ops.iter()
        .enumerate()
        .filter(move |(i, o)| !ops[..*i].iter().any(|p| p.sem_num == o.sem_num))
        .map(|(_, o)| o.sem_num)
}

/// [`ProcEntry::cpu`]'s value for processor `cpu`.
fn cpu_tag(cpu: u32) -> u8 {
    (cpu % 255) as u8 + 1
}

/// Decrements a process's own counter, never below zero (the segment is
/// untrusted).
fn dec16(a: &crate::sync::AtomicU16) {
    let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| x.checked_sub(1));
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

/// A section's working memory, kept per thread between sections so that
/// a section allocates nothing in the common case.
#[derive(Default)]
struct Buffers {
    marked: Vec<u32>,
    wakes: Vec<u32>,
    scratch: Scratch,
    ops: Vec<Sembuf>,
    intent: Intent,
    /// The semaphores a call names, while their adjustment holders are
    /// checked.
    named: Vec<u16>,
}

// One set of buffers per thread, boxed so that taking and giving it back
// moves a pointer; a nested section (a signal handler's) gets a new one.
#[cfg(not(shmsem_loom))]
std::thread_local! {
    static BUFFERS: core::cell::Cell<Option<Box<Buffers>>> = const { core::cell::Cell::new(None) };
}

impl Buffers {
    #[cfg(not(shmsem_loom))]
    fn take() -> Box<Buffers> {
        BUFFERS
            .try_with(|c| c.take())
            .ok()
            .flatten()
            .unwrap_or_default()
    }
    #[cfg(shmsem_loom)]
    fn take() -> Box<Buffers> {
        Box::default()
    }
    #[cfg(not(shmsem_loom))]
    fn give_back(mut self: Box<Self>) {
        self.marked.clear();
        self.wakes.clear();
        self.scratch.touched.clear();
        self.ops.clear();
        self.intent.entries.clear();
        let _ = BUFFERS.try_with(|c| c.set(Some(self)));
    }
    #[cfg(shmsem_loom)]
    fn give_back(self: Box<Self>) {}
}

/// An intent record being built in process memory, written to the segment
/// by [`Guard::commit`] (see [`IntentHeader`]).
#[derive(Default)]
struct Intent {
    kind: u32,
    proc_slot: u32,
    pid: i32,
    /// (slot, status before, status after).
    q: Option<(u32, u32, u32)>,
    perm: (u32, u32, u32),
    proc_sg: u32,
    time: i64,
    otime_sem: u32,
    entries: Vec<u64>,
}

/// The global lock, held. Dropping it ends the section: marks are cleared
/// (or the hysteresis counts down), the sequence counter closes, the lock
/// is released, and the sleepers completed in the section are woken.
pub struct Guard<'v, 'a> {
    v: &'v SetView<'a>,
    global: bool,
    wrote: bool,
    /// The holder.
    me: Me,
    /// Taken back (into the thread's cache) only by `drop`.
    b: ManuallyDrop<Box<Buffers>>,
}

impl<'v, 'a> Guard<'v, 'a> {
    /// The view the guard locks.
    pub fn view(&self) -> &'v SetView<'a> {
        self.v
    }

    /// Enters global mode: every word marked. `complex` sections (multi-op
    /// calls, semctl, undo) restart the hysteresis, like the kernel's
    /// complexmode_enter; others only keep an existing mode going.
    pub fn enter_global(&mut self, complex: bool) {
        let hdr = self.v.hdr;
        let m = hdr.global_mode.load(Ordering::Relaxed);
        if m == 0 {
            #[cfg(not(shmsem_mutant = "no_global_marks"))]
            for e in self.v.sems {
                // SYNC: AcqRel: Acquire sees the last fast-path CAS on the
                // word; from here on every fast-path CAS on it fails.
                e.word.fetch_or(SEM_GLOBAL, Ordering::AcqRel);
                sync::wrote();
            }
            self.b.marked.clear();
        }
        if m != GLOBAL_FOREVER {
            let want = if complex { HYSTERESIS } else { m.max(1) };
            hdr.global_mode.store(want, Ordering::Relaxed);
            sync::wrote();
        }
        self.global = true;
    }

    /// Makes semaphore `n`'s word ours for the rest of the section.
    pub fn own(&mut self, n: usize) {
        if self.global || self.b.marked.contains(&(n as u32)) {
            return;
        }
        if self.b.marked.len() >= MAX_MARKS {
            self.enter_global(false);
            return;
        }
        // SYNC: as in enter_global.
        self.v.sems[n].word.fetch_or(SEM_GLOBAL, Ordering::AcqRel);
        sync::wrote();
        self.b.marked.push(n as u32);
    }

    fn begin_write(&mut self) {
        if !self.wrote {
            self.wrote = true;
            let s = self.v.hdr.seq.load(Ordering::Relaxed);
            self.v
                .hdr
                .seq
                .store(s.wrapping_add(1) | 1, Ordering::Relaxed);
            // SYNC: orders the odd `seq` before the data writes that follow;
            // pairs with the readers' Acquire fence before their re-check.
            sync::fence(Ordering::Release);
            sync::wrote();
        }
    }

    fn value(&self, n: usize) -> i32 {
        word_value(self.v.sems[n].word.load(Ordering::Relaxed))
    }

    /// Starts a new intent record of `kind`.
    fn intent(&mut self, kind: u32) -> &mut Intent {
        let it = &mut self.b.intent;
        it.kind = kind;
        it.proc_slot = NIL;
        it.pid = 0;
        it.q = None;
        it.perm = (0, 0, 0);
        it.proc_sg = 0;
        it.time = 0;
        it.otime_sem = NIL;
        it.entries.clear();
        it
    }

    /// Writes the intent record to the segment, commits it, applies it and
    /// clears it: a process that dies anywhere in here leaves either no
    /// committed record (nothing applied yet) or one the next lock holder
    /// redoes.
    fn commit(&mut self) -> Result<()> {
        self.begin_write();
        let v = self.v;
        let ih = v.intent;
        let it = &self.b.intent;
        if it.entries.len() > v.intent_entries.len() {
            return Err(Error::Corrupt);
        }
        let (q_slot, q_from, q_to) = it.q.unwrap_or((NIL, 0, 0));
        let put = |f: &AtomicU32, x: u32| {
            f.store(x, Ordering::Relaxed);
            sync::wrote();
        };
        put(&ih.kind, it.kind);
        put(&ih.count, it.entries.len() as u32);
        put(&ih.proc_slot, it.proc_slot);
        ih.pid.store(it.pid, Ordering::Relaxed);
        sync::wrote();
        if it.kind == INTENT_APPLY {
            // What redo reads of an APPLY record: no more.
            put(&ih.otime_sem, it.otime_sem);
            put(&ih.q_slot, q_slot);
            if q_slot != NIL {
                put(&ih.q_from, q_from);
                put(&ih.q_to, q_to);
            }
        } else {
            for (f, x) in [
                (&ih.q_slot, q_slot),
                (&ih.q_from, q_from),
                (&ih.q_to, q_to),
                (&ih.uid, it.perm.0),
                (&ih.gid, it.perm.1),
                (&ih.mode, it.perm.2),
                (&ih.proc_sg, it.proc_sg),
                (&ih.otime_sem, it.otime_sem),
            ] {
                put(f, x);
            }
            ih.time.store(it.time, Ordering::Relaxed);
            sync::wrote();
        }
        for (slot, &e) in v.intent_entries.iter().zip(&it.entries) {
            slot.store(e, Ordering::Relaxed);
            sync::wrote();
        }
        // SYNC: Release: the whole record happens before it counts as
        // committed; pairs with the Acquire load in SetView::repair.
        ih.commit.store(INTENT_COMMITTED, Ordering::Release);
        sync::wrote();
        let r = v.redo(false);
        ih.commit.store(INTENT_NONE, Ordering::Release);
        sync::wrote();
        r
    }

    /// Evaluates `sops` for process `p` (its undo row) against the owned
    /// words. The result's new values are in `self.b.scratch`.
    fn evaluate(&mut self, sops: &[Sembuf], p: u32) -> Eval {
        let v = self.v;
        engine::evaluate(
            sops,
            &mut self.b.scratch,
            |n| word_value(v.sems[n as usize].word.load(Ordering::Relaxed)),
            |n| v.undo_cell(p, n as usize).load(Ordering::Relaxed) as i32,
        )
    }

    /// Applies the evaluated call in the scratch, through an intent record:
    /// value and sempid of every named semaphore, process `p`'s
    /// adjustments, otime; and, with `q`, the completion of that queued
    /// operation (slot, its status now).
    fn apply(&mut self, p: u32, pid: i32, first: u16, q: Option<(u32, u32)>) -> Result<()> {
        let touched = core::mem::take(&mut self.b.scratch.touched);
        let it = self.intent(INTENT_APPLY);
        it.proc_slot = p;
        it.pid = pid;
        it.otime_sem = first as u32;
        it.q = q.map(|(i, st)| (i, st, make_status(gen_of(st), SLOT_DONE, 0)));
        for t in &touched {
            let adj = (t.adj != t.old_adj).then_some(t.adj as i16);
            it.entries.push(pack_intent(t.num, t.value as u16, adj));
        }
        self.b.scratch.touched = touched;
        self.commit()
    }

    /// The slow path of semop, under the lock: try, and either finish or
    /// queue. `me` is the caller.
    pub fn semop(&mut self, me: &Me, sops: &[Sembuf], host: &dyn Host) -> SlowOutcome {
        #[cfg(not(shmsem_mutant = "rmid_no_removed_check"))]
        if self.v.hdr.removed.load(Ordering::Relaxed) != 0 {
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

    fn alloc_slot(&mut self) -> Option<u32> {
        let n = self.v.queue.len() as u32;
        let start = self.v.hdr.alloc_hint.load(Ordering::Relaxed) % n;
        for k in 0..n {
            let i = (start + k) % n;
            let st = self.v.queue[i as usize].status.load(Ordering::Acquire);
            if state(st) == SLOT_FREE {
                self.v.hdr.alloc_hint.store((i + 1) % n, Ordering::Relaxed);
                return Some(i);
            }
        }
        None
    }

    /// Queues the caller's operation. No intent record: the slots are
    /// reserved (CONT, which recovery frees unless a queued operation
    /// reaches them), filled, linked (links are derived), and the head's
    /// QUEUED status, written last, is the one write that makes it real.
    fn enqueue(&mut self, me: &Me, sops: &[Sembuf], blocked_at: usize) -> Result<(u32, u32)> {
        let v = self.v;
        let need = sops.len().div_ceil(SLOT_OPS);
        let mut slots: Vec<u32> = Vec::with_capacity(need);
        for _ in 0..need {
            let Some(i) = self.alloc_slot() else {
                for &i in &slots {
                    let q = &v.queue[i as usize];
                    let st = q.status.load(Ordering::Relaxed);
                    q.status
                        .store(make_status(gen_of(st), SLOT_FREE, 0), Ordering::Relaxed);
                    sync::wrote();
                }
                return Err(Error::NoMemory);
            };
            // Reserve it at once so the next search skips it.
            let q = &v.queue[i as usize];
            let g = gen_of(q.status.load(Ordering::Relaxed)).wrapping_add(1) & 0xffff;
            q.status
                .store(make_status(g, SLOT_CONT, 0), Ordering::Relaxed);
            sync::wrote();
            slots.push(i);
        }
        self.begin_write();
        for (k, &i) in slots.iter().enumerate() {
            let q = &v.queue[i as usize];
            let chunk = &sops[k * SLOT_OPS..((k + 1) * SLOT_OPS).min(sops.len())];
            for (w, s) in q.ops.iter().zip(chunk) {
                w.store(pack_op(s.sem_num, s.sem_op, s.sem_flg), Ordering::Relaxed);
            }
            q.cont
                .store(slots.get(k + 1).copied().unwrap_or(NIL), Ordering::Relaxed);
            sync::wrote();
        }
        let head = slots[0];
        let q = &v.queue[head as usize];
        q.proc_slot.store(me.slot, Ordering::Relaxed);
        q.pid.store(me.pid, Ordering::Relaxed);
        q.nsops.store(sops.len() as u32, Ordering::Relaxed);
        let alter = engine::alters(sops);
        let flags = if engine::has_undo(sops) {
            SLOT_F_UNDO
        } else {
            0
        } | if alter { SLOT_F_ALTER } else { 0 };
        q.flags.store(flags, Ordering::Relaxed);
        q.since.store(sync::monotonic_ns(), Ordering::Relaxed);
        let ticket = v.hdr.next_ticket.load(Ordering::Relaxed);
        v.hdr
            .next_ticket
            .store(ticket.wrapping_add(1), Ordering::Relaxed);
        q.ticket.store(ticket, Ordering::Relaxed);
        sync::wrote();
        self.set_blocked(head, &sops[blocked_at]);
        for n in distinct(sops) {
            inc(&v.sems[n as usize].nwait);
        }
        if let Some(p) = v.proc(me.slot) {
            p.queued.fetch_add(1, Ordering::Relaxed);
        }
        sync::wrote();
        let (head_f, tail_f) = if alter {
            (&v.hdr.alter_head, &v.hdr.alter_tail)
        } else {
            (&v.hdr.const_head, &v.hdr.const_tail)
        };
        let tail = tail_f.load(Ordering::Relaxed);
        q.prev.store(tail, Ordering::Relaxed);
        q.next.store(NIL, Ordering::Relaxed);
        match v.queue.get(tail as usize) {
            Some(t) => t.next.store(head, Ordering::Relaxed),
            None => head_f.store(head, Ordering::Relaxed),
        }
        tail_f.store(head, Ordering::Relaxed);
        sync::wrote();
        let g = gen_of(q.status.load(Ordering::Relaxed));
        let st = make_status(g, SLOT_QUEUED, 0);
        // SYNC: Release publishes the slot's contents before it is QUEUED.
        q.status.store(st, Ordering::Release);
        sync::wrote();
        Ok((head, st))
    }

    fn set_blocked(&mut self, slot: u32, op: &Sembuf) {
        let b = op.sem_num as u32 | if op.sem_op == 0 { BLOCKED_ZERO } else { 0 };
        self.v.queue[slot as usize]
            .blocked
            .store(b, Ordering::Relaxed);
    }

    /// Unlinks slot `i` from its FIFO and drops its waiter counts (derived
    /// state: no intent record). Its status and continuations are left to
    /// the caller.
    fn unlink(&mut self, i: u32) {
        let v = self.v;
        self.begin_write();
        let q = &v.queue[i as usize];
        let alter = q.flags.load(Ordering::Relaxed) & SLOT_F_ALTER != 0;
        let (head_f, tail_f) = if alter {
            (&v.hdr.alter_head, &v.hdr.alter_tail)
        } else {
            (&v.hdr.const_head, &v.hdr.const_tail)
        };
        let (prev, next) = (
            q.prev.load(Ordering::Relaxed),
            q.next.load(Ordering::Relaxed),
        );
        match v.queue.get(prev as usize) {
            Some(p) => p.next.store(next, Ordering::Relaxed),
            None => head_f.store(next, Ordering::Relaxed),
        }
        match v.queue.get(next as usize) {
            Some(n) => n.prev.store(prev, Ordering::Relaxed),
            None => tail_f.store(prev, Ordering::Relaxed),
        }
        q.prev.store(NIL, Ordering::Relaxed);
        q.next.store(NIL, Ordering::Relaxed);
        sync::wrote();
        let mut ops = core::mem::take(&mut self.b.ops);
        if v.read_ops(i, &mut ops).is_ok() {
            for n in distinct(&ops) {
                dec(&v.sems[n as usize].nwait);
                // The count changed: the word's WAITERS bit must follow when
                // the section ends.
                self.own(n as usize);
            }
        }
        sync::wrote();
        self.b.ops = ops;
    }

    /// After slot `i`'s completion was applied: out of its FIFO, its
    /// continuations freed, its sleeper woken when the section ends.
    fn finish(&mut self, i: u32) {
        self.unlink(i);
        self.v.free_conts(i);
        self.b.wakes.push(i);
    }

    /// Fails the queued operation in slot `i` with `err` (an intent record
    /// of its completion alone).
    fn fail(&mut self, i: u32, err: Error) {
        let st = self.v.queue[i as usize].status.load(Ordering::Relaxed);
        let it = self.intent(INTENT_APPLY);
        it.q = Some((
            i,
            st,
            make_status(gen_of(st), SLOT_DONE, err.errno() as u32),
        ));
        if self.commit().is_ok() {
            self.finish(i);
        }
    }

    /// Tries the queued operations after a change, as the kernel's
    /// update_queue: wait-for-zero operations first, then the altering ones
    /// in FIFO order, skipping those that still block; after every
    /// completion start again from the head.
    pub fn update_queue(&mut self) {
        let h = self.v.hdr;
        if h.alter_head.load(Ordering::Relaxed) == NIL
            && h.const_head.load(Ordering::Relaxed) == NIL
        {
            return;
        }
        loop {
            self.try_list(false);
            if !self.try_list(true) {
                break;
            }
        }
    }

    /// One pass over a FIFO. For the altering list it stops at the first
    /// completion (returns true); the wait-for-zero list completes nothing
    /// that could enable another, so it runs to the end.
    fn try_list(&mut self, alter: bool) -> bool {
        let v = self.v;
        let head = if alter {
            &v.hdr.alter_head
        } else {
            &v.hdr.const_head
        };
        let mut i = head.load(Ordering::Relaxed);
        let mut hops = 0;
        let mut ops = core::mem::take(&mut self.b.ops);
        let mut restarted = false;
        while let Some(q) = v.queue.get(i as usize) {
            hops += 1;
            if hops > v.queue.len() {
                break; // a cycle: corrupt links; stop rather than spin
            }
            let next = q.next.load(Ordering::Relaxed);
            let st = q.status.load(Ordering::Relaxed);
            if state(st) != SLOT_QUEUED {
                break; // corrupt links; stop rather than complete a stranger
            }
            let p = q.proc_slot.load(Ordering::Relaxed);
            if v.read_ops(i, &mut ops).is_err() || p >= v.proc_slots() {
                self.b.ops = ops;
                self.fail(i, Error::Corrupt);
                ops = core::mem::take(&mut self.b.ops);
                i = next;
                continue;
            }
            for n in distinct(&ops) {
                self.own(n as usize);
            }
            match self.evaluate(&ops, p) {
                Eval::Done => {
                    let pid = q.pid.load(Ordering::Relaxed);
                    self.b.ops = ops;
                    let applied = self.apply(p, pid, self.b.ops[0].sem_num, Some((i, st)));
                    ops = core::mem::take(&mut self.b.ops);
                    if applied.is_err() {
                        // Only a record scribbled on mid-write fails: stop
                        // here rather than retry it for ever.
                        break;
                    }
                    self.finish(i);
                    if alter {
                        restarted = true;
                        break;
                    }
                }
                Eval::Fail(e) => {
                    self.b.ops = ops;
                    self.fail(i, e);
                    ops = core::mem::take(&mut self.b.ops);
                }
                Eval::Block(k) => {
                    let op = ops[k];
                    self.set_blocked(i, &op);
                }
            }
            i = next;
        }
        self.b.ops = ops;
        restarted
    }

    /// Looks for dead processes and reaps them: their undo adjustments are
    /// applied (clamped to [0, SEMVMX]), their queue slots and entries
    /// freed. `what` says which entries are worth a liveness check.
    pub fn sweep_dead(&mut self, me: &Me, host: &dyn Host, what: Sweep) {
        self.sweep(me, host, |pe, _| {
            let has_undo = pe.undo_count.load(Ordering::Relaxed) != 0;
            // A record with only zero adjustments matters for otime alone:
            // full sweeps look at it, undo-only sweeps (on the semop path)
            // do not.
            let holds = pe.queued.load(Ordering::Relaxed) != 0
                || pe.undo_record.load(Ordering::Relaxed) != 0;
            match what {
                Sweep::Undo => has_undo,
                Sweep::Holding => has_undo || holds,
                Sweep::All => true,
            }
        });
    }

    /// Reaps the dead among the processes holding an adjustment on one of
    /// `sems`: only their undo can change what a call on `sems` sees.
    fn sweep_undo_on(&mut self, me: &Me, host: &dyn Host, sems: &[u16]) {
        let v = self.v;
        self.sweep(me, host, |pe, p| {
            pe.undo_count.load(Ordering::Relaxed) != 0
                && sems
                    .iter()
                    .any(|&n| v.undo_cell(p, n as usize).load(Ordering::Relaxed) != 0)
        });
    }

    /// Checks the liveness of every other active process `worth(entry,
    /// index)` picks, and reaps the dead.
    fn sweep(&mut self, me: &Me, host: &dyn Host, worth: impl Fn(&ProcEntry, u32) -> bool) {
        let v = self.v;
        let mut changed = false;
        for p in 0..v.procs_in_use() {
            if p == me.slot {
                continue;
            }
            let pe = &v.procs[p as usize];
            let sg = pe.state_gen.load(Ordering::Acquire);
            if sg & PROC_STATE_MASK != PROC_ACTIVE {
                continue;
            }
            if !worth(pe, p) {
                continue;
            }
            if !host.is_dead(v, p) {
                continue;
            }
            changed |= self.reap(p, sg);
        }
        if changed {
            self.update_queue();
        }
    }

    /// Reaps dead process `p` (state_gen `sg`), as the kernel's exit_sem:
    /// value += adjustment, clamped; its queued operations and its entry
    /// freed. Returns whether a value changed.
    fn reap(&mut self, p: u32, sg: u32) -> bool {
        let v = self.v;
        let pe = &v.procs[p as usize];
        // Its queued operations leave the FIFOs first (derived state: if we
        // die here, recovery relinks them and the next sweep reaps it).
        for i in 0..v.queue.len() as u32 {
            let q = &v.queue[i as usize];
            #[cfg(not(shmsem_mutant = "reap_no_dequeue"))]
            if q.proc_slot.load(Ordering::Relaxed) == p
                && state(q.status.load(Ordering::Relaxed)) == SLOT_QUEUED
            {
                self.unlink(i);
            }
        }
        let mut entries = core::mem::take(&mut self.b.intent.entries);
        entries.clear();
        if pe.undo_count.load(Ordering::Relaxed) != 0 && v.hdr.removed.load(Ordering::Relaxed) == 0
        {
            for n in 0..v.nsems() {
                let adj = v.undo_cell(p, n).load(Ordering::Relaxed) as i32;
                if adj == 0 {
                    continue;
                }
                self.own(n);
                let val = (self.value(n) + adj).clamp(0, SEMVMX);
                entries.push(pack_intent(n as u16, val as u16, None));
            }
        }
        let changed = !entries.is_empty();
        let pid = pe.pid.load(Ordering::Relaxed);
        let it = self.intent(INTENT_REAP);
        it.entries = entries;
        it.proc_slot = p;
        it.proc_sg = sg;
        it.pid = pid;
        self.commit().is_ok() && changed
    }

    /// SETVAL: the value, sempid, every process's adjustment for it cleared,
    /// ctime, then the waiters.
    pub fn setval(&mut self, n: usize, val: i32, pid: i32) {
        self.enter_global(true);
        let it = self.intent(INTENT_SETVAL);
        it.pid = pid;
        it.time = sync::realtime_secs();
        it.entries.push(pack_intent(n as u16, val as u16, None));
        if self.commit().is_ok() {
            self.update_queue();
        }
    }

    /// SETALL.
    pub fn setall(&mut self, vals: &[u16], pid: i32) {
        self.enter_global(true);
        let nsems = self.v.nsems();
        let it = self.intent(INTENT_SETALL);
        it.pid = pid;
        it.time = sync::realtime_secs();
        for (n, &x) in vals.iter().enumerate().take(nsems) {
            it.entries.push(pack_intent(n as u16, x, None));
        }
        if self.commit().is_ok() {
            self.update_queue();
        }
    }

    /// IPC_SET: owner and mode.
    pub fn set_perm(&mut self, uid: u32, gid: u32, mode: u32) {
        let it = self.intent(INTENT_SETPERM);
        it.perm = (uid, gid, mode & 0o777);
        it.time = sync::realtime_secs();
        let _ = self.commit();
    }

    /// IPC_RMID: the set is marked removed (in global mode for ever, so the
    /// fast path never runs again) and every sleeper gets EIDRM.
    pub fn remove(&mut self) {
        self.enter_global(true);
        self.intent(INTENT_RMID);
        let _ = self.commit();
        let v = self.v;
        for head in [&v.hdr.alter_head, &v.hdr.const_head] {
            let mut hops = 0;
            while let Some(_q) = v.queue.get(head.load(Ordering::Relaxed) as usize) {
                hops += 1;
                if hops > v.queue.len() {
                    break;
                }
                self.finish(head.load(Ordering::Relaxed));
            }
        }
    }

    /// GETNCNT / GETZCNT: sleepers whose first blocking op is on `n`.
    pub fn count_waiters(&self, n: usize, zero: bool) -> u32 {
        let v = self.v;
        let want = n as u32 | if zero { BLOCKED_ZERO } else { 0 };
        let mut count = 0;
        for head in [&v.hdr.alter_head, &v.hdr.const_head] {
            let mut i = head.load(Ordering::Relaxed);
            let mut hops = 0;
            while let Some(q) = v.queue.get(i as usize) {
                hops += 1;
                if hops > v.queue.len() {
                    break;
                }
                if q.blocked.load(Ordering::Relaxed) == want {
                    count += 1;
                }
                i = q.next.load(Ordering::Relaxed);
            }
        }
        count
    }

    /// Everything a diagnostic tool shows of the set, read under the lock:
    /// values, waiters, the pending queue in FIFO order, the processes in
    /// the table (`host` says which are alive), the use of the queue arena.
    pub fn report(&self, me: &Me, host: &dyn Host) -> SetReport {
        let v = self.v;
        let n = v.nsems();
        let h = v.hdr;
        let id = h.id.load(Ordering::Relaxed);
        let mut r = SetReport {
            status: SemidDs {
                perm: IpcPerm {
                    key: h.key.load(Ordering::Relaxed),
                    uid: h.uid.load(Ordering::Relaxed),
                    gid: h.gid.load(Ordering::Relaxed),
                    cuid: h.cuid.load(Ordering::Relaxed),
                    cgid: h.cgid.load(Ordering::Relaxed),
                    mode: h.mode.load(Ordering::Relaxed),
                    seq: id as u32 >> IPCMNI_SHIFT,
                },
                otime: v.otime(),
                ctime: h.ctime.load(Ordering::Relaxed),
                nsems: n as u64,
            },
            values: (0..n).map(|i| self.read_one(i).0 as u16).collect(),
            sempids: (0..n).map(|i| self.read_one(i).1).collect(),
            ncnt: (0..n).map(|i| self.count_waiters(i, false)).collect(),
            zcnt: (0..n).map(|i| self.count_waiters(i, true)).collect(),
            ..SetReport::default()
        };
        let mut ops = Vec::new();
        for head in [&v.hdr.const_head, &v.hdr.alter_head] {
            let mut i = head.load(Ordering::Relaxed);
            let mut hops = 0;
            while let Some(q) = v.queue.get(i as usize) {
                hops += 1;
                if hops > v.queue.len() {
                    break;
                }
                let _ = v.read_ops(i, &mut ops);
                r.pending.push(PendingOp {
                    slot: i,
                    pid: q.pid.load(Ordering::Relaxed),
                    ops: ops.clone(),
                    queued_at_ns: q.since.load(Ordering::Relaxed),
                    ticket: q.ticket.load(Ordering::Relaxed),
                });
                i = q.next.load(Ordering::Relaxed);
            }
        }
        r.pending.sort_by_key(|p| p.ticket);
        for p in 0..v.procs_in_use() {
            let pe = &v.procs[p as usize];
            if pe.state_gen.load(Ordering::Acquire) & PROC_STATE_MASK != PROC_ACTIVE {
                continue;
            }
            let adjs = (0..n)
                .filter_map(|s| {
                    let a = v.undo_cell(p, s).load(Ordering::Relaxed);
                    (a != 0).then_some((s as u16, a))
                })
                .collect();
            r.processes.push(ProcessReport {
                slot: p,
                pid: pe.pid.load(Ordering::Relaxed),
                alive: p == me.slot || !host.is_dead(v, p),
                adjustments: adjs,
                undo_record: pe.undo_record.load(Ordering::Relaxed) != 0,
                queued: pe.queued.load(Ordering::Relaxed),
            });
        }
        for q in v.queue {
            match state(q.status.load(Ordering::Relaxed)) {
                SLOT_FREE => r.slots.free += 1,
                SLOT_QUEUED => r.slots.queued += 1,
                SLOT_DONE => r.slots.done += 1,
                _ => r.slots.cont += 1,
            }
        }
        r
    }

    /// Values and sempids of every semaphore (under the lock: consistent).
    pub fn read_all(&self, out: &mut [u16]) {
        for (o, e) in out.iter_mut().zip(self.v.sems) {
            *o = word_value(e.word.load(Ordering::Relaxed)) as u16;
        }
    }

    /// Value and sempid of one semaphore.
    pub fn read_one(&self, n: usize) -> (i32, i32) {
        let w = self.v.sems[n].word.load(Ordering::Relaxed);
        (word_value(w), word_pid(w))
    }

    fn unmark(&self, n: usize) {
        let e = &self.v.sems[n];
        let w = e.word.load(Ordering::Relaxed);
        let mut bits = 0;
        #[cfg(not(shmsem_mutant = "no_waiters_bit"))]
        if e.nwait.load(Ordering::Relaxed) != 0 {
            bits |= SEM_WAITERS;
        }
        if e.nundo.load(Ordering::Relaxed) != 0 {
            bits |= SEM_UNDO_HELD;
        }
        // SYNC: Release pairs with the fast path's Acquire load/CAS: all of
        // this section's writes happen before any later fast-path op.
        e.word.store((w & !SEM_SLOW_BITS) | bits, Ordering::Release);
        sync::wrote();
    }
}

impl Drop for Guard<'_, '_> {
    fn drop(&mut self) {
        // A loom model's "dead process" unwinds through here: like a
        // SIGKILLed one, it releases nothing.
        #[cfg(shmsem_loom)]
        if sync::crashing() {
            return;
        }
        let hdr = self.v.hdr;
        if self.global {
            let m = hdr.global_mode.load(Ordering::Relaxed);
            if m != GLOBAL_FOREVER {
                if m <= 1 {
                    hdr.global_mode.store(0, Ordering::Relaxed);
                    sync::wrote();
                    for n in 0..self.v.nsems() {
                        self.unmark(n);
                    }
                } else {
                    hdr.global_mode.store(m - 1, Ordering::Relaxed);
                    sync::wrote();
                }
            }
        } else {
            for &n in &self.b.marked {
                self.unmark(n as usize);
            }
        }
        if self.wrote {
            let s = hdr.seq.load(Ordering::Relaxed);
            // SYNC: Release pairs with readers' Acquire load of `seq`.
            hdr.seq.store(s.wrapping_add(1), Ordering::Release);
            sync::wrote();
        }
        self.v.held_here.store(false, Ordering::Relaxed);
        // SYNC: Release pairs with the Acquire CAS of the next locker.
        let prev = hdr.lock.swap(0, Ordering::Release);
        sync::wrote();
        self.v.announce(&self.me, false);
        #[cfg(not(shmsem_mutant = "no_lock_wake"))]
        if prev & LOCK_CONTENDED != 0 {
            sync::futex_wake(&hdr.lock, 1);
        }
        #[cfg(not(shmsem_mutant = "no_wake"))]
        for &i in &self.b.wakes {
            sync::futex_wake(&self.v.queue[i as usize].status, 1);
        }
        // SAFETY: `b` is not used again: this is the guard's last act.
        unsafe { ManuallyDrop::take(&mut self.b) }.give_back();
    }
}

/// A set built on the heap, for loom models and unit tests.
pub mod heap {
    use super::*;

    /// The regions of a set, allocated separately.
    pub struct HeapSet {
        hdr: Box<SetHeader>,
        sems: Vec<SemEntry>,
        procs: Vec<ProcEntry>,
        undo: Vec<AtomicI16>,
        queue: Vec<QueueSlot>,
        intent: Box<IntentHeader>,
        intent_entries: Vec<AtomicU64>,
    }

    /// Builds a layout struct with every atomic field at zero (loom's
    /// atomics are not plain memory: zeroed bytes are not a valid value).
    macro_rules! zeroed {
        ($t:ident { $($f:ident: $a:ident),* $(,)? } $(, [$arr:ident; $n:expr])?) => {
            $t { $($f: $a::new(0),)* $($arr: core::array::from_fn::<_, $n, _>(|_| AtomicU64::new(0)))? }
        };
    }
    use crate::sync::{AtomicI32, AtomicI64, AtomicU16, AtomicU32, AtomicU64, AtomicU8};

    fn header() -> SetHeader {
        zeroed!(SetHeader {
            magic: AtomicU64,
            version: AtomicU32,
            nsems: AtomicU32,
            size: AtomicU64,
            key: AtomicI32,
            id: AtomicI32,
            proc_slots: AtomicU32,
            queue_slots: AtomicU32,
            lock: AtomicU32,
            seq: AtomicU32,
            global_mode: AtomicU32,
            removed: AtomicU32,
            uid: AtomicU32,
            gid: AtomicU32,
            cuid: AtomicU32,
            cgid: AtomicU32,
            mode: AtomicU32,
            alter_head: AtomicU32,
            alter_tail: AtomicU32,
            const_head: AtomicU32,
            const_tail: AtomicU32,
            alloc_hint: AtomicU32,
            ctime: AtomicI64,
            next_ticket: AtomicU64,
            procs_hwm: AtomicU32,
            perm_seq: AtomicU32,
            last_sweep_ns: AtomicU64,
            spinners: AtomicU32,
            _pad4: AtomicU32
        })
    }
    fn sem() -> SemEntry {
        zeroed!(SemEntry {
            word: AtomicU64,
            otime: AtomicI64,
            nwait: AtomicU32,
            nundo: AtomicU32,
            _pad: AtomicU64
        })
    }
    fn proc_entry() -> ProcEntry {
        zeroed!(ProcEntry {
            state_gen: AtomicU32,
            pid: AtomicI32,
            start_time: AtomicU64,
            undo_count: AtomicU32,
            queued: AtomicU32,
            undo_record: AtomicU16,
            holding: AtomicU16,
            asleep: AtomicU8,
            cpu: AtomicU8,
            locking: AtomicU16
        })
    }
    fn slot() -> QueueSlot {
        zeroed!(
            QueueSlot {
                status: AtomicU32,
                next: AtomicU32,
                prev: AtomicU32,
                proc_slot: AtomicU32,
                pid: AtomicI32,
                nsops: AtomicU32,
                flags: AtomicU32,
                blocked: AtomicU32,
                cont: AtomicU32,
                _pad: AtomicU32,
                since: AtomicU64,
                ticket: AtomicU64
            },
            [ops; SLOT_OPS]
        )
    }

    impl HeapSet {
        /// A set of `nsems` semaphores with room for `procs` processes and
        /// `queue` sleepers.
        pub fn new(nsems: u32, procs: u32, queue: u32) -> HeapSet {
            let geo = SetGeometry::new(nsems, procs, queue);
            let hs = HeapSet {
                hdr: Box::new(header()),
                sems: (0..nsems).map(|_| sem()).collect(),
                procs: (0..procs).map(|_| proc_entry()).collect(),
                undo: (0..geo.undo_row() / 2 * procs as usize)
                    .map(|_| AtomicI16::new(0))
                    .collect(),
                queue: (0..queue).map(|_| slot()).collect(),
                intent: Box::new(zeroed!(IntentHeader {
                    commit: AtomicU32,
                    kind: AtomicU32,
                    count: AtomicU32,
                    proc_slot: AtomicU32,
                    pid: AtomicI32,
                    q_slot: AtomicU32,
                    q_from: AtomicU32,
                    q_to: AtomicU32,
                    uid: AtomicU32,
                    gid: AtomicU32,
                    mode: AtomicU32,
                    proc_sg: AtomicU32,
                    time: AtomicI64,
                    otime_sem: AtomicU32,
                    _pad: AtomicU32
                })),
                intent_entries: (0..nsems).map(|_| AtomicU64::new(0)).collect(),
            };
            SetView::init(&hs.hdr, &geo, 0, 0, 0, 0, 0o600, 0);
            hs
        }
        /// The view.
        pub fn view(&self) -> SetView<'_> {
            SetView::from_parts(
                &self.hdr,
                &self.sems,
                &self.procs,
                &self.undo,
                &self.queue,
                (&self.intent, &self.intent_entries),
            )
        }
        /// Claims process entry `slot` for `pid` (no OS lock on the heap).
        pub fn register(&self, slot: u32, pid: i32) -> Me {
            let p = &self.procs[slot as usize];
            let gen = (p.state_gen.load(Ordering::Relaxed) >> PROC_GEN_SHIFT) + 1;
            p.pid.store(pid, Ordering::Relaxed);
            p.state_gen
                .store((gen << PROC_GEN_SHIFT) | PROC_ACTIVE, Ordering::Release);
            self.view().note_claimed(slot);
            Me {
                slot,
                gen,
                pid,
                lone: true,
            }
        }
    }
}
