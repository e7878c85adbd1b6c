//! The one module that maps memory: POSIX shared-memory objects, their
//! mappings, and the byte-range (open-file-description) locks on them.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::{Error, Result};
use rustix::fs::Mode;
use rustix::shm::OFlags;

/// A mapped shared-memory object and the descriptor it was opened through.
pub struct Mapping {
    map: memmap2::MmapRaw,
    file: File,
}

// SAFETY: the mapping is shared memory accessed only through atomics; the
// raw pointer inside MmapRaw is valid from any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above: all access goes through atomic types.
unsafe impl Sync for Mapping {}

fn os(e: rustix::io::Errno) -> Error {
    match e {
        rustix::io::Errno::NOSPC => Error::NoSpace,
        rustix::io::Errno::NOMEM => Error::NoMemory,
        e => Error::from(e),
    }
}

impl Mapping {
    fn map(fd: OwnedFd) -> Result<Mapping> {
        // The descriptor stays open across exec (no FD_CLOEXEC): the
        // liveness lock taken through it must outlive an exec of a program
        // that does not load shmsem (DESIGN.md, "Facts about the C side").
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::empty()).map_err(os)?;
        let file = File::from(fd);
        let map = memmap2::MmapOptions::new()
            .map_raw(&file)
            .map_err(|e| Error::from_errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
        Ok(Mapping { map, file })
    }

    /// Creates `name` exclusively with owner-only permissions and size
    /// `size`, reserving its pages (so a full /dev/shm is ENOSPC now, not a
    /// SIGBUS later), and maps it. The caller initialises it and then calls
    /// [`Mapping::set_mode`].
    pub fn create_exclusive(name: &str, size: usize) -> Result<Mapping> {
        let fd = rustix::shm::open(
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
            Mode::from_raw_mode(0o600),
        )
        .map_err(os)?;
        let r = (|| {
            rustix::fs::ftruncate(&fd, size as u64).map_err(os)?;
            rustix::fs::fallocate(&fd, rustix::fs::FallocateFlags::empty(), 0, size as u64)
                .map_err(os)?;
            Mapping::map(fd)
        })();
        if r.is_err() {
            let _ = rustix::shm::unlink(name);
        }
        r
    }

    /// Opens and maps an existing object. `Ok(None)` if it does not exist.
    pub fn open(name: &str) -> Result<Option<Mapping>> {
        match rustix::shm::open(name, OFlags::RDWR, Mode::empty()) {
            Ok(fd) => Mapping::map(fd).map(Some),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(rustix::io::Errno::ACCESS) => Err(Error::PermissionDenied),
            Err(e) => Err(os(e)),
        }
    }

    /// Opens another descriptor (a new open file description) of `name`.
    pub fn reopen_fd(name: &str) -> Result<OwnedFd> {
        let fd = rustix::shm::open(name, OFlags::RDWR, Mode::empty()).map_err(|e| match e {
            rustix::io::Errno::NOENT => Error::Removed,
            e => os(e),
        })?;
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::empty()).map_err(os)?;
        Ok(fd)
    }

    /// Sets the object's permission bits (after initialisation).
    pub fn set_mode(&self, mode: u32) -> Result<()> {
        rustix::fs::fchmod(&self.file, Mode::from_raw_mode(mode)).map_err(os)
    }

    /// Changes the object's owner (only root may give it away).
    pub fn set_owner(&self, uid: u32, gid: u32) -> Result<()> {
        let (u, g) = (
            rustix::fs::Uid::from_raw(uid),
            rustix::fs::Gid::from_raw(gid),
        );
        rustix::fs::fchown(&self.file, Some(u), Some(g)).map_err(os)
    }

    /// Start of the mapping.
    pub fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Length of the mapping.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The descriptor.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Removes the name of a shared-memory object (mappings stay valid).
pub fn unlink(name: &str) -> Result<()> {
    match rustix::shm::unlink(name) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(os(e)),
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
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        Some(e) => Err(Error::from_errno(e)),
        None => Err(Error::Os(libc::EIO)),
    }
}

/// Releases a lock taken by [`ofd_try_lock`].
pub fn ofd_unlock(fd: impl AsFd, byte: i64) {
    let fl = flock(libc::F_UNLCK, byte);
    // SAFETY: as in ofd_try_lock.
    unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_OFD_SETLK, &fl) };
}

/// Whether some open file description (other than `fd`'s) holds a lock on
/// the byte.
pub fn ofd_is_locked(fd: impl AsFd, byte: i64) -> Result<bool> {
    let mut fl = flock(libc::F_WRLCK, byte);
    // SAFETY: F_OFD_GETLK reads and writes one valid flock struct.
    let r = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    if r != 0 {
        return Err(Error::from_errno(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ));
    }
    Ok(fl.l_type as libc::c_int != libc::F_UNLCK)
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
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(e) => return Err(Error::from_errno(e)),
            None => return Err(Error::Os(libc::EIO)),
        }
    }
}
