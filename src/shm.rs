//! The one module that maps memory and the one that touches /dev/shm:
//! the names there ([`Dir`]: every open goes through [`Dir::open_file`],
//! which never follows a link and checks what it opened before anyone
//! uses it), their mappings, and the byte-range (open-file-description)
//! locks on them.

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
    /// Its entry in the SIGBUS guard table (every mapping has one).
    guard: usize,
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
        sigbus::unguard(self.guard);
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

    /// Entries per chunk of the table.
    const CHUNK: usize = 4096;
    /// Chunks at most: 65,536 mappings, as many as the kernel's default
    /// `vm.max_map_count` (65,530) lets a process have at all.
    const CHUNKS: usize = 16;

    /// One entry: a guarded range (start 0: free).
    struct Slot {
        start: AtomicUsize,
        len: AtomicUsize,
    }

    /// The table grows by chunks, each allocated on first need and never
    /// freed (the handler may read any chunk at any time), published in
    /// order: chunk c + 1 only once chunk c exists (a guard reaches it only
    /// after it found chunk c full).
    static CHUNK_PTRS: [AtomicPtr<Slot>; CHUNKS] =
        [const { AtomicPtr::new(core::ptr::null_mut()) }; CHUNKS];
    static PAGE: AtomicUsize = AtomicUsize::new(4096);
    static OLD: AtomicPtr<libc::sigaction> = AtomicPtr::new(core::ptr::null_mut());
    static INSTALL: std::sync::Once = std::sync::Once::new();

    /// Chunk `c` if it exists.
    fn chunk(c: usize) -> Option<&'static [Slot]> {
        // SYNC: Acquire pairs with the Release CAS in `chunk_or_make` that
        // published the zeroed chunk.
        let p = CHUNK_PTRS[c].load(Ordering::Acquire);
        // SAFETY: a published chunk is CHUNK slots, leaked, never freed.
        (!p.is_null()).then(|| unsafe { core::slice::from_raw_parts(p, CHUNK) })
    }

    /// Chunk `c`, allocated if it does not exist yet (not in a handler).
    fn chunk_or_make(c: usize) -> &'static [Slot] {
        if let Some(s) = chunk(c) {
            return s;
        }
        let fresh: Box<[Slot]> = (0..CHUNK)
            .map(|_| Slot {
                start: AtomicUsize::new(0),
                len: AtomicUsize::new(0),
            })
            .collect();
        let p = Box::into_raw(fresh) as *mut Slot;
        // SYNC: Release publishes the initialised chunk to `chunk`'s
        // Acquire load; Acquire on failure, as that load.
        match CHUNK_PTRS[c].compare_exchange(
            core::ptr::null_mut(),
            p,
            Ordering::Release,
            Ordering::Acquire,
        ) {
            // SAFETY: just published; leaked from here on.
            Ok(_) => unsafe { core::slice::from_raw_parts(p, CHUNK) },
            Err(other) => {
                // SAFETY: `p` came from Box::into_raw of a CHUNK-long
                // slice just above and was never shared; `other` is a
                // published chunk.
                unsafe {
                    drop(Box::from_raw(core::ptr::slice_from_raw_parts_mut(p, CHUNK)));
                    core::slice::from_raw_parts(other, CHUNK)
                }
            }
        }
    }

    /// Guards `len` bytes at `start`; `None` if the table is full (all
    /// [`CHUNKS`] chunks: the caller must not keep the mapping, which a
    /// truncation could then kill this process through).
    pub fn guard(start: usize, len: usize) -> Option<usize> {
        INSTALL.call_once(install);
        for c in 0..CHUNKS {
            let slots = chunk_or_make(c);
            for (i, s) in slots.iter().enumerate() {
                if s.start.load(Ordering::Relaxed) != 0 {
                    continue;
                }
                s.len.store(len, Ordering::Relaxed);
                // SYNC: Release publishes the length to the handler's
                // Acquire load of the start.
                if s.start
                    .compare_exchange(0, start, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
                {
                    return Some(c * CHUNK + i);
                }
            }
        }
        None
    }

    pub fn unguard(i: usize) {
        let Some(slots) = chunk(i / CHUNK) else {
            return;
        };
        // SYNC: Release pairs with the Acquire load of the start in
        // `on_sigbus`: a handler that sees 0 leaves the range alone (the
        // mapping is about to go); a later `guard` of the slot publishes
        // its own length with its Release CAS.
        slots[i % CHUNK].start.store(0, Ordering::Release);
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
        let slots = (0..CHUNKS).map_while(chunk).flatten();
        for s in slots {
            // SYNC: Acquire pairs with the Release in `guard`.
            let start = s.start.load(Ordering::Acquire);
            let len = s.len.load(Ordering::Relaxed);
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

impl Mapping {
    /// Maps the first `len` bytes of the file `fd` refers to (the caller
    /// checked it with [`Dir::open_file`]), shared, read-write if `writable`
    /// (else PROT_READ: `fd` was opened O_RDONLY). The descriptor stays the
    /// caller's: a set's creator holds its creation lock through it.
    pub fn map_fd(fd: &OwnedFd, len: u64, writable: bool) -> Result<Mapping> {
        let len = usize::try_from(len).map_err(|_| Error::Corrupt)?;
        if len == 0 {
            return Err(Error::Corrupt);
        }
        let id = FileId::of(fd)?;
        let mut opts = memmap2::MmapOptions::new();
        opts.len(len);
        let map = if writable {
            opts.map_raw(fd.as_raw_fd())
        } else {
            opts.map_raw_read_only(fd.as_raw_fd())
        }
        .map_err(|e| Error::from_errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
        // A mapping the guard cannot take is not kept (the table is as big
        // as the kernel lets a process's mappings be by default).
        let guard = sigbus::guard(map.as_mut_ptr() as usize, map.len()).ok_or(Error::NoMemory)?;
        Ok(Mapping {
            map,
            writable,
            id,
            guard,
        })
    }

    /// Sets the permission bits of the object mapped, found by `name`
    /// (IPC_SET). `Removed` if the name no longer names the object mapped.
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
        let dir = Dir::open()?;
        let c = match dir.open_file(name, Access::Path, None, &Expect::ANY)? {
            Open::File(c) => c,
            Open::Missing => return Err(Error::Removed),
            Open::Denied => return Err(Error::PermissionDenied),
        };
        if FileId::of(&c.fd)? != self.id {
            return Err(Error::Removed);
        }
        Ok(c.fd)
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

/// The directory every shmsem name lives in (sticky and root-owned: only a
/// name's owner, or root, may unlink or rename it).
pub const SHM_DIR: &str = "/dev/shm";

/// How [`Dir::open_file`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// O_PATH: names the inode, reads and writes nothing (IPC_SET's chmod).
    Path,
    /// O_RDONLY.
    Read,
    /// O_WRONLY (enough for a write lock; a file in transition is
    /// write-only for its owner).
    WriteOnly,
    /// O_RDWR.
    ReadWrite,
}

/// What a file opened under /dev/shm must be, checked with `fstat` before
/// the caller touches it: a regular file (always), owned by `owner` (if
/// given), of a size in `min_size..=max_size`.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    /// The owner it must have, if known.
    pub owner: Option<u32>,
    /// Smallest size accepted.
    pub min_size: u64,
    /// Largest size accepted.
    pub max_size: u64,
}

impl Expect {
    /// Any regular file.
    pub const ANY: Expect = Expect {
        owner: None,
        min_size: 0,
        max_size: u64::MAX,
    };
}

/// A file opened and checked by [`Dir::open_file`]: the descriptor and
/// what `fstat` said of it.
pub struct Checked {
    /// The descriptor (close-on-exec).
    pub fd: OwnedFd,
    /// Its `fstat`.
    pub st: rustix::fs::Stat,
}

/// What [`Dir::open_file`] found.
pub enum Open {
    /// The file, opened and checked.
    File(Checked),
    /// No file has the name (ENOENT).
    Missing,
    /// The file's mode does not let this process open it (EACCES, EPERM).
    Denied,
}

/// What [`Dir::lstat`] says of a name (never following a link).
pub type Stat = rustix::fs::Stat;

/// Whether `st` is a regular file.
pub fn is_regular(st: &Stat) -> bool {
    rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
}

/// Whether `st` is a symbolic link.
pub fn is_symlink(st: &Stat) -> bool {
    rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink
}

/// The identity of the file `st` describes.
pub fn file_id_of(st: &Stat) -> FileId {
    FileId {
        dev: st.st_dev,
        ino: st.st_ino,
    }
}

/// /dev/shm, opened once for a few operations relative to it (every name
/// below is a bare name in it, no slash). Every operation on a shmsem name
/// goes through one of its methods; every open through
/// [`Dir::open_file`].
pub struct Dir {
    fd: OwnedFd,
}

impl Dir {
    /// Opens /dev/shm (close-on-exec; closed when dropped).
    pub fn open() -> Result<Dir> {
        let fd = rustix::fs::open(
            SHM_DIR,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC
                | rustix::fs::OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(Error::from)?;
        Ok(Dir { fd })
    }

    /// **The one open** of a file under /dev/shm (sets, the limits file,
    /// the hints file, presence): `openat` on the directory with
    /// O_NOFOLLOW|O_CLOEXEC|O_NONBLOCK|O_NOCTTY (and, with `create`,
    /// O_CREAT|O_EXCL and that mode), then `fstat`: it must be a regular
    /// file with `expect`'s owner and size, before the caller maps, reads
    /// or locks anything. A symbolic link (ELOOP), FIFO, device, socket or
    /// directory, a wrong owner or an implausible size is `Corrupt`
    /// (EUCLEAN), never a hang (O_NONBLOCK: a FIFO does not wait for a
    /// writer) nor a mapping of another file. With `create`, an existing
    /// name is `Exists` whatever it is.
    pub fn open_file(
        &self,
        name: &str,
        access: Access,
        create: Option<u32>,
        expect: &Expect,
    ) -> Result<Open> {
        use rustix::fs::OFlags;
        if name.is_empty() || name.contains('/') {
            return Err(Error::Invalid);
        }
        let mut flags = OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
        flags |= match access {
            Access::Path => OFlags::PATH,
            Access::Read => OFlags::RDONLY,
            Access::WriteOnly => OFlags::WRONLY,
            Access::ReadWrite => OFlags::RDWR,
        };
        let mut mode = Mode::empty();
        if let Some(m) = create {
            flags |= OFlags::CREATE | OFlags::EXCL;
            mode = Mode::from_raw_mode(m);
        }
        let fd = match rustix::fs::openat(&self.fd, name, flags, mode) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(Open::Missing),
            Err(rustix::io::Errno::ACCESS | rustix::io::Errno::PERM) => return Ok(Open::Denied),
            Err(rustix::io::Errno::EXIST) => return Err(Error::Exists),
            // A symbolic link (O_NOFOLLOW), or a FIFO with no reader.
            Err(rustix::io::Errno::LOOP | rustix::io::Errno::NXIO) => return Err(Error::Corrupt),
            Err(e) => return Err(e.into()),
        };
        let st = rustix::fs::fstat(&fd).map_err(Error::from)?;
        if !is_regular(&st)
            || expect.owner.is_some_and(|u| u != st.st_uid)
            || (st.st_size as u64) < expect.min_size
            || (st.st_size as u64) > expect.max_size
        {
            return Err(Error::Corrupt);
        }
        Ok(Open::File(Checked { fd, st }))
    }

    /// `lstat` of `name` (a link is not followed): `None` if there is none.
    pub fn lstat(&self, name: &str) -> Result<Option<Stat>> {
        match rustix::fs::statat(&self.fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The target of the symbolic link `name`, read with `readlinkat`
    /// (never followed): `None` if there is none; `Corrupt` if it is not a
    /// link or its target is not a short UTF-8 name.
    pub fn readlink(&self, name: &str) -> Result<Option<String>> {
        let mut buf = [0u8; 256];
        let n = match rustix::fs::readlinkat_raw(&self.fd, name, &mut buf[..]) {
            Ok(n) => n,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(rustix::io::Errno::INVAL) => return Err(Error::Corrupt),
            Err(e) => return Err(e.into()),
        };
        if n >= buf.len() {
            return Err(Error::Corrupt);
        }
        let s = core::str::from_utf8(&buf[..n]).map_err(|_| Error::Corrupt)?;
        Ok(Some(s.to_string()))
    }

    /// Creates the symbolic link `name` → `target`, exclusively: `false`
    /// if the name exists (whatever it is).
    pub fn symlink(&self, target: &str, name: &str) -> Result<bool> {
        match rustix::fs::symlinkat(target, &self.fd, name) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::EXIST) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the name `name` (a file's other names and mappings stay).
    /// Gone already is success; EPERM (the sticky directory: not ours) is
    /// returned as such.
    pub fn unlink(&self, name: &str) -> Result<()> {
        match rustix::fs::unlinkat(&self.fd, name, rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `name` if it is still the very name `was` described (the
    /// same inode, by `lstat` just before): a name that was removed and
    /// made again meanwhile (by its owner) is left alone.
    pub fn unlink_if_same(&self, name: &str, was: &Stat) -> Result<()> {
        match self.lstat(name)? {
            Some(st) if st.st_dev == was.st_dev && st.st_ino == was.st_ino => self.unlink(name),
            _ => Ok(()),
        }
    }

    /// Changes the owner of the name `name` itself (a link is not
    /// followed), if it is still the very name `was` described. Only root
    /// may.
    pub fn lchown_if_same(&self, name: &str, was: &Stat, uid: u32, gid: u32) -> Result<()> {
        match self.lstat(name)? {
            Some(st) if st.st_dev == was.st_dev && st.st_ino == was.st_ino => rustix::fs::chownat(
                &self.fd,
                name,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(Error::from),
            _ => Ok(()),
        }
    }

    /// The names in /dev/shm that start with `prefix`.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let Ok(fd) = rustix::fs::openat(
            &self.fd,
            ".",
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return out;
        };
        let Ok(mut rd) = rustix::fs::Dir::read_from(&fd) else {
            return out;
        };
        while let Some(Ok(e)) = rd.next() {
            if let Ok(n) = e.file_name().to_str() {
                if n.starts_with(prefix) {
                    out.push(n.to_string());
                }
            }
        }
        out
    }
}

/// Reads exactly `buf.len()` bytes at `off` of `fd` (a short file is
/// `Corrupt`).
pub fn pread_exact(fd: impl AsFd, buf: &mut [u8], off: u64) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pread(&fd, &mut buf[done..], off + done as u64) {
            Ok(0) => return Err(Error::Corrupt),
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Writes all of `buf` at `off` of `fd`.
pub fn pwrite_all(fd: impl AsFd, buf: &[u8], off: u64) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pwrite(&fd, &buf[done..], off + done as u64) {
            Ok(0) => return Err(Error::NoSpace),
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Gives a file just created its size and reserves its pages (so that a
/// full /dev/shm is ENOSPC now, not a SIGBUS later).
pub fn size_and_reserve(fd: impl AsFd, size: u64) -> Result<()> {
    rustix::fs::ftruncate(&fd, size).map_err(Error::from)?;
    rustix::fs::fallocate(&fd, rustix::fs::FallocateFlags::empty(), 0, size).map_err(Error::from)
}

/// Sets the permission bits of an open file (not a name: nobody can swap
/// the file under us).
pub fn fchmod(fd: impl AsFd, mode: u32) -> Result<()> {
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(Error::from)
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
