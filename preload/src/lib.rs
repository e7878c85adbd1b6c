//! An `LD_PRELOAD` library that runs unmodified programs on shmsem.
//!
//! It exports glibc's `semget`, `semop`, `semtimedop`, `semctl` and
//! `syscall` with glibc's signatures and conventions (-1 and `errno` on
//! error). The semaphore calls go to the default shmsem namespace (the
//! environment variable `SHMSEM_NAMESPACE`, else `"default"`) instead of the
//! kernel; `syscall` routes `SYS_semget`, `SYS_semop`, `SYS_semtimedop` and
//! `SYS_semctl` the same way and passes every other number to the real
//! `syscall` of the C library.
//!
//! ```text
//! cargo build --release -p shmsem-preload
//! SHMSEM_NAMESPACE=myapp LD_PRELOAD=target/release/libshmsem_preload.so ./prog
//! ```
//!
//! Rules every entry point keeps:
//!
//! * No panic crosses the C ABI: each entry runs under `catch_unwind`, and a
//!   panic becomes -1 with `errno = EINVAL`.
//! * A bad pointer from C gives EFAULT, as in the kernel, never a crash.
//!   Input that is certainly mapped (on the calling thread's live stack or
//!   in the main program's static data) is read directly; anything else is
//!   copied in and out with `process_vm_readv` / `process_vm_writev` on our
//!   own pid, which fail with EFAULT on an unmapped or protected address.
//! * The kernel's order of checks is kept (SEMANTICS.md C and F): for
//!   example `semop(id, NULL, 0)` is EINVAL without touching the pointer,
//!   and an IPC_STAT of an unknown id into a bad buffer is EINVAL, not EFAULT.
//! * No thread-local state with a destructor is used: C programs call
//!   `semctl(IPC_RMID)` from `atexit` handlers, which glibc runs after it has
//!   destroyed thread-local storage. `errno` is glibc's own and is left as it
//!   was on success.
#![warn(unsafe_op_in_unsafe_fn, missing_docs)]
// The library's shim (and its clippy ban on std atomics and raw system
// calls) is private to the library. What this crate needs of them is its
// own: process-local statics (the program's state, the real `syscall`
// entry point) and `syscall` passed through for every other number.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::mem::{size_of, MaybeUninit};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use libc::{c_int, c_long, c_void, size_t};
use shmsem::sysv::{
    IpcPerm, Sembuf, SemctlArg, SemidDs, Seminfo, SetId, Timespec, GETALL, GETNCNT, GETPID, GETVAL,
    GETZCNT, IPC_INFO, IPC_RMID, IPC_SET, IPC_STAT, SEM_INFO, SEM_STAT, SEM_STAT_ANY, SETALL,
    SETVAL,
};
use shmsem::{Error, Namespace};

/// `/proc/sysvipc/sem` and `/proc/sys/kernel/sem` as the namespace has them
/// (the open and fopen family), for `ipcs` and other readers.
mod procfs;
// The C library's functions behind the ones this library interposes.
mod real;
// The program's signal handlers, wrapped so that a handler that runs while
// a semop is blocked makes it return EINTR (signals.rs).
mod signals;

type Result<T> = std::result::Result<T, Error>;

// ---------------------------------------------------------------------------
// errno and the panic barrier
// ---------------------------------------------------------------------------

fn errno() -> c_int {
    // SAFETY: __errno_location returns glibc's thread-local errno, valid for
    // the calling thread for its whole life (including atexit handlers).
    unsafe { *libc::__errno_location() }
}

fn set_errno(value: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value }
}

/// Runs one entry point: a panic becomes EINVAL, an error becomes -1 with
/// errno set, and errno is left untouched on success (as the kernel call
/// would leave it).
fn guarded(f: impl FnOnce() -> Result<c_int>) -> c_int {
    let saved = errno();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => {
            set_errno(saved);
            value
        }
        Ok(Err(e)) => {
            set_errno(e.errno());
            -1
        }
        Err(_panic) => {
            set_errno(libc::EINVAL);
            -1
        }
    }
}

