//! The shared-memory layout of shmsem: what a segment contains, byte for byte,
//! and what every encoded word in it means.
//!
//! This crate holds `#[repr(C)]` types, constants, compile-time size
//! assertions, and the encoding of every word that packs several fields or
//! states: a `const fn` accessor for each field and each transition, and a
//! state table in each type's documentation. No other crate needs to shift
//! or mask a shared word. Everything here lives in memory that other
//! processes can write at any time, so every field is an atomic and every
//! index read from it must be bounds-checked by the reader (DESIGN.md
//! decision 7). Types are self-contained and use indices, never pointers.
//!
//! Two kinds of segment exist:
//!
//! * the **limits file** of a namespace (`/shmsem.<ns>`, [`LimitsRecord`])
//!   and its **hints file** (`/shmsem.<ns>.hints`), read and written with
//!   pread/pwrite, never mapped;
//! * one **set segment** per semaphore set (`/shmsem.<ns>.s.<index>.<seq>`): a
//!   [`SetHeader`], then `nsems` [`SemEntry`], `proc_slots` [`ProcEntry`],
//!   `proc_slots * nsems` undo adjustments (`i16`), then `queue_slots`
//!   [`QueueSlot`], then the [`IntentHeader`] and `nsems` intent entries.
//!   The sizes are stored in the header; every opener recomputes the
//!   offsets and checks them against the mapping ([`SetGeometry`]).
//!
//! # The encoded words
//!
//! Each is a `#[repr(transparent)]` newtype over the raw integer with
//! `from_raw` / `raw`, `const fn` getters and `with_*` (or transition)
//! builders, in the manner of parking_lot's lock words. A newtype rather
//! than a trait over `u32` / `u64`: the methods are `const`, and two
//! encodings of the same integer type cannot be confused (or collide on a
//! method name under a glob import). The atomics stay in the layout
//! structs; load the raw word, wrap it, decide, store `raw()`.
//!
//! | field                           | type           | what it encodes                          |
//! |---------------------------------|----------------|------------------------------------------|
//! | [`SemEntry::word`]              | [`SemWord`]    | value, slow bits, version, sempid        |
//! | [`SetHeader::lock`]             | [`LockWord`]   | holder's token (slot + 1, gen), CONTENDED|
//! | [`SetHeader::global_mode`]      | [`GlobalMode`] | off / sections left / for ever           |
//! | [`SetHeader::seq`]              | [`SeqCount`]   | seqlock: odd while a section writes      |
//! | [`SetHeader::spinners`]         | [`SpinStamp`]  | free, or the spinner's start (1024 ns)   |
//! | [`ProcEntry::state_gen`]        | [`ProcState`]  | FREE / CLAIMING / ACTIVE, generation     |
//! | [`ProcEntry::owner`]            | [`ProcOwner`]  | claimer's uid, generation claimed, bare  |
//! | [`ProcEntry::cpu`]              | [`CpuTag`]     | unknown, or cpu % 255 + 1                |
//! | [`QueueSlot::status`]           | [`SlotStatus`] | gen, FREE/CONT/QUEUED/DONE/WITHDRAWN, errno |
//! | [`QueueSlot::flags`]            | [`SlotFlags`]  | UNDO, ALTER                              |
//! | [`QueueSlot::blocked`]          | [`Blocked`]    | semaphore, wait-for-zero                 |
//! | [`QueueSlot::ops`]              | [`pack_op`]    | sem_num, sem_op, sem_flg                 |
//! | [`IntentHeader::commit`]        | `INTENT_*`     | none / committed (table at [`IntentHeader`]) |
//! | intent entries                  | [`pack_intent`]| semaphore, value, adjustment             |
//!
//! Under `cfg(shmsem_loom)` the atomics are loom's, so that models can build
//! a segment on the heap; the size assertions only hold for the real types.
//! [`GlobalMode::HYSTERESIS`] is 1 under loom.
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]
// The segment's fields are atomics by definition: this crate names the
// atomic types (core's, or loom's in models) that the library's shim
// otherwise keeps to itself (clippy.toml).
#![allow(clippy::disallowed_types)]

