//! "A semaphore implementation": one trait, five implementations.
//!
//! Every implementation is created in the benchmark's parent process before
//! any fork, lives in memory (or kernel objects) that forked children share,
//! and is torn down when the parent drops it:
//!
//! | name   | what                                                         | torn down by |
//! |--------|--------------------------------------------------------------|--------------|
//! | shmsem | a set of the benchmark's own namespace, through `Namespace`  | IPC_RMID, then `Namespace::destroy` at the end |
//! | kernel | a kernel System V set (`semget(IPC_PRIVATE)`, `semop`, `semctl`) | IPC_RMID |
//! | sem_t  | POSIX `sem_t`s, `pshared = 1`, in a MAP_SHARED anonymous mapping | `sem_destroy`, munmap |
//! | mutex  | `pthread_mutex_t`s with PTHREAD_PROCESS_SHARED, same kind of mapping | `pthread_mutex_destroy`, munmap |
//! | futex  | a counting semaphore on one shared futex word (FUTEX_WAIT/FUTEX_WAKE without FUTEX_PRIVATE_FLAG) | munmap |
//!
//! The shared-memory competitors put every object on its own 64-byte cache
//! line. What each one can do is in its `Caps`; a scenario that needs a
//! capability an implementation lacks shows "-" for it in the table.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use shmsem::sysv::{Sembuf, SemctlArg};
use shmsem::Namespace;

/// What an implementation supports beyond P (wait) and V (post) of one unit.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    /// SEM_UNDO on single and multi-op calls.
    pub undo: bool,
    /// All-or-nothing calls on several semaphores.
    pub multi: bool,
    /// Reading one value (GETVAL, `sem_getvalue`, a load).
    pub getval: bool,
    /// Reading all values in one call (GETALL).
    pub getall: bool,
    /// A V may be done by another process than the P's (a mutex may only be
    /// unlocked by its owner, so it cannot hand a token over).
    pub handoff: bool,
    /// Counting processes blocked in P (GETNCNT).
    pub ncnt: bool,
}

/// Everything implementations need from the benchmark process.
pub struct Env {
    /// The benchmark's own shmsem namespace, destroyed when `Env` is dropped.
    pub ns: Arc<Namespace>,
}

impl Env {
    pub fn new() -> Env {
        let name = format!("bench-suite-{}", std::process::id());
        let ns = Namespace::open(&name)
            .unwrap_or_else(|e| panic!("Namespace::open({name}) for the benchmark: {e}"));
        Env { ns }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Err(e) = self.ns.destroy() {
            eprintln!(
                "warning: could not destroy namespace {}: {e}",
                self.ns.name()
            );
        }
    }
}

/// A semaphore implementation: `nsems` semaphores created with one initial
/// value each. P and V move one unit. Methods a capability guards are only
/// called when `CAPS` says so (the defaults panic). Every call checks its
/// result and panics on an unexpected one: the check is one predictable
/// branch, the same for every implementation.
pub trait Sem: Sized + Sync {
    /// The column name in the table.
    const NAME: &'static str;
    const CAPS: Caps;

    fn create(env: &Env, nsems: u16, value: u16) -> Self;

    /// P: take one unit of semaphore `i`, blocking while it is 0.
    fn wait(&self, i: u16);
    /// V: give one unit back to semaphore `i` (waking a waiter if any).
    fn post(&self, i: u16);
    /// P with SEM_UNDO.
    fn wait_undo(&self, _i: u16) {
        unsupported(Self::NAME, "SEM_UNDO")
    }
    /// V with SEM_UNDO.
    fn post_undo(&self, _i: u16) {
        unsupported(Self::NAME, "SEM_UNDO")
    }
    /// One all-or-nothing call adding `delta` to semaphores 0..n.
    fn multi(&self, _n: u16, _delta: i16, _undo: bool) {
        unsupported(Self::NAME, "multi-op calls")
    }
    /// A non-blocking P that must fail because the value is 0 (IPC_NOWAIT,
    /// `sem_trywait`, `pthread_mutex_trylock` on a held mutex, one load).
    fn try_wait_fails(&self, i: u16);
    fn getval(&self, _i: u16) -> i32 {
        unsupported(Self::NAME, "GETVAL")
    }
    fn getall(&self, _out: &mut [u16]) {
        unsupported(Self::NAME, "GETALL")
    }
    /// How many are blocked in P on semaphore `i` (setup polling only).
    fn ncnt(&self, _i: u16) -> u32 {
        unsupported(Self::NAME, "GETNCNT")
    }
}