// ---------------------------------------------------------------------------
// Copying to and from the caller's memory without trusting its pointers
// ---------------------------------------------------------------------------
//
// The safe way is process_vm_readv / process_vm_writev on our own pid: the
// kernel does the copy and reports EFAULT for a bad address. It costs two
// system calls (getpid and the copy, ~0.5 us here, more than the kernel's
// whole semop), so the common cases skip it when the range is certainly
// mapped:
//
// * the calling thread's live stack above our own frame, where C programs
//   keep their `struct sembuf` and `struct timespec` (a thread's stack
//   cannot be unmapped while the thread runs on it). For reads only: a
//   dangling pointer to a dead C frame can point into our own live frames,
//   and writing there (IPC_STAT, GETALL) would corrupt them, where the
//   kernel would scribble on dead stack;
// * the loaded segments of the main program, where `static struct sembuf`
//   arrays live (never unmapped; a program that mprotects its own data
//   segment to PROT_NONE and then passes a pointer into it would crash
//   here instead of getting EFAULT).
//
// Anything else (heap, other threads' stacks, shared libraries, garbage)
// goes through the kernel.

thread_local! {
    /// This thread's stack as (lowest, highest + 1) address; (0, 0) until
    /// looked up, (usize::MAX, 0) if that failed (matches nothing). A
    /// `const` Cell of integers has no destructor, so it stays usable in
    /// atexit handlers after glibc has destroyed thread-local storage.
    static STACK: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
}

fn stack_bounds() -> (usize, usize) {
    let cached = STACK.try_with(|c| c.get()).unwrap_or((usize::MAX, 0));
    if cached != (0, 0) {
        return cached;
    }
    let found = query_stack_bounds().unwrap_or((usize::MAX, 0));
    let _ = STACK.try_with(|c| c.set(found));
    found
}

fn query_stack_bounds() -> Option<(usize, usize)> {
    let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: pthread_getattr_np initialises `attr` when it returns 0.
    if unsafe { libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) } != 0 {
        return None;
    }
    let mut addr: *mut c_void = std::ptr::null_mut();
    let mut size: size_t = 0;
    // SAFETY: `attr` was initialised above and is destroyed exactly once;
    // the out-pointers are valid locals.
    let r = unsafe {
        let r = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size);
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        r
    };
    let lo = addr as usize;
    (r == 0 && size > 0).then(|| (lo, lo.saturating_add(size)))
}

/// Whether `[addr, addr + len)` lies in this thread's stack between our
/// own frame and the top of the stack: memory that is live stack and
/// therefore mapped read-write. Only when we run on that stack (not on a
/// signal stack or a coroutine's stack elsewhere).
#[inline(never)]
fn on_my_stack(addr: usize, len: usize) -> bool {
    let marker = 0u8;
    let sp = std::hint::black_box(&marker) as *const u8 as usize;
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    let (lo, hi) = stack_bounds();
    lo <= sp && sp < hi && sp <= addr && end <= hi
}

/// Readable ranges of the main program's PT_LOAD segments, found once.
const MAX_SEGMENTS: usize = 8;
const PROGRAM_UNKNOWN: u8 = 0;
const PROGRAM_READY: u8 = 1;
static PROGRAM_STATE: AtomicU8 = AtomicU8::new(PROGRAM_UNKNOWN);
#[allow(clippy::declare_interior_mutable_const)]
const NO_RANGE: (AtomicUsize, AtomicUsize) = (AtomicUsize::new(0), AtomicUsize::new(0));
static PROGRAM_SEGMENTS: [(AtomicUsize, AtomicUsize); MAX_SEGMENTS] = [NO_RANGE; MAX_SEGMENTS];

/// Whether `[addr, addr + len)` lies in one readable segment of the main
/// program.
fn in_main_program(addr: usize, len: usize) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    // SYNC: Acquire pairs with the Release store of PROGRAM_READY below.
    if PROGRAM_STATE.load(Ordering::Acquire) != PROGRAM_READY {
        // No Once: a racing second initialiser stores the same values, and
        // a lock held by another thread at fork() cannot block a child.
        // SAFETY: the callback matches dl_iterate_phdr's contract and only
        // reads the program headers it is handed.
        unsafe { libc::dl_iterate_phdr(Some(record_main_program), std::ptr::null_mut()) };
        // SYNC: Release publishes PROGRAM_SEGMENTS to the Acquire load above.
        PROGRAM_STATE.store(PROGRAM_READY, Ordering::Release);
    }
    PROGRAM_SEGMENTS.iter().any(|(start, stop)| {
        let (start, stop) = (start.load(Ordering::Relaxed), stop.load(Ordering::Relaxed));
        start < stop && start <= addr && end <= stop
    })
}

