//! Namespaces: the key space, ids and limits of one `SHMSEM_NAMESPACE`, and
//! the four calls on them.
//!
//! A namespace `NS` is the shared-memory object `/shmsem.NS` (the registry:
//! limits and one entry per set index) plus one object per set,
//! `/shmsem.NS.INDEX.SEQ`. Creating and removing sets happens under the
//! registry's lock, an open-file-description lock on byte 0 of the registry
//! (the kernel frees it if its holder dies), so `IPC_CREAT|IPC_EXCL` races
//! have exactly one winner.
//!
//! The registry is as large as SEMMNI entries need, but sparse: only the
//! pages of the entries that may be used are reserved (see
//! [`Namespace::reserve_entries`]), so an idle namespace costs a few pages
//! of /dev/shm, not SEMMNI × 64 bytes. A namespace is finished by
//! [`Namespace::remove_namespace`] (`shmsem ns rm`), which unlinks the
//! registry under its lock; a process that still has it mapped then gets
//! EIDRM from every call that needs the lock (see [`keys`]).
//!
//! This file holds the namespace itself (open, attach, destroy, the
//! registry's header and entries); its rooms:
//!
//! * [`cache`]: the sets mapped into this process ([`cache::SetHandle`]),
//!   found by id;
//! * [`reclaim`]: when a removed set's handle may be unmapped (no call of
//!   this process uses it any more);
//! * [`perm`]: credentials and the permission check;
//! * [`keys`]: keys and ids: semget, creating and removing sets, the
//!   registry's lock and its copy of each set, gc;
//! * [`semop`]: semop and semtimedop;
//! * [`semctl`]: semctl, split as the kernel splits it (main, setval, stat,
//!   info, down);
//! * [`tools`]: the report and sweep of one set, the survey of the
//!   namespaces in /dev/shm and the removal of one, for diagnostic tools.

mod cache;
mod keys;
mod perm;
mod reclaim;
mod semctl;
mod semop;
mod tools;

pub use keys::GcReport;
pub use tools::{NamespaceInfo, NamespaceRemoval};

use crate::sync::AtomicPtr;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::shm::{self, Mapping, Opened};
use crate::sync::{self, AtomicBool, Ordering};
use crate::{Error, Result};
use cache::SetHandle;
use shm_layout::*;

/// Name of the namespace used when `SHMSEM_NAMESPACE` is not set.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Per-namespace limits, fixed when the namespace is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Max semaphores per set (SEMMSL), at most 65535.
    pub semmsl: u32,
    /// Max semaphores in the namespace (SEMMNS).
    pub semmns: u32,
    /// Max ops per call (SEMOPM), at most 65535.
    pub semopm: u32,
    /// Max sets (SEMMNI), at most 32768.
    pub semmni: u32,
    /// Pending-queue slots per set: how many sleepers (a call with more
    /// than 9 ops takes one slot per 9) can wait at once.
    pub queue_slots: u32,
    /// Process-table entries per set: how many processes can hold undo
    /// adjustments, sleep, or take the set's lock at once.
    pub proc_slots: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            semmsl: SEMMSL_DEFAULT,
            semmns: SEMMNS_DEFAULT,
            semopm: SEMOPM_DEFAULT,
            semmni: SEMMNI_DEFAULT,
            queue_slots: QUEUE_SLOTS_DEFAULT,
            proc_slots: PROC_SLOTS_DEFAULT,
        }
    }
}

impl Limits {
    fn valid(&self) -> bool {
        (1..=SEMMSL_MAX).contains(&self.semmsl)
            && self.semmns >= 1
            && (1..=SEMOPM_MAX).contains(&self.semopm)
            && (1..=SEMMNI_MAX).contains(&self.semmni)
            && (1..=QUEUE_SLOTS_MAX).contains(&self.queue_slots)
            && (1..PROC_SLOTS_MAX).contains(&self.proc_slots)
    }
}

