//! Shared mappings: anonymous memory shared with forked children, and files
//! (segments, memfds) mapped shared.

use std::os::fd::AsRawFd;

/// A shared mapping, unmapped on drop. Accessed only through atomics (or
/// volatile accesses), since other processes use the same memory.
pub struct SharedMap {
    base: *mut u8,
    len: usize,
}

impl SharedMap {
    /// `len` bytes of fresh zeroed memory that forked children share.
    pub fn anonymous(len: usize) -> SharedMap {
        // SAFETY: an anonymous shared mapping of `len` bytes; no existing
        // memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(p != libc::MAP_FAILED, "mmap of shared memory failed");
        SharedMap {
            base: p.cast(),
            len,
        }
    }

    /// The first `len` bytes of the file `fd`, shared; read-only unless
    /// `writable`.
    pub fn of_fd(fd: &impl AsRawFd, len: usize, writable: bool) -> std::io::Result<SharedMap> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: maps `len` bytes of an open descriptor shared; the mapping
        // is only accessed through atomics and unmapped in Drop.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SharedMap {
            base: p.cast(),
            len,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The `T` at byte offset `off`. `T` must be made of atomics (any bit
    /// pattern valid, shared by reference).
    pub fn at<T>(&self, off: usize) -> &T {
        let size = std::mem::size_of::<T>();
        let align = std::mem::align_of::<T>();
        assert!(
            off % align == 0 && off + size <= self.len,
            "offset {off} of {size} bytes outside {} or unaligned",
            self.len
        );
        // SAFETY: in bounds and aligned (checked above; the base is
        // page-aligned); the memory stays mapped while `self` lives; by the
        // contract above every bit pattern is a valid `T`.
        unsafe { &*(self.base.add(off) as *const T) }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what the constructor mapped; no reference
        // obtained through `at` outlives `self`.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// A value of type `T` in an anonymous shared mapping: a forked child
/// writes it, its parent reads it, and a SIGKILL loses nothing written.
/// `T` must be made of atomics (valid when all-zero, shared by reference).
pub struct Shared<T> {
    map: SharedMap,
    _t: std::marker::PhantomData<T>,
}

impl<T: Sync> Shared<T> {
    /// A zeroed `T` in fresh shared memory.
    ///
    /// # Safety
    /// An all-zero `T` must be a valid value, and `T` must need no drop.
    pub unsafe fn zeroed() -> Shared<T> {
        Shared {
            map: SharedMap::anonymous(core::mem::size_of::<T>().max(1)),
            _t: std::marker::PhantomData,
        }
    }
}

impl<T> core::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the mapping is page-aligned, at least as large as T,
        // zero-filled (a valid T by the contract of `zeroed`) and lives as
        // long as `self`.
        unsafe { &*(self.map.base as *const T) }
    }
}
