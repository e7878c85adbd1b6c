//! The calls a diagnostic tool makes: on one set (`shmsem stat`, `shmsem
//! gc`), its report and a sweep of its dead processes; on namespaces
//! (`shmsem ns ls`, `shmsem ns rm`), the survey of those in /dev/shm and
//! the removal of one.

use crate::set::{SetReport, Sweep, LOCK_PATIENCE_NS};
use crate::shm::{self, Access, Dir, Expect, Open};
use crate::sync;
use crate::{Error, Result};
use shm_layout::*;

use super::cache::{Found, SetHandle};
use super::perm::{creds, READ};
use super::reclaim::{self, Held};
use super::{hints_name, limits_name, parse_index_name, parse_set_name, valid_name, Namespace};

/// One namespace found in /dev/shm by [`Namespace::survey`]: its limits
/// file (read as bytes, never mapped, locked or changed), its hints file,
/// and the set files and claims named after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// The name (the limits file is `/dev/shm/shmsem.NAME`).
    pub name: String,
    /// The limits file's owner (who may remove it: /dev/shm is sticky).
    pub uid: u32,
    /// The limits file's permission bits.
    pub mode: u32,
    /// The limits file's size (st_size).
    pub size: u64,
    /// What the namespace's own files (limits and hints) take in /dev/shm
    /// (st_blocks × 512).
    pub bytes: u64,
    /// Live sets: valid index claims. `None` if the limits file could not
    /// be read; `problem` says why.
    pub sets: Option<u32>,
    /// Why the limits file could not be read: the error (EACCES; EUCLEAN
    /// for a file that is not a limits file this library reads) and a text.
    pub problem: Option<(Error, String)>,
    /// Set files named after the namespace (live sets, and leftovers `gc`
    /// would remove).
    pub segments: u32,
    /// What those set files take in /dev/shm (st_blocks × 512).
    pub segment_bytes: u64,
}

/// What [`Namespace::remove_namespace`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NamespaceRemoval {
    /// Live sets removed (only with `force`).
    pub sets_removed: usize,
    /// Half-made or half-removed sets finished, and claims naming nothing
    /// removed (processes died half-way).
    pub stale_entries: usize,
    /// Set files no index claim named, unlinked.
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

