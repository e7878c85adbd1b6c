//! The calls a diagnostic tool makes: on one set (`shmsem stat`, `shmsem
//! gc`), its report and a sweep of its dead processes; on namespaces
//! (`shmsem ns ls`, `shmsem ns rm`), the survey of those in /dev/shm and
//! the removal of one.

use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};

use crate::set::{SetReport, Sweep, LOCK_PATIENCE_NS};
use crate::shm;
use crate::sync;
use crate::{Error, Result};
use shm_layout::*;

use super::cache::{Found, SetHandle};
use super::perm::{creds, READ};
use super::reclaim::{self, Held};
use super::{registry_name, set_name, valid_name, Namespace};

/// One namespace found in /dev/shm by [`Namespace::survey`]: its registry
/// file, read as bytes (never mapped, locked or changed), and the set
/// segments named after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// The name (the registry is `/dev/shm/shmsem.NAME`).
    pub name: String,
    /// The registry file's owner (who may remove it: /dev/shm is sticky).
    pub uid: u32,
    /// The registry file's permission bits.
    pub mode: u32,
    /// The registry file's size (st_size).
    pub size: u64,
    /// What the registry takes in /dev/shm (st_blocks × 512).
    pub bytes: u64,
    /// Live sets: LIVE registry entries whose segment file exists. `None`
    /// if the registry could not be read; `problem` says why.
    pub sets: Option<u32>,
    /// Why the registry could not be read: the error (EACCES; EUCLEAN for
    /// a file that is not a registry this library reads) and a text.
    pub problem: Option<(Error, String)>,
    /// Set segment files named after the namespace (live sets, and
    /// leftovers `gc` would remove).
    pub segments: u32,
    /// What those segment files take in /dev/shm (st_blocks × 512).
    pub segment_bytes: u64,
}

/// What [`Namespace::remove_namespace`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NamespaceRemoval {
    /// Live sets removed (only with `force`).
    pub sets_removed: usize,
    /// Registry entries of sets that were gone (a remover died half-way).
    pub stale_entries: usize,
    /// Segment files no registry entry named, unlinked.
    pub orphan_segments: usize,
}

impl Namespace {
    /// A diagnostic view of set `semid`: values, waiters, the pending
    /// queue, the processes in its table and their adjustments (see
    /// [`SetReport`]). Needs read permission.
    pub fn report(&self, semid: i32) -> Result<SetReport> {
        let h = self.mapped(semid)?;
        self.require(&h, READ)?;
        self.locked(&h, |g, me, host| g.report(me, host))
    }

    /// Sweeps set `semid` now: every dead process in its table is reaped
    /// (its undo applied, its queue slots and entry freed), idle ones too.
    pub fn sweep(&self, semid: i32) -> Result<()> {
        let h = self.mapped(semid)?;
        self.locked(&h, |g, me, host| g.sweep_dead(me, host, Sweep::All))
    }

    /// Set `semid`, which these calls need mapped: one this process cannot
    /// map is EACCES (its mode grants our class nothing).
    fn mapped(&self, semid: i32) -> Result<Held<'_, SetHandle>> {
        match self.find(reclaim::pin(), semid)? {
            Found::Mapped(h) => Ok(h),
            Found::Unmappable => Err(Error::PermissionDenied),
        }
    }
}

/// `NAME` of a file `shmsem.NAME` that can be a registry (no dot, a valid
/// namespace name), or of a set segment `shmsem.NAME.INDEX.SEQ`.
enum ShmFile<'a> {
    Registry(&'a str),
    Segment(&'a str),
}

fn classify(file: &str) -> Option<ShmFile<'_>> {
    let rest = file.strip_prefix("shmsem.")?;
    let mut parts = rest.split('.');
    let name = parts.next().filter(|n| valid_name(n))?;
    let tail: Vec<&str> = parts.collect();
    match tail.len() {
        0 => Some(ShmFile::Registry(name)),
        2 if tail
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) =>
        {
            Some(ShmFile::Segment(name))
        }
        _ => None,
    }
}