/// dl_iterate_phdr callback: records the first object's (the main
/// program's) readable PT_LOAD segments, then stops the iteration.
unsafe extern "C" fn record_main_program(
    info: *mut libc::dl_phdr_info,
    _size: size_t,
    _data: *mut c_void,
) -> c_int {
    const PF_R: u32 = 4;
    // SAFETY: dl_iterate_phdr hands a valid info whose dlpi_phdr points to
    // dlpi_phnum program headers.
    let (base, phdrs) = unsafe {
        let info = &*info;
        (
            info.dlpi_addr as usize,
            std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize),
        )
    };
    let mut n = 0;
    for ph in phdrs {
        if ph.p_type == libc::PT_LOAD && ph.p_flags & PF_R != 0 && n < MAX_SEGMENTS {
            let start = base.wrapping_add(ph.p_vaddr as usize);
            let stop = start.wrapping_add(ph.p_memsz as usize);
            PROGRAM_SEGMENTS[n].0.store(start, Ordering::Relaxed);
            PROGRAM_SEGMENTS[n].1.store(stop, Ordering::Relaxed);
            n += 1;
        }
    }
    1
}

/// Copies `len` bytes from address `src` of this process into `dst`.
/// EFAULT if any of the bytes is not readable.
///
/// # Safety
///
/// * `dst` must be valid for writes of `len` bytes.
unsafe fn copy_in(dst: *mut c_void, src: usize, len: usize) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    if on_my_stack(src, len) || in_main_program(src, len) {
        // SAFETY: the range is mapped and readable (see the two checks) and
        // `dst` is valid for `len` bytes (the caller's obligation). A
        // garbage pointer could point into our own frames, even into `dst`:
        // `copy` (memmove) allows the overlap, and reading our frames only
        // yields garbage values, as the kernel reading a dead stack would.
        unsafe { std::ptr::copy(src as *const u8, dst.cast::<u8>(), len) };
        return Ok(());
    }
    // SAFETY: `dst` is valid for writes of `len` bytes (the caller's
    // obligation).
    unsafe { vm_copy(dst, src, len, Direction::In) }
}

/// Which way [`vm_copy`] copies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// From the caller's address into our buffer (process_vm_readv).
    In,
    /// From our buffer to the caller's address (process_vm_writev).
    Out,
}

/// Copies `len` bytes between our buffer `local` and address `remote` of
/// this process through the kernel, which checks `remote`: EFAULT if any
/// of its bytes is not readable (`In`) or writable (`Out`).
///
/// # Safety
///
/// * `local` must be valid for writes (`In`) or reads (`Out`) of `len`
///   bytes.
unsafe fn vm_copy(local: *mut c_void, remote: usize, len: usize, dir: Direction) -> Result<()> {
    let local = libc::iovec {
        iov_base: local,
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: remote as *mut c_void,
        iov_len: len,
    };
    // The pid is asked for every time: a cached pid would be the parent's in
    // a child made by a raw clone, and these calls would then silently read
    // (or write) the parent's memory.
    // SAFETY: `local` describes `len` bytes we may write (`In`) or read
    // (`Out`), the caller's obligation; `remote` is checked by the kernel,
    // which reports EFAULT for an address it may not read or write.
    let n = unsafe {
        match dir {
            Direction::In => libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0),
            Direction::Out => libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0),
        }
    };
    if n == len as isize {
        Ok(())
    } else if n >= 0 {
        // A partial copy: the range runs into an unusable page.
        Err(Error::BadAddress)
    } else {
        Err(Error::from_errno(errno()))
    }
}

/// Copies `len` bytes from `src` to address `dst` of this process.
/// EFAULT if any of the destination bytes is not writable.
///
/// # Safety
///
/// * `src` must be valid for reads of `len` bytes.
unsafe fn copy_out(dst: usize, src: *const c_void, len: usize) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: `src` is valid for reads of `len` bytes (the caller's
    // obligation); the kernel only reads it.
    unsafe { vm_copy(src as *mut c_void, dst, len, Direction::Out) }
}

