//! Namespaces: the key space, ids and limits of one `SHMSEM_NAMESPACE`, and
//! the four calls on them.
//!
//! # DESIGN: names the filesystem arbitrates (issue #9)
//!
//! There is no registry. /dev/shm is sticky and root-owned: nobody but a
//! name's owner (or root) can unlink or rename it, and a name created with
//! O_EXCL or symlink(2) has exactly one creator. So the names themselves
//! hold the truth, each owned by whoever made it:
//!
//! | name (in /dev/shm) | kind | meaning |
//! |---|---|---|
//! | `shmsem.NS` | regular, 0644, O_EXCL, the version written last | the limits (read once per attach; for `default` the compiled-in limits are used whatever it says). Its owner can rewrite it, so they only size the sets a process makes and bound the indices it gives them: no name is judged by them (a claim's index only against SEMMNI_MAX) |
//! | `shmsem.NS.hints` | regular, 0666, anyone's | hints only: the next index to try and the last sequence number (forged ⇒ ids repeat sooner); for now also the file presence locks are taken on (see `liveness`) |
//! | `shmsem.NS.s.IDX.SEQ` | regular, O_EXCL, owned by the set's creator, mode from the set's mode | the set |
//! | `shmsem.NS.i.IDX` | symlink → `shmsem.NS.s.IDX.SEQ`, symlink(2) | claims index IDX; the target gives SEQ, so the id |
//! | `shmsem.NS.k.KEY` | symlink → the same, symlink(2) (KEY: 8 hex digits) | claims key KEY (IPC_PRIVATE has none) |
//!
//! A claim (an `i` or `k` name) is read with `lstat` and `readlinkat`,
//! never followed, and is **valid only if the link's owner is the owner of
//! the regular file it names**, which must be a set name of this namespace
//! (of the same index, for an `i` name). Nobody can make a link owned by
//! another user, so another user's link to a victim's set is nobody's
//! claim: it cannot redirect a key or an index to the victim's set. A file
//! is opened only through [`shm::Dir::open_file`] (O_NOFOLLOW, O_NONBLOCK,
//! then `fstat`: a regular file with the claim's owner and a size some
//! nsems gives, before it is mapped), and its header must then name the
//! index, sequence and key it was reached by, and its creator must be the
//! file's owner.
//!
//! **semget(K, IPC_CREAT)** ([`keys`]): read `k.K`. Absent: take an index
//! (cyclically from the hint, as the kernel's `ipc_idr_alloc`), create
//! `s.IDX.SEQ` O_EXCL *in transition* (mode 0200: write-only for its owner,
//! nothing for anyone else; a published set's file always gives its owner
//! rw) and hold its creation lock (an OFD write lock on its byte 0,
//! `shm_layout::CREATION_LOCK_BYTE`), size it, initialise and publish the
//! header, then claim the index (`symlink` `i.IDX`; EEXIST: unlink ours,
//! next index) and the key (`symlink` `k.K`; EEXIST: another process won:
//! ours is unlinked and the lookup runs again), then give the file its
//! final mode (the set is live) and let the lock go. No registry lock:
//! symlink(2) decides races. A reader that finds a set in transition treats
//! it as not there (semget waits for it, 1 ms at a time, 2 s at most).
//!
//! **IPC_RMID**: under the set's lock and the file's creation lock, the
//! file is put in transition (only its owner or root can chmod it), then
//! the removal is committed in the set (its sleepers get EIDRM, lookups
//! EINVAL), then `k`, `i` and `s` are unlinked, each only if it is still
//! the set's own name. A set left half made or half removed by a process
//! that died is finished by a later process **of the file owner's uid, or
//! root** (only they can unlink its names anyway), on what only the owner
//! can have done: its file in transition with its creation lock free. The
//! finisher holds that lock, commits the removal if it was not yet (a
//! remover that died in between), then unlinks the names. Nothing is ever
//! unlinked because of what another user wrote: another user's names are
//! at most nobody's claims, and what a writer of a set may scribble in it
//! (a removal mark, a key; through a mapping kept across an IPC_SET that
//! took write away, too) is never believed by a finisher.
//!
//! What a process the set's mode shuts out is still told (semget without
//! flags, SEM_STAT_ANY, EFBIG before EACCES, EPERM) comes from `lstat` and
//! `readlinkat`, which need no permission on the file: the owner (the
//! file's), the mode (the file's, so lossy: README "Differences"), nsems
//! (the file's size names it exactly, see `SetGeometry::nsems_for_size`),
//! the id (the link). IPC_INFO/SEM_INFO and the highest index come from a
//! scan of the `i` names; SEMMNS is checked by a scan only when SEMMNI ×
//! SEMMSL could exceed it.
//!
//! A namespace is finished by [`Namespace::remove_namespace`] (`shmsem ns
//! rm`), which unlinks its sets and then its limits file; a process that
//! still has it open notices at its next semget, IPC_RMID, IPC_SET or gc
//! (the limits file it read is no longer the one named) and gets EIDRM.
//! Not for `default`: its limits file is whoever used it first's, who may
//! unlink or replace it, so a process attached to `default` never finds it
//! removed (its limits are compiled in; `ns rm default` removes its sets).
//!
//! This file holds the namespace itself (open, attach, destroy, the limits
//! and hints files, the names); its rooms:
//!
//! * [`cache`]: the sets mapped into this process ([`cache::SetHandle`]),
//!   found by id, and the claims they are found through;
//! * [`reclaim`]: when a removed set's handle may be unmapped (no call of
//!   this process uses it any more);
//! * [`perm`]: credentials and the permission check;
//! * [`keys`]: keys and ids: semget, creating and removing sets, what a
//!   shut-out process is told, gc;
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
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, OnceLock};

