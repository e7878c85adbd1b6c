//! The shared-memory layout of shmsem: what a segment contains, byte for byte.
//!
//! This crate holds `#[repr(C)]` types, constants and compile-time size
//! assertions, and no logic. Everything here lives in memory that other
//! processes can write at any time, so every field is an atomic and every
//! index read from it must be bounds-checked by the reader (DESIGN.md
//! decision 7). Types are self-contained and use indices, never pointers.
//!
//! Two kinds of segment exist:
//!
//! * the **registry** of a namespace (`/shmsem.<ns>`): a [`RegistryHeader`]
//!   followed by `semmni` [`RegistryEntry`] records, one per set index;
//! * one **set segment** per semaphore set (`/shmsem.<ns>.<index>.<seq>`): a
//!   [`SetHeader`], then `nsems` [`SemEntry`], `proc_slots` [`ProcEntry`],
//!   `proc_slots * nsems` undo adjustments (`i16`), then `queue_slots`
//!   [`QueueSlot`], then the [`IntentHeader`] and `nsems` intent entries.
//!   The sizes are stored in the header; every opener recomputes the
//!   offsets and checks them against the mapping ([`SetGeometry`]).
//!
//! Under `cfg(shmsem_loom)` the atomics are loom's, so that models can build
//! a segment on the heap; the size assertions only hold for the real types.
#![no_std]
#![warn(missing_docs)]

#[cfg(not(shmsem_loom))]
pub use core::sync::atomic::{
    AtomicBool, AtomicI16, AtomicI32, AtomicI64, AtomicU16, AtomicU32, AtomicU64, AtomicU8,
};
#[cfg(shmsem_loom)]
pub use loom::sync::atomic::{
    AtomicBool, AtomicI16, AtomicI32, AtomicI64, AtomicU16, AtomicU32, AtomicU64, AtomicU8,
};

/// Version of this layout. Openers refuse any other value (and 0, which
/// means "still being initialised").
pub const LAYOUT_VERSION: u32 = 4;
/// Magic at offset 0 of a set segment.
pub const SET_MAGIC: u64 = u64::from_le_bytes(*b"SHMSEMst");
/// Magic at offset 0 of a namespace registry.
pub const REGISTRY_MAGIC: u64 = u64::from_le_bytes(*b"SHMSEMns");

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
/// Global-lock sections a set stays in global mode after the last one that
/// needed it, like the kernel's `USE_GLOBAL_LOCK_HYSTERESIS`.
pub const USE_GLOBAL_LOCK_HYSTERESIS: u32 = 10;

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

// ---------------------------------------------------------------------------
// The semaphore word
// ---------------------------------------------------------------------------
//
// Every semaphore is one 64-bit word, so that the fast path changes the
// value and sempid with one compare-and-swap.
//
// | bits   | name        | meaning                                               |
// |--------|-------------|-------------------------------------------------------|
// | 0..16  | value       | the semaphore's value, 0..=SEMVMX                     |
// | 16     | WAITERS     | a queued operation names this semaphore               |
// | 17     | GLOBAL      | the set is in global mode: only lock holders write    |
// | 18     | UNDO_HELD   | some process holds a non-zero SEM_UNDO adjustment     |
// | 19..32 | version     | bumped by every change of value or sempid (ABA guard  |
// |        |             | for lock-free snapshots)                              |
// | 32..64 | sempid      | pid of the last process to operate on it              |
//
// The fast path may CAS a word only when WAITERS, GLOBAL and UNDO_HELD are
// all clear. A lock holder sets GLOBAL on every word before it reads or
// writes any of them, which is what excludes the fast path.