/// Reads one `T` from address `src`.
///
/// # Safety
///
/// * Every bit pattern must be a valid `T` (plain C data).
unsafe fn read_struct<T: Copy>(src: usize) -> Result<T> {
    let mut value = MaybeUninit::<T>::uninit();
    // SAFETY: `value` is valid for writes of size_of::<T>() bytes.
    unsafe { copy_in(value.as_mut_ptr().cast(), src, size_of::<T>())? };
    // SAFETY: all its bytes were written, and any bit pattern is a valid T
    // (the caller's obligation).
    Ok(unsafe { value.assume_init() })
}

/// Writes `value` to address `dst`.
fn write_struct<T: Copy>(dst: usize, value: &T) -> Result<()> {
    // SAFETY: `value` is a live reference, readable for size_of::<T>() bytes.
    unsafe { copy_out(dst, (value as *const T).cast(), size_of::<T>()) }
}

/// Reads `out.len()` values of `T` from address `src` into `out`.
///
/// # Safety
///
/// * Every bit pattern must be a valid `T` (plain C data).
unsafe fn read_array<T: Copy>(src: usize, out: &mut [T]) -> Result<()> {
    // SAFETY: `out` is valid for writes of its whole size; the bytes written
    // are valid `T`s (the caller's obligation).
    unsafe { copy_in(out.as_mut_ptr().cast(), src, std::mem::size_of_val(out)) }
}

/// Writes the values of `src` to address `dst`.
fn write_array<T: Copy>(dst: usize, src: &[T]) -> Result<()> {
    // SAFETY: `src` is a live slice, readable for its whole size.
    unsafe { copy_out(dst, src.as_ptr().cast(), std::mem::size_of_val(src)) }
}

// ---------------------------------------------------------------------------
// Conversions between the C structures and shmsem's
// ---------------------------------------------------------------------------

fn semid_ds_to_c(ds: &SemidDs) -> libc::semid_ds {
    // SAFETY: semid_ds is plain C data for which all-zero bytes are valid;
    // the kernel also zeroes the structure (reserved fields included) before
    // filling it in.
    let mut c: libc::semid_ds = unsafe { std::mem::zeroed() };
    c.sem_perm.__key = ds.perm.key;
    c.sem_perm.uid = ds.perm.uid;
    c.sem_perm.gid = ds.perm.gid;
    c.sem_perm.cuid = ds.perm.cuid;
    c.sem_perm.cgid = ds.perm.cgid;
    // `mode` is an unsigned short on x86-64 and an unsigned int on aarch64.
    c.sem_perm.mode = ds.perm.mode as _;
    // The kernel's ipc64_perm.seq is an unsigned short.
    c.sem_perm.__seq = ds.perm.seq as u16;
    c.sem_otime = ds.otime as libc::time_t;
    c.sem_ctime = ds.ctime as libc::time_t;
    c.sem_nsems = ds.nsems as _;
    c
}

/// The fields IPC_SET uses (uid, gid, mode); the engine keeps only the 9
/// permission bits of the mode, as the kernel does.
// The C field types (time_t, __syscall_ulong_t, mode) differ between
// targets, so the casts are the same-type ones only on some of them.
#[allow(clippy::unnecessary_cast)]
fn semid_ds_from_c(c: &libc::semid_ds) -> SemidDs {
    SemidDs {
        perm: IpcPerm {
            key: c.sem_perm.__key,
            uid: c.sem_perm.uid,
            gid: c.sem_perm.gid,
            cuid: c.sem_perm.cuid,
            cgid: c.sem_perm.cgid,
            mode: c.sem_perm.mode as u32,
            seq: c.sem_perm.__seq as u32,
        },
        otime: c.sem_otime as i64,
        ctime: c.sem_ctime as i64,
        nsems: c.sem_nsems as u64,
    }
}

fn seminfo_to_c(si: &Seminfo) -> libc::seminfo {
    libc::seminfo {
        semmap: si.semmap,
        semmni: si.semmni,
        semmns: si.semmns,
        semmnu: si.semmnu,
        semmsl: si.semmsl,
        semopm: si.semopm,
        semume: si.semume,
        semusz: si.semusz,
        semvmx: si.semvmx,
        semaem: si.semaem,
    }
}

// ---------------------------------------------------------------------------
// The calls
// ---------------------------------------------------------------------------