use crate::shm::{self, Access, Dir, Expect, FileId, Open};
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
    limits: Limits,
    /// The limits file this process read (a namespace removed and made
    /// again has another one); `None` for `default` when the file could
    /// not be read (its compiled-in limits are used).
    ident: Option<FileId>,
    /// This process's one descriptor of the namespace, and its presence
    /// lock (see [`crate::liveness::Presence`]); the hints are read and
    /// written through it.
    presence: crate::liveness::Presence,
    /// Mapped sets by index, read by every call through a
    /// [`reclaim::Pin`]; written only by `sets`. See [`cache`].
    cache: Box<[AtomicPtr<SetHandle>]>,
    /// The handles `cache` holds, and those it held that a call may still
    /// use: freed once no call of this process does (see [`reclaim`]).
    sets: reclaim::Domain<SetHandle>,
    /// This process found the namespace removed (its limits file unlinked
    /// or replaced): the object is dead, and the next `open` of the name
    /// attaches afresh.
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
        // The handles go before the other fields; we are the last user.
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

/// The limits file of namespace `ns`.
fn limits_name(ns: &str) -> String {
    format!("shmsem.{ns}")
}

/// The hints file of namespace `ns` (also, for now, the presence file).
pub(crate) fn hints_name(ns: &str) -> String {
    format!("shmsem.{ns}.hints")
}

/// The file of set `idx` in its `seq`-th use.
fn set_name(ns: &str, idx: u32, seq: u32) -> String {
    format!("shmsem.{ns}.s.{idx}.{seq}")
}

/// The claim of index `idx`.
fn index_name(ns: &str, idx: u32) -> String {
    format!("shmsem.{ns}.i.{idx}")
}

/// The claim of key `key` (8 hex digits).
fn key_name(ns: &str, key: i32) -> String {
    format!("shmsem.{ns}.k.{:08x}", key as u32)
}

/// A decimal number as this library writes it (no sign, no leading zero),
/// so that one value has one name.
fn canonical_u32(s: &str) -> Option<u32> {
    let v: u32 = s.parse().ok()?;
    (v.to_string() == s).then_some(v)
}

/// (index, sequence) of a set name of namespace `ns`, if `name` is one.
fn parse_set_name(ns: &str, name: &str) -> Option<(u32, u32)> {
    let rest = name
        .strip_prefix("shmsem.")?
        .strip_prefix(ns)?
        .strip_prefix(".s.")?;
    let (i, q) = rest.split_once('.')?;
    let (idx, seq) = (canonical_u32(i)?, canonical_u32(q)?);
    (idx < SEMMNI_MAX && seq <= IPC_SEQ_MAX).then_some((idx, seq))
}

/// The index an index claim's name `name` of namespace `ns` names.
fn parse_index_name(ns: &str, name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix("shmsem.")?
        .strip_prefix(ns)?
        .strip_prefix(".i.")?;
    canonical_u32(rest).filter(|&i| i < SEMMNI_MAX)
}