/// Mask of the value bits of a semaphore word.
pub const SEM_VALUE_MASK: u64 = 0xffff;
/// A queued operation names this semaphore.
pub const SEM_WAITERS: u64 = 1 << 16;
/// The set is in global mode; only the lock holder writes this word.
pub const SEM_GLOBAL: u64 = 1 << 17;
/// Some process holds a non-zero SEM_UNDO adjustment for this semaphore.
pub const SEM_UNDO_HELD: u64 = 1 << 18;
/// Any bit that sends an operation to the slow path.
pub const SEM_SLOW_BITS: u64 = SEM_WAITERS | SEM_GLOBAL | SEM_UNDO_HELD;
/// Shift of the version counter.
pub const SEM_VERSION_SHIFT: u32 = 19;
/// Mask of the version counter (after shifting).
pub const SEM_VERSION_MASK: u64 = (1 << 13) - 1;
/// Shift of sempid.
pub const SEM_PID_SHIFT: u32 = 32;

// ---------------------------------------------------------------------------
// The global lock word (u32, a futex word)
// ---------------------------------------------------------------------------
//
// | value              | meaning                                                    |
// |--------------------|------------------------------------------------------------|
// | 0                  | free                                                       |
// | owner              | held by the process-table entry `owner & 0x7fff` - 1 whose |
// |                    | generation's low 16 bits are `(owner >> 15) & 0xffff`      |
// | owner | CONTENDED  | held, and somebody sleeps (or is about to) on the word     |

/// Set in the lock word when a waiter may be sleeping on it.
pub const LOCK_CONTENDED: u32 = 1 << 31;
/// Mask of the owner-slot part (slot index + 1) of the lock word.
pub const LOCK_SLOT_MASK: u32 = 0x7fff;
/// Shift of the owner-generation part of the lock word.
pub const LOCK_GEN_SHIFT: u32 = 15;
/// Mask of the owner-generation part (after shifting).
pub const LOCK_GEN_MASK: u32 = 0xffff;

// ---------------------------------------------------------------------------
// The queue slot status word (u32, the sleeper's futex word)
// ---------------------------------------------------------------------------
//
// | bits   | name  | meaning                                                   |
// |--------|-------|-----------------------------------------------------------|
// | 0..12  | errno | result handed over by the waker (0 = success)             |
// | 12..16 | state | FREE, QUEUED, DONE, CONT (a continuation of another slot) |
// | 16..32 | gen   | bumped at every allocation: a stale index never matches   |

/// Mask of the errno part of a slot status.
pub const SLOT_ERRNO_MASK: u32 = 0xfff;
/// Shift of the state part of a slot status.
pub const SLOT_STATE_SHIFT: u32 = 12;
/// Mask of the state part (after shifting).
pub const SLOT_STATE_MASK: u32 = 0xf;
/// Shift of the generation part of a slot status.
pub const SLOT_GEN_SHIFT: u32 = 16;
/// Slot state: unused.
pub const SLOT_FREE: u32 = 0;
/// Slot state: a sleeper's operation is queued and waits.
pub const SLOT_QUEUED: u32 = 1;
/// Slot state: the operation was completed (or failed) by someone else; the
/// result is in the errno bits. The sleeper frees the slot.
pub const SLOT_DONE: u32 = 2;
/// Slot state: holds further operations of the slot that links to it.
pub const SLOT_CONT: u32 = 3;

/// Slot flag: the operation has SEM_UNDO ops.
pub const SLOT_F_UNDO: u32 = 1;
/// Slot flag: the operation alters a value (some op is non-zero).
pub const SLOT_F_ALTER: u32 = 2;
/// `blocked` field flag: the op the sleeper blocks on is a wait-for-zero.
pub const BLOCKED_ZERO: u32 = 1 << 31;

/// Operations stored in one queue slot; longer calls chain continuation slots.
pub const SLOT_OPS: usize = 9;

/// A packed `sembuf` in a queue slot: `sem_num | sem_op << 16 | sem_flg << 32`.
pub const fn pack_op(num: u16, op: i16, flg: i16) -> u64 {
    (num as u64) | ((op as u16 as u64) << 16) | ((flg as u16 as u64) << 32)
}
/// The inverse of [`pack_op`].
pub const fn unpack_op(w: u64) -> (u16, i16, i16) {
    (w as u16, (w >> 16) as u16 as i16, (w >> 32) as u16 as i16)
}