mod intent;
mod lock_bytes;
mod lock_word;
mod proc_entry;
mod queue_slot;
mod sem_word;
mod set_header;
#[cfg(test)]
mod testing;

pub use intent::*;
pub use lock_bytes::*;
pub use lock_word::*;
pub use proc_entry::*;
pub use queue_slot::*;
pub use sem_word::*;
pub use set_header::*;

#[cfg(not(shmsem_loom))]
pub use core::sync::atomic::{
    AtomicBool, AtomicI16, AtomicI32, AtomicI64, AtomicU16, AtomicU32, AtomicU64, AtomicU8,
};
#[cfg(shmsem_loom)]
pub use loom::sync::atomic::{
    AtomicBool, AtomicI16, AtomicI32, AtomicI64, AtomicU16, AtomicU32, AtomicU64, AtomicU8,
};

/// Version of this layout. Openers refuse any other value (and 0, which
/// means "still being initialised"). 6: a queue slot can be WITHDRAWN by
/// its sleeper, the intent record has a serial over its application. 7: the
/// registry reserves its pages as entries are needed. 8: no registry: the
/// names in /dev/shm are the truth (a limits file, a hints file, one file
/// per set, symbolic links claiming indices and keys), and a set's file is
/// exactly [`SetGeometry::new`]`.size` bytes (not page-rounded). 9: a
/// process-table entry names its owner's uid and the claim it was taken by
/// ([`ProcEntry::owner`]), whose presence and claim bytes are in that
/// uid's presence file.
pub const LAYOUT_VERSION: u32 = 9;
/// Magic at offset 0 of a set segment.
pub const SET_MAGIC: u64 = u64::from_le_bytes(*b"SHMSEMst");

// ---------------------------------------------------------------------------
// The System V ABI (x86-64 / aarch64 Linux)
// ---------------------------------------------------------------------------

/// Create the set if the key does not exist.
pub const IPC_CREAT: i32 = 0o1000;
/// With IPC_CREAT: fail with EEXIST if the key exists.
pub const IPC_EXCL: i32 = 0o2000;
/// Per-op flag: fail with EAGAIN instead of blocking.
pub const IPC_NOWAIT: i32 = 0o4000;
/// Per-op flag: undo the operation when the process exits.
pub const SEM_UNDO: i32 = 0x1000;
/// The key that always creates a new set.
pub const IPC_PRIVATE: i32 = 0;

/// semctl: remove the set.
pub const IPC_RMID: i32 = 0;
/// semctl: set uid, gid and mode.
pub const IPC_SET: i32 = 1;
/// semctl: read the set's `semid_ds`.
pub const IPC_STAT: i32 = 2;
/// semctl: read the limits.
pub const IPC_INFO: i32 = 3;
/// semctl: pid of the last process to operate on a semaphore.
pub const GETPID: i32 = 11;
/// semctl: a semaphore's value.
pub const GETVAL: i32 = 12;
/// semctl: every value.
pub const GETALL: i32 = 13;
/// semctl: processes waiting for a semaphore to increase.
pub const GETNCNT: i32 = 14;
/// semctl: processes waiting for a semaphore to become zero.
pub const GETZCNT: i32 = 15;
/// semctl: set one value.
pub const SETVAL: i32 = 16;
/// semctl: set every value.
pub const SETALL: i32 = 17;
/// semctl: IPC_STAT by index, with read permission.
pub const SEM_STAT: i32 = 18;
/// semctl: the limits plus usage figures.
pub const SEM_INFO: i32 = 19;
/// semctl: IPC_STAT by index, without a permission check.
pub const SEM_STAT_ANY: i32 = 20;

/// Default maximum semaphores per set (Linux ≥ 3.19).
pub const SEMMSL_DEFAULT: u32 = 32_000;
/// Default maximum semaphores in a namespace.
pub const SEMMNS_DEFAULT: u32 = 1_024_000_000;
/// Default maximum operations per semop call.
pub const SEMOPM_DEFAULT: u32 = 500;
/// Default maximum sets in a namespace.
pub const SEMMNI_DEFAULT: u32 = 32_000;
/// Maximum semaphore value.
pub const SEMVMX: i32 = 32_767;
/// Maximum magnitude of an undo adjustment.
pub const SEMAEM: i32 = 32_767;
/// Hard ceiling for SEMMSL: a semaphore number must fit a `u16` (sem_num).
pub const SEMMSL_MAX: u32 = 65_535;
/// Hard ceiling for SEMMNI: the index part of an id has 15 bits.
pub const SEMMNI_MAX: u32 = 1 << IPCMNI_SHIFT;
/// Hard ceiling for SEMOPM.
pub const SEMOPM_MAX: u32 = 65_535;

