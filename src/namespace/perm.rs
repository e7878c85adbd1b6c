//! Permissions and credentials: who this process is to a set (its euid,
//! egid and groups, read once per process), what the set's mode grants it
//! (the kernel's ipcperms), the cache of that answer in each mapped set,
//! and the file mode that lets the OS enforce part of it.

use std::sync::Mutex;

use crate::liveness;
use crate::set::{HeaderFields, SetView};
use crate::sync::{AtomicI32, AtomicU32, Ordering};
use crate::{Error, Result};

use super::cache::{Found, SetHandle};
use super::Namespace;

/// Read access, as a requested mode (`flag` of [`allows`]).
pub(super) const READ: u32 = 0o444;
/// Alter (write) access, as a requested mode.
pub(super) const ALTER: u32 = 0o222;

/// The process's credentials, read once per process (and again in a forked
/// child: the pid changes). Lock-free: the permission check runs on every
/// call, including the fast path. Credentials are cached per process
/// (README difference 2).
static CRED_PID: AtomicI32 = AtomicI32::new(0);
static CRED_EUID: AtomicU32 = AtomicU32::new(0);
static CRED_EGID: AtomicU32 = AtomicU32::new(0);
/// Supplementary groups, only needed when neither owner nor primary group matches.
static GROUPS: Mutex<(i32, Vec<u32>)> = Mutex::new((0, Vec::new()));

/// (euid, egid) of this process.
pub(super) fn creds() -> (u32, u32) {
    let pid = liveness::pid();
    // SYNC: Acquire pairs with the Release store of CRED_PID below, after
    // the uid and gid stores.
    if CRED_PID.load(Ordering::Acquire) != pid {
        CRED_EUID.store(rustix::process::geteuid().as_raw(), Ordering::Relaxed);
        CRED_EGID.store(rustix::process::getegid().as_raw(), Ordering::Relaxed);
        // SYNC: Release publishes the two stores above to the Acquire load
        // of CRED_PID above (in `creds`).
        CRED_PID.store(pid, Ordering::Release);
    }
    (
        CRED_EUID.load(Ordering::Relaxed),
        CRED_EGID.load(Ordering::Relaxed),
    )
}

/// Whether `a` or `b` is one of this process's supplementary groups.
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
pub(super) struct Perm {
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) cuid: u32,
    pub(super) cgid: u32,
    pub(super) mode: u32,
}

impl Perm {
    /// The fields as they are (consistent under the set's lock).
    pub(super) fn read(v: &SetView<'_>) -> Perm {
        Perm::of(HeaderFields::of(v))
    }

    /// The ownership and mode among a set's header fields.
    pub(super) fn of(f: HeaderFields) -> Perm {
        Perm {
            uid: f.uid,
            gid: f.gid,
            cuid: f.cuid,
            cgid: f.cgid,
            mode: f.mode,
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
    pub(super) fn permits(&self, flag: u32) -> bool {
        allows(self.granted(), flag)
    }

    /// May the caller IPC_SET or IPC_RMID?
    pub(super) fn owner_or_creator(&self) -> bool {
        let (euid, _) = creds();
        euid == 0 || euid == self.uid || euid == self.cuid
    }
}

/// Whether `granted` access bits cover `flag` (a 9-bit requested mode).
pub(super) fn allows(granted: u32, flag: u32) -> bool {
    let requested = ((flag >> 6) | (flag >> 3) | flag) & 7;
    requested & !granted == 0
}

/// The file mode of a set's segment, which lets the OS enforce what the
/// set's mode grants each class: a class with any write bit gets `rw-` (it
/// maps the segment read-write to operate); a class granted only read gets
/// `r--` (it can open the segment O_RDONLY and map it PROT_READ, nothing
/// more: values, lock word, queue and process table are out of its reach);
/// a class granted nothing gets `---`. The file's owner, the set's
/// creator, always has `rw-` (it may always IPC_SET/IPC_RMID, even under
/// mode 0, as in the kernel).
pub(super) fn file_mode(mode: u32) -> u32 {
    let mut m = 0o600;
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 0o6;
        if bits & 0o2 != 0 {
            m |= 0o6 << shift;
        } else if bits & 0o4 != 0 {
            m |= 0o4 << shift;
        }
    }
    m
}

/// [`SetHandle::granted`]: the entry is valid.
const GRANTED_VALID: u64 = 1 << 8;
/// [`SetHandle::granted`]: the bits of the pid (above GRANTED_VALID).
const GRANTED_PID_MASK: u64 = (1 << 23) - 1;

impl Namespace {
    /// This process's access bits to `h`, cached in `h.granted` as
    /// `perm_seq << 32 | pid << 9 | GRANTED_VALID | bits`. An owner or mode
    /// change moves `perm_seq`, and a forked child (whose credentials may
    /// change) has another pid, so a stale entry is never used.
    #[inline]
    pub(super) fn granted(&self, h: &SetHandle) -> Result<u32> {
        // SYNC: Acquire pairs with the Release store that moves `perm_seq`
        // after an owner or mode change (INTENT_SETPERM in `SetView::redo`):
        // a match means no change since the bits were computed.
        let pseq = h.reader().perm_seq();
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

    /// EACCES unless this process is granted `flag` ([`READ`] or
    /// [`ALTER`]) on `h`.
    #[inline]
    pub(super) fn require(&self, h: &SetHandle, flag: u32) -> Result<()> {
        if allows(self.granted(h)?, flag) {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }

    /// A set's ownership and mode, lock-free; when a writer is in the way,
    /// as its last committed step left them (a holder that is stopped, or
    /// died mid-update, is not waited for; see `Namespace::read_set`).
    pub(super) fn perm(&self, h: &SetHandle) -> Result<Perm> {
        if let Some(f) = h.reader().read_header() {
            return Ok(Perm::of(f));
        }
        Ok(self.read_set(
            h,
            |g, _, _| Perm::read(g.view()),
            |_, _| {
                h.reader().committed_read(|c| {
                    let (uid, gid, mode) = c.owner_mode();
                    Some(Perm {
                        uid,
                        gid,
                        mode,
                        ..Perm::of(h.reader().header())
                    })
                })
            },
        ))
    }

    /// The permission check of semop and semctl alone: `Ok` if this process
    /// may read set `semid` (with `alter`: alter it), else EACCES, or the
    /// error of the lookup (EINVAL for an unknown id). For the preload
    /// library, which must answer EACCES before a copy-in fails (the kernel
    /// checks permission first) and so asks before it gives up.
    #[doc(hidden)]
    pub fn check_access(&self, semid: i32, alter: bool) -> Result<()> {
        match self.find(super::reclaim::pin(), semid)? {
            Found::Mapped(h) => self.require(&h, if alter { ALTER } else { READ }),
            // Its mode grants this process's class nothing.
            Found::Unmappable => Err(Error::PermissionDenied),
        }
    }
}