#[cold]
fn unsupported(name: &str, what: &str) -> ! {
    panic!("{name} does not support {what}")
}

#[cold]
fn failed(name: &str, what: &str, err: impl std::fmt::Display) -> ! {
    panic!("{name}: {what} failed: {err}")
}

fn os_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

// ---------------------------------------------------------------------------
// Shared memory for the competitors
// ---------------------------------------------------------------------------

/// A zeroed MAP_SHARED anonymous mapping: created before a fork, the same
/// pages in parent and children. Unmapped on drop.
pub struct SharedMem {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory; what lives in it is accessed through
// atomics or through C objects (sem_t, pthread_mutex_t) made for concurrent use.
unsafe impl Send for SharedMem {}
// SAFETY: as above.
unsafe impl Sync for SharedMem {}

impl SharedMem {
    pub fn new(len: usize) -> SharedMem {
        let len = len.max(1);
        // SAFETY: an anonymous mapping of fresh pages; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            failed("SharedMem", "mmap", os_err());
        }
        SharedMem {
            ptr: ptr as *mut u8,
            len,
        }
    }

    /// Address of byte `off`, for a `T` that fits there.
    pub fn at<T>(&self, off: usize) -> *mut T {
        assert!(off + std::mem::size_of::<T>() <= self.len);
        assert_eq!(off % std::mem::align_of::<T>(), 0);
        // SAFETY: in bounds (checked above).
        unsafe { self.ptr.add(off) as *mut T }
    }

    /// The `AtomicU32` at byte `off`.
    pub fn u32(&self, off: usize) -> &AtomicU32 {
        // SAFETY: in bounds and aligned (checked by `at`); the mapping is
        // zero-initialised, a valid AtomicU32, and lives as long as `self`.
        unsafe { &*self.at::<AtomicU32>(off) }
    }

    /// The `AtomicU64` at byte `off`.
    pub fn u64(&self, off: usize) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: as for `u32`.
        unsafe { &*self.at::<std::sync::atomic::AtomicU64>(off) }
    }
}