/// A namespace: an isolated key space with its own ids and limits.
pub struct Namespace {
    name: String,
    reg: Mapping,
    limits: Limits,
    /// Serialises this process's threads on the registry's lock; the OFD
    /// lock serialises processes (see [`keys`]).
    reg_lock: Mutex<()>,
    /// This process's one descriptor of the namespace, and its presence
    /// lock (see [`crate::liveness::Presence`]).
    presence: crate::liveness::Presence,
    /// Mapped sets by index, read by every call through a
    /// [`reclaim::Pin`]; written only by `sets`. See [`cache`].
    cache: Box<[AtomicPtr<SetHandle>]>,
    /// The handles `cache` holds, and those it held that a call may still
    /// use: freed once no call of this process does (see [`reclaim`]).
    sets: reclaim::Domain<SetHandle>,
    /// This process found the namespace removed (its registry unlinked):
    /// the object is dead, and the next `open` of the name attaches afresh.
    removed: AtomicBool,
}

// SAFETY: the raw pointers in `cache` are boxes owned by `sets`, freed only
// when no call can use them (see `reclaim`).
unsafe impl Send for Namespace {}
// SAFETY: as above; every shared field is atomic or behind a Mutex.
unsafe impl Sync for Namespace {}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // The handles go before the fields (the registry's mapping, which
        // their otime mirrors point into); we are the last user.
        self.sets.clear();
    }
}

static OPEN: OnceLock<Mutex<HashMap<String, Arc<Namespace>>>> = OnceLock::new();
static DEFAULT: OnceLock<Arc<Namespace>> = OnceLock::new();

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn registry_name(ns: &str) -> String {
    format!("/shmsem.{ns}")
}

/// The segment of set `idx` in its `seq`-th use.
fn set_name(ns: &str, idx: u32, seq: u32) -> String {
    format!("/shmsem.{ns}.{idx}.{seq}")
}

/// The sequence number of registry entry `e` if it is LIVE (a set exists at
/// its index).
fn live_seq(e: &RegistryEntry) -> Option<u32> {
    // SYNC: Acquire pairs with the Release store that makes an entry LIVE
    // (`publish_entry`, in `Namespace::create`), after its fields.
    let ss = EntryState::from_raw(e.state_seq.load(Ordering::Acquire));
    ss.is_live().then_some(ss.seq())
}

/// The registry's mapping, `None` if there is none.
fn open_registry(rname: &str) -> Result<Option<Mapping>> {
    match Mapping::open(rname)? {
        Opened::Mapped(map) if map.writable() => Ok(Some(map)),
        Opened::Missing => Ok(None),
        // Created 0666: only a stranger's chmod keeps us out (or lets us
        // read only: the registry is written by every user).
        Opened::Mapped(_) | Opened::Denied => Err(Error::PermissionDenied),
    }
}

impl Namespace {
    /// The names of the namespaces that exist on this machine (their
    /// registries in /dev/shm), sorted.
    pub fn names() -> Vec<String> {
        let mut v: Vec<String> = shm::list("shmsem.")
            .into_iter()
            .filter_map(|n| n.strip_prefix("/shmsem.").map(str::to_string))
            .filter(|n| valid_name(n))
            .collect();
        v.sort();
        v
    }

    /// Opens an existing namespace `name`, never creating one: `NotFound`
    /// (ENOENT) if there is none.
    pub fn open_existing(name: &str) -> Result<Arc<Namespace>> {
        if !valid_name(name) {
            return Err(Error::Invalid);
        }
        Namespace::open_once(name, None)
    }

    /// Opens namespace `name` (1–64 of `[A-Za-z0-9_-]`), creating it with
    /// default limits if it does not exist.
    pub fn open(name: &str) -> Result<Arc<Namespace>> {
        Namespace::open_with_limits(name, Limits::default())
    }

    /// Opens namespace `name`, creating it with `limits` if it does not
    /// exist (an existing namespace keeps its own limits).
    pub fn open_with_limits(name: &str, limits: Limits) -> Result<Arc<Namespace>> {
        if !valid_name(name) || !limits.valid() {
            return Err(Error::Invalid);
        }
        Namespace::open_once(name, Some(limits))
    }

    /// The process's default namespace: `SHMSEM_NAMESPACE`, or
    /// [`DEFAULT_NAMESPACE`].
    ///
    /// If the namespace was removed (`shmsem ns rm`) since this process
    /// opened it, and the process noticed (a call failed with EIDRM), the
    /// next call attaches to the namespace of that name as it is now.
    pub fn default_ns() -> Result<Arc<Namespace>> {
        if let Some(ns) = DEFAULT.get() {
            // SYNC: Relaxed: the flag only chooses which object to use;
            // `open` synchronises through its mutex.
            if !ns.removed.load(Ordering::Relaxed) {
                return Ok(ns.clone());
            }
            return Namespace::open(&ns.name);
        }
        let name =
            std::env::var("SHMSEM_NAMESPACE").unwrap_or_else(|_| DEFAULT_NAMESPACE.to_string());
        let ns = Namespace::open(&name)?;
        Ok(DEFAULT.get_or_init(|| ns).clone())
    }

