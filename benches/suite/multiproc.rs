//! Scenarios with several processes (fork), and the scaling scenarios.
//!
//! - **ping-pong**: two processes hand a token back and forth through two
//!   semaphores at 0 (A: V(0) P(1); B: P(0) V(1)). Figure: ns per round
//!   trip, timed by A. Pinned with `sched_setaffinity` to two different
//!   CPUs, or both to the same one. A mutex cannot hand over (only its owner
//!   may unlock it): "-".
//! - **contended**: N processes (unpinned) loop P, critical section, V on
//!   one semaphore at 1 for a fixed time. The critical section increments a
//!   shared counter with a plain load and store, so a broken mutual
//!   exclusion shows as a count mismatch (reported as an error). Figures:
//!   aggregate ns per acquire+release (elapsed / all processes' ops),
//!   fairness (fewest ops of any process / most), and context switches per
//!   op (voluntary + involuntary, `getrusage(RUSAGE_SELF)` in each child
//!   around its loop).
//! - **queued waiters**: a set of 3 semaphores; W waiters block in P on
//!   semaphore 2 (value 0), as threads of ceil(W/250) processes (250:
//!   `SHMSEM_BENCH_WAITERS_PER_PROC` changes it), and the
//!   parent polls GETNCNT(2) until all W are queued. Then the parent times
//!   uncontended calls on semaphores 0 and 1: the single op P+V pair, the
//!   same with SEM_UNDO, and the 2-op pair on 0 and 1. They never block and
//!   wake no one, so the cost should not depend on W; a figure that grows
//!   with W shows work proportional to the queue (a scan of a shared FIFO,
//!   sleepers waking to sweep). Kernel and shmsem only (only they queue).
//! - **sets**: S sets of one semaphore each (for sem_t/mutex/futex: S
//!   separate objects, each in its own mapping); the P+V pair round-robin
//!   over them. ns per call. Shows per-set lookup and cache/TLB footprint.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::impls::{Env, Sem, SharedMem};
use crate::report::Fig;
use crate::{budget, time_per_iter};

/// Exit code of a child whose body panicked.
const PANICKED: i32 = 250;

/// The forked children of one scenario. Dropping it SIGKILLs and reaps any
/// child not yet reaped, so a failing scenario leaves no process behind.
pub struct Kids {
    live: Vec<libc::pid_t>,
}

impl Kids {
    pub fn new() -> Kids {
        Kids { live: Vec::new() }
    }