/// The key a key claim's name `name` of namespace `ns` names.
fn parse_key_name(ns: &str, name: &str) -> Option<i32> {
    let rest = name
        .strip_prefix("shmsem.")?
        .strip_prefix(ns)?
        .strip_prefix(".k.")?;
    if rest.len() != 8
        || !rest
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    u32::from_str_radix(rest, 16).ok().map(|k| k as i32)
}

/// This process's effective uid (root may finish and clean anyone's).
fn euid() -> u32 {
    perm::creds().0
}

/// What reading a limits file found.
enum LimitsFile {
    Missing,
    /// Published, valid: the limits and the file.
    Ready(Limits, FileId),
    /// Not yet published (version 0): its owner.
    Unpublished(u32),
}

/// Reads namespace `ns`'s limits file (pread, never mapped): `Corrupt` for
/// anything but a regular file of the right size with valid limits of this
/// layout version.
fn read_limits(dir: &Dir, ns: &str) -> Result<LimitsFile> {
    let expect = Expect {
        owner: None,
        min_size: LIMITS_FILE_SIZE as u64,
        max_size: LIMITS_FILE_SIZE as u64,
    };
    let c = match dir.open_file(&limits_name(ns), Access::Read, None, &expect)? {
        Open::File(c) => c,
        Open::Missing => return Ok(LimitsFile::Missing),
        Open::Denied => return Err(Error::PermissionDenied),
    };
    let mut b = [0u8; LIMITS_FILE_SIZE];
    shm::pread_exact(&c.fd, &mut b, 0)?;
    let r = LimitsRecord::from_bytes(&b);
    if r.magic != LIMITS_MAGIC {
        return Err(Error::Corrupt);
    }
    if r.version == 0 {
        return Ok(LimitsFile::Unpublished(c.st.st_uid));
    }
    let limits = Limits {
        semmsl: r.semmsl,
        semmns: r.semmns,
        semopm: r.semopm,
        semmni: r.semmni,
        queue_slots: r.queue_slots,
        proc_slots: r.proc_slots,
    };
    if r.version != LAYOUT_VERSION || !limits.valid() {
        return Err(Error::Corrupt);
    }
    Ok(LimitsFile::Ready(limits, shm::file_id_of(&c.st)))
}

/// Creates namespace `ns`'s limits file for `limits`, exclusively (`Exists`
/// if another process was first): mode 0644, the limits written, then the
/// version (a second write: a reader that sees it sees the rest).
fn create_limits(dir: &Dir, ns: &str, limits: Limits) -> Result<FileId> {
    let name = limits_name(ns);
    let expect = Expect {
        owner: Some(euid()),
        min_size: 0,
        max_size: 0,
    };
    let Open::File(c) = dir.open_file(&name, Access::ReadWrite, Some(0o600), &expect)? else {
        return Err(Error::Corrupt);
    };
    let r = (|| {
        shm::size_and_reserve(&c.fd, LIMITS_FILE_SIZE as u64)?;
        let rec = LimitsRecord {
            magic: LIMITS_MAGIC,
            version: 0,
            semmsl: limits.semmsl,
            semmns: limits.semmns,
            semopm: limits.semopm,
            semmni: limits.semmni,
            queue_slots: limits.queue_slots,
            proc_slots: limits.proc_slots,
        };
        shm::pwrite_all(&c.fd, &rec.to_bytes(), 0)?;
        shm::pwrite_all(
            &c.fd,
            &LAYOUT_VERSION.to_le_bytes(),
            LIMITS_VERSION_OFF as u64,
        )?;
        shm::fchmod(&c.fd, 0o644)
    })();
    if let Err(e) = r {
        let _ = dir.unlink_if_same(&name, &c.st);
        return Err(e);
    }
    Ok(shm::file_id_of(&c.st))
}

