//! A set built on the heap, for loom models and unit tests (compiled only
//! for them): each region allocated separately, viewed through
//! [`SetView::from_parts`].

use super::{Me, SetView};
use crate::sync::{AtomicI16, Ordering};
use shm_layout::*;

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
        withdrawn: AtomicU32
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
        locking: AtomicU16,
        owner: AtomicU64
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
                serial: AtomicU32
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
        let gen = ProcState::from_raw(p.state_gen.load(Ordering::Relaxed)).next_gen();
        p.pid.store(pid, Ordering::Relaxed);
        // SYNC: Release publishes pid before the entry is ACTIVE, to the
        // Acquire loads of state_gen (SetView::names_nobody, Guard::sweep).
        p.state_gen
            .store(ProcState::new(gen, PROC_ACTIVE).raw(), Ordering::Release);
        self.view().note_claimed(slot);
        Me {
            slot,
            gen,
            pid,
            lone: true,
        }
    }
}