    /// Forks a child that runs `body` and `_exit`s: 0 when it returns,
    /// PANICKED when it panics. The child dies with the parent
    /// (PR_SET_PDEATHSIG) and by SIGALRM after `alarm_secs` at the latest.
    pub fn spawn(&mut self, alarm_secs: u32, body: impl FnOnce()) {
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the benchmark's parent is single-threaded when it forks
        // (criterion runs no threads without its rayon feature), so no lock
        // is held by a thread that does not exist in the child; the child
        // runs `body` and ends with `_exit`, never returning into the parent's
        // stack frames.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            panic!("fork: {}", std::io::Error::last_os_error());
        }
        if pid > 0 {
            self.live.push(pid);
            return;
        }
        // SAFETY: prctl/getppid/alarm only set up this process's own death
        // signal and timer.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(PANICKED);
            }
            libc::alarm(alarm_secs);
        }
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
            Ok(()) => 0,
            Err(_) => PANICKED,
        };
        // SAFETY: ends the child at once; nothing of the parent's state
        // (guards, criterion) runs in it.
        unsafe { libc::_exit(code) }
    }

    /// The children not yet reaped.
    pub fn pids(&self) -> &[libc::pid_t] {
        &self.live
    }

    /// Waits for every child, at most `limit`; Err names a child that
    /// failed or the children still running.
    pub fn wait_all(&mut self, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        let mut bad = None;
        while !self.live.is_empty() {
            let mut k = 0;
            while k < self.live.len() {
                let mut status = 0;
                // SAFETY: waits for our own child without blocking.
                let r = unsafe { libc::waitpid(self.live[k], &mut status, libc::WNOHANG) };
                if r == 0 {
                    k += 1;
                    continue;
                }
                let pid = self.live.swap_remove(k);
                let ok = r == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
                if !ok && bad.is_none() {
                    bad = Some(if libc::WIFSIGNALED(status) {
                        format!("child {pid} killed by signal {}", libc::WTERMSIG(status))
                    } else if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == PANICKED {
                        format!("child {pid} panicked")
                    } else {
                        format!("child {pid}: wait status {status:#x}")
                    });
                }
            }
            if self.live.is_empty() {
                break;
            }
            if start.elapsed() > limit {
                return Err(format!(
                    "{} child(ren) still running after {limit:?} (hang?)",
                    self.live.len()
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        bad.map_or(Ok(()), Err)
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        for &pid in &self.live {
            // SAFETY: our own children, not yet reaped (so the pid is theirs).
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Pins the calling process to one CPU.
fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity only reads it.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if r != 0 {
        panic!(
            "sched_setaffinity({cpu}): {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Context switches of this process so far (voluntary + involuntary).
fn ctx_switches() -> u64 {
    // SAFETY: getrusage fills a plain struct.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        (ru.ru_nvcsw + ru.ru_nivcsw) as u64
    }
}

/// CPU time (user + system, all threads) process `pid` has used, in ns.
fn cpu_ns(pid: libc::pid_t) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses:
    // state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1_000_000_000 / hz)
}

/// Polls `cond` every millisecond until it holds or `limit` passes.
fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

// ---------------------------------------------------------------------------
// Ping-pong
// ---------------------------------------------------------------------------

/// ns per round trip between two processes pinned to `cpus`.
pub fn ping_pong<S: Sem>(env: &Env, cpus: (usize, usize), rounds: u64) -> Fig {
    if !S::CAPS.handoff {
        return Fig::NotApplicable;
    }
    let s = S::create(env, 2, 0);
    let out = SharedMem::new(64);
    let warm = rounds / 10 + 10;
    let mut kids = Kids::new();
    kids.spawn(120, || {
        pin(cpus.1);
        for _ in 0..warm + rounds {
            s.wait(0);
            s.post(1);
        }
    });
    kids.spawn(120, || {
        pin(cpus.0);
        for _ in 0..warm {
            s.post(0);
            s.wait(1);
        }
        let start = Instant::now();
        for _ in 0..rounds {
            s.post(0);
            s.wait(1);
        }
        out.u64(0)
            .store(start.elapsed().as_nanos() as u64, Ordering::Release);
    });
    if let Err(e) = kids.wait_all(Duration::from_secs(120)) {
        return Fig::Failed(e);
    }
    Fig::Val(out.u64(0).load(Ordering::Acquire) as f64 / rounds as f64)
}

// ---------------------------------------------------------------------------
// Contended
// ---------------------------------------------------------------------------

/// Figures of one contended run.
pub struct Contended {
    pub ns_per_op: Fig,
    pub fairness: Fig,
    pub ctx_per_op: Fig,
}

impl Contended {
    fn all(f: Fig) -> Contended {
        Contended {
            ns_per_op: f.clone(),
            fairness: f.clone(),
            ctx_per_op: f,
        }
    }
}

/// `n` processes use one semaphore as a mutex for `run` time.
pub fn contended<S: Sem>(env: &Env, n: usize, undo: bool, run: Duration) -> Contended {
    if undo && !S::CAPS.undo {
        return Contended::all(Fig::NotApplicable);
    }
    let s = S::create(env, 1, 1);
    // Control words, each on its own cache line; then one line per child
    // for (ops, context switches).
    const GO: usize = 0;
    const STOP: usize = 64;
    const READY: usize = 128;
    const COUNTER: usize = 192;
    const SLOTS: usize = 256;
    let shm = SharedMem::new(SLOTS + 64 * n);
    let mut kids = Kids::new();
    for k in 0..n {
        let (s, shm) = (&s, &shm);
        kids.spawn(120, move || {
            shm.u32(READY).fetch_add(1, Ordering::AcqRel);
            while shm.u32(GO).load(Ordering::Acquire) == 0 {
                std::thread::sleep(Duration::from_micros(100));
            }
            let csw0 = ctx_switches();
            let mut ops = 0u64;
            let counter = shm.u64(COUNTER);
            while shm.u32(STOP).load(Ordering::Relaxed) == 0 {
                if undo {
                    s.wait_undo(0);
                } else {
                    s.wait(0);
                }
                // A plain read-modify-write: only mutual exclusion keeps it exact.
                let c = counter.load(Ordering::Relaxed);
                counter.store(c + 1, Ordering::Relaxed);
                if undo {
                    s.post_undo(0);
                } else {
                    s.post(0);
                }
                ops += 1;
            }
            let csw = ctx_switches() - csw0;
            shm.u64(SLOTS + 64 * k).store(ops, Ordering::Relaxed);
            shm.u64(SLOTS + 64 * k + 8).store(csw, Ordering::Release);
        });
    }
    if !poll_until(Duration::from_secs(30), || {
        shm.u32(READY).load(Ordering::Acquire) as usize == n
    }) {
        return Contended::all(Fig::Failed("children did not start".into()));
    }
    let start = Instant::now();
    shm.u32(GO).store(1, Ordering::Release);
    std::thread::sleep(run);
    shm.u32(STOP).store(1, Ordering::Release);
    let elapsed = start.elapsed();
    if let Err(e) = kids.wait_all(Duration::from_secs(60)) {
        return Contended::all(Fig::Failed(e));
    }
    let ops: Vec<u64> = (0..n)
        .map(|k| shm.u64(SLOTS + 64 * k).load(Ordering::Acquire))
        .collect();
    let csw: u64 = (0..n)
        .map(|k| shm.u64(SLOTS + 64 * k + 8).load(Ordering::Acquire))
        .sum();
    let total: u64 = ops.iter().sum();
    let counted = shm.u64(COUNTER).load(Ordering::Acquire);
    if counted != total {
        return Contended::all(Fig::Failed(format!(
            "mutual exclusion broken: counter {counted}, ops {total}"
        )));
    }
    if total == 0 {
        return Contended::all(Fig::Failed("no operation completed".into()));
    }
    let (min, max) = (*ops.iter().min().unwrap(), *ops.iter().max().unwrap());
    Contended {
        ns_per_op: Fig::Val(elapsed.as_nanos() as f64 / total as f64),
        fairness: Fig::Val(min as f64 / max as f64),
        ctx_per_op: Fig::Val(csw as f64 / total as f64),
    }
}

// ---------------------------------------------------------------------------
// Queued waiters
// ---------------------------------------------------------------------------

/// Waiter threads per process: `SHMSEM_BENCH_WAITERS_PER_PROC`, default 250.
pub fn waiters_per_process() -> usize {
    std::env::var("SHMSEM_BENCH_WAITERS_PER_PROC")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(250)
}

/// Figures of one queued-waiters run: single op, single op SEM_UNDO, 2-op,
/// each ns per call; and the CPU the sleeping waiters use while nothing
/// happens on the set (percent of one core, over a quiet window before the
/// timed calls).
pub fn waiters<S: Sem>(env: &Env, w: usize, quick: bool) -> [Fig; 4] {
    if !S::CAPS.ncnt {
        return std::array::from_fn(|_| Fig::NotApplicable);
    }
    let per_proc = waiters_per_process();
    let s = S::create(env, 3, 1);
    s.wait(2); // the waiters' semaphore: 0
    let procs = w.div_ceil(per_proc);
    let mut kids = Kids::new();
    for p in 0..procs {
        let threads = (w - p * per_proc).min(per_proc);
        let s = &s;
        kids.spawn(600, move || {
            std::thread::scope(|sc| {
                for _ in 0..threads {
                    std::thread::Builder::new()
                        .stack_size(64 * 1024)
                        .spawn_scoped(sc, || s.wait(2))
                        .expect("spawn a waiter thread");
                }
            });
        });
    }
    // Give up when the count has not grown for `stall` (or after `limit`).
    let stall = Duration::from_secs(if quick { 2 } else { 5 });
    let limit = Duration::from_secs(if quick { 10 } else { 60 });
    let (mut last, mut since) = (0, Instant::now());
    let queued = poll_until(limit, || {
        let now = s.ncnt(2) as usize;
        if now != last {
            (last, since) = (now, Instant::now());
        }
        now >= w || since.elapsed() > stall
    }) && last >= w;
    let figs = if queued {
        let window = budget(quick, 200, 1000);
        let cpu = |pids: &[libc::pid_t]| pids.iter().filter_map(|&p| cpu_ns(p)).sum::<u64>();
        let (c0, t0) = (cpu(kids.pids()), Instant::now());
        std::thread::sleep(window);
        let idle = (cpu(kids.pids()) - c0) as f64 / t0.elapsed().as_nanos() as f64 * 100.0;
        let b = budget(quick, 100, 600);
        [
            Fig::Val(
                time_per_iter(b, |n| {
                    for _ in 0..n {
                        s.wait(0);
                        s.post(0);
                    }
                }) / 2.0,
            ),
            Fig::Val(
                time_per_iter(b, |n| {
                    for _ in 0..n {
                        s.wait_undo(0);
                        s.post_undo(0);
                    }
                }) / 2.0,
            ),
            Fig::Val(
                time_per_iter(b, |n| {
                    for _ in 0..n {
                        s.multi(2, -1, false);
                        s.multi(2, 1, false);
                    }
                }) / 2.0,
            ),
            Fig::Val(idle),
        ]
    } else {
        let got = s.ncnt(2);
        let why = format!("only {got} of {w} waiters queued (GETNCNT), no progress for {stall:?}");
        std::array::from_fn(|_| Fig::Failed(why.clone()))
    };
    // Release every waiter, queued or still on its way, then reap them.
    for _ in 0..w {
        s.post(2);
    }
    if let Err(e) = kids.wait_all(Duration::from_secs(120)) {
        return std::array::from_fn(|_| Fig::Failed(format!("releasing the waiters: {e}")));
    }
    figs
}

// ---------------------------------------------------------------------------
// Many sets
// ---------------------------------------------------------------------------

/// ns per call of the P+V pair round-robin over `n` sets.
pub fn sets<S: Sem>(env: &Env, n: usize, undo: bool, quick: bool) -> Fig {
    if undo && !S::CAPS.undo {
        return Fig::NotApplicable;
    }
    let sets: Vec<S> = (0..n).map(|_| S::create(env, 1, 1)).collect();
    let b = budget(quick, 100, 600);
    let mut k = 0;
    let ns = time_per_iter(b, |iters| {
        for _ in 0..iters {
            let s = &sets[k];
            if undo {
                s.wait_undo(0);
                s.post_undo(0);
            } else {
                s.wait(0);
                s.post(0);
            }
            k += 1;
            if k == n {
                k = 0;
            }
        }
    });
    Fig::Val(ns / 2.0)
}
