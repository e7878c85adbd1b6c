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
//! * [`tools`]: the report and sweep of one set, for diagnostic tools.

mod cache;
mod keys;
mod perm;
mod reclaim;
mod semctl;
mod semop;
mod tools;

pub use keys::GcReport;

use crate::sync::AtomicPtr;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::shm::{self, Mapping, Opened};
use crate::sync::{self, Ordering};
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
        Opened::Mapped(map) => Ok(Some(map)),
        Opened::Missing => Ok(None),
        // Created 0666: only a stranger's chmod keeps us out.
        Opened::Denied => Err(Error::PermissionDenied),
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
    pub fn default_ns() -> Result<Arc<Namespace>> {
        if let Some(ns) = DEFAULT.get() {
            return Ok(ns.clone());
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
            return Ok(ns.clone());
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
            presence: crate::liveness::Presence::new(&registry_name(name), reg.file_id()),
            reg,
            limits,
            reg_lock: Mutex::new(()),
            cache,
            sets: reclaim::Domain::new(&reclaim::REGISTRY),
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

    /// The registry's entries, one per set index.
    fn entries(&self) -> &[RegistryEntry] {
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

    /// The registry's header: limits and usage counts.
    fn header(&self) -> &RegistryHeader {
        reg_header(&self.reg)
    }

    /// Removes every set of the namespace (their sleepers get EIDRM) and the
    /// namespace itself, leaving nothing in /dev/shm. Meant for tests and
    /// tear-down; other processes' later calls fail or recreate it.
    pub fn destroy(&self) -> Result<()> {
        for idx in 0..self.limits.semmni {
            if live_seq(&self.entries()[idx as usize]).is_none() {
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
fn create_registry(rname: &str, limits: Limits) -> Result<Mapping> {
    let size = registry_size(limits.semmni);
    let map = Mapping::create_exclusive(rname, size)?;
    let h = reg_header(&map);
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
