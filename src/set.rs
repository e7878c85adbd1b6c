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
use crate::sync::{self, AtomicI16, Ordering, Wake};
use crate::sysv::Sembuf;
use crate::{Error, Result};
use shm_layout::*;

/// How often a sleeper wakes to look for dead processes (their undo and
/// queue slots): the bound on how late a dead process's SEM_UNDO reaches a
/// sleeper.
pub const SWEEP_SLICE_NS: u64 = 50_000_000;
/// Spins on a held global lock before sleeping.
const LOCK_SPINS: u32 = 100;
/// A section that would mark more words than this enters global mode.
const MAX_MARKS: usize = 8;
/// Global-mode value of a removed set: never left.
const GLOBAL_FOREVER: u32 = u32::MAX;
/// Lock-free snapshot attempts before GETALL takes the lock.
const SNAPSHOT_TRIES: u32 = 16;

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
}

impl Me {
    fn token(&self) -> u32 {
        (self.slot + 1) | ((self.gen & LOCK_GEN_MASK) << LOCK_GEN_SHIFT)
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

/// A bounds-checked view of a set segment.
pub struct SetView<'a> {
    /// The header.
    pub hdr: &'a SetHeader,
    sems: &'a [SemEntry],
    procs: &'a [ProcEntry],
    undo: &'a [AtomicI16],
    queue: &'a [QueueSlot],
    geo: SetGeometry,
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
                geo,
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
    ) -> SetView<'a> {
        let geo = SetGeometry::new(sems.len() as u32, procs.len() as u32, queue.len() as u32);
        assert!(undo.len() >= geo.undo_row() / 2 * procs.len());
        SetView {
            hdr,
            sems,
            procs,
            undo,
            queue,
            geo,
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
    /// lock holder is in the middle of writing several words.
    fn read_word(&self, n: usize) -> u64 {
        loop {
            // SYNC: pairs with the release store that makes `seq` even again
            // at the end of a writing section.
            let s1 = self.hdr.seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let w = self.sems[n].word.load(Ordering::Acquire);
                sync::fence(Ordering::Acquire);
                if self.hdr.seq.load(Ordering::Relaxed) == s1 {
                    return w;
                }
            }
            sync::spin_hint();
        }
    }