/// An id is `(seq << IPCMNI_SHIFT) | index`, as in the kernel.
pub const IPCMNI_SHIFT: u32 = 15;
/// Largest sequence number (keeps ids positive).
pub const IPC_SEQ_MAX: u32 = (i32::MAX as u32) >> IPCMNI_SHIFT;

/// Default pending-queue slots per set.
pub const QUEUE_SLOTS_DEFAULT: u32 = 1024;
/// Default process-table entries per set.
pub const PROC_SLOTS_DEFAULT: u32 = 512;
/// Hard ceiling for process-table entries (an index must fit the lock word).
pub const PROC_SLOTS_MAX: u32 = 0x7fff;
/// Hard ceiling for queue slots.
pub const QUEUE_SLOTS_MAX: u32 = 1 << 20;

/// "No index" in a queue link or a slot field.
pub const NIL: u32 = u32::MAX;

/// The header of a set's intent record (entries: [`pack_intent`]).
///
/// Every update of several words under the global lock is first written as
/// an intent record of absolute new values (IntentHeader + entries), then
/// `commit` is set to INTENT_COMMITTED, then the record is applied, then
/// `commit` is cleared. A process that takes the lock from a dead holder
/// redoes a committed record (applying is idempotent) and ignores an
/// uncommitted one (nothing of it was applied yet).
///
/// # State table (`commit`)
///
/// | commit    | Description                                | Left by                   |
/// |-----------|--------------------------------------------|---------------------------|
/// | NONE      | No record, or one being written (nothing   | The holder, once the      |
/// |           | of it applied yet): recovery ignores it.   | record is whole: →        |
/// |           |                                            | COMMITTED (release).      |
/// | COMMITTED | A whole record, being applied: recovery    | The holder, or a          |
/// |           | (acquire) redoes it, idempotently.         | recoverer, once applied:  |
/// |           |                                            | → NONE (release).         |
/// | other     | Scribbled on: recovery ignores it, as NONE, | Recovery: → NONE.         |
/// |           | and clears it.                             |                           |
///
/// `serial` is odd exactly while a COMMITTED record is being applied (or a
/// writer died doing so; recovery makes it even again): lock-free readers
/// that cannot wait for the lock holder take the set's state from the words
/// and, while it is odd, the record, whose values are absolute.
#[repr(C)]
pub struct IntentHeader {
    /// [`INTENT_NONE`] or [`INTENT_COMMITTED`]; written last (release).
    pub commit: AtomicU32,
    /// One of the `INTENT_*` kinds.
    pub kind: AtomicU32,
    /// Number of entries in use.
    pub count: AtomicU32,
    /// APPLY: whose adjustments; REAP: the dead process's entry.
    pub proc_slot: AtomicU32,
    /// The sempid written with the values.
    pub pid: AtomicI32,
    /// APPLY: queue slot whose operation this completes (or fails), or NIL.
    pub q_slot: AtomicU32,
    /// Its status before (a [`SlotStatus`]; the completion is a
    /// compare-and-swap from it).
    pub q_from: AtomicU32,
    /// Its status after (DONE with the errno).
    pub q_to: AtomicU32,
    /// SETPERM: uid.
    pub uid: AtomicU32,
    /// SETPERM: gid.
    pub gid: AtomicU32,
    /// SETPERM: mode.
    pub mode: AtomicU32,
    /// REAP: the dead entry's `state_gen` (a [`ProcState`], freed by
    /// compare-and-swap).
    pub proc_sg: AtomicU32,
    /// SETVAL/SETALL/SETPERM: the new ctime.
    pub time: AtomicI64,
    /// APPLY: semaphore whose otime is set, or NIL.
    pub otime_sem: AtomicU32,
    /// A sequence counter over the application of records (a
    /// [`SeqCount`]): made odd (release) once `commit` is COMMITTED, before
    /// the record is applied; even again (release) once it is applied and
    /// cleared. A lock-free reader of the set's state
    /// (`SetView::committed_read`) reads the words alone while it is even,
    /// and the words overlaid with the record's absolute values while it is
    /// odd; finding the same value after its reads, it read one state.
    pub serial: AtomicU32,
}