/// `NAME` of a file `shmsem.NAME` that can be a limits file (no dot, a
/// valid namespace name), of its hints file, or of a set file
/// `shmsem.NAME.s.INDEX.SEQ`.
enum ShmFile<'a> {
    Limits(&'a str),
    Hints(&'a str),
    Segment(&'a str),
}

fn classify(file: &str) -> Option<ShmFile<'_>> {
    let rest = file.strip_prefix("shmsem.")?;
    let (name, tail) = match rest.split_once('.') {
        Some((n, t)) => (n, Some(t)),
        None => (rest, None),
    };
    if !valid_name(name) {
        return None;
    }
    match tail {
        None => Some(ShmFile::Limits(name)),
        Some("hints") => Some(ShmFile::Hints(name)),
        Some(_) if parse_set_name(name, file).is_some() => Some(ShmFile::Segment(name)),
        Some(_) => None,
    }
}

/// The limits file `/dev/shm/shmsem.NAME`, surveyed: opened through the
/// one open (never followed, never blocking), read with pread.
fn survey_limits(dir: &Dir, name: &str) -> Option<NamespaceInfo> {
    let file = format!("shmsem.{name}");
    // Gone since the directory was read: nothing to report.
    let meta = dir.lstat(&file).ok()??;
    let mut info = NamespaceInfo {
        name: name.to_string(),
        uid: meta.st_uid,
        mode: meta.st_mode & 0o7777,
        size: meta.st_size as u64,
        bytes: meta.st_blocks as u64 * 512,
        sets: None,
        problem: None,
        segments: 0,
        segment_bytes: 0,
    };
    if !shm::is_regular(&meta) {
        info.problem = Some((Error::Corrupt, "not a regular file".into()));
        return Some(info);
    }
    let expect = Expect {
        owner: Some(meta.st_uid),
        ..Expect::ANY
    };
    let c = match dir.open_file(&file, Access::Read, None, &expect) {
        Ok(Open::File(c)) => c,
        Ok(Open::Missing) => return None,
        Ok(Open::Denied) => {
            info.problem = Some((Error::PermissionDenied, "cannot be opened: EACCES".into()));
            return Some(info);
        }
        Err(e) => {
            info.problem = Some((e, format!("cannot be opened: {e}")));
            return Some(info);
        }
    };
    info.uid = c.st.st_uid;
    info.mode = c.st.st_mode & 0o7777;
    info.size = c.st.st_size as u64;
    info.bytes = c.st.st_blocks as u64 * 512;
    if info.size < LIMITS_FILE_SIZE as u64 {
        info.problem = Some((
            Error::Corrupt,
            format!("the header cannot be read ({} bytes)", info.size),
        ));
        return Some(info);
    }
    let mut b = [0u8; LIMITS_FILE_SIZE];
    if let Err(e) = shm::pread_exact(&c.fd, &mut b, 0) {
        info.problem = Some((e, format!("the header cannot be read: {e}")));
        return Some(info);
    }
    let r = LimitsRecord::from_bytes(&b);
    let why = if r.magic != LIMITS_MAGIC {
        Some("not a shmsem limits file (bad magic)".to_string())
    } else if r.version == 0 {
        Some("being created, or its creator died".to_string())
    } else if r.version != LAYOUT_VERSION {
        Some(format!(
            "layout version {}; this shmsem reads version {LAYOUT_VERSION}",
            r.version
        ))
    } else if !(1..=SEMMNI_MAX).contains(&r.semmni) || info.size != LIMITS_FILE_SIZE as u64 {
        Some(format!(
            "bad sizes (semmni {}, file {} bytes)",
            r.semmni, info.size
        ))
    } else {
        None
    };
    if let Some(why) = why {
        info.problem = Some((Error::Corrupt, why));
    }
    Some(info)
}

impl Namespace {
    /// Every namespace in /dev/shm (a limits file `shmsem.NAME` with a
    /// valid name), sorted by name: the limits file's owner, mode and the
    /// space the namespace's own files take, its live sets (valid index
    /// claims), the set files named after it. Reads without mapping,
    /// locking or changing anything; a file that is not a limits file this
    /// library can read (garbage, another user's file it may not read,
    /// another layout version) is listed with the reason in
    /// [`NamespaceInfo::problem`].
    pub fn survey() -> Vec<NamespaceInfo> {
        let mut found: Vec<NamespaceInfo> = Vec::new();
        let mut segments: std::collections::HashMap<String, (u32, u64)> = Default::default();
        let mut hints: std::collections::HashMap<String, u64> = Default::default();
        let Ok(dir) = Dir::open() else {
            return found;
        };
        for file in dir.list("shmsem.") {
            match classify(&file) {
                Some(ShmFile::Limits(name)) => found.extend(survey_limits(&dir, name)),
                Some(ShmFile::Hints(name)) => {
                    let bytes = dir
                        .lstat(&file)
                        .ok()
                        .flatten()
                        .map_or(0, |st| st.st_blocks as u64 * 512);
                    hints.insert(name.to_string(), bytes);
                }
                Some(ShmFile::Segment(name)) => {
                    let bytes = dir
                        .lstat(&file)
                        .ok()
                        .flatten()
                        .map_or(0, |st| st.st_blocks as u64 * 512);
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
            if let Some(&b) = hints.get(&info.name) {
                info.bytes += b;
            }
            if info.problem.is_none() {
                info.sets = Some(count_claims(&dir, &info.name));
            }
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found
    }

    /// Removes this namespace: its sets (with `force`), the crash
    /// leftovers `gc` would remove, its hints file and its limits file.
    ///
    /// While live sets remain it refuses with ENOTEMPTY and changes
    /// nothing, unless `force`: then every set is removed first, as by
    /// IPC_RMID (its sleepers get EIDRM), which needs IPC_RMID's right to
    /// every one of them (else EPERM, or EACCES for a set this process
    /// cannot open, and nothing is removed). Only the limits file's owner
    /// or root may remove it (/dev/shm is sticky; else EPERM, nothing
    /// removed). A set whose lock holder does not let go within 10 ms
    /// (stopped, say) makes it fail with EAGAIN, the sets before it removed.
    ///
    /// There is no lock over the namespace: a set created while this runs
    /// may outlive it (found again once the name is opened again). A
    /// process that still has the namespace open gets EIDRM from its next
    /// semget, IPC_RMID, IPC_SET or gc (its limits file is gone); opening
    /// the name again gives a fresh namespace. EIDRM if it was removed
    /// already.
    pub fn remove_namespace(&self, force: bool) -> Result<NamespaceRemoval> {
        self.check_named()?;
        let dir = Dir::open()?;
        let mut r = NamespaceRemoval::default();
        // Claims of sets that are removed already (a remover died) do not
        // count.
        let live: Vec<u32> = self
            .valid_claims(&dir)
            .into_iter()
            .map(|t| t.idx)
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
        let (euid, _) = creds();
        if let Some(st) = dir.lstat(&limits_name(&self.name))? {
            if euid != 0 && euid != st.st_uid {
                return Err(Error::NotPermitted);
            }
        }
        // Every set must be ours to remove before any is removed. One
        // handle at a time (a call holds one pin).
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
                // Gone since: nothing to remove.
                Err(Error::Invalid) => continue,
                Ok(Found::Unmappable) => return Err(Error::PermissionDenied),
                Err(e) => return Err(e),
            };
            // A set's lock is waited for briefly only: a holder that does
            // not let go (stopped, say) makes the removal fail with EAGAIN,
            // the sets removed so far gone.
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
        (r.stale_entries, r.orphan_segments) = self.clean_up()?;
        // The hints file may be another user's (anyone may make it): then
        // it stays, for its owner or root.
        match dir.unlink(&hints_name(&self.name)) {
            Ok(()) | Err(Error::NotPermitted) | Err(Error::PermissionDenied) => {}
            Err(e) => return Err(e),
        }
        crate::liveness::unlink_presence_files(&self.name);
        dir.unlink(&limits_name(&self.name))?;
        self.mark_removed();
        Ok(r)
    }
}

/// The valid index claims of namespace `ns`, counted (a survey needs no
/// namespace object: `read_claim` is a namespace's, so this reads the
/// claims itself, by the same rule).
fn count_claims(dir: &Dir, ns: &str) -> u32 {
    let mut n = 0;
    for link in dir.list(&format!("shmsem.{ns}.i.")) {
        let Some(idx) = parse_index_name(ns, &link) else {
            continue;
        };
        let (Ok(Some(l)), Ok(Some(target))) = (dir.lstat(&link), dir.readlink(&link)) else {
            continue;
        };
        if !shm::is_symlink(&l) || parse_set_name(ns, &target).map(|t| t.0) != Some(idx) {
            continue;
        }
        if let Ok(Some(f)) = dir.lstat(&target) {
            if shm::is_regular(&f) && f.st_uid == l.st_uid {
                n += 1;
            }
        }
    }
    n
}