// ---------------------------------------------------------------------------
// Intent record
// ---------------------------------------------------------------------------
//
// Every update of several words under the global lock is first written as
// an intent record of absolute new values (IntentHeader + entries), then
// `commit` is set to INTENT_COMMITTED, then the record is applied, then
// `commit` is cleared. A process that takes the lock from a dead holder
// redoes a committed record (applying is idempotent) and ignores an
// uncommitted one (nothing of it was applied yet).

/// `commit`: no record, or a record still being written.
pub const INTENT_NONE: u32 = 0;
/// `commit`: the record is complete and must be (re)applied.
pub const INTENT_COMMITTED: u32 = 1;

/// Kind: values (and a process's adjustments) of a semop, possibly
/// completing a queued operation (`q_slot`): entries are [`pack_intent`].
pub const INTENT_APPLY: u32 = 1;
/// Kind: SETVAL (one entry); every adjustment of that semaphore cleared.
pub const INTENT_SETVAL: u32 = 2;
/// Kind: SETALL (one entry per semaphore); every adjustment cleared.
pub const INTENT_SETALL: u32 = 3;
/// Kind: a dead process's exit: its undo applied (entries: new values),
/// its queue slots and process-table entry freed.
pub const INTENT_REAP: u32 = 4;
/// Kind: IPC_RMID: removed, every queued operation completed with EIDRM.
pub const INTENT_RMID: u32 = 5;
/// Kind: IPC_SET: owner, group, mode, ctime.
pub const INTENT_SETPERM: u32 = 6;

/// Entry flag: the entry carries an adjustment for `proc_slot`.
pub const INTENT_HAS_ADJ: u64 = 1 << 48;

/// An intent entry: semaphore `n` gets `value`, and (with `adj`) process
/// `proc_slot`'s adjustment for it becomes `adj`.
pub const fn pack_intent(n: u16, value: u16, adj: Option<i16>) -> u64 {
    let a = match adj {
        Some(a) => ((a as u16 as u64) << 32) | INTENT_HAS_ADJ,
        None => 0,
    };
    (n as u64) | ((value as u64) << 16) | a
}
/// The inverse of [`pack_intent`].
pub const fn unpack_intent(w: u64) -> (u16, u16, Option<i16>) {
    let adj = if w & INTENT_HAS_ADJ != 0 {
        Some((w >> 32) as u16 as i16)
    } else {
        None
    };
    (w as u16, (w >> 16) as u16, adj)
}

/// The header of a set's intent record.
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
    /// Its status before (the completion is a compare-and-swap from it).
    pub q_from: AtomicU32,
    /// Its status after (DONE with the errno).
    pub q_to: AtomicU32,
    /// SETPERM: uid.
    pub uid: AtomicU32,
    /// SETPERM: gid.
    pub gid: AtomicU32,
    /// SETPERM: mode.
    pub mode: AtomicU32,
    /// REAP: the dead entry's `state_gen` (freed by compare-and-swap).
    pub proc_sg: AtomicU32,
    /// SETVAL/SETALL/SETPERM: the new ctime.
    pub time: AtomicI64,
    /// APPLY: semaphore whose otime is set, or NIL.
    pub otime_sem: AtomicU32,
    /// Padding.
    pub _pad: AtomicU32,
}

// ---------------------------------------------------------------------------
// Process table entry states
// ---------------------------------------------------------------------------
//
// `state_gen`: bits 0..4 state, bits 4..32 generation (bumped at every claim).

