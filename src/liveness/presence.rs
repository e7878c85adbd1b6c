//! This process's presence in one namespace, and its view of others'.
//!
//! Each uid has one *presence file* per namespace, `/dev/shm/shmsem.NS.p.UID`
//! (regular, size 0, mode 0644, owned by UID; `shm_layout::lock_bytes`),
//! created exclusively by the first process of UID that needs it. A process
//! holds one descriptor of its own uid's file, read-write, close-on-exec,
//! and through it the write lock on its presence byte
//! (`shm_layout::presence_byte`) and, while it claims a process-table
//! entry, on that entry's claim byte. Only UID's processes can open the
//! file for writing, so only they can take write locks in it: another user
//! can neither make a dead process look alive nor a dead claimer's entry
//! look claimed. Checkers ask about write locks only ([`Presence::write_held`],
//! `F_OFD_GETLK` with `F_RDLCK`): the read locks that anyone may take do
//! not count. (They can keep a process from taking its own byte: then it
//! has no presence, and its claims are bare, see `shm_layout::ProcOwner`.)
//!
//! To ask about another uid's processes, a process keeps a few read-only
//! descriptors of other uids' files ([`OTHERS`], least recently used
//! replaced), close-on-exec too. A presence file that is missing, not a
//! regular file, owned by someone else (a squatter), or writable by group
//! or others, is not used: it gives no hint, and pid and start time decide
//! (see [`super::OsHost`]), which is right, only slower.
//!
//! The program may close a descriptor (a daemon closing every descriptor)
//! and reuse its number for a file of its own. So the number is never
//! trusted for anything that writes or closes: [`Presence::own`] compares
//! the device and inode behind it with the file's first, and opens a new
//! descriptor (re-taking the presence lock) when they differ; a descriptor
//! is closed only if it still names its file. The lock tests go through the
//! numbers unchecked: a wrong answer there is "not held", which only sends
//! the liveness check to /proc, or "held" by a file of the program's own,
//! which keeps an entry only while its pid exists.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use super::identity;
use crate::shm::{self, FileId};
use crate::sync::{AtomicI32, AtomicU32, Ordering};
use crate::Result;
use shm_layout::presence_byte;

/// Read-only descriptors of other uids' presence files kept per namespace.
pub const OTHERS: usize = 4;

/// The presence descriptors this process opened, so that a child forked
/// without exec closes its copies at once ([`close_inherited`]): a copy
/// would keep the parent's presence lock held after the parent died.
static OPENED: [AtomicI32; TRACKED] = [const { AtomicI32::new(-1) }; TRACKED];
const TRACKED: usize = 64;
/// In a child just forked (pthread_atfork's child handler; async-signal-
/// safe: loads and close): closes the copies of the parent's presence
/// descriptors. The child's [`Presence`] finds its copy closed and never
/// closes that number again.
pub(super) fn close_inherited() {
    for fd in &OPENED {
        let n = fd.swap(-1, Ordering::Relaxed);
        if n >= 0 {
            // SAFETY: close of a number the parent opened as a presence
            // descriptor; nothing else in the child uses it yet.
            unsafe { libc::close(n) };
        }
    }
}