    /// The process's one `Namespace` for `name`, attached on first use (see
    /// [`Namespace::attach`] for `limits`).
    fn open_once(name: &str, limits: Option<Limits>) -> Result<Arc<Namespace>> {
        let mut open = OPEN
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(ns) = open.get(name) {
            if ns.still_named() {
                return Ok(ns.clone());
            }
            // Removed (`shmsem ns rm`) since this process attached: the
            // old object is dead, the name is attached afresh.
            // SYNC: Relaxed, as in `mark_removed`.
            ns.removed.store(true, Ordering::Relaxed);
            open.remove(name);
        }
        let ns = Arc::new(Namespace::attach(name, limits)?);
        open.insert(name.to_string(), ns.clone());
        Ok(ns)
    }

    /// Maps namespace `name`'s registry, creating it with `limits` if it
    /// does not exist and `limits` is given (else `NotFound`).
    fn attach(name: &str, limits: Option<Limits>) -> Result<Namespace> {
        let rname = registry_name(name);
        for _attempt in 0..3 {
            let Some(limits) = limits else {
                let map = open_registry(&rname)?.ok_or(Error::NotFound)?;
                let h = reg_header_checked(&map)?;
                // SYNC: Acquire pairs with the Release store of `version`
                // in `create_registry`.
                if h.version.load(Ordering::Acquire) == 0 {
                    // Being created (or its creator died): wait as below.
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    continue;
                }
                return Namespace::from_map(name, map);
            };
            match create_registry(&rname, limits) {
                Ok(map) => return Namespace::from_map(name, map),
                Err(Error::Exists) => {}
                Err(e) => return Err(e),
            }
            let Some(map) = open_registry(&rname)? else {
                continue;
            };
            // Wait (bounded) for the creator to publish the version.
            let h = reg_header_checked(&map)?;
            let until = sync::monotonic_ns() + 2_000_000_000;
            // SYNC: Acquire pairs with the Release store of `version` in
            // `create_registry`.
            while h.version.load(Ordering::Acquire) == 0 && sync::monotonic_ns() < until {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            // SYNC: as above.
            if h.version.load(Ordering::Acquire) == 0 {
                // The creator died half-way: nobody can have used it.
                shm::unlink(&rname)?;
                continue;
            }
            return Namespace::from_map(name, map);
        }
        Err(Error::Corrupt)
    }

    fn from_map(name: &str, reg: Mapping) -> Result<Namespace> {
        let h = reg_header_checked(&reg)?;
        // SYNC: Acquire pairs with the Release store of `version` in
        // `create_registry`, after the limits.
        if h.magic.load(Ordering::Relaxed) != REGISTRY_MAGIC
            || h.version.load(Ordering::Acquire) != LAYOUT_VERSION
        {
            return Err(Error::Corrupt);
        }
        let limits = Limits {
            semmsl: h.semmsl.load(Ordering::Relaxed),
            semmns: h.semmns.load(Ordering::Relaxed),
            semopm: h.semopm.load(Ordering::Relaxed),
            semmni: h.semmni.load(Ordering::Relaxed),
            queue_slots: h.queue_slots.load(Ordering::Relaxed),
            proc_slots: h.proc_slots.load(Ordering::Relaxed),
        };
        if !limits.valid()
            || reg.len() != registry_size(limits.semmni)
            || h.size.load(Ordering::Relaxed) != reg.len() as u64
        {
            return Err(Error::Corrupt);
        }
        let cache = (0..limits.semmni)
            .map(|_| AtomicPtr::new(core::ptr::null_mut()))
            .collect();
        Ok(Namespace {
            name: name.to_string(),
            presence: crate::liveness::Presence::new(name, &registry_name(name), reg.file_id()),
            reg,
            limits,
            reg_lock: Mutex::new(()),
            cache,
            sets: reclaim::Domain::new(&reclaim::REGISTRY),
            removed: AtomicBool::new(false),
        })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The registry's entries that may be in use: those whose pages are
    /// reserved (`RegistryHeader::reserved`). Every scan and every lookup
    /// of an index that came from outside goes through this slice, so that
    /// nobody touches the sparse rest of the file: a read fault there would
    /// allocate a page (tmpfs allocates on any fault), and on a full
    /// /dev/shm be a SIGBUS.
    fn entries(&self) -> &[RegistryEntry] {
        // SYNC: Acquire pairs with the Release store of `reserved` in
        // `reserve_entries`, made after the pages were reserved.
        let n = self.header().reserved.load(Ordering::Acquire);
        &self.slots()[..n.min(self.limits.semmni) as usize]
    }

    /// Every entry slot of the registry (SEMMNI), reserved or not. Only for
    /// an index known to be reserved: a mapped set's, found through
    /// [`Namespace::entries`] (reserved pages are never given back while
    /// the registry lives, whatever `reserved` says later).
    fn slots(&self) -> &[RegistryEntry] {
        // SAFETY: from_map checked that the mapping holds semmni entries
        // after REGISTRY_ENTRIES_OFF; entries are atomics, 4-aligned.
        unsafe {
            crate::mapped::slice_at(
                self.reg.base(),
                REGISTRY_ENTRIES_OFF,
                self.limits.semmni as usize,
            )
        }
    }

    /// Makes entries `[0, want)` usable (the caller holds the registry
    /// lock, `l`): reserves the pages that hold them, then publishes the
    /// new bound. A full /dev/shm is therefore ENOSPC here, from the semget
    /// that needs the entries, never a SIGBUS at a later write; and since
    /// only reserved entries are ever read or written, nothing else of the
    /// registry takes space.
    ///
    /// Reserved pages are never given back while the namespace lives:
    /// other processes read entries without the lock (lookups by id,
    /// IPC_INFO), and a page given back under such a reader would be
    /// allocated again by its read, or be its SIGBUS on a full /dev/shm. So
    /// a namespace costs, at rest, the pages of the most indices it ever
    /// needed at once: as the kernel, new sets take indices below
    /// `max(in use × 3/2, 64)` (see `free_index`), so 8 KiB for a namespace
    /// that never held more than 42 sets at a time, the full SEMMNI × 64
    /// bytes only for one that held about SEMMNI × 2/3. Removing the
    /// namespace gives everything back.
    fn reserve_entries(&self, l: &keys::RegLock<'_>, want: u32) -> Result<()> {
        let want = want.min(self.limits.semmni);
        if self.entries().len() >= want as usize {
            return Ok(());
        }
        let bytes = registry_bytes_for(want).min(self.reg.len());
        l.with_fd(|fd| {
            rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), 0, bytes as u64)
                .map_err(Error::from)
        })?;
        let n = registry_entries_in(bytes).min(self.limits.semmni);
        let h = self.header();
        // A forged value above ours stays (the pages under it may be
        // sparse: what a forger can do to the registry anyway).
        // SYNC: Release publishes the reservation (made by fallocate above,
        // in program order before this store) to the Acquire load in
        // `entries`; fetch_max, as the pages below any published value are
        // reserved.
        h.reserved.fetch_max(n, Ordering::Release);
        Ok(())
    }