/// The live sets of the registry in `file` (open, of `len` bytes), read
/// with pread: a hostile or truncated file gives an error, never a fault.
fn count_sets(name: &str, file: &std::fs::File, len: u64) -> std::result::Result<u32, String> {
    let mut hdr = [0u8; REGISTRY_ENTRIES_OFF];
    file.read_exact_at(&mut hdr, 0)
        .map_err(|e| format!("the header cannot be read: {e}"))?;
    let u32_at = |b: &[u8], off: usize| u32::from_le_bytes(b[off..off + 4].try_into().unwrap());
    let u64_at = |b: &[u8], off: usize| u64::from_le_bytes(b[off..off + 8].try_into().unwrap());
    if u64_at(&hdr, core::mem::offset_of!(RegistryHeader, magic)) != REGISTRY_MAGIC {
        return Err("not a shmsem registry (bad magic)".into());
    }
    match u32_at(&hdr, core::mem::offset_of!(RegistryHeader, version)) {
        LAYOUT_VERSION => {}
        0 => return Err("being created, or its creator died".into()),
        v => {
            return Err(format!(
                "layout version {v}; this shmsem reads version {LAYOUT_VERSION}"
            ))
        }
    }
    let semmni = u32_at(&hdr, core::mem::offset_of!(RegistryHeader, semmni));
    if !(1..=SEMMNI_MAX).contains(&semmni)
        || registry_size(semmni) as u64 != len
        || u64_at(&hdr, core::mem::offset_of!(RegistryHeader, size)) != len
    {
        return Err(format!("bad sizes (semmni {semmni}, file {len} bytes)"));
    }
    let reserved = u32_at(&hdr, core::mem::offset_of!(RegistryHeader, reserved)).min(semmni);
    let entry = core::mem::size_of::<RegistryEntryLayout>();
    let mut buf = vec![0u8; 1024 * entry];
    let mut live = 0u32;
    let mut idx = 0u32;
    while idx < reserved {
        let n = (reserved - idx).min(1024) as usize;
        let chunk = &mut buf[..n * entry];
        file.read_exact_at(chunk, (REGISTRY_ENTRIES_OFF + idx as usize * entry) as u64)
            .map_err(|e| format!("entries cannot be read: {e}"))?;
        for (k, e) in chunk.chunks_exact(entry).enumerate() {
            let ss =
                EntryState::from_raw(u32_at(e, core::mem::offset_of!(RegistryEntry, state_seq)));
            let path = || format!("/dev/shm{}", set_name(name, idx + k as u32, ss.seq()));
            // A LIVE entry without its segment is a remover's leftover.
            if ss.is_live() && std::fs::symlink_metadata(path()).is_ok() {
                live += 1;
            }
        }
        idx += n as u32;
    }
    Ok(live)
}

/// The registry `/dev/shm/shmsem.NAME`, surveyed.
fn survey_registry(name: &str) -> Option<NamespaceInfo> {
    let path = format!("/dev/shm/shmsem.{name}");
    // Gone since the directory was read: nothing to report.
    let meta = std::fs::symlink_metadata(&path).ok()?;
    let mut info = NamespaceInfo {
        name: name.to_string(),
        uid: meta.uid(),
        mode: meta.mode() & 0o7777,
        size: meta.size(),
        bytes: meta.blocks() * 512,
        sets: None,
        problem: None,
        segments: 0,
        segment_bytes: 0,
    };
    if !meta.file_type().is_file() {
        info.problem = Some((Error::Corrupt, "not a regular file".into()));
        return Some(info);
    }
    // Never follow a link, never block on a FIFO put there meanwhile.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path);
    let file = match opened {
        Ok(f) => f,
        Err(e) => {
            let err = Error::from_errno(e.raw_os_error().unwrap_or(libc::EIO));
            info.problem = Some((err, format!("cannot be opened: {e}")));
            return Some(info);
        }
    };
    match file.metadata() {
        Ok(m) if m.file_type().is_file() => {
            info.uid = m.uid();
            info.mode = m.mode() & 0o7777;
            info.size = m.size();
            info.bytes = m.blocks() * 512;
        }
        Ok(_) => {
            info.problem = Some((Error::Corrupt, "not a regular file".into()));
            return Some(info);
        }
        Err(e) => {
            let err = Error::from_errno(e.raw_os_error().unwrap_or(libc::EIO));
            info.problem = Some((err, format!("cannot be read: {e}")));
            return Some(info);
        }
    }
    match count_sets(name, &file, info.size) {
        Ok(n) => info.sets = Some(n),
        Err(why) => info.problem = Some((Error::Corrupt, why)),
    }
    Some(info)
}