/// Whether `fd` is tracked now (else a forked child keeps its copy until
/// its [`Presence`] closes it: README difference 4).
fn track(fd: i32) -> bool {
    OPENED.iter().any(|slot| {
        slot.compare_exchange(-1, fd, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    })
}

fn untrack(fd: i32) {
    for slot in &OPENED {
        let _ = slot.compare_exchange(fd, -1, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// A descriptor, the file it was opened for and the process it was opened by.
struct Held {
    pid: i32,
    /// In [`OPENED`]: a forked child's copy is closed by [`close_inherited`].
    tracked: bool,
    /// The file the descriptor must still name.
    file: FileId,
    /// Never closed by dropping (see `Drop for Held`).
    fd: std::mem::ManuallyDrop<OwnedFd>,
}

impl Held {
    fn new(pid: i32, file: FileId, fd: OwnedFd) -> Held {
        Held {
            tracked: track(fd.as_raw_fd()),
            pid,
            file,
            fd: std::mem::ManuallyDrop::new(fd),
        }
    }

    /// Still this process's descriptor of its file.
    fn valid(&self, pid: i32) -> bool {
        self.pid == pid && FileId::of_raw(self.fd.as_raw_fd()) == Some(self.file)
    }

    /// Lets go of a descriptor that is no longer valid for this process
    /// (`pid`), closing it only if it is a forked child's untracked copy
    /// of its parent's (closing that leaves the parent's locks alone; its
    /// number cannot have been reused, the copy holds it); otherwise it
    /// was closed already (by [`close_inherited`] in a child: the number
    /// may be one of the child's own descriptors now), or the program
    /// closed it (and perhaps reused the number for a file of its own):
    /// never close it again.
    fn abandon(self, pid: i32) {
        let raw = self.fd.as_raw_fd();
        if self.pid == pid {
            untrack(raw);
        } else if !self.tracked && FileId::of_raw(raw) == Some(self.file) {
            // SAFETY: the child's own copy, used by nothing else.
            unsafe { libc::close(raw) };
        }
        std::mem::forget(self);
    }

    fn borrow(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Closed only if it is still this process's own descriptor of the
        // file: a forked child's copy was closed by [`close_inherited`]
        // already, and a number the program closed may be one of its own
        // files now.
        let raw = self.fd.as_raw_fd();
        if self.pid == identity::pid() && FileId::of_raw(raw) == Some(self.file) {
            untrack(raw);
            // SAFETY: dropped once, here; the number is this process's
            // open descriptor (checked just above).
            drop(unsafe { std::mem::ManuallyDrop::take(&mut self.fd) });
        }
    }
}

/// What a claimer needs ([`Presence::own`]): its presence file, if it has
/// a usable one, and the uid that owns it (the effective uid otherwise).
pub struct Own<'a> {
    /// The checked read-write descriptor of the uid's presence file.
    pub fd: Option<BorrowedFd<'a>>,
    /// The uid whose presence file it is (to be named in the entry).
    pub uid: u32,
}

/// This process's own presence file.
struct OwnFile {
    held: Held,
    uid: u32,
}

/// A read-only descriptor of another uid's presence file.
struct Other {
    uid: u32,
    held: Held,
    /// `Others::tick` at its last use.
    used: u64,
}

struct Others {
    /// The process the descriptors were opened by.
    pid: i32,
    tick: u64,
    slots: [Option<Other>; OTHERS],
}

/// This process's presence in a namespace (see the module's comment).
pub struct Presence {
    /// The namespace's name (presence files are `shmsem.NS.p.UID`).
    ns: String,
    /// The own presence file: the descriptor's number (-1: none), its
    /// owner and the pid that opened it (0: none), for lock tests without
    /// the mutex.
    own_pid: AtomicI32,
    own_fd: AtomicI32,
    own_uid: AtomicU32,
    own: Mutex<Option<OwnFile>>,
    others: Mutex<Others>,
}

/// The name of `uid`'s presence file in namespace `ns` (in /dev/shm).
pub fn presence_name(ns: &str, uid: u32) -> String {
    format!("shmsem.{ns}.p.{uid}")
}

/// Unlinks the presence files of namespace `ns` that this process may
/// (its own uid's; every one for root): they go with the namespace. A
/// process still holding one keeps its descriptor of the unlinked file,
/// where nobody looks any more: its liveness comes from /proc until it
/// opens the namespace again.
pub fn unlink_presence_files(ns: &str) {
    let Ok(dir) = shm::Dir::open() else {
        return;
    };
    for name in dir.list(&format!("shmsem.{ns}.p.")) {
        let _ = dir.unlink(&name);
    }
}

/// Whether `fd` is a presence file `uid`'s processes alone can lock: a
/// regular file owned by `uid`, writable by nobody else. Its identity if so.
fn usable(fd: &OwnedFd, uid: u32) -> Option<FileId> {
    let st = rustix::fs::fstat(fd).ok()?;
    let regular =
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile;
    (regular && st.st_uid == uid && st.st_mode & 0o022 == 0).then(|| FileId::of_stat(&st))
}

/// Opens (creating it if it is missing) this process's uid's presence file
/// in `ns`, read-write. `None` if it cannot be used (see the module's
/// comment): this process then has no presence there.
fn open_own(ns: &str) -> Option<(OwnedFd, FileId, u32)> {
    use rustix::fs::{Mode, OFlags};
    let uid = rustix::process::geteuid().as_raw();
    let name = presence_name(ns, uid);
    // A name that appears between our two opens (another process of the
    // uid created it) is opened on the next round; a name that keeps
    // vanishing is given up.
    for _ in 0..4 {
        let fd = match shm::open_in_dev_shm(&name, OFlags::RDWR, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => {
                match shm::open_in_dev_shm(
                    &name,
                    OFlags::RDWR | OFlags::CREATE | OFlags::EXCL,
                    Mode::from_raw_mode(0o644),
                ) {
                    Ok(fd) => {
                        // The umask may have taken bits away: others must
                        // be able to read it to ask about our locks.
                        let _ = rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o644));
                        fd
                    }
                    Err(rustix::io::Errno::EXIST) => continue,
                    Err(_) => return None,
                }
            }
            // ELOOP (a symbolic link), EACCES (someone else's), EMFILE...
            Err(_) => return None,
        };
        return usable(&fd, uid).map(|id| (fd, id, uid));
    }
    None
}

/// Opens `uid`'s presence file in `ns` read-only, if it can be used.
fn open_other(ns: &str, uid: u32) -> Option<(OwnedFd, FileId)> {
    use rustix::fs::{Mode, OFlags};
    let fd = shm::open_in_dev_shm(&presence_name(ns, uid), OFlags::RDONLY, Mode::empty()).ok()?;
    usable(&fd, uid).map(|id| (fd, id))
}

impl Presence {
    /// The presence in namespace `ns`. Nothing is opened until first
    /// needed.
    pub fn new(ns: &str) -> Presence {
        Presence {
            ns: ns.to_string(),
            own_pid: AtomicI32::new(0),
            own_fd: AtomicI32::new(-1),
            own_uid: AtomicU32::new(0),
            own: Mutex::new(None),
            others: Mutex::new(Others {
                pid: 0,
                tick: 0,
                slots: [const { None }; OTHERS],
            }),
        }
    }

    /// This process's own presence file, checked to be the file it opened
    /// and opened by this process (opened, or opened again, if not), with
    /// this process's presence byte locked through it; `fd: None` if it
    /// has no usable one. Runs `f` under the mutex, so that no other thread
    /// replaces the descriptor meanwhile.
    pub fn own<T>(&self, f: impl FnOnce(Own<'_>) -> Result<T>) -> Result<T> {
        let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
        let pid = identity::pid();
        if !own.as_ref().is_some_and(|o| o.held.valid(pid)) {
            if let Some(old) = own.take() {
                old.held.abandon(pid);
            }
            // SYNC: Relaxed: no lock test may use the old number from now
            // on (it is forgotten, not closed: see the module's comment).
            self.own_pid.store(0, Ordering::Relaxed);
            if let Some((fd, id, uid)) = open_own(&self.ns) {
                if let Some(byte) = presence_byte(pid, identity::start_time()) {
                    // Not taken: held through a descriptor we closed and
                    // the program duplicated beforehand (present either
                    // way), or another user's read lock (no presence: pid
                    // and start time decide).
                    let _ = shm::ofd_try_lock(&fd, byte);
                }
                self.own_fd.store(fd.as_raw_fd(), Ordering::Relaxed);
                self.own_uid.store(uid, Ordering::Relaxed);
                // SYNC: Release publishes `own_fd` and `own_uid` to the
                // Acquire load of `own_pid` in `Presence::write_held`.
                self.own_pid.store(pid, Ordering::Release);
                *own = Some(OwnFile {
                    held: Held::new(pid, id, fd),
                    uid,
                });
            }
        }
        match own.as_ref() {
            Some(o) => f(Own {
                fd: Some(o.held.borrow()),
                uid: o.uid,
            }),
            None => f(Own {
                fd: None,
                uid: rustix::process::geteuid().as_raw(),
            }),
        }
    }

    /// Whether a process of `uid` holds a write lock on `byte` of `uid`'s
    /// presence file: `None` if that cannot be told (no usable file, an
    /// error). Through this process's own descriptor when `uid` is its own
    /// (no system call but the test), otherwise through a kept read-only
    /// one, opened if need be.
    pub fn write_held(&self, uid: u32, byte: i64) -> Option<bool> {
        let pid = identity::pid();
        // SYNC: Acquire pairs with the Release store of `own_pid` in
        // `Presence::own`, after `own_fd` and `own_uid`.
        if self.own_pid.load(Ordering::Acquire) == pid
            && self.own_uid.load(Ordering::Relaxed) == uid
        {
            let fd = self.own_fd.load(Ordering::Relaxed);
            // SAFETY: `fd` is a number this process opened; if the program
            // closed it since, the number may name another of its files,
            // or nothing: the test only reads (see the module's comment).
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            return shm::ofd_write_held(fd, byte).ok();
        }
        self.write_held_other(pid, uid, byte)
    }

    #[cold]
    fn write_held_other(&self, pid: i32, uid: u32, byte: i64) -> Option<bool> {
        let mut o = self.others.lock().unwrap_or_else(|e| e.into_inner());
        if o.pid != pid {
            // A forked child: the parent's descriptors are its copies.
            for s in o.slots.iter_mut() {
                if let Some(x) = s.take() {
                    x.held.abandon(pid);
                }
            }
            o.pid = pid;
        }
        o.tick += 1;
        let tick = o.tick;
        let i = match o
            .slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|x| x.uid == uid))
        {
            Some(i) => i,
            None => {
                let (fd, id) = open_other(&self.ns, uid)?;
                // A free slot, or the least recently used one (its
                // descriptor closed by the drop, if it is still its file's).
                let i = o.slots.iter().position(Option::is_none).unwrap_or_else(|| {
                    (0..OTHERS)
                        .min_by_key(|&i| o.slots[i].as_ref().map_or(0, |x| x.used))
                        .expect("OTHERS > 0")
                });
                o.slots[i] = Some(Other {
                    uid,
                    held: Held::new(pid, id, fd),
                    used: tick,
                });
                i
            }
        };
        let x = o.slots[i].as_mut().expect("found or filled");
        x.used = tick;
        shm::ofd_write_held(x.held.borrow(), byte).ok()
    }
}