/// Process entry state: free.
pub const PROC_FREE: u32 = 0;
/// Process entry state: being claimed (fields not yet valid).
pub const PROC_CLAIMING: u32 = 1;
/// Process entry state: in use by a live (or not yet swept) process.
pub const PROC_ACTIVE: u32 = 2;
/// Mask of the state part of `state_gen`.
pub const PROC_STATE_MASK: u32 = 0xf;
/// Shift of the generation part of `state_gen`.
pub const PROC_GEN_SHIFT: u32 = 4;

/// Byte offset, in the set segment's file, of process entry 0's liveness
/// lock byte (F_OFD_SETLK on `PROC_LOCK_BASE + index`). It lies past the end
/// of the mapped data: a byte-range lock needs no data behind it.
pub const PROC_LOCK_BASE: i64 = 1 << 40;

// ---------------------------------------------------------------------------
// Registry entry states
// ---------------------------------------------------------------------------
//
// `state_seq`: bits 0..2 state, bits 16..32 the sequence number of the set
// that occupies (or last occupied) the index.

/// Registry entry: free.
pub const ENTRY_FREE: u32 = 0;
/// Registry entry: a set is being created (under the registry lock).
pub const ENTRY_CREATING: u32 = 1;
/// Registry entry: a live set.
pub const ENTRY_LIVE: u32 = 2;
/// Mask of the state part.
pub const ENTRY_STATE_MASK: u32 = 0x3;
/// Shift of the sequence part.
pub const ENTRY_SEQ_SHIFT: u32 = 16;

// ---------------------------------------------------------------------------
// Registry segment
// ---------------------------------------------------------------------------

/// Start of a namespace registry segment.
#[repr(C)]
pub struct RegistryHeader {
    /// [`REGISTRY_MAGIC`].
    pub magic: AtomicU64,
    /// [`LAYOUT_VERSION`], stored last (release) when initialisation is done.
    pub version: AtomicU32,
    /// Limit: semaphores per set.
    pub semmsl: AtomicU32,
    /// Limit: semaphores in the namespace.
    pub semmns: AtomicU32,
    /// Limit: operations per call.
    pub semopm: AtomicU32,
    /// Limit: sets in the namespace (also the number of entries).
    pub semmni: AtomicU32,
    /// Pending-queue slots in each new set.
    pub queue_slots: AtomicU32,
    /// Process-table entries in each new set.
    pub proc_slots: AtomicU32,
    /// Next index to try when allocating (cyclic, as the kernel's).
    pub next_idx: AtomicU32,
    /// Sequence number given to the next set.
    pub seq: AtomicU32,
    /// Sets in use.
    pub used_sets: AtomicU32,
    /// Semaphores in use.
    pub used_sems: AtomicU32,
    /// Padding.
    pub _pad: AtomicU32,
    /// Total size of the segment in bytes.
    pub size: AtomicU64,
}

/// One set index of a namespace.
#[repr(C)]
pub struct RegistryEntry {
    /// State and sequence, see the table above.
    pub state_seq: AtomicU32,
    /// The set's key.
    pub key: AtomicI32,
    /// The set's number of semaphores.
    pub nsems: AtomicU32,
    /// Pid of the creator (diagnostics).
    pub creator: AtomicI32,
    /// Mirror of the set's owner uid, for processes that cannot open the
    /// segment (written under the registry lock; see README difference 9).
    pub uid: AtomicU32,
    /// Mirror of the owner gid.
    pub gid: AtomicU32,
    /// Mirror of the creator uid.
    pub cuid: AtomicU32,
    /// Mirror of the creator gid.
    pub cgid: AtomicU32,
    /// Mirror of the permission bits.
    pub mode: AtomicU32,
    /// Padding.
    pub _pad: AtomicU32,
    /// Mirror of the set's otime, tagged with the set's sequence number
    /// (see [`TIME_TAG_BITS`]) so that a late writer of a removed set cannot
    /// touch the entry's next set.
    pub otime_tagged: AtomicU64,
    /// Mirror of the set's ctime, tagged the same way.
    pub ctime_tagged: AtomicU64,
    /// Reserved (zero).
    pub _reserved: AtomicU64,
}

