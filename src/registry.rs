//! Namespaces: the key space, ids, limits, and the process-local cache of
//! mapped sets; and the four calls, dispatched onto the engine.
//!
//! A namespace `NS` is the shared-memory object `/shmsem.NS` (the registry:
//! limits and one entry per set index) plus one object per set,
//! `/shmsem.NS.INDEX.SEQ`. Creating and removing sets happens under the
//! registry's lock, an open-file-description lock on byte 0 of the registry
//! (the kernel frees it if its holder dies), so `IPC_CREAT|IPC_EXCL` races
//! have exactly one winner.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicPtr;
use std::sync::{Arc, Mutex, OnceLock};

use crate::set::{Host, Me, SetReport, SetView, Sweep};
use crate::shm::{self, Mapping};
use crate::sync::{self, AtomicI32, AtomicU64, Ordering};
use crate::sysv::{IpcPerm, Sembuf, SemctlArg, SemidDs, Seminfo, Timespec};
use crate::{liveness, Error, Result};
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

/// This process's registration in one set: its process-table entry and the
/// descriptor whose lock on the entry's byte says "alive".
struct Registration {
    me: Me,
    fd: Option<OwnedFd>,
}

/// A set mapped into this process.
struct SetHandle {
    /// Index and sequence number, from the registry (never from the
    /// segment, which anyone with write access may scribble on).
    idx: u32,
    seq: u32,
    name: String,
    map: Mapping,
    view: SetView<'static>,
    /// pid that `me` belongs to (0: none); checked before `me` is used.
    reg_pid: AtomicI32,
    /// `Me` packed: slot | gen << 32.
    reg_me: AtomicU64,
    /// The registration's descriptor (-1: none), for liveness checks.
    reg_fd: AtomicI32,
    reg: Mutex<Option<Registration>>,
    /// This process's access bits to the set, cached with the set's
    /// `perm_seq` when they were read and the pid that read them:
    /// `perm_seq << 32 | pid << 9 | GRANTED_VALID | bits`. An owner or
    /// mode change moves `perm_seq`, and a forked child (whose credentials
    /// may change) has another pid, so a stale entry is never used.
    /// Credentials are cached per process anyway (README difference 2).
    granted: AtomicU64,
}

impl SetHandle {
    /// The set's id.
    fn id(&self) -> i32 {
        ((self.seq << IPCMNI_SHIFT) | self.idx) as i32
    }
}

/// The real host: liveness from OFD locks, confirmed by pid + start time.
/// The locks are tested through this process's own open file description
/// (its registration's): one shared with another process (an inherited
/// descriptor) would not see that process's locks as conflicting.
struct OsHost<'a> {
    fd: std::os::fd::BorrowedFd<'a>,
}

impl Host for OsHost<'_> {
    fn is_dead(&self, view: &SetView<'_>, slot: u32) -> bool {
        let Some(p) = view.proc(slot) else {
            return true;
        };
        // The entry's lock byte is held as long as a descriptor of the
        // process's registration is open: free means dead. Held means alive,
        // unless a child forked without ever using the set still has a
        // copy: then the pid tells, for one system call (reading
        // /proc/PID/stat for the start time costs some microseconds, on
        // every call that blocks behind a holder of undo). A dead process
        // that is still a zombie, or whose pid was reused, while such a
        // child lives is reaped only once the child's copy is closed
        // (README difference 4).
        match shm::ofd_is_locked(self.fd, PROC_LOCK_BASE + slot as i64) {
            Ok(false) => true,
            Ok(true) => !liveness::pid_exists(p.pid.load(Ordering::Relaxed)),
            Err(_) => false, // cannot tell: never reap a possibly live process
        }
    }
}

/// What the operation ([`crate::set::op::semtimedop`]) needs of this
/// layer, for one call on `h`.
struct OpCaller<'n> {
    ns: &'n Namespace,
    h: &'n SetHandle,
}

impl<'n> crate::set::op::Caller for OpCaller<'n> {
    type Host = OsHost<'n>;
    #[inline]
    fn me(&self) -> Result<Me> {
        self.ns.me(self.h)
    }
    #[inline]
    fn host(&self) -> OsHost<'n> {
        Namespace::host(self.h)
    }
    #[inline]
    fn may(&self, alter: bool) -> Result<bool> {
        Ok(allows(
            self.ns.granted(self.h)?,
            if alter { 0o222 } else { 0o444 },
        ))
    }
    #[inline]
    fn pid(&self) -> i32 {
        liveness::pid()
    }
}

/// What [`Namespace::gc`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Live sets looked at.
    pub sets: usize,
    /// Registry entries of sets that were gone (a remover died half-way).
    pub stale_entries: usize,
    /// Segment files no registry entry named, unlinked.
    pub orphan_segments: usize,
    /// Dead processes reaped from sets' process tables.
    pub dead_processes: usize,
}

/// A namespace: an isolated key space with its own ids and limits.
pub struct Namespace {
    name: String,
    reg: Mapping,
    limits: Limits,
    /// Serialises this process's threads; the OFD lock serialises processes.
    reg_lock: Mutex<Option<(i32, OwnedFd)>>,
    /// Mapped sets by index (never freed while the namespace lives: other
    /// threads may hold a pointer; replaced ones move to `retired`).
    cache: Box<[AtomicPtr<SetHandle>]>,
    retired: Mutex<Vec<*mut SetHandle>>,
}

// SAFETY: the raw pointers in `cache`/`retired` are owned boxes that are
// only freed in Drop, when no other reference to the namespace exists.
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
        for p in self.cache.iter() {
            let p = p.load(Ordering::Relaxed);
            if !p.is_null() {
                // SAFETY: installed by Box::into_raw; we are the last user.
                drop(unsafe { Box::from_raw(p) });
            }
        }
        for &p in self
            .retired
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            // SAFETY: as above.
            drop(unsafe { Box::from_raw(p) });
        }
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

fn set_name(ns: &str, idx: u32, seq: u32) -> String {
    format!("/shmsem.{ns}.{idx}.{seq}")
}

/// The file mode of a set's segment: a class that the set's mode grants
/// anything gets read and write on the segment (it needs both to map and
/// operate); a class granted nothing cannot open the segment at all, except
/// the file's owner, the set's creator, who may always IPC_SET/IPC_RMID.
fn file_mode(mode: u32) -> u32 {
    let mut m = 0o600;
    for shift in [6, 3, 0] {
        if (mode >> shift) & 0o6 != 0 {
            m |= 0o6 << shift;
        }
    }
    m
}

/// The process's credentials, read once per process (and again in a forked
/// child: the pid changes). Lock-free: the permission check runs on every
/// call, including the fast path.
static CRED_PID: AtomicI32 = AtomicI32::new(0);
static CRED_EUID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
static CRED_EGID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
/// Supplementary groups, only needed when neither owner nor primary group matches.
static GROUPS: Mutex<(i32, Vec<u32>)> = Mutex::new((0, Vec::new()));