    /// Whether the registry this process mapped still has its name (one
    /// stat; `open` of a name already open asks it, so that opening a
    /// removed namespace's name gives the namespace there is now).
    fn still_named(&self) -> bool {
        // SYNC: Relaxed, as in `mark_removed`.
        if self.removed.load(Ordering::Relaxed) {
            return false;
        }
        match shm::FileId::of_path(&format!("/dev/shm{}", registry_name(&self.name))) {
            Ok(id) => id == self.reg.file_id(),
            // Not gone, only unreadable (EACCES on /dev/shm, ...): keep it.
            Err(e) => e != rustix::io::Errno::NOENT,
        }
    }

    /// Marks this object dead: its namespace was removed. The name is
    /// dropped from the process's table (only if it still maps to this
    /// object), so the next `Namespace::open` attaches afresh.
    fn mark_removed(&self) {
        // SYNC: Relaxed, as its load in `default_ns`.
        self.removed.store(true, Ordering::Relaxed);
        if let Some(m) = OPEN.get() {
            let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
            if m.get(&self.name)
                .is_some_and(|ns| std::ptr::eq(Arc::as_ptr(ns), self))
            {
                m.remove(&self.name);
            }
        }
    }

    /// The registry's header: limits and usage counts.
    fn header(&self) -> &RegistryHeader {
        reg_header(&self.reg)
    }