    /// GETVAL / GETPID without the lock. `None` if a dead process's undo may
    /// be pending on the semaphore (UNDO_HELD): the caller sweeps first.
    pub fn read_sem(&self, n: usize) -> Option<(i32, i32)> {
        let w = self.read_word(n);
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
            for (f, e) in first.iter().zip(self.sems) {
                if e.word.load(Ordering::Acquire) != *f {
                    same = false;
                    break;
                }
            }
            sync::fence(Ordering::Acquire);
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
    /// writing section overlapped it.
    pub fn read_consistent<T>(&self, f: impl Fn(&SetView<'a>) -> T) -> T {
        loop {
            let s1 = self.hdr.seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let v = f(self);
                sync::fence(Ordering::Acquire);
                if self.hdr.seq.load(Ordering::Relaxed) == s1 {
                    return v;
                }
            }
            sync::spin_hint();
        }
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

    /// Takes the set's global lock. A holder found dead is replaced (its
    /// section's derived state is recomputed).
    pub fn lock<'v>(&'v self, me: &Me, host: &dyn Host) -> Guard<'v, 'a> {
        let tok = me.token();
        let l = &self.hdr.lock;
        // SYNC: Acquire pairs with the Release swap in Guard::drop.
        if l.compare_exchange(0, tok, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow(tok, host);
        }
        let mut g = Guard {
            v: self,
            global: false,
            marked: Vec::new(),
            wrote: false,
            wakes: Vec::new(),
            scratch: Scratch::default(),
            ops: Vec::new(),
        };
        if g.v.hdr.global_mode.load(Ordering::Relaxed) > 0 {
            g.global = true;
        }
        g
    }

    #[cold]
    fn lock_slow(&self, tok: u32, host: &dyn Host) {
        let l = &self.hdr.lock;
        for _ in 0..LOCK_SPINS {
            sync::spin_hint();
            if l.load(Ordering::Relaxed) == 0
                && l.compare_exchange(0, tok, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
        }
        loop {
            let cur = l.load(Ordering::Relaxed);
            if cur == 0 {
                // Others may sleep: keep CONTENDED so our unlock wakes one.
                if l.compare_exchange(
                    0,
                    tok | LOCK_CONTENDED,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
                {
                    return;
                }
                continue;
            }
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
            let deadline = sync::monotonic_ns() + SWEEP_SLICE_NS;
            if sync::futex_wait(l, cur | LOCK_CONTENDED, deadline) == Wake::TimedOut
                && self.owner_dead(cur, host)
            {
                // SYNC: Acquire as for a normal acquisition; the dead
                // owner's partial writes are repaired below.
                if l.compare_exchange(
                    cur | LOCK_CONTENDED,
                    tok | LOCK_CONTENDED,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
                {
                    self.repair();
                    return;
                }
            }
        }
    }

    fn owner_dead(&self, word: u32, host: &dyn Host) -> bool {
        let slot = (word & LOCK_SLOT_MASK).wrapping_sub(1);
        let Some(p) = self.proc(slot) else {
            return true;
        };
        let sg = p.state_gen.load(Ordering::Acquire);
        let gen = (sg >> PROC_GEN_SHIFT) & LOCK_GEN_MASK;
        if sg & PROC_STATE_MASK != PROC_ACTIVE || gen != (word >> LOCK_GEN_SHIFT) & LOCK_GEN_MASK {
            return true;
        }
        host.is_dead(self, slot)
    }

    /// After taking the lock from a dead holder: recompute what can be
    /// derived (waiter and undo counts, the marks) and close the sequence
    /// counter. (Redoing or discarding the dead holder's half-applied
    /// values needs the intent record of the crash-safety work.)
    fn repair(&self) {
        let s = self.hdr.seq.load(Ordering::Relaxed);
        if s & 1 != 0 {
            self.hdr.seq.store(s.wrapping_add(1), Ordering::Release);
        }
        for e in self.sems {
            e.word.fetch_or(SEM_GLOBAL, Ordering::AcqRel);
            e.nwait.store(0, Ordering::Relaxed);
            e.nundo.store(0, Ordering::Relaxed);
        }
        if self.hdr.global_mode.load(Ordering::Relaxed) != GLOBAL_FOREVER {
            self.hdr
                .global_mode
                .store(USE_GLOBAL_LOCK_HYSTERESIS, Ordering::Relaxed);
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
        loop {
            // SYNC: Acquire pairs with the Release store of DONE in
            // Guard::complete: the waker's writes are visible to us.
            let st = q.status.load(Ordering::Acquire);
            if st != expected {
                return self.collect(me, slot, st);
            }
            let now = sync::monotonic_ns();
            let slice = deadline.min(now.saturating_add(SWEEP_SLICE_NS));
            match sync::futex_wait(&q.status, expected, slice) {
                Wake::Woken => {}
                Wake::TimedOut if sync::monotonic_ns() >= deadline => {
                    return self.cancel(me, slot, expected, Error::WouldBlock, host)
                }
                Wake::TimedOut => {
                    let mut g = self.lock(me, host);
                    g.sweep_dead(me, host, false);
                }
                Wake::Interrupted => {
                    return self.cancel(me, slot, expected, Error::Interrupted, host)
                }
            }
        }
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
            e => Err(Error::from_errno(e as i32)),
        }
    }

    fn cancel(&self, me: &Me, slot: u32, expected: u32, why: Error, host: &dyn Host) -> Result<()> {
        let mut g = self.lock(me, host);
        let q = &self.queue[slot as usize];
        let st = q.status.load(Ordering::Acquire);
        if st != expected {
            // A completion (or removal) won the race with our timeout or
            // signal: report it, as the kernel does.
            drop(g);
            return self.collect(me, slot, st);
        }
        g.dequeue(slot);
        q.status
            .store(make_status(gen_of(st), SLOT_FREE, 0), Ordering::Release);
        if let Some(p) = self.proc(me.slot) {
            p.queued.fetch_sub(1, Ordering::Relaxed);
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

/// The global lock, held. Dropping it ends the section: marks are cleared
/// (or the hysteresis counts down), the sequence counter closes, the lock
/// is released, and the sleepers completed in the section are woken.
pub struct Guard<'v, 'a> {
    v: &'v SetView<'a>,
    global: bool,
    marked: Vec<u32>,
    wrote: bool,
    wakes: Vec<u32>,
    scratch: Scratch,
    ops: Vec<Sembuf>,
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
            for e in self.v.sems {
                // SYNC: AcqRel: Acquire sees the last fast-path CAS on the
                // word; from here on every fast-path CAS on it fails.
                e.word.fetch_or(SEM_GLOBAL, Ordering::AcqRel);
            }
            self.marked.clear();
        }
        if m != GLOBAL_FOREVER {
            let want = if complex {
                USE_GLOBAL_LOCK_HYSTERESIS
            } else {
                m.max(1)
            };
            hdr.global_mode.store(want, Ordering::Relaxed);
        }
        self.global = true;
    }

    /// Makes semaphore `n`'s word ours for the rest of the section.
    pub fn own(&mut self, n: usize) {
        if self.global || self.marked.contains(&(n as u32)) {
            return;
        }
        if self.marked.len() >= MAX_MARKS {
            self.enter_global(false);
            return;
        }
        // SYNC: as in enter_global.
        self.v.sems[n].word.fetch_or(SEM_GLOBAL, Ordering::AcqRel);
        self.marked.push(n as u32);
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
        }
    }

    fn value(&self, n: usize) -> i32 {
        word_value(self.v.sems[n].word.load(Ordering::Relaxed))
    }

    /// Writes value and sempid of an owned word.
    fn write_value(&mut self, n: usize, value: i32, pid: i32) {
        self.begin_write();
        let e = &self.v.sems[n].word;
        let w = e.load(Ordering::Relaxed);
        e.store(word_with(w, value, pid), Ordering::Release);
    }

    /// Sets process `p`'s adjustment for semaphore `n`, keeping the counts.
    fn set_adj(&mut self, p: u32, n: usize, adj: i32) {
        let cell = self.v.undo_cell(p, n);
        let old = cell.load(Ordering::Relaxed) as i32;
        if old == adj {
            return;
        }
        self.begin_write();
        cell.store(adj as i16, Ordering::Relaxed);
        let pe = &self.v.procs[p as usize];
        let e = &self.v.sems[n];
        if old == 0 {
            pe.undo_count.fetch_add(1, Ordering::Relaxed);
            e.nundo.fetch_add(1, Ordering::Relaxed);
        } else if adj == 0 {
            pe.undo_count.fetch_sub(1, Ordering::Relaxed);
            e.nundo.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Evaluates `sops` for process `p` (its undo row) against the owned
    /// words. The result's new values are in `self.scratch`.
    fn evaluate(&mut self, sops: &[Sembuf], p: u32) -> Eval {
        let v = self.v;
        engine::evaluate(
            sops,
            &mut self.scratch,
            &mut |n| word_value(v.sems[n as usize].word.load(Ordering::Relaxed)),
            &mut |n| v.undo_cell(p, n as usize).load(Ordering::Relaxed) as i32,
        )
    }

    /// Applies the evaluated call in the scratch as absolute values: value
    /// and sempid of every named semaphore, and process `p`'s adjustments.
    fn apply(&mut self, p: u32, pid: i32, first: u16) {
        let touched = core::mem::take(&mut self.scratch.touched);
        for t in &touched {
            self.write_value(t.num as usize, t.value, pid);
            if t.adj != t.old_adj {
                self.set_adj(p, t.num as usize, t.adj);
            }
        }
        self.scratch.touched = touched;
        self.v.set_otime(&self.v.sems[first as usize]);
    }

    /// The slow path of semop, under the lock: try, and either finish or
    /// queue. `me` is the caller.
    pub fn semop(&mut self, me: &Me, sops: &[Sembuf], host: &dyn Host) -> SlowOutcome {
        if self.v.hdr.removed.load(Ordering::Relaxed) != 0 {
            return SlowOutcome::Now(Err(Error::Removed));
        }
        if sops.len() > 1 {
            self.enter_global(true);
        }
        let mut undo_held = false;
        for n in distinct(sops) {
            self.own(n as usize);
            undo_held |= self.v.sems[n as usize].nundo.load(Ordering::Relaxed) != 0;
        }
        if undo_held {
            // A process holding an adjustment here may have died: its undo
            // must be applied before this call can see the values.
            self.sweep_dead(me, host, true);
        }
        match self.evaluate(sops, me.slot) {
            Eval::Done => {
                self.apply(me.slot, me.pid, sops[0].sem_num);
                if engine::alters(sops) {
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
                }
                return Err(Error::NoMemory);
            };
            // Reserve it at once so the next search skips it.
            let q = &v.queue[i as usize];
            let g = gen_of(q.status.load(Ordering::Relaxed)).wrapping_add(1) & 0xffff;
            q.status
                .store(make_status(g, SLOT_CONT, 0), Ordering::Relaxed);
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
        self.set_blocked(head, &sops[blocked_at]);
        for n in distinct(sops) {
            v.sems[n as usize].nwait.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(p) = v.proc(me.slot) {
            p.queued.fetch_add(1, Ordering::Relaxed);
        }
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
        let g = gen_of(q.status.load(Ordering::Relaxed));
        let st = make_status(g, SLOT_QUEUED, 0);
        // SYNC: Release publishes the slot's contents before it is QUEUED.
        q.status.store(st, Ordering::Release);
        Ok((head, st))
    }

    fn set_blocked(&mut self, slot: u32, op: &Sembuf) {
        let b = op.sem_num as u32 | if op.sem_op == 0 { BLOCKED_ZERO } else { 0 };
        self.v.queue[slot as usize]
            .blocked
            .store(b, Ordering::Relaxed);
    }

    /// Unlinks queued slot `i` from its FIFO and drops its waiter counts;
    /// frees its continuation slots. The head slot's status is left to the
    /// caller.
    fn dequeue(&mut self, i: u32) {
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
        let mut ops = core::mem::take(&mut self.ops);
        if v.read_ops(i, &mut ops).is_ok() {
            for n in distinct(&ops) {
                let e = &v.sems[n as usize];
                if e.nwait.load(Ordering::Relaxed) > 0 {
                    e.nwait.fetch_sub(1, Ordering::Relaxed);
                }
                // The count changed: the word's WAITERS bit must follow when
                // the section ends.
                self.own(n as usize);
            }
        }
        self.ops = ops;
        let mut c = q.cont.load(Ordering::Relaxed);
        let mut hops = 0;
        while let Some(cq) = v.queue.get(c as usize) {
            let st = cq.status.load(Ordering::Relaxed);
            if state(st) != SLOT_CONT || hops > v.queue.len() {
                break;
            }
            hops += 1;
            cq.status
                .store(make_status(gen_of(st), SLOT_FREE, 0), Ordering::Release);
            c = cq.cont.load(Ordering::Relaxed);
        }
        q.cont.store(NIL, Ordering::Relaxed);
    }

    /// Hands a result to the sleeper in slot `i`: dequeue, write DONE with
    /// the errno (the futex word), and wake it when the section ends.
    fn complete(&mut self, i: u32, result: Result<()>) {
        self.dequeue(i);
        let q = &self.v.queue[i as usize];
        let st = q.status.load(Ordering::Relaxed);
        let errno = match result {
            Ok(()) => 0,
            Err(e) => e.errno() as u32,
        };
        // SYNC: Release pairs with the sleeper's Acquire load of its status
        // (SetView::wait): values written for it happen before it returns.
        q.status
            .store(make_status(gen_of(st), SLOT_DONE, errno), Ordering::Release);
        self.wakes.push(i);
    }

    /// Tries the queued operations after a change, as the kernel's
    /// update_queue: wait-for-zero operations first, then the altering ones
    /// in FIFO order, skipping those that still block; after every
    /// completion start again from the head.
    pub fn update_queue(&mut self) {
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
        let mut ops = core::mem::take(&mut self.ops);
        let mut restarted = false;
        while let Some(q) = v.queue.get(i as usize) {
            hops += 1;
            if hops > v.queue.len() {
                break; // a cycle: corrupt links; stop rather than spin
            }
            let next = q.next.load(Ordering::Relaxed);
            if v.read_ops(i, &mut ops).is_err() {
                self.ops = ops;
                self.complete(i, Err(Error::Corrupt));
                ops = core::mem::take(&mut self.ops);
                i = next;
                continue;
            }
            let p = q.proc_slot.load(Ordering::Relaxed);
            if p >= v.proc_slots() {
                self.ops = ops;
                self.complete(i, Err(Error::Corrupt));
                ops = core::mem::take(&mut self.ops);
                i = next;
                continue;
            }
            for n in distinct(&ops) {
                self.own(n as usize);
            }
            match self.evaluate(&ops, p) {
                Eval::Done => {
                    let pid = q.pid.load(Ordering::Relaxed);
                    self.apply(p, pid, ops[0].sem_num);
                    self.ops = ops;
                    self.complete(i, Ok(()));
                    ops = core::mem::take(&mut self.ops);
                    if alter {
                        restarted = true;
                        break;
                    }
                }
                Eval::Fail(e) => {
                    self.ops = ops;
                    self.complete(i, Err(e));
                    ops = core::mem::take(&mut self.ops);
                }
                Eval::Block(k) => {
                    let op = ops[k];
                    self.set_blocked(i, &op);
                }
            }
            i = next;
        }
        self.ops = ops;
        restarted
    }

    /// Looks for dead processes and reaps them: their undo adjustments are
    /// applied (clamped to [0, SEMVMX]), their queue slots freed. With
    /// `undo_only`, only processes holding adjustments are checked.
    pub fn sweep_dead(&mut self, me: &Me, host: &dyn Host, undo_only: bool) {
        let v = self.v;
        let mut changed = false;
        for p in 0..v.proc_slots() {
            if p == me.slot {
                continue;
            }
            let pe = &v.procs[p as usize];
            let sg = pe.state_gen.load(Ordering::Acquire);
            if sg & PROC_STATE_MASK != PROC_ACTIVE {
                continue;
            }
            let has_undo = pe.undo_count.load(Ordering::Relaxed) != 0;
            // A record with only zero adjustments matters for otime alone:
            // full sweeps look at it, undo-only sweeps (on the semop path)
            // do not.
            let holds = pe.queued.load(Ordering::Relaxed) != 0
                || pe.undo_record.load(Ordering::Relaxed) != 0;
            if !has_undo && (undo_only || !holds) {
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

    /// Reaps dead process `p` (state_gen `sg`). Returns whether a value changed.
    fn reap(&mut self, p: u32, sg: u32) -> bool {
        let v = self.v;
        let pe = &v.procs[p as usize];
        let pid = pe.pid.load(Ordering::Relaxed);
        // Its queued operations: a killed waiter stops waiting and counting.
        for i in 0..v.queue.len() as u32 {
            let q = &v.queue[i as usize];
            let st = q.status.load(Ordering::Relaxed);
            if q.proc_slot.load(Ordering::Relaxed) != p {
                continue;
            }
            if state(st) == SLOT_QUEUED {
                self.dequeue(i);
            }
            if state(st) == SLOT_QUEUED || state(st) == SLOT_DONE {
                q.status
                    .store(make_status(gen_of(st), SLOT_FREE, 0), Ordering::Release);
            }
        }
        // Its undo, as the kernel's exit_sem: value += adj, clamped.
        let mut changed = false;
        if pe.undo_count.load(Ordering::Relaxed) != 0 && v.hdr.removed.load(Ordering::Relaxed) == 0
        {
            for n in 0..v.nsems() {
                let adj = v.undo_cell(p, n).load(Ordering::Relaxed) as i32;
                if adj == 0 {
                    continue;
                }
                self.own(n);
                let val = (self.value(n) + adj).clamp(0, SEMVMX);
                self.write_value(n, val, pid);
                self.set_adj(p, n, 0);
                changed = true;
            }
        }
        // As exit_sem: a process with an undo record for the set sets otime
        // (of semaphore 0) at exit, whatever its adjustments were.
        if pe.undo_record.load(Ordering::Relaxed) != 0 && v.hdr.removed.load(Ordering::Relaxed) == 0
        {
            v.set_otime(&v.sems[0]);
        }
        pe.undo_count.store(0, Ordering::Relaxed);
        pe.queued.store(0, Ordering::Relaxed);
        pe.undo_record.store(0, Ordering::Relaxed);
        let free = (sg & !PROC_STATE_MASK) | PROC_FREE;
        let _ = pe
            .state_gen
            .compare_exchange(sg, free, Ordering::AcqRel, Ordering::Relaxed);
        changed
    }

    /// SETVAL: the value, sempid, every process's adjustment for it cleared,
    /// ctime, then the waiters.
    pub fn setval(&mut self, n: usize, val: i32, pid: i32) {
        self.enter_global(true);
        self.clear_adjs(Some(n));
        self.write_value(n, val, pid);
        self.v
            .hdr
            .ctime
            .store(sync::realtime_secs(), Ordering::Relaxed);
        self.update_queue();
    }

    /// SETALL.
    pub fn setall(&mut self, vals: &[u16], pid: i32) {
        self.enter_global(true);
        self.clear_adjs(None);
        for (n, &x) in vals.iter().enumerate().take(self.v.nsems()) {
            self.write_value(n, x as i32, pid);
        }
        self.v
            .hdr
            .ctime
            .store(sync::realtime_secs(), Ordering::Relaxed);
        self.update_queue();
    }

    fn clear_adjs(&mut self, only: Option<usize>) {
        let v = self.v;
        for p in 0..v.proc_slots() {
            if v.procs[p as usize].undo_count.load(Ordering::Relaxed) == 0 {
                continue;
            }
            match only {
                Some(n) => self.set_adj(p, n, 0),
                None => (0..v.nsems()).for_each(|n| self.set_adj(p, n, 0)),
            }
        }
    }

    /// IPC_SET: owner and mode.
    pub fn set_perm(&mut self, uid: u32, gid: u32, mode: u32) {
        self.begin_write();
        let h = self.v.hdr;
        h.uid.store(uid, Ordering::Relaxed);
        h.gid.store(gid, Ordering::Relaxed);
        h.mode.store(mode & 0o777, Ordering::Relaxed);
        h.ctime.store(sync::realtime_secs(), Ordering::Relaxed);
    }

    /// IPC_RMID: the set is marked removed (in global mode for ever, so the
    /// fast path never runs again) and every sleeper gets EIDRM.
    pub fn remove(&mut self) {
        self.enter_global(true);
        self.begin_write();
        let v = self.v;
        v.hdr.global_mode.store(GLOBAL_FOREVER, Ordering::Relaxed);
        v.hdr.removed.store(1, Ordering::Release);
        for head in [&v.hdr.alter_head, &v.hdr.const_head] {
            let mut hops = 0;
            while let Some(_q) = v.queue.get(head.load(Ordering::Relaxed) as usize) {
                hops += 1;
                if hops > v.queue.len() {
                    break;
                }
                self.complete(head.load(Ordering::Relaxed), Err(Error::Removed));
            }
        }
        for e in v.sems {
            let w = e.word.load(Ordering::Relaxed);
            e.word
                .store(w & (SEM_GLOBAL | SEM_VALUE_MASK), Ordering::Release);
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
        if e.nwait.load(Ordering::Relaxed) != 0 {
            bits |= SEM_WAITERS;
        }
        if e.nundo.load(Ordering::Relaxed) != 0 {
            bits |= SEM_UNDO_HELD;
        }
        // SYNC: Release pairs with the fast path's Acquire load/CAS: all of
        // this section's writes happen before any later fast-path op.
        e.word.store((w & !SEM_SLOW_BITS) | bits, Ordering::Release);
    }
}

impl Drop for Guard<'_, '_> {
    fn drop(&mut self) {
        let hdr = self.v.hdr;
        if self.global {
            let m = hdr.global_mode.load(Ordering::Relaxed);
            if m != GLOBAL_FOREVER {
                if m <= 1 {
                    hdr.global_mode.store(0, Ordering::Relaxed);
                    for n in 0..self.v.nsems() {
                        self.unmark(n);
                    }
                } else {
                    hdr.global_mode.store(m - 1, Ordering::Relaxed);
                }
            }
        } else {
            for &n in &self.marked {
                self.unmark(n as usize);
            }
        }
        if self.wrote {
            let s = hdr.seq.load(Ordering::Relaxed);
            // SYNC: Release pairs with readers' Acquire load of `seq`.
            hdr.seq.store(s.wrapping_add(1), Ordering::Release);
        }
        // SYNC: Release pairs with the Acquire CAS of the next locker.
        let prev = hdr.lock.swap(0, Ordering::Release);
        if prev & LOCK_CONTENDED != 0 {
            sync::futex_wake(&hdr.lock, 1);
        }
        for &i in &self.wakes {
            sync::futex_wake(&self.v.queue[i as usize].status, 1);
        }
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
    }

    /// Builds a layout struct with every atomic field at zero (loom's
    /// atomics are not plain memory: zeroed bytes are not a valid value).
    macro_rules! zeroed {
        ($t:ident { $($f:ident: $a:ident),* $(,)? } $(, [$arr:ident; $n:expr])?) => {
            $t { $($f: $a::new(0),)* $($arr: core::array::from_fn::<_, $n, _>(|_| AtomicU64::new(0)))? }
        };
    }
    use crate::sync::{AtomicI32, AtomicI64, AtomicU32, AtomicU64};

    fn header() -> SetHeader {
        zeroed!(
            SetHeader {
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
                ctime: AtomicI64
            },
            [reserved; 4]
        )
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
            undo_record: AtomicU32,
            _pad2: AtomicU32
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
                since: AtomicU64
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
            };
            SetView::init(&hs.hdr, &geo, 0, 0, 0, 0, 0o600, 0);
            hs
        }
        /// The view.
        pub fn view(&self) -> SetView<'_> {
            SetView::from_parts(&self.hdr, &self.sems, &self.procs, &self.undo, &self.queue)
        }
        /// Claims process entry `slot` for `pid` (no OS lock on the heap).
        pub fn register(&self, slot: u32, pid: i32) -> Me {
            let p = &self.procs[slot as usize];
            let gen = (p.state_gen.load(Ordering::Relaxed) >> PROC_GEN_SHIFT) + 1;
            p.pid.store(pid, Ordering::Relaxed);
            p.state_gen
                .store((gen << PROC_GEN_SHIFT) | PROC_ACTIVE, Ordering::Release);
            Me { slot, gen, pid }
        }
    }
}