/// (euid, egid) of this process.
fn creds() -> (u32, u32) {
    let pid = liveness::pid();
    // SYNC: Acquire pairs with the Release store of CRED_PID below, after
    // the uid and gid stores.
    if CRED_PID.load(Ordering::Acquire) != pid {
        CRED_EUID.store(rustix::process::geteuid().as_raw(), Ordering::Relaxed);
        CRED_EGID.store(rustix::process::getegid().as_raw(), Ordering::Relaxed);
        CRED_PID.store(pid, Ordering::Release);
    }
    (
        CRED_EUID.load(Ordering::Relaxed),
        CRED_EGID.load(Ordering::Relaxed),
    )
}

fn in_groups(a: u32, b: u32) -> bool {
    let mut g = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    let pid = liveness::pid();
    if g.0 != pid {
        *g = (
            pid,
            nix::unistd::getgroups()
                .map(|v| v.into_iter().map(|g| g.as_raw()).collect())
                .unwrap_or_default(),
        );
    }
    g.1.contains(&a) || g.1.contains(&b)
}

/// A set's ownership and permission bits.
#[derive(Clone, Copy)]
struct Perm {
    uid: u32,
    gid: u32,
    cuid: u32,
    cgid: u32,
    mode: u32,
}

impl Perm {
    /// The fields as they are (consistent under the set's lock).
    fn read(v: &SetView<'_>) -> Perm {
        let h = v.hdr;
        Perm {
            uid: h.uid.load(Ordering::Relaxed),
            gid: h.gid.load(Ordering::Relaxed),
            cuid: h.cuid.load(Ordering::Relaxed),
            cgid: h.cgid.load(Ordering::Relaxed),
            mode: h.mode.load(Ordering::Relaxed),
        }
    }

    /// The access bits (rwx as 4|2|1) the caller's class is granted, as
    /// the kernel's ipcperms (root: all).
    fn granted(&self) -> u32 {
        let (euid, egid) = creds();
        if euid == 0 {
            return 7;
        }
        (if euid == self.uid || euid == self.cuid {
            self.mode >> 6
        } else if egid == self.gid || egid == self.cgid || in_groups(self.gid, self.cgid) {
            self.mode >> 3
        } else {
            self.mode
        }) & 7
    }

    /// Checks `flag` (9-bit requested access) as the kernel's ipcperms.
    fn permits(&self, flag: u32) -> bool {
        allows(self.granted(), flag)
    }

    /// May the caller IPC_SET or IPC_RMID?
    fn owner_or_creator(&self) -> bool {
        let (euid, _) = creds();
        euid == 0 || euid == self.uid || euid == self.cuid
    }
}

/// Whether `granted` access bits cover `flag` (a 9-bit requested mode).
fn allows(granted: u32, flag: u32) -> bool {
    let requested = ((flag >> 6) | (flag >> 3) | flag) & 7;
    requested & !granted == 0
}

/// [`SetHandle::granted`]: the entry is valid.
const GRANTED_VALID: u64 = 1 << 8;
/// [`SetHandle::granted`]: the bits of the pid (above GRANTED_VALID).
const GRANTED_PID_MASK: u64 = (1 << 23) - 1;

/// What the registry knows of a set, for a process that may not open its
/// segment (README difference 8): enough for semget, SEM_STAT_ANY and the
/// errors the kernel gives such a process.
struct Meta {
    id: i32,
    key: i32,
    nsems: u32,
    seq: u32,
    perm: Perm,
    otime: i64,
    ctime: i64,
}

/// Registry lock guard: releases the OFD lock, then the process mutex.
struct RegLock<'a> {
    _g: std::sync::MutexGuard<'a, Option<(i32, OwnedFd)>>,
}