/// Makes namespace `ns`'s hints file if there is none (mode 0666: anyone
/// may write a hint). One that is there already is left as it is, whoever
/// made it: a hostile one costs only hints (and, for now, presence).
fn ensure_hints(dir: &Dir, ns: &str) -> Result<()> {
    let name = hints_name(ns);
    if dir.lstat(&name)?.is_some() {
        return Ok(());
    }
    let expect = Expect {
        owner: Some(euid()),
        min_size: 0,
        max_size: 0,
    };
    match dir.open_file(&name, Access::ReadWrite, Some(0o600), &expect) {
        Ok(Open::File(c)) => {
            let r = shm::size_and_reserve(&c.fd, HINTS_FILE_SIZE as u64)
                .and_then(|()| shm::fchmod(&c.fd, 0o666));
            if let Err(e) = r {
                let _ = dir.unlink_if_same(&name, &c.st);
                return Err(e);
            }
            Ok(())
        }
        Ok(_) | Err(Error::Exists) => Ok(()),
        Err(e) => Err(e),
    }
}

impl Namespace {
    /// The names of the namespaces that exist on this machine (their
    /// limits files in /dev/shm), sorted.
    pub fn names() -> Vec<String> {
        let Ok(dir) = Dir::open() else {
            return Vec::new();
        };
        let mut v: Vec<String> = dir
            .list("shmsem.")
            .into_iter()
            .filter_map(|n| n.strip_prefix("shmsem.").map(str::to_string))
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
    /// exist (an existing namespace keeps its own limits; `default` always
    /// has the compiled-in ones).
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

    /// Reads namespace `name`'s limits file, creating it with `limits` if
    /// it does not exist and `limits` is given (else `NotFound`). A file
    /// left unpublished by a creator that died (2 s without a version) is
    /// replaced if it is ours (or we are root), else `Corrupt`. `default`
    /// uses the compiled-in limits whatever its file says or is.
    fn attach(name: &str, limits: Option<Limits>) -> Result<Namespace> {
        let dir = Dir::open()?;
        let default = name == DEFAULT_NAMESPACE;
        let mut found = Err(Error::Corrupt);
        for _attempt in 0..3 {
            match read_limits(&dir, name) {
                Ok(LimitsFile::Ready(l, id)) => {
                    found = Ok((l, Some(id)));
                    break;
                }
                Ok(LimitsFile::Missing) => {
                    let Some(limits) = limits else {
                        found = Err(Error::NotFound);
                        break;
                    };
                    let limits = if default { Limits::default() } else { limits };
                    match create_limits(&dir, name, limits) {
                        Ok(id) => {
                            found = Ok((limits, Some(id)));
                            break;
                        }
                        Err(Error::Exists) => continue,
                        Err(e) => {
                            found = Err(e);
                            break;
                        }
                    }
                }
                Ok(LimitsFile::Unpublished(owner)) => {
                    // Wait (bounded) for the creator to publish it.
                    let until = sync::monotonic_ns() + 2_000_000_000;
                    let mut state = LimitsFile::Unpublished(owner);
                    while matches!(state, LimitsFile::Unpublished(_))
                        && sync::monotonic_ns() < until
                    {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        state = match read_limits(&dir, name) {
                            Ok(s) => s,
                            Err(_) => break,
                        };
                    }
                    if matches!(state, LimitsFile::Unpublished(_)) {
                        // Its creator died half-way: nobody can have used
                        // it. Only its owner (or root) may replace it.
                        if owner != euid() && euid() != 0 {
                            found = Err(Error::Corrupt);
                            break;
                        }
                        if let Some(st) = dir.lstat(&limits_name(name))? {
                            dir.unlink_if_same(&limits_name(name), &st)?;
                        }
                    }
                    continue;
                }
                Err(e) => {
                    found = Err(e);
                    break;
                }
            }
        }
        let (limits, ident) = match found {
            Ok((l, id)) if !default => (l, id),
            Ok((_, id)) => (Limits::default(), id),
            // A squatter's file cannot shrink, nor kill, the default
            // namespace.
            Err(Error::NotFound) => return Err(Error::NotFound),
            Err(_) if default => (Limits::default(), None),
            Err(e) => return Err(e),
        };
        ensure_hints(&dir, name)?;
        // Every index a claim may name (SEMMNI_MAX), not only the SEMMNI
        // new sets are given: a set made while the limits file said more
        // stays reachable (see `read_claim`).
        let cache = (0..SEMMNI_MAX)
            .map(|_| AtomicPtr::new(core::ptr::null_mut()))
            .collect();
        Ok(Namespace {
            name: name.to_string(),
            presence: crate::liveness::Presence::new(name),
            limits,
            ident,
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

    /// Whether this process found the namespace removed (a call failed
    /// with EIDRM): the object is dead, and [`Namespace::open`] of its name
    /// (or [`Namespace::default_ns`]) attaches to the namespace of that
    /// name as it is now. Never for `default`, which is never removed.
    pub fn is_removed(&self) -> bool {
        // SYNC: Relaxed, as in `mark_removed`.
        self.removed.load(Ordering::Relaxed)
    }

    /// Whether the limits file this process read still has its name (one
    /// lstat; `open` of a name already open asks it, so that opening a
    /// removed namespace's name gives the namespace there is now).
    /// `default` always is: its limits are compiled in and its file is
    /// anybody's who used it first, who may remove or replace it; that must
    /// not end the namespace for everyone else.
    fn still_named(&self) -> bool {
        // SYNC: Relaxed, as in `mark_removed`.
        if self.removed.load(Ordering::Relaxed) {
            return false;
        }
        if self.name == DEFAULT_NAMESPACE {
            return true;
        }
        let Some(ident) = self.ident else {
            return true;
        };
        match Dir::open().and_then(|d| d.lstat(&limits_name(&self.name))) {
            Ok(Some(st)) => shm::file_id_of(&st) == ident,
            Ok(None) => false,
            // Not gone, only unreadable (EACCES on /dev/shm, ...): keep it.
            Err(_) => true,
        }
    }

    /// `Removed` (EIDRM) if the namespace was removed since this process
    /// attached (see the module's notes).
    fn check_named(&self) -> Result<()> {
        if self.still_named() {
            Ok(())
        } else {
            self.mark_removed();
            Err(Error::Removed)
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

    /// The hints file, opened read-write (it is 0666; `None` if it cannot be
    /// used: then there are no hints).
    fn hints_file(&self) -> Option<OwnedFd> {
        let dir = Dir::open().ok()?;
        let expect = Expect {
            owner: None,
            min_size: HINTS_FILE_SIZE as u64,
            max_size: HINTS_FILE_SIZE as u64,
        };
        match dir.open_file(&hints_name(&self.name), Access::ReadWrite, None, &expect) {
            Ok(Open::File(c)) => Some(c.fd),
            _ => None,
        }
    }

    /// The hints: (next index to try, sequence number of the last set
    /// made), each reduced into range; (0, 0) when there are none to read.
    fn hints(&self) -> (u32, u32) {
        let mut b = [0u8; 8];
        let read = self
            .hints_file()
            .map(|fd| shm::pread_exact(&fd, &mut b, HINTS_NEXT_IDX_OFF as u64));
        if !matches!(read, Some(Ok(()))) {
            return (0, 0);
        }
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        (
            w(HINTS_NEXT_IDX_OFF) % self.limits.semmni,
            w(HINTS_SEQ_OFF) % (IPC_SEQ_MAX + 1),
        )
    }

    /// Records the hints after a set was made at `idx` with `seq`.
    fn set_hints(&self, idx: u32, seq: u32) {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&(idx + 1).to_le_bytes());
        b[4..].copy_from_slice(&seq.to_le_bytes());
        if let Some(fd) = self.hints_file() {
            let _ = shm::pwrite_all(&fd, &b, HINTS_NEXT_IDX_OFF as u64);
        }
    }

    /// Removes every set of the namespace (their sleepers get EIDRM) and the
    /// namespace itself, leaving nothing of this process's uid in /dev/shm.
    /// Meant for tests and tear-down; other processes' later calls fail or
    /// recreate it.
    pub fn destroy(&self) -> Result<()> {
        let dir = Dir::open()?;
        for idx in self.claimed_indices(&dir) {
            // A set this process cannot map stays; its names go below.
            if let Ok(cache::Found::Mapped(h)) = self.lookup_slow(reclaim::pin(), idx, None) {
                let removed = self.remove(&h).is_ok();
                h.end();
                if removed {
                    self.forget_removed(idx);
                }
            }
        }
        let ours = |r: Result<()>| match r {
            // Another user's name: theirs to remove (the directory is
            // sticky).
            Err(Error::NotPermitted) | Err(Error::PermissionDenied) => Ok(()),
            r => r,
        };
        for name in dir.list(&format!("shmsem.{}.", self.name)) {
            ours(dir.unlink(&name))?;
        }
        ours(dir.unlink(&limits_name(&self.name)))?;
        if let Some(m) = OPEN.get() {
            m.lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.name);
        }
        Ok(())
    }
}