impl Namespace {
    /// Every namespace in /dev/shm (a file `shmsem.NAME` with a valid
    /// name), sorted by name: the registry's owner, mode and the space it
    /// takes, its live sets, the segment files named after it. Reads
    /// without mapping, locking or changing anything; a file that is not a
    /// registry this library can read (garbage, another user's file it may
    /// not read, another layout version) is listed with the reason in
    /// [`NamespaceInfo::problem`].
    pub fn survey() -> Vec<NamespaceInfo> {
        let mut found: Vec<NamespaceInfo> = Vec::new();
        let mut segments: std::collections::HashMap<String, (u32, u64)> = Default::default();
        let Ok(dir) = std::fs::read_dir("/dev/shm") else {
            return found;
        };
        for ent in dir.flatten() {
            let file_name = ent.file_name();
            let Some(file) = file_name.to_str() else {
                continue;
            };
            match classify(file) {
                Some(ShmFile::Registry(name)) => found.extend(survey_registry(name)),
                Some(ShmFile::Segment(name)) => {
                    let bytes = ent.metadata().map(|m| m.blocks() * 512).unwrap_or(0);
                    let s = segments.entry(name.to_string()).or_default();
                    s.0 += 1;
                    s.1 += bytes;
                }
                None => {}
            }
        }
        for info in &mut found {
            if let Some(&(n, b)) = segments.get(&info.name) {
                info.segments = n;
                info.segment_bytes = b;
            }
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found
    }

    /// Removes this namespace: its registry, and the crash leftovers `gc`
    /// would remove (stale entries, orphan segment files), nothing else.
    ///
    /// While live sets remain it refuses with ENOTEMPTY and changes
    /// nothing, unless `force`: then every set is removed first, as by
    /// IPC_RMID (its sleepers get EIDRM), which needs IPC_RMID's right to
    /// every one of them (else EPERM, or EACCES for a set this process
    /// cannot open, and nothing is removed). Only the registry's owner or
    /// root may remove it (/dev/shm is sticky; else EPERM, nothing
    /// removed). A set whose lock holder does not let go within 10 ms
    /// (stopped, say) makes it fail with EAGAIN, the sets before it removed.
    ///
    /// All of it happens under the registry lock, so no set is created
    /// meanwhile; a process that still has the namespace open gets EIDRM
    /// from its next call that needs the lock (semget, IPC_RMID, IPC_SET,
    /// gc), and never creates a set in the removed registry; opening the
    /// name again gives a fresh namespace. EIDRM if it was removed already.
    pub fn remove_namespace(&self, force: bool) -> Result<NamespaceRemoval> {
        let l = self.lock_registry()?;
        let mut r = NamespaceRemoval::default();
        // LIVE entries of sets that are gone (a remover died) do not count.
        let live: Vec<u32> = self
            .live_indices()
            .into_iter()
            .filter(|&idx| {
                !matches!(
                    self.lookup_slow(reclaim::pin(), idx, None),
                    Err(Error::Invalid)
                )
            })
            .collect();
        if !live.is_empty() && !force {
            return Err(Error::from_errno(libc::ENOTEMPTY));
        }
        let st = l.with_fd(|fd| rustix::fs::fstat(fd).map_err(Error::from))?;
        let (euid, _) = creds();
        if euid != 0 && euid != st.st_uid {
            return Err(Error::NotPermitted);
        }
        // Every set must be ours to remove before any is removed. One
        // handle at a time (a call holds one pin): what is checked here
        // holds in the second pass, because IPC_SET and IPC_RMID need the
        // registry's lock, which we hold.
        for &idx in &live {
            match self.lookup_slow(reclaim::pin(), idx, None) {
                Ok(Found::Mapped(h)) => {
                    if !self.perm(&h)?.owner_or_creator() {
                        return Err(Error::NotPermitted);
                    }
                }
                Ok(Found::Unmappable) => return Err(Error::PermissionDenied),
                Err(Error::Invalid) => {}
                Err(e) => return Err(e),
            }
        }
        for &idx in &live {
            let h: Held<'_, SetHandle> = match self.lookup_slow(reclaim::pin(), idx, None) {
                Ok(Found::Mapped(h)) => h,
                // Gone since (a dead remover's record redone by a lock
                // taker): nothing to remove.
                Err(Error::Invalid) => continue,
                Ok(Found::Unmappable) => return Err(Error::PermissionDenied),
                Err(e) => return Err(e),
            };
            // The registry's lock is held, so a set's lock is waited for
            // briefly only (the order elsewhere is the set's, then the
            // registry's: semget never waits behind a set's holder): a
            // holder that does not let go (stopped, say) makes the removal
            // fail with EAGAIN, the sets removed so far gone.
            let me = self.me(&h)?;
            let host = self.host(&h);
            let Some(g) = h.writer()?.lock_until(&me, &host, || {
                sync::monotonic_ns().saturating_add(LOCK_PATIENCE_NS)
            }) else {
                return Err(Error::WouldBlock);
            };
            match self.remove_locked(&h, g) {
                Ok(()) => r.sets_removed += 1,
                Err(Error::Invalid) => {}
                Err(e) => return Err(e),
            }
        }
        (r.stale_entries, r.orphan_segments) = self.clean_up_locked();
        // The name is still ours (checked under the lock when it was
        // taken); it goes while we hold the lock, so the next holder, in
        // any process, finds the registry unlinked.
        shm::unlink(&registry_name(&self.name))?;
        crate::liveness::unlink_presence_files(&self.name);
        self.mark_removed();
        drop(l);
        Ok(r)
    }
}
