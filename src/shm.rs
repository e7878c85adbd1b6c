//! The one module that maps memory: POSIX shared-memory objects, their
//! mappings, and the byte-range (open-file-description) locks on them.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::{Error, Result};
use rustix::fs::Mode;

/// A mapped shared-memory object. It holds no descriptor: the descriptor
/// it was opened through is closed once it is mapped (the kernel holds no
/// descriptor for a set either, and a process may touch thousands of sets).
/// The object's device and inode number are kept, to recognise it later by
/// name ([`Mapping::set_mode`], [`Mapping::set_owner`]).
pub struct Mapping {
    map: memmap2::MmapRaw,
    /// Mapped PROT_READ | PROT_WRITE (else PROT_READ only: a process whose
    /// class the file's mode gives `r--`; any store would fault).
    writable: bool,
    /// (st_dev, st_ino) of the object mapped.
    id: FileId,
    /// Its entry in the SIGBUS guard table, if it got one.
    guard: Option<usize>,
}

/// What names a file whatever its names and descriptors: (st_dev, st_ino).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The file descriptor number `fd` refers to, if it is open (it may be
    /// a number the program closed: nothing is assumed of it).
    pub fn of_raw(fd: i32) -> Option<FileId> {
        // SAFETY: fstat writes one stat struct, zeroed before; any number
        // is a valid argument (EBADF for a closed one).
        let mut st: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return None;
        }
        Some(FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    /// The file `path` names (a symbolic link followed); the OS's error
    /// as it is, so that a caller can tell a name that is gone (ENOENT).
    pub fn of_path(path: &str) -> rustix::io::Result<FileId> {
        let st = rustix::fs::stat(path)?;
        Ok(FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    /// The file `st` (an fstat's answer) describes.
    pub fn of_stat(st: &rustix::fs::Stat) -> FileId {
        FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }

    /// The file `fd` refers to.
    pub fn of(fd: impl AsFd) -> Result<FileId> {
        let st = rustix::fs::fstat(fd).map_err(Error::from)?;
        Ok(FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Out of the table before the fields drop (and the range unmaps).
        if let Some(i) = self.guard {
            sigbus::unguard(i);
        }
    }
}

/// Truncation of a mapped segment by a process that may write it would
/// kill this process with SIGBUS at its next access past the new end. A
/// SIGBUS handler replaces, for a fault inside one of our mappings, the
/// rest of that mapping with private zero pages: the access is retried,
/// reads zeros, and the library reports the set as corrupt. Faults
/// elsewhere go to the previous handler (or the default action).
mod sigbus {
    use crate::sync::{AtomicPtr, AtomicUsize, Ordering};

    const SLOTS: usize = 4096;
    static STARTS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
    static LENS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
    static PAGE: AtomicUsize = AtomicUsize::new(4096);
    static OLD: AtomicPtr<libc::sigaction> = AtomicPtr::new(core::ptr::null_mut());
    static INSTALL: std::sync::Once = std::sync::Once::new();

    /// Guards `len` bytes at `start`; `None` if the table is full (then a
    /// truncation can still kill this process).
    pub fn guard(start: usize, len: usize) -> Option<usize> {
        INSTALL.call_once(install);
        for i in 0..SLOTS {
            if STARTS[i].load(Ordering::Relaxed) != 0 {
                continue;
            }
            LENS[i].store(len, Ordering::Relaxed);
            // SYNC: Release publishes the length to the handler's Acquire
            // load of the start.
            if STARTS[i]
                .compare_exchange(0, start, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                return Some(i);
            }
        }
        None
    }

    pub fn unguard(i: usize) {
        // SYNC: Release pairs with the Acquire load of STARTS in
        // `on_sigbus`: a handler that sees 0 leaves the range alone (the
        // mapping is about to go); a later `guard` of the slot publishes
        // its own length with its Release CAS.
        STARTS[i].store(0, Ordering::Release);
    }

    fn install() {
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            PAGE.store(page as usize, Ordering::Relaxed);
        }
        // SAFETY: zeroed sigaction is a valid "no handler" value; we fill in
        // a handler with the SA_SIGINFO signature and an empty mask, and
        // keep the previous action (leaked, so the handler may read it at
        // any time) to chain to.
        unsafe {
            let mut sa: libc::sigaction = core::mem::zeroed();
            sa.sa_sigaction = on_sigbus as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            let old = Box::into_raw(Box::new(core::mem::zeroed::<libc::sigaction>()));
            if libc::sigaction(libc::SIGBUS, &sa, old) == 0 {
                // SYNC: Release publishes the previous action written by
                // sigaction to the Acquire load of OLD in `on_sigbus`.
                OLD.store(old, Ordering::Release);
            } else {
                drop(Box::from_raw(old));
            }
        }
    }

    extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO
        // handler; si_addr is the faulting address for SIGBUS.
        let addr = unsafe { (*info).si_addr() } as usize;
        let page = PAGE.load(Ordering::Relaxed);
        for i in 0..SLOTS {
            // SYNC: Acquire pairs with the Release in `guard`.
            let start = STARTS[i].load(Ordering::Acquire);
            let len = LENS[i].load(Ordering::Relaxed);
            if start == 0 || addr < start || addr >= start + len {
                continue;
            }
            let from = addr & !(page - 1);
            // SAFETY: [from, start + len) lies inside a mapping of ours
            // (it is still in the table, so not yet unmapped); MAP_FIXED
            // replaces exactly that range with private zero pages. mmap is
            // a plain system call, safe to make in a signal handler.
            let r = unsafe {
                libc::mmap(
                    from as *mut libc::c_void,
                    start + len - from,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if r != libc::MAP_FAILED {
                return; // the faulting access is retried on zeros
            }
        }
        // Not ours: what would have happened without us.
        // SYNC: Acquire pairs with the Release store of OLD in `install`.
        let old = OLD.load(Ordering::Acquire);
        // SAFETY: `old` is null or the leaked previous action, never freed.
        let old = unsafe { old.as_ref() };
        match old.map(|o| (o.sa_sigaction, o.sa_flags)) {
            Some((h, flags)) if h != libc::SIG_DFL && h != libc::SIG_IGN => {
                if flags & libc::SA_SIGINFO != 0 {
                    // SAFETY: the previous handler was installed with this
                    // signature (SA_SIGINFO).
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        unsafe { core::mem::transmute(h) };
                    f(sig, info, ctx);
                } else {
                    // SAFETY: a handler without SA_SIGINFO takes the number.
                    let f: extern "C" fn(libc::c_int) = unsafe { core::mem::transmute(h) };
                    f(sig);
                }
            }
            _ => {
                // SAFETY: restoring the default action; the faulting access
                // is retried and the default action (termination) follows.
                unsafe {
                    let mut dfl: libc::sigaction = core::mem::zeroed();
                    dfl.sa_sigaction = libc::SIG_DFL;
                    libc::sigaction(libc::SIGBUS, &dfl, core::ptr::null_mut());
                }
            }
        }
    }
}

// SAFETY: the mapping is shared memory accessed only through atomics; the
// raw pointer inside MmapRaw is valid from any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above: all access goes through atomic types.
unsafe impl Sync for Mapping {}

/// What [`Mapping::open`] found.
pub enum Opened {
    /// The object, mapped.
    Mapped(Mapping),
    /// No object has the name (ENOENT).
    Missing,
    /// The object exists, but its mode does not let this process open it
    /// (EACCES).
    Denied,
}

impl Mapping {
    /// Maps the object `fd` refers to, shared, read-write if `writable`
    /// (else PROT_READ: `fd` was opened O_RDONLY), then closes `fd`
    /// (shm_open opened it close-on-exec, so it never reached another
    /// program).
    fn map(fd: OwnedFd, writable: bool) -> Result<Mapping> {
        // Only a regular file is mapped: a FIFO, a device, a directory or a
        // socket put under our name by someone else is not ours (a
        // symbolic link was not followed: ELOOP).
        let st = rustix::fs::fstat(&fd)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(Error::Corrupt);
        }
        let id = FileId::of(&fd)?;
        let file = File::from(fd);
        let opts = memmap2::MmapOptions::new();
        let map = if writable {
            opts.map_raw(&file)
        } else {
            opts.map_raw_read_only(&file)
        }
        .map_err(|e| Error::from_errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
        drop(file);
        let guard = sigbus::guard(map.as_mut_ptr() as usize, map.len());
        Ok(Mapping {
            map,
            writable,
            id,
            guard,
        })
    }

    /// Creates `name` exclusively with owner-only permissions and size
    /// `size`, reserving its pages (so a full /dev/shm is ENOSPC now, not a
    /// SIGBUS later), and maps it. The caller initialises it and then calls
    /// [`Mapping::set_mode`].
    pub fn create_exclusive(name: &str, size: usize) -> Result<Mapping> {
        use rustix::fs::OFlags as F;
        let fd = open_in_dev_shm(
            name.trim_start_matches('/'),
            F::CREATE | F::EXCL | F::RDWR,
            Mode::from_raw_mode(0o600),
        )
        .map_err(Error::from)?;
        let r = (|| {
            rustix::fs::ftruncate(&fd, size as u64)?;
            rustix::fs::fallocate(&fd, rustix::fs::FallocateFlags::empty(), 0, size as u64)?;
            Mapping::map(fd, true)
        })();
        if r.is_err() {
            let _ = rustix::shm::unlink(name);
        }
        r
    }

    /// Opens and maps an existing object: read-write if the file's mode
    /// lets this process write it, else read-only (O_RDONLY, PROT_READ:
    /// see [`Mapping::writable`]). Errors are the OS's (EMFILE, ENFILE,
    /// ENOMEM, ...), each as itself.
    pub fn open(name: &str) -> Result<Opened> {
        use rustix::fs::OFlags as F;
        let base = name.trim_start_matches('/');
        let (r, writable) = match open_in_dev_shm(base, F::RDWR, Mode::empty()) {
            Err(rustix::io::Errno::ACCESS) => {
                (open_in_dev_shm(base, F::RDONLY, Mode::empty()), false)
            }
            r => (r, true),
        };
        match r {
            Ok(fd) => Mapping::map(fd, writable).map(Opened::Mapped),
            Err(rustix::io::Errno::NOENT) => Ok(Opened::Missing),
            Err(rustix::io::Errno::ACCESS) => Ok(Opened::Denied),
            Err(e) => Err(e.into()),
        }
    }

    /// Sets the permission bits of the object mapped, found by `name`
    /// (after initialisation, and for IPC_SET). `Removed` if the name no
    /// longer names the object mapped.
    pub fn set_mode(&self, name: &str, mode: u32) -> Result<()> {
        let fd = self.reopen_path(name)?;
        // fchmod does not take an O_PATH descriptor; the /proc link of one
        // resolves to its inode, not to a name someone could replace.
        rustix::fs::chmod(proc_fd_path(&fd), Mode::from_raw_mode(mode)).map_err(Error::from)
    }

    /// Changes the owner of the object mapped, found by `name` (only root
    /// may give it away). `Removed` as for [`Mapping::set_mode`].
    pub fn set_owner(&self, name: &str, uid: u32, gid: u32) -> Result<()> {
        let fd = self.reopen_path(name)?;
        let (u, g) = (
            rustix::fs::Uid::from_raw(uid),
            rustix::fs::Gid::from_raw(gid),
        );
        rustix::fs::chownat(&fd, "", Some(u), Some(g), rustix::fs::AtFlags::EMPTY_PATH)
            .map_err(Error::from)
    }

    /// An O_PATH descriptor of `name`, checked to be the object mapped (a
    /// name removed and created again names another file).
    fn reopen_path(&self, name: &str) -> Result<OwnedFd> {
        let path = format!("/dev/shm{name}");
        let fd = rustix::fs::open(
            path.as_str(),
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::NOENT => Error::Removed,
            e => e.into(),
        })?;
        if FileId::of(&fd)? != self.id {
            return Err(Error::Removed);
        }
        Ok(fd)
    }

    /// Start of the mapping.
    pub fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Whether the mapping may be written. A read-only one (the file's
    /// mode gives this process's class `r--`) is PROT_READ: a store into
    /// it would be a SIGSEGV, so nothing may write through [`Mapping::base`]
    /// then (the set cache hands such a set out only as a
    /// `set::Reader`, which only loads).
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Length of the mapping.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The device and inode of the object mapped.
    pub fn file_id(&self) -> FileId {
        self.id
    }
}

/// The /proc path through which `fd`'s inode is reached.
fn proc_fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Opens `name` for this process's own byte-range locks (see
/// `shm_layout::lock_bytes`): read-write (an exclusive lock needs write
/// access) and close-on-exec, so that no other program inherits it.
/// `Removed` if the name is gone.
pub fn open_for_locks(name: &str) -> Result<OwnedFd> {
    let fd = open_in_dev_shm(
        name.trim_start_matches('/'),
        rustix::fs::OFlags::RDWR,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::NOENT => Error::Removed,
        e => Error::from(e),
    })?;
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(Error::Corrupt);
    }
    Ok(fd)
}

/// Removes the name of a shared-memory object (mappings stay valid).
pub fn unlink(name: &str) -> Result<()> {
    match rustix::shm::unlink(name) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Names of the shared-memory objects whose name starts with `prefix`
/// (without the leading slash), from /dev/shm.
pub fn list(prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/dev/shm") {
        for e in rd.flatten() {
            if let Some(n) = e.file_name().to_str() {
                if n.starts_with(prefix) {
                    out.push(format!("/{n}"));
                }
            }
        }
    }
    out
}

/// The calling thread's errno after a failed call (EIO if there is none).
fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn flock(kind: libc::c_int, byte: i64) -> libc::flock {
    // SAFETY: flock is plain old data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { core::mem::zeroed() };
    fl.l_type = kind as _;
    fl.l_whence = libc::SEEK_SET as _;
    fl.l_start = byte as _;
    fl.l_len = 1;
    fl.l_pid = 0; // must be 0 for OFD locks
    fl
}

/// Takes an exclusive open-file-description lock on one byte. `Ok(false)`
/// if someone else holds it. The kernel releases it when the last
/// descriptor of the description closes, that is, when the process dies.
pub fn ofd_try_lock(fd: impl AsFd, byte: i64) -> Result<bool> {
    let fl = flock(libc::F_WRLCK, byte);
    // SAFETY: fcntl with F_OFD_SETLK reads one valid flock struct.
    let r = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if r == 0 {
        return Ok(true);
    }
    match last_errno() {
        libc::EAGAIN | libc::EACCES => Ok(false),
        e => Err(Error::from_errno(e)),
    }
}

/// Releases a lock taken by [`ofd_try_lock`].
pub fn ofd_unlock(fd: impl AsFd, byte: i64) {
    let fl = flock(libc::F_UNLCK, byte);
    // SAFETY: as in ofd_try_lock.
    unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_OFD_SETLK, &fl) };
}