/// The default namespace, opened once. Kept here rather than asked of
/// `Namespace::default_ns` on every call, which clones an `Arc`: a shared
/// reference count that concurrent callers would bounce between cores.
fn namespace() -> Result<&'static Namespace> {
    use std::sync::atomic::{AtomicPtr, Ordering};
    // The process's namespace, leaked (calls in other threads may still be
    // using it when it is replaced; one per `shmsem ns rm`, no more).
    static NS: AtomicPtr<Namespace> = AtomicPtr::new(std::ptr::null_mut());
    // SYNC: Acquire pairs with the AcqRel exchange below that published it.
    let cur = NS.load(Ordering::Acquire);
    if !cur.is_null() {
        // SAFETY: a pointer stored here comes from Arc::into_raw and is
        // never released.
        let ns = unsafe { &*cur };
        if !ns.is_removed() {
            return Ok(ns);
        }
    }
    // First use, or the namespace was removed (a call got EIDRM): attach
    // to the one of that name as it is now, as the Rust free functions do.
    let fresh = Arc::into_raw(Namespace::default_ns()?) as *mut Namespace;
    // SYNC: AcqRel: Release publishes the new namespace to the Acquire load
    // above; Acquire, on failure, as that load.
    match NS.compare_exchange(cur, fresh, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: as above (the old one stays leaked).
        Ok(_) => Ok(unsafe { &*fresh }),
        Err(other) => {
            // SAFETY: `fresh` came from Arc::into_raw just above and was
            // never shared; `other` as above.
            unsafe {
                drop(Arc::from_raw(fresh));
                Ok(&*other)
            }
        }
    }
}

fn do_semget(key: c_int, nsems: c_int, semflg: c_int) -> Result<c_int> {
    namespace()?.semget(key, nsems, semflg)
}

/// Up to this many operations are copied to the stack; more go to the heap
/// (the kernel's SEMOPM_FAST is 64).
const SOPS_ON_STACK: usize = 64;

/// semop and semtimedop. `timeout` is the caller's pointer, 0 for none.
/// `nsops` is an `unsigned int`, as the kernel takes it (glibc's `size_t`
/// is truncated on the way into the system call).
fn do_semtimedop(semid: c_int, sops: usize, nsops: u32, timeout: usize) -> Result<c_int> {
    // 0. An unreadable timeout is EFAULT before anything else.
    let timeout = if timeout == 0 {
        None
    } else {
        // SAFETY: timespec is two integers; any bit pattern is valid.
        let ts: libc::timespec = unsafe { read_struct(timeout)? };
        Some(Timespec {
            tv_sec: ts.tv_sec as i64,
            tv_nsec: ts.tv_nsec as i64,
        })
    };
    let ns = namespace()?;
    // 1. Too many operations (E2BIG) or none (EINVAL): the library's checks
    // before the copy-in, without touching the pointer.
    ns.check_nsops(nsops as usize)?;
    // 2. Copy the operations: EFAULT if unreadable. The rest of the order
    // (semid < 0, bad timeout, unknown id, EFBIG, ...) is the library's.
    let n = nsops as usize;
    let mut stack = [Sembuf::default(); SOPS_ON_STACK];
    let mut heap = Vec::new();
    let ops: &mut [Sembuf] = if n <= SOPS_ON_STACK {
        &mut stack[..n]
    } else {
        heap.resize(n, Sembuf::default());
        &mut heap[..]
    };
    // SAFETY: Sembuf is #[repr(C)] { u16, i16, i16 }, as C's struct sembuf;
    // any bit pattern is valid.
    unsafe { read_array(sops, ops)? };
    ns.semtimedop(semid, ops, timeout.as_ref())?;
    Ok(0)
}

/// Finds the number of semaphores of set `semid` (and its status), which
/// GETALL and SETALL need to know how much to copy.
///
/// SEM_STAT_ANY on the id's index needs no permission, so SETALL on a
/// write-only set still works; the returned id must be `semid` itself,
/// otherwise (a stale id) IPC_STAT gives the lookup error the kernel gives.
fn set_status(ns: &Namespace, semid: c_int) -> Result<SemidDs> {
    let index = SetId::from_raw(semid).index as c_int;
    let mut ds = SemidDs::default();
    if let Ok(id) = ns.semctl(index, 0, SEM_STAT_ANY, SemctlArg::StatOut(&mut ds)) {
        if id == semid {
            return Ok(ds);
        }
    }
    let mut ds = SemidDs::default();
    ns.semctl(semid, 0, IPC_STAT, SemctlArg::StatOut(&mut ds))?;
    Ok(ds)
}