/// A tagged time word is `seconds << TIME_TAG_BITS | seq`.
pub const TIME_TAG_BITS: u32 = 16;
/// Mask of the sequence tag of a tagged time word.
pub const TIME_TAG_MASK: u64 = (1 << TIME_TAG_BITS) - 1;

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
    /// The global lock (see the lock word table).
    pub lock: AtomicU32,
    /// Sequence counter: odd while a lock holder writes several words.
    pub seq: AtomicU32,
    /// Global-mode hysteresis countdown; 0 = not in global mode. Lock holders only.
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
    /// died mid-spin leaves a claim others can see is stale.
    pub spinners: AtomicU32,
    /// Padding.
    pub _pad4: AtomicU32,
}

/// One semaphore.
#[repr(C)]
pub struct SemEntry {
    /// The semaphore word (see the table above).
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
    /// State and generation, see the table above.
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
    /// sleeper spins before sleeping only for a partner on another CPU.
    pub cpu: AtomicU8,
    /// Threads of the process other than the lone one taking or holding
    /// the set's lock (read-modify-writes). A lock word naming a live
    /// process whose `holding` and `locking` are both 0 is garbage.
    pub locking: AtomicU16,
}

/// One pending-queue slot: a sleeper's operation, its futex word and links.
#[repr(C)]
pub struct QueueSlot {
    /// Status word and futex word (see the table above).
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
    /// [`SLOT_F_UNDO`], [`SLOT_F_ALTER`].
    pub flags: AtomicU32,
    /// Semaphore the sleeper currently blocks on, | [`BLOCKED_ZERO`] for a
    /// wait-for-zero; counts in GETNCNT/GETZCNT.
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
        let undo_off = align_up(procs_off + proc_slots as usize * 32, 64);
        let undo_row = align_up(nsems as usize * 2, 8);
        let queue_off = align_up(undo_off + proc_slots as usize * undo_row, 64);
        let intent_off = align_up(queue_off + queue_slots as usize * 128, 64);
        let size = align_up(intent_off + 64 + nsems as usize * 8, 4096);
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
    /// Bytes between two processes' undo rows.
    pub const fn undo_row(&self) -> usize {
        align_up(self.nsems as usize * 2, 8)
    }
}

/// Size of a registry with `semmni` entries.
pub const fn registry_size(semmni: u32) -> usize {
    align_up(
        64 + semmni as usize * core::mem::size_of::<RegistryEntryLayout>(),
        4096,
    )
}

/// The plain layout of [`RegistryEntry`], for size computations.
#[repr(C)]
pub struct RegistryEntryLayout {
    _f: [u64; 8],
}

/// Offset of entry 0 in the registry.
pub const REGISTRY_ENTRIES_OFF: usize = 64;

#[cfg(not(shmsem_loom))]
const _: () = {
    use core::mem::{align_of, size_of};
    assert!(size_of::<RegistryHeader>() <= REGISTRY_ENTRIES_OFF);
    assert!(size_of::<RegistryEntry>() == 64);
    assert!(size_of::<RegistryEntryLayout>() == 64);
    assert!(size_of::<SetHeader>() == 136);
    assert!(size_of::<SemEntry>() == 32);
    assert!(align_of::<SemEntry>() == 8);
    assert!(size_of::<ProcEntry>() == 32);
    assert!(size_of::<QueueSlot>() == 128);
    assert!(size_of::<IntentHeader>() == 64);
    assert!(core::mem::offset_of!(SetHeader, lock) % 4 == 0);
    assert!(core::mem::offset_of!(QueueSlot, status) == 0);
    assert!(core::mem::offset_of!(QueueSlot, ops) == 56);
    // The largest set the ceilings allow still fits a usize comfortably.
    let g = SetGeometry::new(SEMMSL_MAX, PROC_SLOTS_MAX, QUEUE_SLOTS_MAX);
    assert!(g.size < (1 << 40));
};