impl Drop for SharedMem {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` created; no reference into
        // it outlives `self` (they all borrow it).
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// Every shared-memory competitor puts one object per cache line.
const STRIDE: usize = 64;

// ---------------------------------------------------------------------------
// shmsem
// ---------------------------------------------------------------------------

/// A shmsem set, called through `Namespace` (the layer under `sysv` and
/// `SemaphoreSet`, without the default-namespace lookup).
pub struct Shmsem {
    ns: Arc<Namespace>,
    id: i32,
}

impl Shmsem {
    #[inline]
    fn call(&self, sops: &[Sembuf], what: &str) {
        if let Err(e) = self.ns.semop(self.id, sops) {
            failed("shmsem", what, e);
        }
    }

    /// The set's segment in /dev/shm: (file size, bytes of allocated
    /// blocks). The segment is `shmsem.NS.INDEX.SEQ`, where the id is
    /// `SEQ << 15 | INDEX` (shm-layout's IPCMNI_SHIFT).
    pub fn segment_bytes(&self) -> std::io::Result<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let shift = shmsem::layout::IPCMNI_SHIFT;
        let index = self.id as u32 & ((1 << shift) - 1);
        let seq = self.id as u32 >> shift;
        let path = format!("/dev/shm/shmsem.{}.{index}.{seq}", self.ns.name());
        let m = std::fs::metadata(path)?;
        Ok((m.size(), m.blocks() * 512))
    }
}

impl Sem for Shmsem {
    const NAME: &'static str = "shmsem";
    const CAPS: Caps = Caps {
        undo: true,
        multi: true,
        getval: true,
        getall: true,
        handoff: true,
        ncnt: true,
    };

    fn create(env: &Env, nsems: u16, value: u16) -> Shmsem {
        let ns = env.ns.clone();
        let id = ns
            .semget(libc::IPC_PRIVATE, nsems as i32, 0o600)
            .unwrap_or_else(|e| failed("shmsem", "semget", e));
        let s = Shmsem { ns, id };
        let values = vec![value; nsems as usize];
        if let Err(e) = s.ns.semctl(id, 0, libc::SETALL, SemctlArg::SetAll(&values)) {
            failed("shmsem", "SETALL", e);
        }
        s
    }

    #[inline]
    fn wait(&self, i: u16) {
        self.call(&[Sembuf::new(i, -1, 0)], "semop -1");
    }
    #[inline]
    fn post(&self, i: u16) {
        self.call(&[Sembuf::new(i, 1, 0)], "semop +1");
    }
    #[inline]
    fn wait_undo(&self, i: u16) {
        self.call(
            &[Sembuf::new(i, -1, libc::SEM_UNDO as i16)],
            "semop -1 undo",
        );
    }
    #[inline]
    fn post_undo(&self, i: u16) {
        self.call(&[Sembuf::new(i, 1, libc::SEM_UNDO as i16)], "semop +1 undo");
    }
    #[inline]
    fn multi(&self, n: u16, delta: i16, undo: bool) {
        let flg = if undo { libc::SEM_UNDO as i16 } else { 0 };
        let mut sops = [Sembuf::default(); 8];
        for (k, s) in sops.iter_mut().enumerate().take(n as usize) {
            *s = Sembuf::new(k as u16, delta, flg);
        }
        self.call(&sops[..n as usize], "multi-op semop");
    }
    #[inline]
    fn try_wait_fails(&self, i: u16) {
        match self
            .ns
            .semop(self.id, &[Sembuf::new(i, -1, libc::IPC_NOWAIT as i16)])
        {
            Err(e) if e.errno() == libc::EAGAIN => {}
            r => failed(
                "shmsem",
                "IPC_NOWAIT semop (expected EAGAIN)",
                format!("{r:?}"),
            ),
        }
    }
    #[inline]
    fn getval(&self, i: u16) -> i32 {
        self.ns
            .semctl(self.id, i as i32, libc::GETVAL, SemctlArg::None)
            .unwrap_or_else(|e| failed("shmsem", "GETVAL", e))
    }
    #[inline]
    fn getall(&self, out: &mut [u16]) {
        if let Err(e) = self
            .ns
            .semctl(self.id, 0, libc::GETALL, SemctlArg::GetAll(out))
        {
            failed("shmsem", "GETALL", e);
        }
    }
    fn ncnt(&self, i: u16) -> u32 {
        self.ns
            .semctl(self.id, i as i32, libc::GETNCNT, SemctlArg::None)
            .unwrap_or_else(|e| failed("shmsem", "GETNCNT", e)) as u32
    }
}

impl Drop for Shmsem {
    fn drop(&mut self) {
        if let Err(e) = self.ns.semctl(self.id, 0, libc::IPC_RMID, SemctlArg::None) {
            eprintln!("warning: shmsem IPC_RMID of {}: {e}", self.id);
        }
    }
}

// ---------------------------------------------------------------------------
// The kernel's System V semaphores
// ---------------------------------------------------------------------------

/// A kernel System V set, removed with IPC_RMID on drop.
pub struct Kernel {
    id: i32,
}

impl Kernel {
    #[inline]
    fn call(&self, sops: &mut [libc::sembuf], what: &str) {
        // SAFETY: `sops` is a valid array of sembuf of the length passed.
        let r = unsafe { libc::semop(self.id, sops.as_mut_ptr(), sops.len()) };
        if r != 0 {
            failed("kernel", what, os_err());
        }
    }

    fn ctl(&self, i: u16, cmd: i32, what: &str) -> i32 {
        // SAFETY: GETVAL/GETNCNT take no fourth argument.
        let r = unsafe { libc::semctl(self.id, i as i32, cmd) };
        if r < 0 {
            failed("kernel", what, os_err());
        }
        r
    }
}

fn sb(i: u16, op: i16, flg: i32) -> libc::sembuf {
    libc::sembuf {
        sem_num: i,
        sem_op: op,
        sem_flg: flg as i16,
    }
}

impl Sem for Kernel {
    const NAME: &'static str = "kernel";
    const CAPS: Caps = Caps {
        undo: true,
        multi: true,
        getval: true,
        getall: true,
        handoff: true,
        ncnt: true,
    };

    fn create(_env: &Env, nsems: u16, value: u16) -> Kernel {
        // SAFETY: semget takes only integers.
        let id = unsafe { libc::semget(libc::IPC_PRIVATE, nsems as i32, libc::IPC_CREAT | 0o600) };
        if id < 0 {
            failed("kernel", "semget(IPC_PRIVATE)", os_err());
        }
        let k = Kernel { id };
        let values = vec![value; nsems as usize];
        // SAFETY: SETALL reads nsems unsigned shorts from the pointer, which
        // points at exactly that many.
        if unsafe { libc::semctl(id, 0, libc::SETALL, values.as_ptr()) } != 0 {
            failed("kernel", "SETALL", os_err());
        }
        k
    }

    #[inline]
    fn wait(&self, i: u16) {
        self.call(&mut [sb(i, -1, 0)], "semop -1");
    }
    #[inline]
    fn post(&self, i: u16) {
        self.call(&mut [sb(i, 1, 0)], "semop +1");
    }
    #[inline]
    fn wait_undo(&self, i: u16) {
        self.call(&mut [sb(i, -1, libc::SEM_UNDO)], "semop -1 undo");
    }
    #[inline]
    fn post_undo(&self, i: u16) {
        self.call(&mut [sb(i, 1, libc::SEM_UNDO)], "semop +1 undo");
    }
    #[inline]
    fn multi(&self, n: u16, delta: i16, undo: bool) {
        let flg = if undo { libc::SEM_UNDO } else { 0 };
        let mut sops = [sb(0, 0, 0); 8];
        for (k, s) in sops.iter_mut().enumerate().take(n as usize) {
            *s = sb(k as u16, delta, flg);
        }
        self.call(&mut sops[..n as usize], "multi-op semop");
    }
    #[inline]
    fn try_wait_fails(&self, i: u16) {
        let mut s = [sb(i, -1, libc::IPC_NOWAIT)];
        // SAFETY: one valid sembuf.
        let r = unsafe { libc::semop(self.id, s.as_mut_ptr(), 1) };
        let err = os_err();
        if r != -1 || err.raw_os_error() != Some(libc::EAGAIN) {
            failed("kernel", "IPC_NOWAIT semop (expected EAGAIN)", err);
        }
    }
    #[inline]
    fn getval(&self, i: u16) -> i32 {
        self.ctl(i, libc::GETVAL, "GETVAL")
    }
    #[inline]
    fn getall(&self, out: &mut [u16]) {
        // SAFETY: GETALL writes nsems unsigned shorts; callers pass a buffer
        // of exactly nsems.
        if unsafe { libc::semctl(self.id, 0, libc::GETALL, out.as_mut_ptr()) } != 0 {
            failed("kernel", "GETALL", os_err());
        }
    }
    fn ncnt(&self, i: u16) -> u32 {
        self.ctl(i, libc::GETNCNT, "GETNCNT") as u32
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        // SAFETY: IPC_RMID takes no fourth argument.
        if unsafe { libc::semctl(self.id, 0, libc::IPC_RMID) } != 0 {
            eprintln!("warning: kernel IPC_RMID of {}: {}", self.id, os_err());
        }
    }
}

// ---------------------------------------------------------------------------
// POSIX sem_t, process-shared
// ---------------------------------------------------------------------------

pub struct PosixSem {
    mem: SharedMem,
    nsems: u16,
}

impl PosixSem {
    #[inline]
    fn sem(&self, i: u16) -> *mut libc::sem_t {
        self.mem.at::<libc::sem_t>(i as usize * STRIDE)
    }
}

impl Sem for PosixSem {
    const NAME: &'static str = "sem_t";
    const CAPS: Caps = Caps {
        undo: false,
        multi: false,
        getval: true,
        getall: false,
        handoff: true,
        ncnt: false,
    };

    fn create(_env: &Env, nsems: u16, value: u16) -> PosixSem {
        assert!(std::mem::size_of::<libc::sem_t>() <= STRIDE);
        let s = PosixSem {
            mem: SharedMem::new(nsems as usize * STRIDE),
            nsems,
        };
        for i in 0..nsems {
            // SAFETY: `sem(i)` is an aligned, exclusively owned slot of the
            // shared mapping; pshared = 1 makes it usable across processes.
            if unsafe { libc::sem_init(s.sem(i), 1, value as u32) } != 0 {
                failed("sem_t", "sem_init", os_err());
            }
        }
        s
    }

    #[inline]
    fn wait(&self, i: u16) {
        loop {
            // SAFETY: an initialised sem_t in shared memory.
            if unsafe { libc::sem_wait(self.sem(i)) } == 0 {
                return;
            }
            let e = os_err();
            if e.raw_os_error() != Some(libc::EINTR) {
                failed("sem_t", "sem_wait", e);
            }
        }
    }
    #[inline]
    fn post(&self, i: u16) {
        // SAFETY: an initialised sem_t in shared memory.
        if unsafe { libc::sem_post(self.sem(i)) } != 0 {
            failed("sem_t", "sem_post", os_err());
        }
    }
    #[inline]
    fn try_wait_fails(&self, i: u16) {
        // SAFETY: an initialised sem_t in shared memory.
        let r = unsafe { libc::sem_trywait(self.sem(i)) };
        let e = os_err();
        if r != -1 || e.raw_os_error() != Some(libc::EAGAIN) {
            failed("sem_t", "sem_trywait (expected EAGAIN)", e);
        }
    }
    #[inline]
    fn getval(&self, i: u16) -> i32 {
        let mut v = 0;
        // SAFETY: an initialised sem_t and a valid out pointer.
        if unsafe { libc::sem_getvalue(self.sem(i), &mut v) } != 0 {
            failed("sem_t", "sem_getvalue", os_err());
        }
        v
    }
}

impl Drop for PosixSem {
    fn drop(&mut self) {
        for i in 0..self.nsems {
            // SAFETY: initialised in `create`; no process uses it any more
            // (the children are gone when the parent drops it).
            unsafe { libc::sem_destroy(self.sem(i)) };
        }
    }
}

// ---------------------------------------------------------------------------
// pthread mutex, process-shared
// ---------------------------------------------------------------------------

/// Value 1 is "unlocked", 0 "locked by the creator"; P locks, V unlocks.
pub struct Mutex {
    mem: SharedMem,
    nsems: u16,
}

impl Mutex {
    #[inline]
    fn m(&self, i: u16) -> *mut libc::pthread_mutex_t {
        self.mem.at::<libc::pthread_mutex_t>(i as usize * STRIDE)
    }
}

impl Sem for Mutex {
    const NAME: &'static str = "mutex";
    const CAPS: Caps = Caps {
        undo: false,
        multi: false,
        getval: false,
        getall: false,
        handoff: false,
        ncnt: false,
    };

    fn create(_env: &Env, nsems: u16, value: u16) -> Mutex {
        assert!(value <= 1, "a mutex is 0 (locked) or 1 (unlocked)");
        assert!(std::mem::size_of::<libc::pthread_mutex_t>() <= STRIDE);
        let s = Mutex {
            mem: SharedMem::new(nsems as usize * STRIDE),
            nsems,
        };
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: the attribute object is initialised by pthread_mutexattr_init
        // before use and destroyed after; each mutex slot is aligned and owned.
        unsafe {
            libc::pthread_mutexattr_init(attr.as_mut_ptr());
            libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED);
            for i in 0..nsems {
                if libc::pthread_mutex_init(s.m(i), attr.as_ptr()) != 0 {
                    failed("mutex", "pthread_mutex_init", os_err());
                }
                if value == 0 {
                    libc::pthread_mutex_lock(s.m(i));
                }
            }
            libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
        }
        s
    }

    #[inline]
    fn wait(&self, i: u16) {
        // SAFETY: an initialised process-shared mutex.
        let r = unsafe { libc::pthread_mutex_lock(self.m(i)) };
        if r != 0 {
            failed("mutex", "pthread_mutex_lock", r);
        }
    }
    #[inline]
    fn post(&self, i: u16) {
        // SAFETY: an initialised mutex this thread locked.
        let r = unsafe { libc::pthread_mutex_unlock(self.m(i)) };
        if r != 0 {
            failed("mutex", "pthread_mutex_unlock", r);
        }
    }
    #[inline]
    fn try_wait_fails(&self, i: u16) {
        // SAFETY: an initialised mutex (held: the scenario created it locked).
        let r = unsafe { libc::pthread_mutex_trylock(self.m(i)) };
        if r != libc::EBUSY {
            failed("mutex", "pthread_mutex_trylock (expected EBUSY)", r);
        }
    }
}

impl Drop for Mutex {
    fn drop(&mut self) {
        for i in 0..self.nsems {
            // SAFETY: initialised in `create`; EBUSY (still locked) is harmless
            // for a normal mutex and ignored.
            unsafe { libc::pthread_mutex_destroy(self.m(i)) };
        }
    }
}

// ---------------------------------------------------------------------------
// A raw shared futex
// ---------------------------------------------------------------------------

/// A minimal counting semaphore on a shared futex word: the value word (the
/// futex) and a count of sleepers on the next 4 bytes. P: CAS value-1 while
/// positive; otherwise count itself a sleeper, re-check, FUTEX_WAIT on value
/// 0. V: add 1, FUTEX_WAKE one only when the sleeper count is non-zero. So
/// the uncontended P and V are one atomic each and no system call; only a
/// real sleep or wake enters the kernel. Both futex calls are shared (no
/// FUTEX_PRIVATE_FLAG): the word is keyed by its page, not by the process.
pub struct Futex {
    mem: SharedMem,
}

impl Futex {
    #[inline]
    fn value(&self, i: u16) -> &AtomicU32 {
        self.mem.u32(i as usize * STRIDE)
    }
    #[inline]
    fn sleepers(&self, i: u16) -> &AtomicU32 {
        self.mem.u32(i as usize * STRIDE + 4)
    }
}

impl Sem for Futex {
    const NAME: &'static str = "futex";
    const CAPS: Caps = Caps {
        undo: false,
        multi: false,
        getval: true,
        getall: false,
        handoff: true,
        ncnt: false,
    };

    fn create(_env: &Env, nsems: u16, value: u16) -> Futex {
        let f = Futex {
            mem: SharedMem::new(nsems as usize * STRIDE),
        };
        for i in 0..nsems {
            f.value(i).store(value as u32, Ordering::Relaxed);
        }
        f
    }

    #[inline]
    fn wait(&self, i: u16) {
        let v = self.value(i);
        loop {
            let cur = v.load(Ordering::Relaxed);
            if cur > 0 {
                if v.compare_exchange_weak(cur, cur - 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            // SeqCst on both sides: either V sees our sleeper count, or we
            // see V's increment before we sleep (no lost wake-up).
            self.sleepers(i).fetch_add(1, Ordering::SeqCst);
            if v.load(Ordering::SeqCst) == 0 {
                // SAFETY: FUTEX_WAIT on an aligned u32 of a shared mapping;
                // it returns at once if the word is no longer 0. EINTR and
                // EAGAIN just loop.
                unsafe {
                    libc::syscall(
                        libc::SYS_futex,
                        v.as_ptr(),
                        libc::FUTEX_WAIT,
                        0u32,
                        std::ptr::null::<libc::timespec>(),
                    )
                };
            }
            self.sleepers(i).fetch_sub(1, Ordering::SeqCst);
        }
    }
    #[inline]
    fn post(&self, i: u16) {
        self.value(i).fetch_add(1, Ordering::SeqCst);
        if self.sleepers(i).load(Ordering::SeqCst) > 0 {
            // SAFETY: FUTEX_WAKE of at most one waiter on an aligned u32 of
            // a shared mapping.
            unsafe { libc::syscall(libc::SYS_futex, self.value(i).as_ptr(), libc::FUTEX_WAKE, 1) };
        }
    }
    #[inline]
    fn try_wait_fails(&self, i: u16) {
        let v = self.value(i);
        let cur = v.load(Ordering::Relaxed);
        if cur != 0 {
            failed("futex", "try-wait (expected the value 0)", cur);
        }
    }
    #[inline]
    fn getval(&self, i: u16) -> i32 {
        self.value(i).load(Ordering::Relaxed) as i32
    }
}
