//! Segments as files: where a namespace's files are in /dev/shm, a segment
//! mapped raw (to read it without the library, or to write garbage into
//! it), and a set's segment decoded with the shm-layout types.

use std::sync::atomic::Ordering::{Acquire, SeqCst};
use std::sync::atomic::{AtomicI16, AtomicU32, AtomicU64, AtomicU8};

use shmsem::layout::{
    LockWord, ProcEntry, ProcState, QueueSlot, SeqCount, SetGeometry, SetHeader, SlotStatus, NIL,
    PROC_ACTIVE, PROC_FREE, SLOT_FREE, SLOT_QUEUED,
};
use shmsem::sysv::SetId;
use shmsem::Namespace;

use super::memory::SharedMap;

// ---------------------------------------------------------------------------
// Files in /dev/shm
// ---------------------------------------------------------------------------

/// The limits file of namespace `ns`.
pub fn limits_path(ns: &str) -> String {
    format!("/dev/shm/shmsem.{ns}")
}

/// The hints file of namespace `ns` (anyone may write it).
pub fn hints_path(ns: &str) -> String {
    format!("/dev/shm/shmsem.{ns}.hints")
}

/// The segment file of set `id` in namespace `ns`:
/// `/dev/shm/shmsem.NS.s.INDEX.SEQ`.
pub fn set_path(ns: &str, id: i32) -> String {
    let SetId { index: idx, seq } = SetId::from_raw(id);
    format!("/dev/shm/shmsem.{ns}.s.{idx}.{seq}")
}

/// The index claim of index `idx` in namespace `ns` (a symbolic link to
/// the set file).
pub fn index_path(ns: &str, idx: u32) -> String {
    format!("/dev/shm/shmsem.{ns}.i.{idx}")
}

/// The key claim of `key` in namespace `ns` (a symbolic link to the set
/// file).
pub fn key_path(ns: &str, key: i32) -> String {
    format!("/dev/shm/shmsem.{ns}.k.{:08x}", key as u32)
}

/// The names of the files of namespace `ns` in /dev/shm (the limits and
/// hints files, every set file and claim), sorted.
pub fn ns_files(ns: &str) -> Vec<String> {
    try_ns_files(ns).expect("read /dev/shm")
}