/// semctl, for the glibc wrapper and the raw system call alike. `arg` is
/// the `union semun` as a machine word.
///
/// glibc rejects unknown commands before the system call; the kernel's
/// semctl (x86-64 and aarch64: `ksys_semctl(..., IPC_64)`, no
/// `ipc_parse_version`) rejects them in its `default:` case, and there a
/// command with the IPC_64 bit (0x100) is just another unknown command:
/// `syscall(SYS_semctl, id, 0, IPC_64|GETVAL, 0)` is EINVAL (checked on
/// Linux 6.18 x86-64). glibc passes known commands through unchanged on
/// these architectures (`__IPC_64` is 0 there). So both paths behave alike.
fn do_semctl(semid: c_int, semnum: c_int, cmd: c_int, arg: usize) -> Result<c_int> {
    // Before IPC_SET's copy-in (EFAULT) and SETALL's size lookup: EINVAL
    // for a negative id or an unknown command, as the library gives it.
    Namespace::check_semctl(semid, cmd)?;
    let ns = namespace()?;
    match cmd {
        IPC_RMID | GETVAL | GETPID | GETNCNT | GETZCNT => {
            ns.semctl(semid, semnum, cmd, SemctlArg::None)
        }
        // The kernel takes `(int)arg`: the low 32 bits of the union.
        SETVAL => ns.semctl(semid, semnum, cmd, SemctlArg::Val(arg as u32 as i32)),
        IPC_STAT | SEM_STAT | SEM_STAT_ANY => {
            // Lookup and permission errors come before the copy-out.
            let mut ds = SemidDs::default();
            let ret = ns.semctl(semid, semnum, cmd, SemctlArg::StatOut(&mut ds))?;
            write_struct(arg, &semid_ds_to_c(&ds))?;
            Ok(ret)
        }
        IPC_SET => {
            // The kernel copies the buffer in first.
            // SAFETY: semid_ds is plain C data; any bit pattern is valid.
            let c: libc::semid_ds = unsafe { read_struct(arg)? };
            ns.semctl(semid, semnum, cmd, SemctlArg::Set(&semid_ds_from_c(&c)))
        }
        IPC_INFO | SEM_INFO => {
            let mut si = Seminfo::default();
            let ret = ns.semctl(semid, semnum, cmd, SemctlArg::Info(&mut si))?;
            write_struct(arg, &seminfo_to_c(&si))?;
            Ok(ret)
        }
        GETALL => {
            // Lookup, then read permission, then the copy-out.
            let nsems = set_status(ns, semid)?.nsems as usize;
            let mut values = vec![0u16; nsems];
            let ret = ns.semctl(semid, semnum, cmd, SemctlArg::GetAll(&mut values))?;
            write_array(arg, &values)?;
            Ok(ret)
        }
        SETALL => {
            // Lookup, then write permission, then the copy-in (EFAULT), then
            // the values (ERANGE).
            let nsems = set_status(ns, semid)?.nsems as usize;
            let mut values = vec![0u16; nsems];
            // SAFETY: u16 has no invalid bit patterns.
            if let Err(e) = unsafe { read_array(arg, &mut values) } {
                // The library's permission check comes before the copy.
                ns.check_access(semid, true)?;
                return Err(e);
            }
            ns.semctl(semid, semnum, cmd, SemctlArg::SetAll(&values))
        }
        _ => Err(Error::Invalid),
    }
}

// ---------------------------------------------------------------------------
// The exported symbols
// ---------------------------------------------------------------------------

/// `int semget(key_t key, int nsems, int semflg)`.
#[no_mangle]
pub extern "C" fn semget(key: libc::key_t, nsems: c_int, semflg: c_int) -> c_int {
    guarded(|| do_semget(key, nsems, semflg))
}

/// `int semop(int semid, struct sembuf *sops, size_t nsops)`.
#[no_mangle]
pub extern "C" fn semop(semid: c_int, sops: *mut c_void, nsops: size_t) -> c_int {
    guarded(|| do_semtimedop(semid, sops as usize, nsops as u32, 0))
}

