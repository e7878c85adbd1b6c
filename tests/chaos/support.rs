//! Helpers shared by the chaos and resource-exhaustion tests: one test at a
//! time with a watchdog, a namespace that is destroyed at the end, forked
//! children that never return into the harness, counters in shared memory
//! that survive SIGKILL, a read-only look at a set's segment (queue slots
//! and process-table entries in use), and a small seeded random generator.

#![allow(dead_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use shmsem::layout::{
    ProcEntry, QueueSlot, SetGeometry, SetHeader, IPCMNI_SHIFT, LOCK_SLOT_MASK, NIL, PROC_ACTIVE,
    PROC_FREE, PROC_STATE_MASK, SLOT_FREE, SLOT_QUEUED, SLOT_STATE_MASK, SLOT_STATE_SHIFT,
};
use shmsem::{Limits, Namespace};

/// How long a single wait on observable state may take before the test
/// fails. Generous: the machine has two cores and runs other work.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Child exit code for success.
pub const OK: i32 = 0;
/// Child exit code for a panic inside the child.
pub const PANICKED: i32 = 250;
/// Child exit codes `CHECK_FAILED + k` report that check `k` failed.
pub const CHECK_FAILED: i32 = 200;

/// Forking while another test thread is inside the library (or holds a
/// std lock) would leave that lock held for ever in the child: tests of one
/// binary run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Serialisation, a watchdog and a namespace destroyed at the end.
pub struct TestEnv {
    /// The test's own namespace.
    pub ns: Arc<Namespace>,
    // Field order is drop order: destroy the namespace, stop the watchdog,
    // then let the next test run.
    _watchdog: Watchdog,
    _serial: MutexGuard<'static, ()>,
}

impl TestEnv {
    /// A test called `name` with default limits and a watchdog of `secs`.
    pub fn new(name: &str, secs: u64) -> TestEnv {
        TestEnv::with_limits(name, secs, Limits::default())
    }

    /// A test called `name` whose namespace has `limits`.
    pub fn with_limits(name: &str, secs: u64, limits: Limits) -> TestEnv {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let watchdog = Watchdog::start(name, secs);
        let ns_name = format!("t-{}-{}", name, std::process::id());
        let ns = Namespace::open_with_limits(&ns_name, limits)
            .unwrap_or_else(|e| panic!("{name}: Namespace::open_with_limits({ns_name}): {e}"));
        TestEnv {
            ns,
            _watchdog: watchdog,
            _serial: serial,
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Err(e) = self.ns.destroy() {
            eprintln!("warning: destroying namespace {}: {e}", self.ns.name());
        }
    }
}

/// Turns a hang into a failure: if the test still runs after its time, the
/// whole binary aborts with a message (children die by their own alarm or
/// by PR_SET_PDEATHSIG).
pub struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    pub fn start(name: &str, secs: u64) -> Watchdog {
        let name = name.to_string();
        let (tx, rx) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(secs))
            {
                eprintln!("WATCHDOG: test `{name}` still running after {secs}s: hang; aborting");
                std::process::abort();
            }
        });
        Watchdog {
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A child exit code in words.
pub fn describe(code: i32) -> String {
    match code {
        OK => "0 (success)".to_string(),
        PANICKED => format!("{code} (the child panicked)"),
        c if c >= CHECK_FAILED => format!("{c} (check #{} in the child failed)", c - CHECK_FAILED),
        c => format!("{c} ({})", shmsem::Error::from_errno(c)),
    }
}

/// The exit code for a call's result: 0, or the errno.
pub fn rc(r: shmsem::Result<()>) -> i32 {
    match r {
        Ok(()) => OK,
        Err(e) => e.errno(),
    }
}

/// Makes the calling (child) process die with SIGKILL when its parent dies,
/// and arms an alarm as a last safety net.
pub fn child_safety_net(alarm_secs: u32) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a property of this process.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    // SAFETY: alarm() only arms a timer for this process.
    unsafe { libc::alarm(alarm_secs) };
}