/// [`ns_files`], or why /dev/shm cannot be read.
pub fn try_ns_files(ns: &str) -> std::io::Result<Vec<String>> {
    let reg = format!("shmsem.{ns}");
    let sets = format!("{reg}.");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/dev/shm")?.flatten() {
        if let Some(n) = e.file_name().to_str() {
            if n == reg || n.starts_with(&sets) {
                out.push(n.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The paths of the files of namespace `ns` in /dev/shm, sorted (none if
/// /dev/shm cannot be read).
pub fn ns_paths(ns: &str) -> Vec<String> {
    try_ns_files(ns)
        .unwrap_or_default()
        .into_iter()
        .map(|n| format!("/dev/shm/{n}"))
        .collect()
}

// ---------------------------------------------------------------------------
// A raw mapping of a segment file
// ---------------------------------------------------------------------------

/// A segment file mapped shared, read-write (for writing garbage into it
/// with atomic stores: the other processes access it with atomics too) or
/// read-only.
pub struct RawMap {
    map: SharedMap,
    file: std::fs::File,
}

impl RawMap {
    /// The whole file, read-write.
    pub fn open(path: &str) -> std::io::Result<RawMap> {
        RawMap::open_as(path, true)
    }

    /// The whole file, read-only.
    pub fn open_read_only(path: &str) -> std::io::Result<RawMap> {
        RawMap::open_as(path, false)
    }

    fn open_as(path: &str, writable: bool) -> std::io::Result<RawMap> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)?;
        let len = file.metadata()?.len() as usize;
        if len == 0 {
            return Err(std::io::Error::other("empty file"));
        }
        let map = SharedMap::of_fd(&file, len, writable)?;
        Ok(RawMap { map, file })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn load_u8(&self, off: usize) -> u8 {
        self.map.at::<AtomicU8>(off).load(SeqCst)
    }
    pub fn store_u8(&self, off: usize, v: u8) {
        self.map.at::<AtomicU8>(off).store(v, SeqCst)
    }
    pub fn load_u32(&self, off: usize) -> u32 {
        self.map.at::<AtomicU32>(off).load(SeqCst)
    }
    pub fn store_u32(&self, off: usize, v: u32) {
        self.map.at::<AtomicU32>(off).store(v, SeqCst)
    }
    pub fn load_u64(&self, off: usize) -> u64 {
        self.map.at::<AtomicU64>(off).load(SeqCst)
    }
    pub fn store_u64(&self, off: usize, v: u64) {
        self.map.at::<AtomicU64>(off).store(v, SeqCst)
    }

    /// Changes the file's size (the mapping keeps its length: never write
    /// past the new end afterwards).
    pub fn set_file_len(&self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)
    }

    /// The set's header (a set segment only).
    pub fn header(&self) -> &SetHeader {
        self.map.at(0)
    }

    /// Process-table entry `p` of a set with geometry `geo`.
    pub fn proc_entry(&self, geo: &SetGeometry, p: u32) -> &ProcEntry {
        self.map
            .at(geo.procs_off + p as usize * size_of::<ProcEntry>())
    }

    /// Queue slot `i` of a set with geometry `geo`.
    pub fn queue_slot(&self, geo: &SetGeometry, i: u32) -> &QueueSlot {
        self.map
            .at(geo.queue_off + i as usize * size_of::<QueueSlot>())
    }

    /// The undo adjustment of process-table entry `p` on semaphore `s`.
    pub fn undo_cell(&self, geo: &SetGeometry, p: u32, s: u32) -> &AtomicI16 {
        self.map
            .at(geo.undo_off + p as usize * geo.undo_row() + s as usize * size_of::<i16>())
    }
}

// ---------------------------------------------------------------------------
// What a set's segment says is in use
// ---------------------------------------------------------------------------

/// What one process held at a moment (see [`Usage::held_by`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Holding {
    /// It has a process-table entry.
    pub registered: bool,
    /// It holds the set's global lock.
    pub lock: bool,
    /// It has a queued (sleeping) operation.
    pub queued: bool,
    /// It holds a non-zero SEM_UNDO adjustment.
    pub undo: bool,
}

/// What a set's segment says about the resources in use, read through a
/// separate read-only mapping of its file with the public layout types.
/// Unlike `Namespace::report`, this takes no lock: the chaos killer reads
/// it while its victim is frozen, possibly holding the set's lock.
#[derive(Debug, Default)]
pub struct Usage {
    /// Queue slots whose state is not FREE, as (index, state, proc slot, pid).
    pub busy_slots: Vec<(u32, u32, u32, i32)>,
    /// Process-table entries in state ACTIVE, as (index, pid, undo_count, queued).
    pub active_procs: Vec<(u32, i32, u32, u32)>,
    /// Entries neither FREE nor ACTIVE (CLAIMING or garbage).
    pub odd_procs: Vec<(u32, u32)>,
    /// (entry, semaphore, adjustment) for every non-zero undo cell.
    pub undo_cells: Vec<(u32, usize, i16)>,
    /// The lock word, the sequence counter and the two FIFO heads.
    pub lock: u32,
    pub seq: u32,
    pub alter_head: u32,
    pub const_head: u32,
}

impl Usage {
    /// Reads the segment of set `id` of namespace `ns` with `nsems`
    /// semaphores (the namespace's limits give the table sizes).
    pub fn read(ns: &Namespace, id: i32, nsems: u32) -> Usage {
        let path = set_path(ns.name(), id);
        let lim = ns.limits();
        let geo = SetGeometry::new(nsems, lim.proc_slots, lim.queue_slots);
        let map = RawMap::open_read_only(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        assert_eq!(
            map.len(),
            geo.size,
            "{path}: size differs from its geometry"
        );
        let mut u = Usage::default();
        let hdr = map.header();
        u.lock = hdr.lock.load(Acquire);
        u.seq = hdr.seq.load(Acquire);
        u.alter_head = hdr.alter_head.load(Acquire);
        u.const_head = hdr.const_head.load(Acquire);
        for i in 0..geo.queue_slots {
            let q = map.queue_slot(&geo, i);
            let st = q.status.load(Acquire);
            let state = SlotStatus::from_raw(st).state();
            if state != SLOT_FREE {
                u.busy_slots
                    .push((i, state, q.proc_slot.load(Acquire), q.pid.load(Acquire)));
            }
        }
        for p in 0..geo.proc_slots {
            let e = map.proc_entry(&geo, p);
            let state = ProcState::from_raw(e.state_gen.load(Acquire)).state();
            if state == PROC_ACTIVE {
                u.active_procs.push((
                    p,
                    e.pid.load(Acquire),
                    e.undo_count.load(Acquire),
                    e.queued.load(Acquire),
                ));
            } else if state != PROC_FREE {
                u.odd_procs.push((p, state));
            }
            for s in 0..nsems {
                let adj = map.undo_cell(&geo, p, s).load(Acquire);
                if adj != 0 {
                    u.undo_cells.push((p, s as usize, adj));
                }
            }
        }
        u
    }

    /// The process-table index the global lock names as its owner, if held.
    pub fn lock_owner(&self) -> Option<u32> {
        LockWord::from_raw(self.lock).owner_slot()
    }

    /// What process `pid` held when this snapshot was taken (it must be
    /// stopped for the answer to be exact).
    pub fn held_by(&self, pid: i32) -> Holding {
        let entry = self
            .active_procs
            .iter()
            .find(|(_, p, _, _)| *p == pid)
            .map(|e| e.0);
        let Some(entry) = entry else {
            return Holding::default();
        };
        Holding {
            registered: true,
            lock: self.lock_owner() == Some(entry),
            queued: self
                .busy_slots
                .iter()
                .any(|(_, state, proc, _)| *state == SLOT_QUEUED && *proc == entry),
            undo: self.undo_cells.iter().any(|(p, _, _)| *p == entry),
        }
    }

    /// Problems that mean a leak once every process but `me` is dead and
    /// swept: busy queue slots, entries of other processes that still hold
    /// something, adjustments, a held lock, an open sequence counter,
    /// non-empty FIFOs. (Entries of dead processes that hold nothing stay
    /// ACTIVE by design until the table is full; they are not leaks.)
    pub fn leaks(&self, me: i32) -> Vec<String> {
        let mut out = Vec::new();
        if !self.busy_slots.is_empty() {
            out.push(format!(
                "{} queue slot(s) not FREE (index, state, proc, pid): {:?}",
                self.busy_slots.len(),
                &self.busy_slots[..self.busy_slots.len().min(8)]
            ));
        }
        let holding: Vec<_> = self
            .active_procs
            .iter()
            .filter(|(_, pid, undo, queued)| *pid != me && (*undo != 0 || *queued != 0))
            .collect();
        if !holding.is_empty() {
            out.push(format!(
                "{} process entr(ies) of other processes still holding undo or queue slots \
                 (index, pid, undo_count, queued): {:?}",
                holding.len(),
                &holding[..holding.len().min(8)]
            ));
        }
        if !self.odd_procs.is_empty() {
            out.push(format!(
                "process entries in an odd state: {:?}",
                self.odd_procs
            ));
        }
        if !self.undo_cells.is_empty() {
            out.push(format!(
                "{} non-zero undo cell(s) (entry, sem, adj): {:?}",
                self.undo_cells.len(),
                &self.undo_cells[..self.undo_cells.len().min(8)]
            ));
        }
        if !LockWord::from_raw(self.lock).is_free() {
            out.push(format!("the global lock is held: {:#x}", self.lock));
        }
        if SeqCount::from_raw(self.seq).is_writing() {
            out.push(format!("the sequence counter is odd: {}", self.seq));
        }
        if self.alter_head != NIL || self.const_head != NIL {
            out.push(format!(
                "a FIFO is not empty: alter head {}, const head {}",
                self.alter_head, self.const_head
            ));
        }
        out
    }
}