/// Whether some open file description (other than `fd`'s) holds a *write*
/// lock on the byte. The query is for a read lock (`F_RDLCK`), which only a
/// write lock conflicts with: read locks, which anyone who may read the
/// file can take, do not count. `fd` may be read-only.
pub fn ofd_write_held(fd: impl AsFd, byte: i64) -> Result<bool> {
    let mut fl = flock(libc::F_RDLCK, byte);
    // SAFETY: F_OFD_GETLK reads and writes one valid flock struct.
    let r = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    if r != 0 {
        return Err(Error::from_errno(last_errno()));
    }
    Ok(fl.l_type as libc::c_int != libc::F_UNLCK)
}

/// Opens `name` (no slash) in /dev/shm through a descriptor of the
/// directory, never following a link, never blocking on a FIFO, never
/// becoming a terminal's, close-on-exec; `flags` adds the access mode
/// (and O_CREAT|O_EXCL with `mode`). The OS's error as it is (ELOOP for a
/// symbolic link). The caller checks what it opened with fstat.
pub fn open_in_dev_shm(
    name: &str,
    flags: rustix::fs::OFlags,
    mode: Mode,
) -> rustix::io::Result<OwnedFd> {
    use rustix::fs::OFlags as F;
    let dir = rustix::fs::open(
        "/dev/shm",
        F::PATH | F::DIRECTORY | F::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::openat(
        &dir,
        name,
        flags | F::NOFOLLOW | F::CLOEXEC | F::NONBLOCK | F::NOCTTY,
        mode,
    )
}

/// Blocks until an exclusive OFD lock on `byte` is ours (used as the
/// namespace registry's mutex: the kernel frees it if the holder dies).
pub fn ofd_lock_wait(fd: impl AsFd, byte: i64) -> Result<()> {
    let fl = flock(libc::F_WRLCK, byte);
    loop {
        // SAFETY: as in ofd_try_lock.
        let r = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_OFD_SETLKW, &fl) };
        if r == 0 {
            return Ok(());
        }
        match last_errno() {
            libc::EINTR => continue,
            e => return Err(Error::from_errno(e)),
        }
    }
}