// ---------------------------------------------------------------------------
// The small files of a namespace
// ---------------------------------------------------------------------------

/// The limits file `shmsem.NS`: written once by the namespace's creator
/// (created exclusively, mode 0644), the version last; never changed after.
/// Read with `pread`, never mapped. Little-endian fields at the offsets of
/// this `#[repr(C)]` record; the file is [`LIMITS_FILE_SIZE`] bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitsRecord {
    /// [`LIMITS_MAGIC`].
    pub magic: u64,
    /// [`LAYOUT_VERSION`], written last (a second write) when the rest is.
    pub version: u32,
    /// Limit: semaphores per set.
    pub semmsl: u32,
    /// Limit: semaphores in the namespace.
    pub semmns: u32,
    /// Limit: operations per call.
    pub semopm: u32,
    /// Limit: sets in the namespace.
    pub semmni: u32,
    /// Pending-queue slots in each set.
    pub queue_slots: u32,
    /// Process-table entries in each set.
    pub proc_slots: u32,
}

/// Magic at offset 0 of a namespace's limits file.
pub const LIMITS_MAGIC: u64 = u64::from_le_bytes(*b"SHMSEMns");
/// Size of the limits file.
pub const LIMITS_FILE_SIZE: usize = 64;
/// Offset of [`LimitsRecord::version`] in the limits file.
pub const LIMITS_VERSION_OFF: usize = 8;