/// `int semtimedop(int semid, struct sembuf *sops, size_t nsops,
/// const struct timespec *timeout)`.
#[no_mangle]
pub extern "C" fn semtimedop(
    semid: c_int,
    sops: *mut c_void,
    nsops: size_t,
    timeout: *const c_void,
) -> c_int {
    guarded(|| do_semtimedop(semid, sops as usize, nsops as u32, timeout as usize))
}

/// `int semctl(int semid, int semnum, int cmd, ...)`.
///
/// Stable Rust cannot define a C-variadic function, so the optional fourth
/// argument (`union semun`, a pointer-sized union) is declared as a fixed
/// `usize`. This is ABI-compatible on x86-64 (System V) and aarch64 Linux
/// (AAPCS64): the first variadic integer or pointer argument travels in the
/// same register as a fourth fixed one (rcx / x3), and a union of an int
/// and pointers is classified as one integer word. When the caller passes
/// only three arguments the register holds garbage, which the commands that
/// take no argument never look at. (Not valid for Apple's arm64 ABI, which
/// puts variadic arguments on the stack; this library is Linux-only.)
#[no_mangle]
pub extern "C" fn semctl(semid: c_int, semnum: c_int, cmd: c_int, arg: usize) -> c_int {
    guarded(|| do_semctl(semid, semnum, cmd, arg))
}

/// The real `syscall` of the C library, looked up once.
static REAL_SYSCALL: AtomicUsize = AtomicUsize::new(0);

type SyscallFn = unsafe extern "C" fn(c_long, ...) -> c_long;

fn real_syscall() -> Option<SyscallFn> {
    // SYNC: Acquire pairs with the Release store below (the address is all
    // that is published, but a pointer to code is read as data here).
    let mut addr = REAL_SYSCALL.load(Ordering::Acquire);
    if addr == 0 {
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name is always
        // safe to call; it returns the next definition after this library
        // (the C library's) or null.
        addr = unsafe { libc::dlsym(libc::RTLD_NEXT, c"syscall".as_ptr()) } as usize;
        if addr == 0 {
            return None;
        }
        // SYNC: racing initialisers store the same address.
        REAL_SYSCALL.store(addr, Ordering::Release);
    }
    // SAFETY: `addr` is the C library's `long syscall(long, ...)`.
    Some(unsafe { std::mem::transmute::<usize, SyscallFn>(addr) })
}

/// `long syscall(long number, ...)`.
///
/// Declared with six fixed `long` arguments after the number: on x86-64 and
/// aarch64 Linux variadic integer arguments are passed exactly like fixed
/// ones (rsi, rdx, rcx, r8, r9, then the stack / x1..x6), which is also how
/// glibc's own `syscall` reads them. Arguments the caller did not pass hold
/// garbage and are ignored by the system call, as with glibc.
///
/// The four semaphore system calls go to shmsem with the kernel's argument
/// types (int ids and counts, `unsigned int` nsops, the raw semun word);
/// anything else is handed to the real `syscall` with all six arguments,
/// and its result and errno are returned untouched.
///
/// # Safety
///
/// As for the C function: the arguments must suit the system call.
#[no_mangle]
pub unsafe extern "C" fn syscall(
    number: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    match number {
        libc::SYS_semget => guarded(|| do_semget(a1 as c_int, a2 as c_int, a3 as c_int)) as c_long,
        libc::SYS_semop => {
            guarded(|| do_semtimedop(a1 as c_int, a2 as usize, a3 as u32, 0)) as c_long
        }
        libc::SYS_semtimedop => {
            guarded(|| do_semtimedop(a1 as c_int, a2 as usize, a3 as u32, a4 as usize)) as c_long
        }
        libc::SYS_semctl => {
            guarded(|| do_semctl(a1 as c_int, a2 as c_int, a3 as c_int, a4 as usize)) as c_long
        }
        _ => match real_syscall() {
            // SAFETY: the caller's arguments are forwarded unchanged to the
            // real syscall, whose contract they were written for.
            Some(real) => unsafe { real(number, a1, a2, a3, a4, a5, a6) },
            None => {
                set_errno(libc::ENOSYS);
                -1
            }
        },
    }
}