impl Drop for RegLock<'_> {
    fn drop(&mut self) {
        if let Some((_, fd)) = self._g.as_ref() {
            shm::ofd_unlock(fd, 0);
        }
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
        let mut open = OPEN
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(ns) = open.get(name) {
            return Ok(ns.clone());
        }
        let ns = Arc::new(Namespace::attach(name, None)?);
        open.insert(name.to_string(), ns.clone());
        Ok(ns)
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
        let mut open = OPEN
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(ns) = open.get(name) {
            return Ok(ns.clone());
        }
        let ns = Arc::new(Namespace::attach(name, Some(limits))?);
        open.insert(name.to_string(), ns.clone());
        Ok(ns)
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

    /// Maps namespace `name`'s registry, creating it with `limits` if it
    /// does not exist and `limits` is given (else `NotFound`).
    fn attach(name: &str, limits: Option<Limits>) -> Result<Namespace> {
        let rname = registry_name(name);
        for _attempt in 0..3 {
            let Some(limits) = limits else {
                let map = Mapping::open(&rname)?.ok_or(Error::NotFound)?;
                let h = reg_header_checked(&map)?;
                if h.version.load(Ordering::Acquire) == 0 {
                    // Being created (or its creator died): wait as below.
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    continue;
                }
                return Namespace::from_map(name, map);
            };
            let size = registry_size(limits.semmni);
            match Mapping::create_exclusive(&rname, size) {
                Ok(map) => {
                    let h = reg_header(&map);
                    h.magic.store(REGISTRY_MAGIC, Ordering::Relaxed);
                    h.semmsl.store(limits.semmsl, Ordering::Relaxed);
                    h.semmns.store(limits.semmns, Ordering::Relaxed);
                    h.semopm.store(limits.semopm, Ordering::Relaxed);
                    h.semmni.store(limits.semmni, Ordering::Relaxed);
                    h.queue_slots.store(limits.queue_slots, Ordering::Relaxed);
                    h.proc_slots.store(limits.proc_slots, Ordering::Relaxed);
                    h.size.store(size as u64, Ordering::Relaxed);
                    // SYNC: publishes the fields above to openers.
                    h.version.store(LAYOUT_VERSION, Ordering::Release);
                    map.set_mode(0o666)?;
                    return Namespace::from_map(name, map);
                }
                Err(Error::Os(libc::EEXIST)) | Err(Error::Exists) => {}
                Err(e) => return Err(e),
            }
            let Some(map) = Mapping::open(&rname)? else {
                continue;
            };
            // Wait (bounded) for the creator to publish the version.
            let h = reg_header_checked(&map)?;
            let until = sync::monotonic_ns() + 2_000_000_000;
            while h.version.load(Ordering::Acquire) == 0 && sync::monotonic_ns() < until {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
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
            reg,
            limits,
            reg_lock: Mutex::new(None),
            cache,
            retired: Mutex::new(Vec::new()),
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

    fn entries(&self) -> &[RegistryEntry] {
        // SAFETY: from_map checked that the mapping holds semmni entries
        // after REGISTRY_ENTRIES_OFF; entries are atomics, 4-aligned.
        unsafe {
            core::slice::from_raw_parts(
                self.reg.base().add(REGISTRY_ENTRIES_OFF) as *const RegistryEntry,
                self.limits.semmni as usize,
            )
        }
    }

    fn header(&self) -> &RegistryHeader {
        reg_header(&self.reg)
    }

    fn lock_registry(&self) -> Result<RegLock<'_>> {
        let mut g = self.reg_lock.lock().unwrap_or_else(|e| e.into_inner());
        let pid = liveness::pid();
        // A forked child must not share the parent's open file description:
        // OFD locks of one description do not exclude each other.
        if g.as_ref().map(|(p, _)| *p) != Some(pid) {
            *g = Some((
                pid,
                Mapping::reopen_fd(&registry_name(&self.name)).map_err(|_| Error::Corrupt)?,
            ));
        }
        let (_, fd) = g.as_ref().expect("set above");
        shm::ofd_lock_wait(fd, 0)?;
        Ok(RegLock { _g: g })
    }

    // -----------------------------------------------------------------
    // Set lookup
    // -----------------------------------------------------------------

    /// The mapped set for `id`, or EINVAL for an unknown or stale id.
    fn lookup(&self, id: i32) -> Result<&SetHandle> {
        if id < 0 {
            return Err(Error::Invalid);
        }
        let idx = id as u32 & (SEMMNI_MAX - 1);
        let seq = id as u32 >> IPCMNI_SHIFT;
        let cell = self.cache.get(idx as usize).ok_or(Error::Invalid)?;
        // SYNC: Acquire pairs with the Release CAS that installed it.
        let p = cell.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: installed pointers stay valid while the namespace lives.
            let h = unsafe { &*p };
            if h.seq == seq && h.view.hdr.removed.load(Ordering::Acquire) == 0 {
                return Ok(h);
            }
        }
        self.lookup_slow(idx, Some(seq))
    }

    #[cold]
    fn lookup_slow(&self, idx: u32, seq: Option<u32>) -> Result<&SetHandle> {
        let e = self.entries().get(idx as usize).ok_or(Error::Invalid)?;
        let ss = e.state_seq.load(Ordering::Acquire);
        let eseq = ss >> ENTRY_SEQ_SHIFT;
        if ss & ENTRY_STATE_MASK != ENTRY_LIVE || seq.is_some_and(|s| s != eseq) {
            return Err(Error::Invalid);
        }
        let cell = &self.cache[idx as usize];
        let cur = cell.load(Ordering::Acquire);
        if !cur.is_null() {
            // SAFETY: as in lookup.
            let h = unsafe { &*cur };
            if h.seq == eseq && h.view.hdr.removed.load(Ordering::Acquire) == 0 {
                return Ok(h);
            }
        }
        let name = set_name(&self.name, idx, eseq);
        let map = Mapping::open(&name)?.ok_or(Error::Invalid)?;
        // SAFETY: the mapping is page-aligned, `len` bytes long, and lives
        // in the handle as long as the view; all access is atomic.
        let mut view: SetView<'static> = unsafe { SetView::from_raw(map.base(), map.len())? };
        // SAFETY: the registry mapping outlives every handle: Namespace's
        // Drop frees the handles before its fields (the mapping) drop.
        let mirror: &'static AtomicU64 = unsafe { &*(&e.otime_tagged as *const AtomicU64) };
        view.set_otime_mirror(mirror, eseq);
        if view.hdr.id.load(Ordering::Relaxed) as u32 & (SEMMNI_MAX - 1) != idx {
            return Err(Error::Corrupt);
        }
        if view.hdr.removed.load(Ordering::Acquire) != 0 {
            return Err(Error::Invalid);
        }
        let h = Box::into_raw(Box::new(SetHandle {
            idx,
            seq: eseq,
            name,
            map,
            view,
            reg_pid: AtomicI32::new(0),
            reg_me: AtomicU64::new(0),
            reg_fd: AtomicI32::new(-1),
            granted: AtomicU64::new(0),
            reg: Mutex::new(None),
        }));
        // SYNC: Release publishes the handle to other threads' Acquire load.
        match cell.compare_exchange(cur, h, Ordering::AcqRel, Ordering::Acquire) {
            Ok(old) => {
                if !old.is_null() {
                    self.retired
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(old);
                }
                // SAFETY: just installed; lives as long as the namespace.
                Ok(unsafe { &*h })
            }
            Err(_) => {
                // Another thread installed one first: use it.
                // SAFETY: `h` was never shared.
                drop(unsafe { Box::from_raw(h) });
                self.lookup_slow(idx, seq)
            }
        }
    }

    /// This process's identity in the set, registering on first use (and
    /// again in a forked child).
    fn me(&self, h: &SetHandle) -> Result<Me> {
        let pid = liveness::pid();
        // SYNC: Acquire pairs with the Release store of reg_pid after reg_me.
        if h.reg_pid.load(Ordering::Acquire) == pid {
            let m = h.reg_me.load(Ordering::Relaxed);
            return Ok(Me {
                slot: m as u32,
                gen: (m >> 32) as u32,
                pid,
                lone: sync::lone_thread(),
            });
        }
        let mut reg = h.reg.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = reg.as_ref() {
            if r.me.pid == pid {
                return Ok(Me {
                    lone: sync::lone_thread(),
                    ..r.me
                });
            }
        }
        // First use, or a forked child holding the parent's registration:
        // close the parent's descriptor (its lock stays with the parent).
        *reg = None;
        let r = self.register(h, pid)?;
        let me = Me {
            lone: sync::lone_thread(),
            ..r.me
        };
        let fd = r.fd.as_ref().map_or(-1, std::os::fd::AsRawFd::as_raw_fd);
        *reg = Some(r);
        h.reg_me
            .store(me.slot as u64 | ((me.gen as u64) << 32), Ordering::Relaxed);
        h.reg_fd.store(fd, Ordering::Relaxed);
        h.reg_pid.store(pid, Ordering::Release);
        Ok(me)
    }

    fn register(&self, h: &SetHandle, pid: i32) -> Result<Registration> {
        let v = &h.view;
        let start = liveness::start_time();
        // The same process before an exec: adopt its entry (and undo).
        for s in 0..v.procs_in_use() {
            let p = v.proc(s).expect("in range");
            let sg = p.state_gen.load(Ordering::Acquire);
            if sg & PROC_STATE_MASK == PROC_ACTIVE
                && p.pid.load(Ordering::Relaxed) == pid
                && p.start_time.load(Ordering::Relaxed) == start
            {
                let fd = Mapping::reopen_fd(&h.name)?;
                // Our pre-exec descriptor normally still holds the lock; if
                // it does not, hold it now.
                let _ = shm::ofd_try_lock(&fd, PROC_LOCK_BASE + s as i64);
                return Ok(Registration {
                    me: Me {
                        slot: s,
                        gen: sg >> PROC_GEN_SHIFT,
                        pid,
                        lone: false,
                    },
                    fd: Some(fd),
                });
            }
        }
        let fd = Mapping::reopen_fd(&h.name)?;
        for pass in 0..2 {
            for s in 0..v.proc_slots() {
                let p = v.proc(s).expect("in range");
                let sg = p.state_gen.load(Ordering::Acquire);
                if sg & PROC_STATE_MASK != PROC_FREE {
                    continue;
                }
                let gen = (sg >> PROC_GEN_SHIFT).wrapping_add(1) & (u32::MAX >> PROC_GEN_SHIFT);
                let claiming = (gen << PROC_GEN_SHIFT) | PROC_CLAIMING;
                if p.state_gen
                    .compare_exchange(sg, claiming, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
                if !shm::ofd_try_lock(&fd, PROC_LOCK_BASE + s as i64)? {
                    // A descriptor inherited from the entry's dead owner
                    // still holds its byte: leave this entry for later.
                    p.state_gen.store(sg, Ordering::Release);
                    continue;
                }
                p.pid.store(pid, Ordering::Relaxed);
                p.start_time.store(start, Ordering::Relaxed);
                p.undo_count.store(0, Ordering::Relaxed);
                p.queued.store(0, Ordering::Relaxed);
                p.undo_record.store(0, Ordering::Relaxed);
                p.asleep.store(0, Ordering::Relaxed);
                p.cpu.store(0, Ordering::Relaxed);
                p.locking.store(0, Ordering::Relaxed);
                p.holding.store(0, Ordering::Relaxed);
                // SYNC: Release publishes pid/start before the entry is ACTIVE.
                p.state_gen
                    .store((gen << PROC_GEN_SHIFT) | PROC_ACTIVE, Ordering::Release);
                v.note_claimed(s);
                return Ok(Registration {
                    me: Me {
                        slot: s,
                        gen,
                        pid,
                        lone: false,
                    },
                    fd: Some(fd),
                });
            }
            if pass == 0 {
                // Full: free the entries of dead processes that hold nothing
                // (those holding undo or queue slots are reaped by sweeps).
                let host = OsHost {
                    fd: std::os::fd::AsFd::as_fd(&fd),
                };
                for s in 0..v.procs_in_use() {
                    let p = v.proc(s).expect("in range");
                    let sg = p.state_gen.load(Ordering::Acquire);
                    if sg & PROC_STATE_MASK == PROC_ACTIVE
                        && p.undo_count.load(Ordering::Relaxed) == 0
                        && p.queued.load(Ordering::Relaxed) == 0
                        && host.is_dead(v, s)
                    {
                        let _ = p.state_gen.compare_exchange(
                            sg,
                            sg & !PROC_STATE_MASK,
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        );
                    }
                }
            }
        }
        Err(Error::NoMemory)
    }

    /// The host for this process's calls on `h` (after `me`). No lock: a
    /// thread asleep in the set must not keep its other threads out.
    fn host(h: &SetHandle) -> OsHost<'_> {
        // SYNC: Acquire pairs with the Release store of reg_pid in `me`,
        // after reg_fd.
        if h.reg_pid.load(Ordering::Acquire) == liveness::pid() {
            let fd = h.reg_fd.load(Ordering::Relaxed);
            if fd >= 0 {
                // SAFETY: the registration of this pid owns `fd` and is only
                // ever replaced by a process with another pid (a forked
                // child, in its own copy of the handle), so it stays open as
                // long as `h`, which outlives the returned host.
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                return OsHost { fd };
            }
        }
        OsHost { fd: h.map.fd() }
    }

    /// Runs `f` with the set's global lock held.
    fn locked<T>(
        &self,
        h: &SetHandle,
        f: impl FnOnce(&mut crate::set::Guard<'_, 'static>, &Me, &dyn Host) -> T,
    ) -> Result<T> {
        let me = self.me(h)?;
        let host = Namespace::host(h);
        let mut g = h.view.lock(&me, &host);
        let r = f(&mut g, &me, &host);
        drop(g);
        Ok(r)
    }

    // -----------------------------------------------------------------
    // semget
    // -----------------------------------------------------------------

    /// `semget(2)`.
    pub fn semget(&self, key: i32, nsems: i32, semflg: i32) -> Result<i32> {
        if nsems < 0 || nsems as u32 > self.limits.semmsl {
            return Err(Error::Invalid);
        }
        let _l = self.lock_registry()?;
        self.clean_creating();
        if key != IPC_PRIVATE {
            let found = self.find_key(key).filter(|&idx| !self.free_if_zombie(idx));
            if let Some(idx) = found {
                if semflg & IPC_CREAT != 0 && semflg & IPC_EXCL != 0 {
                    return Err(Error::Exists);
                }
                let e = &self.entries()[idx as usize];
                if nsems as u32 > e.nsems.load(Ordering::Relaxed) {
                    return Err(Error::Invalid);
                }
                let perm = match self.lookup_slow(idx, None) {
                    Ok(h) => self.perm(h)?,
                    // Not ours to open: the registry's copy decides, as
                    // the kernel lets any class through with no flags.
                    Err(Error::PermissionDenied) => self.meta_locked(idx, None)?.perm,
                    Err(e) => return Err(e),
                };
                if !perm.permits((semflg & 0o777) as u32) {
                    return Err(Error::PermissionDenied);
                }
                return Ok(self.meta_locked(idx, None)?.id);
            }
            if semflg & IPC_CREAT == 0 {
                return Err(Error::NotFound);
            }
        }
        self.create(key, nsems as u32, (semflg & 0o777) as u32)
    }

    fn find_key(&self, key: i32) -> Option<u32> {
        self.entries()
            .iter()
            .position(|e| {
                e.state_seq.load(Ordering::Acquire) & ENTRY_STATE_MASK == ENTRY_LIVE
                    && e.key.load(Ordering::Relaxed) == key
            })
            .map(|i| i as u32)
    }

    /// Frees entry `idx` if it is LIVE but its set is gone: removed by a
    /// remover that died before freeing the entry, or its segment missing.
    /// The caller holds the registry lock. Returns whether it was freed.
    fn free_if_zombie(&self, idx: u32) -> bool {
        // Invalid from a LIVE entry means exactly that (a corrupt or
        // inaccessible segment gives another error and is left alone).
        if !matches!(self.lookup_slow(idx, None), Err(Error::Invalid)) {
            return false;
        }
        let e = &self.entries()[idx as usize];
        let ss = e.state_seq.load(Ordering::Acquire);
        if ss & ENTRY_STATE_MASK != ENTRY_LIVE {
            return false;
        }
        let seq = ss >> ENTRY_SEQ_SHIFT;
        self.free_entry(
            ((seq << IPCMNI_SHIFT) | idx) as i32,
            e.nsems.load(Ordering::Relaxed),
        );
        let _ = shm::unlink(&set_name(&self.name, idx, seq));
        true
    }

    /// Entries left CREATING by a creator that died holding the registry
    /// lock (we hold it now, so nobody else is creating).
    fn clean_creating(&self) {
        for (i, e) in self.entries().iter().enumerate() {
            let ss = e.state_seq.load(Ordering::Acquire);
            if ss & ENTRY_STATE_MASK == ENTRY_CREATING {
                let _ = shm::unlink(&set_name(&self.name, i as u32, ss >> ENTRY_SEQ_SHIFT));
                e.state_seq.store(ss & !ENTRY_STATE_MASK, Ordering::Release);
            }
        }
    }

    fn create(&self, key: i32, nsems: u32, mode: u32) -> Result<i32> {
        if nsems == 0 {
            return Err(Error::Invalid);
        }
        let h = self.header();
        if h.used_sems.load(Ordering::Relaxed) as u64 + nsems as u64 > self.limits.semmns as u64 {
            return Err(Error::NoSpace);
        }
        if h.used_sets.load(Ordering::Relaxed) >= self.limits.semmni {
            return Err(Error::NoSpace);
        }
        // Cyclic index allocation; the sequence number advances on wrap.
        let n = self.limits.semmni;
        let start = h.next_idx.load(Ordering::Relaxed) % n;
        let mut seq = h.seq.load(Ordering::Relaxed) % (IPC_SEQ_MAX + 1);
        let mut found = None;
        for k in 0..n {
            let idx = start + k;
            let idx = if idx >= n {
                if idx == n {
                    seq = (seq + 1) % (IPC_SEQ_MAX + 1);
                }
                idx - n
            } else {
                idx
            };
            if self.entries()[idx as usize]
                .state_seq
                .load(Ordering::Acquire)
                & ENTRY_STATE_MASK
                == ENTRY_FREE
            {
                found = Some(idx);
                break;
            }
        }
        let idx = found.ok_or(Error::NoSpace)?;
        let e = &self.entries()[idx as usize];
        e.state_seq
            .store((seq << ENTRY_SEQ_SHIFT) | ENTRY_CREATING, Ordering::Release);
        let id = ((seq << IPCMNI_SHIFT) | idx) as i32;
        let (uid, gid) = creds();
        let r = self.create_segment(id, key, nsems, mode, (uid, gid));
        let ctime = match r {
            Ok(t) => t,
            Err(err) => {
                e.state_seq.store(seq << ENTRY_SEQ_SHIFT, Ordering::Release);
                return Err(err);
            }
        };
        e.key.store(key, Ordering::Relaxed);
        e.nsems.store(nsems, Ordering::Relaxed);
        e.creator.store(liveness::pid(), Ordering::Relaxed);
        for (f, x) in [
            (&e.uid, uid),
            (&e.gid, gid),
            (&e.cuid, uid),
            (&e.cgid, gid),
            (&e.mode, mode),
        ] {
            f.store(x, Ordering::Relaxed);
        }
        let tag = seq as u64 & TIME_TAG_MASK;
        e.otime_tagged.store(tag, Ordering::Relaxed);
        e.ctime_tagged
            .store(((ctime as u64) << TIME_TAG_BITS) | tag, Ordering::Relaxed);
        // SYNC: Release publishes key/nsems before the entry is LIVE.
        e.state_seq
            .store((seq << ENTRY_SEQ_SHIFT) | ENTRY_LIVE, Ordering::Release);
        h.next_idx.store(idx + 1, Ordering::Relaxed);
        h.seq.store(seq, Ordering::Relaxed);
        h.used_sets.fetch_add(1, Ordering::Relaxed);
        h.used_sems.fetch_add(nsems, Ordering::Relaxed);
        Ok(id)
    }

    /// Creates and initialises set `id`'s segment for owner `(uid, gid)`;
    /// returns its ctime.
    fn create_segment(
        &self,
        id: i32,
        key: i32,
        nsems: u32,
        mode: u32,
        (uid, gid): (u32, u32),
    ) -> Result<i64> {
        let (idx, seq) = (id as u32 & (SEMMNI_MAX - 1), id as u32 >> IPCMNI_SHIFT);
        let name = set_name(&self.name, idx, seq);
        let geo = SetGeometry::new(nsems, self.limits.proc_slots, self.limits.queue_slots);
        let map = match Mapping::create_exclusive(&name, geo.size) {
            Err(Error::Os(libc::EEXIST)) | Err(Error::Exists) => {
                // A leftover of a crashed creator or remover: the registry
                // says the index is free, so nobody uses it.
                shm::unlink(&name)?;
                Mapping::create_exclusive(&name, geo.size)?
            }
            r => r?,
        };
        // SAFETY: the fresh mapping is zeroed, page-aligned and geo.size
        // bytes long; it starts with a SetHeader.
        let hdr = unsafe { &*(map.base() as *const SetHeader) };
        let ctime = sync::realtime_secs();
        SetView::init(hdr, &geo, key, id, uid, gid, mode, ctime);
        map.set_mode(file_mode(mode))?;
        Ok(ctime)
    }

    // -----------------------------------------------------------------
    // semop
    // -----------------------------------------------------------------

    /// `semop(2)`.
    pub fn semop(&self, semid: i32, sops: &[Sembuf]) -> Result<()> {
        self.semtimedop(semid, sops, None)
    }

    /// `semtimedop(2)`; `None` waits for ever.
    pub fn semtimedop(
        &self,
        semid: i32,
        sops: &[Sembuf],
        timeout: Option<&Timespec>,
    ) -> Result<()> {
        if sops.len() > self.limits.semopm as usize {
            return Err(Error::TooManyOps);
        }
        if sops.is_empty() || semid < 0 {
            return Err(Error::Invalid);
        }
        if let Some(t) = timeout {
            if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) {
                return Err(Error::Invalid);
            }
        }
        let h = match self.lookup(semid) {
            Err(Error::PermissionDenied) => return self.semop_denied(semid, sops),
            r => r?,
        };
        let c = OpCaller { ns: self, h };
        crate::set::op::semtimedop(&h.view, sops, timeout, &c)
    }

    // -----------------------------------------------------------------
    // semctl
    // -----------------------------------------------------------------

    /// `semctl(2)`. Returns what the kernel's call returns on success.
    pub fn semctl(&self, semid: i32, semnum: i32, cmd: i32, arg: SemctlArg<'_>) -> Result<i32> {
        if cmd == GETVAL {
            if let Some(val) = self.getval_fast(semid, semnum) {
                return Ok(val);
            }
        }
        if semid < 0 || !crate::sysv::is_known_cmd(cmd) {
            return Err(Error::Invalid);
        }
        match cmd {
            IPC_INFO | SEM_INFO => {
                let SemctlArg::Info(out) = arg else {
                    return Err(Error::BadAddress);
                };
                self.info(cmd, out)
            }
            // The kernel copies IPC_SET's buffer in before the lookup.
            IPC_SET if !matches!(arg, SemctlArg::Set(_)) => Err(Error::BadAddress),
            SEM_STAT | SEM_STAT_ANY => {
                let idx = semid as u32 & (SEMMNI_MAX - 1);
                if idx >= self.limits.semmni {
                    return Err(Error::Invalid);
                }
                let h = match self.lookup_slow(idx, None) {
                    Err(Error::PermissionDenied) => {
                        return self.semctl_denied(idx, None, semnum, cmd, arg)
                    }
                    r => r?,
                };
                if cmd == SEM_STAT && !allows(self.granted(h)?, 0o444) {
                    return Err(Error::PermissionDenied);
                }
                let SemctlArg::StatOut(out) = arg else {
                    return Err(Error::BadAddress);
                };
                *out = self.stat(h);
                Ok(h.id())
            }
            SETVAL => {
                let SemctlArg::Val(val) = arg else {
                    return Err(Error::Invalid);
                };
                if !(0..=SEMVMX).contains(&val) {
                    return Err(Error::OutOfRange);
                }
                let h = match self.lookup(semid) {
                    Err(Error::PermissionDenied) => {
                        return self.semctl_denied_id(semid, semnum, cmd, arg)
                    }
                    r => r?,
                };
                let n = self.semnum(h, semnum)?;
                if !allows(self.granted(h)?, 0o222) {
                    return Err(Error::PermissionDenied);
                }
                self.locked(h, |g, me, _| {
                    if g.view().hdr.removed.load(Ordering::Relaxed) != 0 {
                        return Err(Error::Removed);
                    }
                    g.setval(n, val, me.pid)?;
                    self.mirror_ctime(h, g.view());
                    Ok(0)
                })?
            }
            _ => {
                let h = match self.lookup(semid) {
                    Err(Error::PermissionDenied) => {
                        return self.semctl_denied_id(semid, semnum, cmd, arg)
                    }
                    r => r?,
                };
                self.semctl_set(h, semnum, cmd, arg)
            }
        }
    }

    /// GETVAL when every check passes and the value can be read lock-free:
    /// the hot read, without the dispatch. `None`: take the general path,
    /// which checks again and gives the kernel's error.
    #[inline]
    fn getval_fast(&self, semid: i32, semnum: i32) -> Option<i32> {
        let h = self.lookup(semid).ok()?;
        if semnum < 0 || semnum as usize >= h.view.nsems() {
            return None;
        }
        if !allows(self.granted(h).ok()?, 0o444) {
            return None;
        }
        h.view.read_sem(semnum as usize).map(|(val, _)| val)
    }

    fn semnum(&self, h: &SetHandle, semnum: i32) -> Result<usize> {
        if semnum < 0 || semnum as usize >= h.view.nsems() {
            return Err(Error::Invalid);
        }
        Ok(semnum as usize)
    }

    fn semctl_set(&self, h: &SetHandle, semnum: i32, cmd: i32, arg: SemctlArg<'_>) -> Result<i32> {
        let v = &h.view;
        match cmd {
            IPC_RMID | IPC_SET => {
                if !self.perm(h)?.owner_or_creator() {
                    return Err(Error::NotPermitted);
                }
                if cmd == IPC_SET {
                    let SemctlArg::Set(ds) = arg else {
                        return Err(Error::BadAddress);
                    };
                    let (uid, gid, mode) = (ds.perm.uid, ds.perm.gid, ds.perm.mode & 0o777);
                    // As ipc_update_perm: (uid_t)-1 and (gid_t)-1 are no ids.
                    if uid == u32::MAX || gid == u32::MAX {
                        return Err(Error::Invalid);
                    }
                    // The registry's copy changes with the set, under both
                    // locks, so that its readers never see half of it.
                    let _l = self.lock_registry()?;
                    self.locked(h, |g, _, _| {
                        if g.view().hdr.removed.load(Ordering::Relaxed) != 0 {
                            // Its registry entry may already be another set's.
                            return Err(Error::Invalid);
                        }
                        g.set_perm(uid, gid, mode)?;
                        let e = self.entry_of(h);
                        for (f, x) in [(&e.uid, uid), (&e.gid, gid), (&e.mode, mode)] {
                            f.store(x, Ordering::Relaxed);
                        }
                        self.mirror_ctime(h, g.view());
                        Ok(())
                    })??;
                    // Let the OS follow (best effort: only root may chown).
                    let _ = h.map.set_owner(uid, gid);
                    let _ = h.map.set_mode(file_mode(mode));
                    return Ok(0);
                }
                self.remove(h)?;
                Ok(0)
            }
            IPC_STAT => {
                if !allows(self.granted(h)?, 0o444) {
                    return Err(Error::PermissionDenied);
                }
                let SemctlArg::StatOut(out) = arg else {
                    return Err(Error::BadAddress);
                };
                *out = self.stat(h);
                Ok(0)
            }
            GETALL => {
                if !allows(self.granted(h)?, 0o444) {
                    return Err(Error::PermissionDenied);
                }
                let SemctlArg::GetAll(out) = arg else {
                    return Err(Error::BadAddress);
                };
                if out.len() < v.nsems() {
                    return Err(Error::BadAddress);
                }
                if v.snapshot(&mut out[..v.nsems()]).is_none() {
                    self.locked(h, |g, me, host| {
                        g.sweep_dead(me, host, Sweep::Undo);
                        g.read_all(&mut out[..v.nsems()]);
                    })?;
                }
                Ok(0)
            }
            GETVAL | GETPID | GETNCNT | GETZCNT => {
                if !allows(self.granted(h)?, 0o444) {
                    return Err(Error::PermissionDenied);
                }
                let n = self.semnum(h, semnum)?;
                if cmd == GETVAL || cmd == GETPID {
                    let (val, pid) = match v.read_sem(n) {
                        Some(x) => x,
                        None => self.locked(h, |g, me, host| {
                            g.sweep_dead(me, host, Sweep::Undo);
                            g.read_one(n)
                        })?,
                    };
                    return Ok(if cmd == GETVAL { val } else { pid });
                }
                self.locked(h, |g, me, host| {
                    // A killed sleeper stops counting.
                    g.sweep_dead(me, host, Sweep::Holding);
                    g.count_waiters(n, cmd == GETZCNT) as i32
                })
            }
            SETALL => {
                if !allows(self.granted(h)?, 0o222) {
                    return Err(Error::PermissionDenied);
                }
                let SemctlArg::SetAll(vals) = arg else {
                    return Err(Error::BadAddress);
                };
                if vals.len() < v.nsems() {
                    return Err(Error::BadAddress);
                }
                let vals = &vals[..v.nsems()];
                if vals.iter().any(|&x| x as i32 > SEMVMX) {
                    return Err(Error::OutOfRange);
                }
                self.locked(h, |g, me, _| {
                    if g.view().hdr.removed.load(Ordering::Relaxed) != 0 {
                        return Err(Error::Removed);
                    }
                    g.setall(vals, me.pid)?;
                    self.mirror_ctime(h, g.view());
                    Ok(0)
                })?
            }
            _ => Err(Error::Invalid),
        }
    }

    /// This process's access bits to `h` (see [`SetHandle::granted`]).
    #[inline]
    fn granted(&self, h: &SetHandle) -> Result<u32> {
        // SYNC: Acquire pairs with the Release store that moves `perm_seq`
        // after an owner or mode change: a match means no change since the
        // bits were computed.
        let pseq = h.view.hdr.perm_seq.load(Ordering::Acquire);
        // pid_max is at most 2^22: 23 bits hold any pid.
        let key = ((pseq as u64) << 32)
            | ((liveness::pid() as u64 & GRANTED_PID_MASK) << 9)
            | GRANTED_VALID;
        let c = h.granted.load(Ordering::Relaxed);
        if c & !7 == key {
            return Ok((c & 7) as u32);
        }
        let bits = self.perm(h)?.granted();
        // Filed under the count read before the perms: if they changed in
        // between, the count has moved and this entry is never used.
        h.granted.store(key | bits as u64, Ordering::Relaxed);
        Ok(bits)
    }

    /// A set's ownership and mode: lock-free, or under the lock when a
    /// writer is in the way (one that died mid-update is recovered).
    fn perm(&self, h: &SetHandle) -> Result<Perm> {
        match h.view.read_consistent(Perm::read) {
            Some(p) => Ok(p),
            None => self.locked(h, |g, _, _| Perm::read(g.view())),
        }
    }

    /// IPC_STAT's data, under the lock after a sweep of dead processes (an
    /// exit with an undo record sets otime). A process that cannot take
    /// part in the set (it cannot reopen the segment, or the process table
    /// is full) reads it lock-free instead.
    fn stat(&self, h: &SetHandle) -> SemidDs {
        let read = |v: &SetView<'_>| {
            let x = v.hdr;
            SemidDs {
                perm: IpcPerm {
                    key: x.key.load(Ordering::Relaxed),
                    uid: x.uid.load(Ordering::Relaxed),
                    gid: x.gid.load(Ordering::Relaxed),
                    cuid: x.cuid.load(Ordering::Relaxed),
                    cgid: x.cgid.load(Ordering::Relaxed),
                    mode: x.mode.load(Ordering::Relaxed),
                    seq: h.seq,
                },
                otime: v.otime(),
                ctime: x.ctime.load(Ordering::Relaxed),
                nsems: v.nsems() as u64,
            }
        };
        let locked = self.locked(h, |g, me, host| {
            g.sweep_dead(me, host, Sweep::Holding);
            read(g.view())
        });
        match locked {
            Ok(ds) => ds,
            // Without the lock a stuck writer could keep the read from ever
            // being consistent: after the retries, take what is there.
            Err(_) => h
                .view
                .read_consistent(read)
                .unwrap_or_else(|| read(&h.view)),
        }
    }

    /// A diagnostic view of set `semid`: values, waiters, the pending
    /// queue, the processes in its table and their adjustments (see
    /// [`SetReport`]). Needs read permission.
    pub fn report(&self, semid: i32) -> Result<SetReport> {
        let h = self.lookup(semid)?;
        if !allows(self.granted(h)?, 0o444) {
            return Err(Error::PermissionDenied);
        }
        self.locked(h, |g, me, host| g.report(me, host))
    }

    /// Sweeps set `semid` now: every dead process in its table is reaped
    /// (its undo applied, its queue slots and entry freed), idle ones too.
    pub fn sweep(&self, semid: i32) -> Result<()> {
        let h = self.lookup(semid)?;
        self.locked(h, |g, me, host| g.sweep_dead(me, host, Sweep::All))
    }

    /// Cleans the namespace up after crashes, printing nothing and
    /// removing no live set (a set lives until IPC_RMID, used or not):
    /// entries left by a creator or remover that died half-way are freed,
    /// segment files that no entry names (leftovers of such deaths) are
    /// unlinked, and every set is swept of its dead processes (undo
    /// applied, queue slots and process entries freed).
    pub fn gc(&self) -> Result<GcReport> {
        let mut r = GcReport::default();
        let live: Vec<u32> = {
            let _l = self.lock_registry()?;
            self.clean_creating();
            for idx in 0..self.limits.semmni {
                let e = &self.entries()[idx as usize];
                if e.state_seq.load(Ordering::Acquire) & ENTRY_STATE_MASK == ENTRY_LIVE
                    && self.free_if_zombie(idx)
                {
                    r.stale_entries += 1;
                }
            }
            let named: std::collections::HashSet<String> = (0..self.limits.semmni)
                .filter_map(|idx| {
                    let ss = self.entries()[idx as usize]
                        .state_seq
                        .load(Ordering::Acquire);
                    (ss & ENTRY_STATE_MASK == ENTRY_LIVE)
                        .then(|| set_name(&self.name, idx, ss >> ENTRY_SEQ_SHIFT))
                })
                .collect();
            for name in shm::list(&format!("shmsem.{}.", self.name)) {
                // Only this namespace's set files: NS.INDEX.SEQ, digits.
                let rest = &name[format!("/shmsem.{}.", self.name).len()..];
                let ours = rest.split('.').count() == 2
                    && rest
                        .split('.')
                        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
                if ours && !named.contains(&name) && shm::unlink(&name).is_ok() {
                    r.orphan_segments += 1;
                }
            }
            (0..self.limits.semmni)
                .filter(|&idx| {
                    self.entries()[idx as usize]
                        .state_seq
                        .load(Ordering::Acquire)
                        & ENTRY_STATE_MASK
                        == ENTRY_LIVE
                })
                .collect()
        };
        for idx in live {
            let Ok(h) = self.lookup_slow(idx, None) else {
                continue;
            };
            let dead = |h: &SetHandle| -> usize {
                self.locked(h, |g, me, host| {
                    g.report(me, host)
                        .processes
                        .iter()
                        .filter(|p| !p.alive)
                        .count()
                })
                .unwrap_or(0)
            };
            let before = dead(h);
            if before > 0
                && self
                    .locked(h, |g, me, host| g.sweep_dead(me, host, Sweep::All))
                    .is_ok()
            {
                r.dead_processes += before.saturating_sub(dead(h));
            }
            r.sets += 1;
        }
        Ok(r)
    }

    /// The registry entry of a mapped set.
    fn entry_of(&self, h: &SetHandle) -> &RegistryEntry {
        &self.entries()[h.idx as usize]
    }

    /// Copies the set's ctime to the registry (call under the set's lock).
    fn mirror_ctime(&self, h: &SetHandle, v: &SetView<'_>) {
        let ctime = v.hdr.ctime.load(Ordering::Relaxed);
        crate::set::store_tagged_time(&self.entry_of(h).ctime_tagged, h.seq, ctime);
    }

    /// The registry's copy of set `idx` (whose sequence must be `seq` if
    /// given); the caller holds the registry lock. EINVAL as `lookup`.
    fn meta_locked(&self, idx: u32, seq: Option<u32>) -> Result<Meta> {
        let e = self.entries().get(idx as usize).ok_or(Error::Invalid)?;
        let ss = e.state_seq.load(Ordering::Acquire);
        let eseq = ss >> ENTRY_SEQ_SHIFT;
        if ss & ENTRY_STATE_MASK != ENTRY_LIVE || seq.is_some_and(|s| s != eseq) {
            return Err(Error::Invalid);
        }
        let time = |w: &AtomicU64| {
            let w = w.load(Ordering::Relaxed);
            if w & TIME_TAG_MASK == eseq as u64 & TIME_TAG_MASK {
                crate::set::tagged_time_secs(w)
            } else {
                0
            }
        };
        Ok(Meta {
            id: ((eseq << IPCMNI_SHIFT) | idx) as i32,
            key: e.key.load(Ordering::Relaxed),
            nsems: e.nsems.load(Ordering::Relaxed),
            seq: eseq,
            perm: Perm {
                uid: e.uid.load(Ordering::Relaxed),
                gid: e.gid.load(Ordering::Relaxed),
                cuid: e.cuid.load(Ordering::Relaxed),
                cgid: e.cgid.load(Ordering::Relaxed),
                mode: e.mode.load(Ordering::Relaxed),
            },
            otime: time(&e.otime_tagged),
            ctime: time(&e.ctime_tagged),
        })
    }

    /// semop on a set whose segment the OS will not open for us: the
    /// kernel's answers from the registry's copy (EFBIG before EACCES).
    #[cold]
    fn semop_denied(&self, semid: i32, sops: &[Sembuf]) -> Result<()> {
        let idx = semid as u32 & (SEMMNI_MAX - 1);
        let m = {
            let _l = self.lock_registry()?;
            self.meta_locked(idx, Some(semid as u32 >> IPCMNI_SHIFT))?
        };
        if sops.iter().any(|s| s.sem_num as u32 >= m.nsems) {
            return Err(Error::SemNumOutOfRange);
        }
        Err(Error::PermissionDenied)
    }

    #[cold]
    fn semctl_denied_id(
        &self,
        semid: i32,
        semnum: i32,
        cmd: i32,
        arg: SemctlArg<'_>,
    ) -> Result<i32> {
        let idx = semid as u32 & (SEMMNI_MAX - 1);
        self.semctl_denied(idx, Some(semid as u32 >> IPCMNI_SHIFT), semnum, cmd, arg)
    }

    /// semctl on a set whose segment the OS will not open for us: what
    /// needs no access (SEM_STAT_ANY, EPERM of IPC_SET/IPC_RMID, EINVAL of
    /// SETVAL's semnum) comes from the registry's copy; the rest is EACCES.
    #[cold]
    fn semctl_denied(
        &self,
        idx: u32,
        seq: Option<u32>,
        semnum: i32,
        cmd: i32,
        arg: SemctlArg<'_>,
    ) -> Result<i32> {
        let m = {
            let _l = self.lock_registry()?;
            self.meta_locked(idx, seq)?
        };
        match cmd {
            SEM_STAT_ANY => {
                let SemctlArg::StatOut(out) = arg else {
                    return Err(Error::BadAddress);
                };
                *out = SemidDs {
                    perm: IpcPerm {
                        key: m.key,
                        uid: m.perm.uid,
                        gid: m.perm.gid,
                        cuid: m.perm.cuid,
                        cgid: m.perm.cgid,
                        mode: m.perm.mode,
                        seq: m.seq,
                    },
                    otime: m.otime,
                    ctime: m.ctime,
                    nsems: m.nsems as u64,
                };
                Ok(m.id)
            }
            IPC_SET | IPC_RMID if !m.perm.owner_or_creator() => Err(Error::NotPermitted),
            SETVAL if semnum < 0 || semnum as u32 >= m.nsems => Err(Error::Invalid),
            _ => Err(Error::PermissionDenied),
        }
    }

    fn info(&self, cmd: i32, out: &mut Seminfo) -> Result<i32> {
        let l = self.limits;
        let h = self.header();
        let c = |x: u32| x.min(i32::MAX as u32) as i32;
        *out = Seminfo {
            semmap: c(l.semmns),
            semmni: c(l.semmni),
            semmns: c(l.semmns),
            semmnu: c(l.semmns),
            semmsl: c(l.semmsl),
            semopm: c(l.semopm),
            semume: c(l.semopm),
            semusz: if cmd == SEM_INFO {
                c(h.used_sets.load(Ordering::Relaxed))
            } else {
                20
            },
            semvmx: SEMVMX,
            semaem: if cmd == SEM_INFO {
                c(h.used_sems.load(Ordering::Relaxed))
            } else {
                SEMAEM
            },
        };
        let max = self
            .entries()
            .iter()
            .rposition(|e| e.state_seq.load(Ordering::Acquire) & ENTRY_STATE_MASK == ENTRY_LIVE);
        Ok(max.unwrap_or(0) as i32)
    }

    /// IPC_RMID: waiters get EIDRM, the id becomes stale, the segment's name
    /// goes (mappings of it stay valid until unmapped).
    fn remove(&self, h: &SetHandle) -> Result<()> {
        let _l = self.lock_registry()?;
        if h.view.hdr.removed.load(Ordering::Acquire) != 0 {
            return Err(Error::Invalid);
        }
        // The set dies first, in one committed step (its sleepers get
        // EIDRM; a woken sleeper that uses the old id gets EINVAL, as in
        // the kernel, because lookups check `removed`); then its id and
        // name go. A remover that dies in between leaves a LIVE entry for a
        // removed set, which the next semget of its key (or gc) clears.
        self.locked(h, |g, _, _| g.remove())??;
        self.free_entry(h.id(), h.view.nsems() as u32);
        shm::unlink(&h.name)
    }

    fn free_entry(&self, id: i32, nsems: u32) {
        let idx = id as u32 & (SEMMNI_MAX - 1);
        if let Some(e) = self.entries().get(idx as usize) {
            let ss = e.state_seq.load(Ordering::Acquire);
            if ss & ENTRY_STATE_MASK == ENTRY_LIVE {
                e.state_seq.store(ss & !ENTRY_STATE_MASK, Ordering::Release);
                let h = self.header();
                h.used_sets.fetch_sub(1, Ordering::Relaxed);
                h.used_sems.fetch_sub(
                    nsems.min(h.used_sems.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
            }
        }
    }

    /// Removes every set of the namespace (their sleepers get EIDRM) and the
    /// namespace itself, leaving nothing in /dev/shm. Meant for tests and
    /// tear-down; other processes' later calls fail or recreate it.
    pub fn destroy(&self) -> Result<()> {
        for idx in 0..self.limits.semmni {
            if self.entries()[idx as usize]
                .state_seq
                .load(Ordering::Acquire)
                & ENTRY_STATE_MASK
                != ENTRY_LIVE
            {
                continue;
            }
            if let Ok(h) = self.lookup_slow(idx, None) {
                let _ = self.remove(h);
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

fn reg_header(map: &Mapping) -> &RegistryHeader {
    // SAFETY: every registry mapping is at least one page (registry_size),
    // page-aligned, and accessed only through atomics.
    unsafe { &*(map.base() as *const RegistryHeader) }
}

fn reg_header_checked(map: &Mapping) -> Result<&RegistryHeader> {
    if map.len() < REGISTRY_ENTRIES_OFF {
        return Err(Error::Corrupt);
    }
    Ok(reg_header(map))
}