impl LimitsRecord {
    /// The file's bytes (version included as it is in `self`).
    pub fn to_bytes(&self) -> [u8; LIMITS_FILE_SIZE] {
        let mut b = [0u8; LIMITS_FILE_SIZE];
        b[0..8].copy_from_slice(&self.magic.to_le_bytes());
        let words = [
            self.version,
            self.semmsl,
            self.semmns,
            self.semopm,
            self.semmni,
            self.queue_slots,
            self.proc_slots,
        ];
        for (i, w) in words.iter().enumerate() {
            b[8 + 4 * i..12 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// The record in `b` (any bytes: the reader validates every field).
    pub fn from_bytes(b: &[u8; LIMITS_FILE_SIZE]) -> LimitsRecord {
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut m = [0u8; 8];
        m.copy_from_slice(&b[0..8]);
        LimitsRecord {
            magic: u64::from_le_bytes(m),
            version: w(8),
            semmsl: w(12),
            semmns: w(16),
            semopm: w(20),
            semmni: w(24),
            queue_slots: w(28),
            proc_slots: w(32),
        }
    }
}

/// The hints file `shmsem.NS.hints` (mode 0666, anyone may write it): the
/// next index to try (u32 at [`HINTS_NEXT_IDX_OFF`]) and the sequence
/// number of the last set made (u32 at [`HINTS_SEQ_OFF`]), little-endian,
/// read and written with `pread`/`pwrite`. Hints only: a forged value makes
/// ids repeat sooner, as the kernel's do when its sequence wraps.
pub const HINTS_FILE_SIZE: usize = 64;
/// Offset of the next-index hint.
pub const HINTS_NEXT_IDX_OFF: usize = 0;
/// Offset of the sequence hint.
pub const HINTS_SEQ_OFF: usize = 4;

/// The kernel's smallest index cycle (`ipc_min_cycle`, RADIX_TREE_MAP_SIZE):
/// new sets take indices below `max(sets in use * 3 / 2, IPC_MIN_CYCLE)`
/// (at most SEMMNI), cyclically.
pub const IPC_MIN_CYCLE: u32 = 64;

// ---------------------------------------------------------------------------
// Set segment
// ---------------------------------------------------------------------------

/// Start of a set segment.
#[repr(C)]
pub struct SetHeader {
    /// [`SET_MAGIC`].
    pub magic: AtomicU64,
    /// [`LAYOUT_VERSION`], stored last (release) when initialisation is done.
    pub version: AtomicU32,
    /// Number of semaphores.
    pub nsems: AtomicU32,
    /// Total size of the segment in bytes.
    pub size: AtomicU64,
    /// The key the set was created with.
    pub key: AtomicI32,
    /// The set's id.
    pub id: AtomicI32,
    /// Process-table entries.
    pub proc_slots: AtomicU32,
    /// Pending-queue slots.
    pub queue_slots: AtomicU32,
    /// The global lock: a [`LockWord`].
    pub lock: AtomicU32,
    /// Sequence counter: odd while a lock holder writes several words
    /// ([`SeqCount`]).
    pub seq: AtomicU32,
    /// Global-mode hysteresis countdown; 0 = not in global mode. Lock holders
    /// only ([`GlobalMode`]).
    pub global_mode: AtomicU32,
    /// Non-zero once IPC_RMID has run.
    pub removed: AtomicU32,
    /// Owner uid.
    pub uid: AtomicU32,
    /// Owner gid.
    pub gid: AtomicU32,
    /// Creator uid.
    pub cuid: AtomicU32,
    /// Creator gid.
    pub cgid: AtomicU32,
    /// Permission bits (low 9 bits).
    pub mode: AtomicU32,
    /// Head of the FIFO of queued altering operations.
    pub alter_head: AtomicU32,
    /// Tail of that FIFO.
    pub alter_tail: AtomicU32,
    /// Head of the FIFO of queued wait-for-zero-only operations.
    pub const_head: AtomicU32,
    /// Tail of that FIFO.
    pub const_tail: AtomicU32,
    /// Where the next queue-slot search starts.
    pub alloc_hint: AtomicU32,
    /// Last change time (seconds since the epoch).
    pub ctime: AtomicI64,
    /// Ticket of the next queued operation (see [`QueueSlot::ticket`]).
    pub next_ticket: AtomicU64,
    /// One past the highest process-table entry ever claimed: scans of the
    /// table stop there (entries beyond were never used).
    pub procs_hwm: AtomicU32,
    /// Changes (after them) whenever owner or mode change: the key of the
    /// permission bits a process caches.
    pub perm_seq: AtomicU32,
    /// CLOCK_MONOTONIC ns of the last periodic sweep by a sleeper: one
    /// sleeper per slice sweeps, not every one.
    pub last_sweep_ns: AtomicU64,
    /// The one spin before a sleep under way on the set: 0, or its start
    /// (CLOCK_MONOTONIC in 1024-ns units, never 0), so that a spinner that
    /// died mid-spin leaves a claim others can see is stale ([`SpinStamp`]).
    pub spinners: AtomicU32,
    /// How many queue slots were withdrawn by their sleepers (state
    /// WITHDRAWN, see [`SlotStatus`]) and left for a lock holder to discard,
    /// because the lock was not to be had when they gave up: a hint, so that
    /// a lock holder looks for them only when there are some.
    pub withdrawn: AtomicU32,
}

/// One semaphore.
#[repr(C)]
pub struct SemEntry {
    /// The semaphore word: a [`SemWord`].
    pub word: AtomicU64,
    /// Last semop time on this semaphore (seconds), as the kernel keeps it.
    pub otime: AtomicI64,
    /// Queued operations that name this semaphore (lock holders only).
    pub nwait: AtomicU32,
    /// Processes with a non-zero undo adjustment on it (lock holders only).
    pub nundo: AtomicU32,
    /// Padding to 32 bytes.
    pub _pad: AtomicU64,
}

/// One process-table entry.
#[repr(C)]
pub struct ProcEntry {
    /// State and generation: a [`ProcState`].
    pub state_gen: AtomicU32,
    /// The process's pid.
    pub pid: AtomicI32,
    /// The process's start time (field 22 of /proc/pid/stat, clock ticks).
    pub start_time: AtomicU64,
    /// Number of semaphores with a non-zero undo adjustment (lock holders only).
    pub undo_count: AtomicU32,
    /// Number of queue slots (head slots) this process has queued or not
    /// yet collected (lock holders only).
    pub queued: AtomicU32,
    /// 1 once the process has made a SEM_UNDO call on the set (even a
    /// failed one): the kernel's undo record, whose exit sets otime.
    pub undo_record: AtomicU16,
    /// Sections of the global lock that the process's *lone* thread (the
    /// first of the process to take a lock) is taking or holding, written
    /// only by that thread, with plain loads and stores (a nesting count:
    /// a signal handler may take another set's lock inside a section).
    /// Every other thread of the process counts in `locking` instead.
    pub holding: AtomicU16,
    /// Threads of the process asleep on this set's futexes now (wraps;
    /// only a spinning heuristic reads it).
    pub asleep: AtomicU8,
    /// 1 + the CPU the process last slept from, modulo 255 (0: unknown): a
    /// sleeper spins before sleeping only for a partner on another CPU
    /// ([`CpuTag`]).
    pub cpu: AtomicU8,
    /// Threads of the process other than the lone one taking or holding
    /// the set's lock (read-modify-writes). A lock word naming a live
    /// process whose `holding` and `locking` are both 0 is garbage.
    pub locking: AtomicU16,
    /// Who claimed the entry: a [`ProcOwner`] (the generation claimed and
    /// the claimer's uid, whose presence file holds its claim and presence
    /// bytes). Set by CAS before the claim (the CAS decides among
    /// claimers); a writer of the set can forge it, which only makes the
    /// liveness check look in the wrong file (slower, or a claim left for
    /// later).
    pub owner: AtomicU64,
}

/// One pending-queue slot: a sleeper's operation, its futex word and links.
#[repr(C)]
pub struct QueueSlot {
    /// Status word and futex word: a [`SlotStatus`].
    pub status: AtomicU32,
    /// Next slot in its FIFO, or [`NIL`].
    pub next: AtomicU32,
    /// Previous slot in its FIFO, or [`NIL`].
    pub prev: AtomicU32,
    /// Process-table index of the sleeper.
    pub proc_slot: AtomicU32,
    /// The sleeper's pid (becomes sempid on completion).
    pub pid: AtomicI32,
    /// Number of operations (in this slot and its continuations).
    pub nsops: AtomicU32,
    /// [`SLOT_F_UNDO`], [`SLOT_F_ALTER`] ([`SlotFlags`]).
    pub flags: AtomicU32,
    /// Semaphore the sleeper currently blocks on, | [`BLOCKED_ZERO`] for a
    /// wait-for-zero; counts in GETNCNT/GETZCNT ([`Blocked`]).
    pub blocked: AtomicU32,
    /// Continuation slot holding operations SLOT_OPS.., or [`NIL`].
    pub cont: AtomicU32,
    /// Padding.
    pub _pad: AtomicU32,
    /// CLOCK_MONOTONIC nanoseconds when queued (diagnostics).
    pub since: AtomicU64,
    /// Queue order: the set's `next_ticket` when queued. The FIFO links are
    /// derived from it (recovery rebuilds them).
    pub ticket: AtomicU64,
    /// Packed operations ([`pack_op`]).
    pub ops: [AtomicU64; SLOT_OPS],
}

/// Bytes of one [`ProcEntry`] in a segment (its size with the real
/// atomics; loom's are larger).
pub const PROC_ENTRY_BYTES: usize = 40;

/// Offsets of the regions of a set segment, computed from its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetGeometry {
    /// Number of semaphores.
    pub nsems: u32,
    /// Process-table entries.
    pub proc_slots: u32,
    /// Queue slots.
    pub queue_slots: u32,
    /// Offset of the [`SemEntry`] array.
    pub sems_off: usize,
    /// Offset of the [`ProcEntry`] array.
    pub procs_off: usize,
    /// Offset of the undo adjustments (`i16`, `proc_slots` rows of `nsems`).
    pub undo_off: usize,
    /// Offset of the [`QueueSlot`] array.
    pub queue_off: usize,
    /// Offset of the [`IntentHeader`], followed by `nsems` entries (u64).
    pub intent_off: usize,
    /// Total size.
    pub size: usize,
}

const fn align_up(x: usize, a: usize) -> usize {
    (x + a - 1) & !(a - 1)
}

impl SetGeometry {
    /// The geometry for the given parameters. Callers validate the
    /// parameters against the ceilings first; with them the size fits easily.
    pub const fn new(nsems: u32, proc_slots: u32, queue_slots: u32) -> SetGeometry {
        let sems_off = align_up(core::mem::size_of::<SetHeader>(), 64);
        let procs_off = align_up(sems_off + nsems as usize * 32, 64);
        let undo_off = align_up(procs_off + proc_slots as usize * PROC_ENTRY_BYTES, 64);
        let undo_row = align_up(nsems as usize * 2, 8);
        let queue_off = align_up(undo_off + proc_slots as usize * undo_row, 64);
        let intent_off = align_up(queue_off + queue_slots as usize * 128, 64);
        // Exact, not rounded to a page: the size names nsems (see
        // `nsems_for_size`), so that a process the set's mode shuts out
        // learns it from `stat` alone, never from a copy anyone may forge.
        let size = intent_off + 64 + nsems as usize * 8;
        SetGeometry {
            nsems,
            proc_slots,
            queue_slots,
            sems_off,
            procs_off,
            undo_off,
            queue_off,
            intent_off,
            size,
        }
    }
    /// The `nsems` (at most `max`) whose set, with these table sizes, is
    /// exactly `size` bytes: the inverse of [`SetGeometry::new`]'s size,
    /// which grows strictly with nsems. `None` if no nsems gives `size`.
    pub const fn nsems_for_size(
        size: u64,
        proc_slots: u32,
        queue_slots: u32,
        max: u32,
    ) -> Option<u32> {
        let (mut lo, mut hi) = (1u32, max);
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            let s = SetGeometry::new(mid, proc_slots, queue_slots).size as u64;
            if s == size {
                return Some(mid);
            }
            if s < size {
                lo = mid + 1;
            } else {
                hi = mid - 1;
            }
        }
        None
    }
    /// Bytes between two processes' undo rows.
    pub const fn undo_row(&self) -> usize {
        align_up(self.nsems as usize * 2, 8)
    }
}

// What the encodings assume of the ceilings (they hold in every build).
const _: () = {
    // A lock token's slot part holds slot + 1 for every slot.
    assert!(PROC_SLOTS_MAX <= LOCK_SLOT_MASK);
    // A value fits the semaphore word; a semaphore number the packed op,
    // the intent entry and the blocked word.
    assert!(SEMVMX as u64 <= SEM_VALUE_MASK);
    assert!(SEMMSL_MAX <= u16::MAX as u32);
    assert!(SEMMSL_MAX < BLOCKED_ZERO);
    // Every slot state fits the state part.
    assert!(SLOT_CONT <= SLOT_STATE_MASK && SLOT_WITHDRAWN <= SLOT_STATE_MASK);
    assert!(PROC_ACTIVE <= PROC_STATE_MASK);
};

#[cfg(not(shmsem_loom))]
const _: () = {
    use core::mem::{align_of, size_of};
    assert!(size_of::<LimitsRecord>() <= LIMITS_FILE_SIZE);
    assert!(core::mem::offset_of!(LimitsRecord, version) == LIMITS_VERSION_OFF);
    assert!(size_of::<SetHeader>() == 136);
    assert!(size_of::<SemEntry>() == 32);
    assert!(align_of::<SemEntry>() == 8);
    assert!(size_of::<ProcEntry>() == PROC_ENTRY_BYTES);
    assert!(align_of::<ProcEntry>() == 8);
    assert!(size_of::<QueueSlot>() == 128);
    assert!(size_of::<IntentHeader>() == 64);
    assert!(core::mem::offset_of!(SetHeader, lock) % 4 == 0);
    assert!(core::mem::offset_of!(QueueSlot, status) == 0);
    assert!(core::mem::offset_of!(QueueSlot, ops) == 56);
    // The largest set the ceilings allow still fits a usize comfortably.
    let g = SetGeometry::new(SEMMSL_MAX, PROC_SLOTS_MAX, QUEUE_SLOTS_MAX);
    assert!(g.size < (1 << 40));
};