    /// Removes every set of the namespace (their sleepers get EIDRM) and the
    /// namespace itself, leaving nothing in /dev/shm. Meant for tests and
    /// tear-down; other processes' later calls fail or recreate it.
    pub fn destroy(&self) -> Result<()> {
        for idx in 0..self.entries().len() as u32 {
            if self
                .entries()
                .get(idx as usize)
                .and_then(live_seq)
                .is_none()
            {
                continue;
            }
            // A set this process cannot map stays; its name goes below.
            if let Ok(cache::Found::Mapped(h)) = self.lookup_slow(reclaim::pin(), idx, None) {
                let removed = self.remove(&h).is_ok();
                h.end();
                if removed {
                    self.forget_removed(idx);
                }
            }
        }
        for name in shm::list(&format!("shmsem.{}.", self.name)) {
            shm::unlink(&name)?;
        }
        shm::unlink(&registry_name(&self.name))?;
        if let Some(m) = OPEN.get() {
            m.lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.name);
        }
        Ok(())
    }
}

/// Creates registry `rname` exclusively for `limits` and publishes it
/// (`Exists` if another process was first).
///
/// The file has its full size (every process maps all SEMMNI entries) but
/// only the pages of the header and the first index cycle (64 entries)
/// stay reserved; the rest is a hole until `reserve_entries` needs it.
/// (`create_exclusive` reserves the whole file, which is given back here
/// before anyone can use it: the registry is unpublished, version 0.)
fn create_registry(rname: &str, limits: Limits) -> Result<Mapping> {
    let size = registry_size(limits.semmni);
    let map = Mapping::create_exclusive(rname, size)?;
    let keep = registry_bytes_for(IPC_MIN_CYCLE.min(limits.semmni)).min(size);
    if keep < size {
        // The mapping keeps no descriptor: one of the name, checked to be
        // the file mapped, closed (close-on-exec meanwhile) at once.
        let fd = shm::open_for_locks(rname)?;
        if shm::FileId::of(&fd)? != map.file_id() {
            // Not ours any more (unlinked and made again meanwhile): leave
            // it alone.
            return Err(Error::Corrupt);
        }
        let punched = rustix::fs::fallocate(
            &fd,
            rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
            keep as u64,
            (size - keep) as u64,
        );
        if let Err(e) = punched {
            let _ = shm::unlink(rname);
            return Err(e.into());
        }
    }
    let h = reg_header(&map);
    h.reserved.store(
        registry_entries_in(keep).min(limits.semmni),
        Ordering::Relaxed,
    );
    h.magic.store(REGISTRY_MAGIC, Ordering::Relaxed);
    h.semmsl.store(limits.semmsl, Ordering::Relaxed);
    h.semmns.store(limits.semmns, Ordering::Relaxed);
    h.semopm.store(limits.semopm, Ordering::Relaxed);
    h.semmni.store(limits.semmni, Ordering::Relaxed);
    h.queue_slots.store(limits.queue_slots, Ordering::Relaxed);
    h.proc_slots.store(limits.proc_slots, Ordering::Relaxed);
    h.size.store(size as u64, Ordering::Relaxed);
    // SYNC: Release publishes the fields above to the Acquire loads of
    // `version` in `Namespace::attach` and `Namespace::from_map`.
    h.version.store(LAYOUT_VERSION, Ordering::Release);
    map.set_mode(rname, 0o666)?;
    Ok(map)
}

fn reg_header(map: &Mapping) -> &RegistryHeader {
    // SAFETY: every registry mapping is at least one page (registry_size),
    // page-aligned, and accessed only through atomics.
    unsafe { crate::mapped::at(map.base(), 0) }
}

fn reg_header_checked(map: &Mapping) -> Result<&RegistryHeader> {
    if map.len() < REGISTRY_ENTRIES_OFF {
        return Err(Error::Corrupt);
    }
    Ok(reg_header(map))
}