/// Forks a child that runs `body` and ends with `_exit(code)`; a panic
/// becomes [`PANICKED`]. The child never returns into the caller.
///
/// The caller must be the only thread that uses the library or holds a
/// lock the child needs (tests hold [`SERIAL`]; child processes are single
/// threaded).
pub fn fork_child(alarm_secs: u32, body: impl FnOnce() -> i32) -> Pid {
    // SAFETY: see the function's contract: no other thread of this process
    // is inside the library or holds a lock the child could need; the child
    // only runs `body` and then ends with `_exit`, never returning.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Parent { child } => child,
        ForkResult::Child => {
            child_safety_net(alarm_secs);
            let code = catch_unwind(AssertUnwindSafe(body)).unwrap_or(PANICKED);
            // SAFETY: _exit ends the process at once; none of the parent's
            // state (harness, guards) runs in the child.
            unsafe { libc::_exit(code) }
        }
    }
}

/// Waits for `pid` with a deadline and returns how it ended.
pub fn wait_for(pid: Pid, limit: Duration, what: &str) -> WaitStatus {
    let start = Instant::now();
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(status) => return status,
            Err(e) => panic!("{what}: waitpid({pid}): {e}"),
        }
        if start.elapsed() > limit {
            panic!("{what}: child {pid} still running after {limit:?} (hang?)");
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// The forked children of a test. Dropping it SIGKILLs and reaps every
/// child not yet reaped, so a failing test leaves no process behind.
#[derive(Default)]
pub struct Kids {
    live: Vec<Pid>,
}

impl Kids {
    pub fn new() -> Kids {
        Kids::default()
    }

    /// Forks a child running `body` (see [`fork_child`]).
    pub fn spawn(&mut self, body: impl FnOnce() -> i32) -> Pid {
        let pid = fork_child(120, body);
        self.live.push(pid);
        pid
    }

    /// Waits for `pid` (with [`DEADLINE`]) and returns how it ended.
    pub fn wait(&mut self, pid: Pid, what: &str) -> WaitStatus {
        let st = wait_for(pid, DEADLINE, what);
        self.live.retain(|p| *p != pid);
        st
    }

    /// Waits for `pid` and checks that it exited with `code`.
    pub fn expect_exit(&mut self, pid: Pid, code: i32, what: &str) {
        match self.wait(pid, what) {
            WaitStatus::Exited(_, got) => assert_eq!(
                got,
                code,
                "{what}: expected exit code {}, got {}",
                describe(code),
                describe(got)
            ),
            other => panic!(
                "{what}: expected exit code {}, got {other:?}",
                describe(code)
            ),
        }
    }

    /// SIGKILLs `pid` and reaps it.
    pub fn kill(&mut self, pid: Pid, what: &str) {
        kill(pid, Signal::SIGKILL).unwrap_or_else(|e| panic!("{what}: kill({pid}): {e}"));
        match self.wait(pid, what) {
            WaitStatus::Signaled(_, Signal::SIGKILL, _) => {}
            other => panic!("{what}: expected death by SIGKILL, got {other:?}"),
        }
    }

    /// Children not yet reaped.
    pub fn live(&self) -> &[Pid] {
        &self.live
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        for pid in self.live.drain(..) {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// Polls `cond` until it holds; fails with `what` after [`DEADLINE`].
pub fn poll_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > DEADLINE {
            panic!("timed out after {DEADLINE:?} waiting for: {what}");
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// A value of type `T` in an anonymous shared mapping: a forked child
/// writes it, its parent reads it, and a SIGKILL loses nothing written.
/// `T` must be made of atomics (valid when all-zero, shared by reference).
pub struct Shared<T> {
    ptr: *mut T,
}

impl<T: Sync> Shared<T> {
    /// A zeroed `T` in fresh shared memory.
    ///
    /// # Safety
    /// An all-zero `T` must be a valid value, and `T` must need no drop.
    pub unsafe fn zeroed() -> Shared<T> {
        let len = core::mem::size_of::<T>().max(1);
        // SAFETY: an anonymous shared mapping of `len` bytes; no existing
        // memory is touched.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(p != libc::MAP_FAILED, "mmap of shared counters failed");
        Shared { ptr: p.cast() }
    }
}

impl<T> core::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the mapping is page-aligned, zero-filled (a valid T by the
        // contract of `zeroed`) and lives until Drop.
        unsafe { &*self.ptr }
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        let len = core::mem::size_of::<T>().max(1);
        // SAFETY: unmaps exactly the mapping made in `zeroed`; no reference
        // obtained through Deref outlives `self`.
        unsafe { libc::munmap(self.ptr.cast(), len) };
    }
}

/// xorshift64*: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What one process held at a moment (see [`Usage::held_by`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Holding {
    /// It has a process-table entry.
    pub registered: bool,
    /// It holds the set's global lock.
    pub lock: bool,
    /// It has a queued (sleeping) operation.
    pub queued: bool,
    /// It holds a non-zero SEM_UNDO adjustment.
    pub undo: bool,
}

/// What a set's segment says about the resources in use, read through a
/// separate read-only mapping of its file with the public layout types.
/// Unlike `Namespace::report`, this takes no lock: the chaos killer reads
/// it while its victim is frozen, possibly holding the set's lock.
#[derive(Debug, Default)]
pub struct Usage {
    /// Queue slots whose state is not FREE, as (index, state, proc slot, pid).
    pub busy_slots: Vec<(u32, u32, u32, i32)>,
    /// Process-table entries in state ACTIVE, as (index, pid, undo_count, queued).
    pub active_procs: Vec<(u32, i32, u32, u32)>,
    /// Entries neither FREE nor ACTIVE (CLAIMING or garbage).
    pub odd_procs: Vec<(u32, u32)>,
    /// (entry, semaphore, adjustment) for every non-zero undo cell.
    pub undo_cells: Vec<(u32, usize, i16)>,
    /// The lock word, the sequence counter and the two FIFO heads.
    pub lock: u32,
    pub seq: u32,
    pub alter_head: u32,
    pub const_head: u32,
}

impl Usage {
    /// Reads the segment of set `id` of namespace `ns` with `nsems`
    /// semaphores (the namespace's limits give the table sizes).
    pub fn read(ns: &Namespace, id: i32, nsems: u32) -> Usage {
        let idx = id as u32 & ((1 << IPCMNI_SHIFT) - 1);
        let seq = id as u32 >> IPCMNI_SHIFT;
        let path = format!("/dev/shm/shmsem.{}.{idx}.{seq}", ns.name());
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        let lim = ns.limits();
        let geo = SetGeometry::new(nsems, lim.proc_slots, lim.queue_slots);
        let len = file.metadata().expect("stat the segment").len() as usize;
        assert_eq!(len, geo.size, "{path}: size differs from its geometry");
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh read-only shared mapping of the whole file; it is
        // unmapped below and no reference into it escapes this function.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert!(base != libc::MAP_FAILED, "mmap {path}");
        let base = base as *const u8;
        let mut u = Usage::default();
        // SAFETY (for the derefs below): every offset comes from the
        // geometry checked against the file size above, the mapping is page
        // aligned so each record is aligned as its type requires, and the
        // types are made of atomics, whose loads are plain reads.
        let hdr = unsafe { &*(base as *const SetHeader) };
        use std::sync::atomic::Ordering::Acquire;
        u.lock = hdr.lock.load(Acquire);
        u.seq = hdr.seq.load(Acquire);
        u.alter_head = hdr.alter_head.load(Acquire);
        u.const_head = hdr.const_head.load(Acquire);
        for i in 0..geo.queue_slots {
            // SAFETY: see above.
            let q = unsafe { &*(base.add(geo.queue_off + i as usize * 128) as *const QueueSlot) };
            let st = q.status.load(Acquire);
            let state = (st >> SLOT_STATE_SHIFT) & SLOT_STATE_MASK;
            if state != SLOT_FREE {
                u.busy_slots
                    .push((i, state, q.proc_slot.load(Acquire), q.pid.load(Acquire)));
            }
        }
        for p in 0..geo.proc_slots {
            // SAFETY: see above.
            let e = unsafe { &*(base.add(geo.procs_off + p as usize * 32) as *const ProcEntry) };
            let state = e.state_gen.load(Acquire) & PROC_STATE_MASK;
            if state == PROC_ACTIVE {
                u.active_procs.push((
                    p,
                    e.pid.load(Acquire),
                    e.undo_count.load(Acquire),
                    e.queued.load(Acquire),
                ));
            } else if state != PROC_FREE {
                u.odd_procs.push((p, state));
            }
            for s in 0..nsems as usize {
                let off = geo.undo_off + p as usize * geo.undo_row() + s * 2;
                // SAFETY: see above; an i16 cell, 2-byte aligned.
                let adj = unsafe {
                    (*(base.add(off) as *const std::sync::atomic::AtomicI16)).load(Acquire)
                };
                if adj != 0 {
                    u.undo_cells.push((p, s, adj));
                }
            }
        }
        // SAFETY: unmaps the mapping made above; nothing points into it now.
        unsafe { libc::munmap(base as *mut libc::c_void, len) };
        u
    }

    /// The process-table index the global lock names as its owner, if held.
    pub fn lock_owner(&self) -> Option<u32> {
        match self.lock & LOCK_SLOT_MASK {
            0 => None,
            s => Some(s - 1),
        }
    }

    /// What process `pid` held when this snapshot was taken (it must be
    /// stopped for the answer to be exact).
    pub fn held_by(&self, pid: i32) -> Holding {
        let entry = self
            .active_procs
            .iter()
            .find(|(_, p, _, _)| *p == pid)
            .map(|e| e.0);
        let Some(entry) = entry else {
            return Holding::default();
        };
        Holding {
            registered: true,
            lock: self.lock_owner() == Some(entry),
            queued: self
                .busy_slots
                .iter()
                .any(|(_, state, proc, _)| *state == SLOT_QUEUED && *proc == entry),
            undo: self.undo_cells.iter().any(|(p, _, _)| *p == entry),
        }
    }

    /// Problems that mean a leak once every process but `me` is dead and
    /// swept: busy queue slots, entries of other processes that still hold
    /// something, adjustments, a held lock, an open sequence counter,
    /// non-empty FIFOs. (Entries of dead processes that hold nothing stay
    /// ACTIVE by design until the table is full; they are not leaks.)
    pub fn leaks(&self, me: i32) -> Vec<String> {
        let mut out = Vec::new();
        if !self.busy_slots.is_empty() {
            out.push(format!(
                "{} queue slot(s) not FREE (index, state, proc, pid): {:?}",
                self.busy_slots.len(),
                &self.busy_slots[..self.busy_slots.len().min(8)]
            ));
        }
        let holding: Vec<_> = self
            .active_procs
            .iter()
            .filter(|(_, pid, undo, queued)| *pid != me && (*undo != 0 || *queued != 0))
            .collect();
        if !holding.is_empty() {
            out.push(format!(
                "{} process entr(ies) of other processes still holding undo or queue slots \
                 (index, pid, undo_count, queued): {:?}",
                holding.len(),
                &holding[..holding.len().min(8)]
            ));
        }
        if !self.odd_procs.is_empty() {
            out.push(format!(
                "process entries in an odd state: {:?}",
                self.odd_procs
            ));
        }
        if !self.undo_cells.is_empty() {
            out.push(format!(
                "{} non-zero undo cell(s) (entry, sem, adj): {:?}",
                self.undo_cells.len(),
                &self.undo_cells[..self.undo_cells.len().min(8)]
            ));
        }
        if self.lock != 0 {
            out.push(format!("the global lock is held: {:#x}", self.lock));
        }
        if self.seq & 1 != 0 {
            out.push(format!("the sequence counter is odd: {}", self.seq));
        }
        if self.alter_head != NIL || self.const_head != NIL {
            out.push(format!(
                "a FIFO is not empty: alter head {}, const head {}",
                self.alter_head, self.const_head
            ));
        }
        out
    }
}
