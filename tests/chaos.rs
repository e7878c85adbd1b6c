//! The chaos test (issue 3, item 4): worker processes do random multi-op
//! semops with SEM_UNDO — they take units and later give them back, with
//! blocking waits, timeouts and IPC_NOWAIT — while a killer process SIGKILLs
//! a random worker every few milliseconds and starts a new one. One worker
//! in four never sleeps (IPC_NOWAIT only), so that many victims die holding
//! the set's lock. Each victim is frozen with SIGSTOP just before its
//! SIGKILL, so that the killer can read from the segment what it held at
//! its death (the lock, a queued call, undo adjustments); those counts are
//! part of the printed figures. When the run ends every worker is killed
//! and reaped, and then:
//!
//! * the full initial values are acquired by ONE semop with a 5 s timeout
//!   (every unit accounted for), after which every value is 0 (no unit
//!   gained either);
//! * GETNCNT and GETZCNT are 0 on every semaphore;
//! * the set's segment shows no busy queue slot, no process entry of a dead
//!   process still holding something, no undo adjustment, no held lock;
//! * the process table and the pending-queue arena can be filled to their
//!   exact capacity (the next call gets ENOMEM), and emptied again.
//!
//! During the run the test process checks that no value ever exceeds its
//! initial value and that operations keep completing (a stall of 15 s while
//! kills go on is a hang).
//!
//! Knobs (environment):
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `SHMSEM_CHAOS_SECS` | run at least this long (seconds, may be fractional) | 3 |
//! | `SHMSEM_CHAOS_KILLS` | and until at least this many kills | 0 |
//! | `SHMSEM_CHAOS_SEED` | seed of every random choice | from the clock |
//! | `SHMSEM_CHAOS_WORKERS` | live workers at any time | 8 |
//!
//! A long run: `SHMSEM_CHAOS_KILLS=10000 cargo test --release --test chaos
//! -- --nocapture`. Each test prints its figures (kills, operations, units
//! recovered, duration) on stderr.
//!
//! The set lives in a namespace with small tables (64 process entries, 128
//! queue slots) so that entries of killed processes are recycled often.
// The ban on std atomics, fences and raw futex calls (clippy.toml) keeps them
// inside the library's shim; this program is not the library: its atomics
// are its own (process-local counters, or words of a mapping it made), and
// its raw futex and semtimedop calls are the competitors it measures.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod support;

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use shmsem::layout::SLOT_OPS;
use shmsem::{Error, Limits, Op, SemaphoreSet};
use support::*;

/// Initial values: what must be recoverable at the end.
const INIT: [u16; 4] = [6, 3, 9, 2];
const NSEMS: usize = INIT.len();
/// The chaos set's table sizes (small, so that entries are recycled).
const PROC_SLOTS: u32 = 64;
const QUEUE_SLOTS: u32 = 128;
/// How long the final all-units semop may wait.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// No operation completed for this long while kills go on: a hang.
const STALL_LIMIT: Duration = Duration::from_secs(15);

/// Figures shared by the killer, the workers and the test process. Every
/// field is an atomic in shared memory, so a SIGKILL loses nothing written.
#[derive(Default)]
struct Stats {
    /// Set by the test process: the killer stops.
    stop: AtomicU32,
    /// Workers SIGKILLed during the run (and seen dead by SIGKILL).
    kills: AtomicU64,
    /// What the victims held when they were killed (each victim is
    /// stopped with SIGSTOP first and the segment read, so this is exact):
    /// the global lock, a queued operation, an undo adjustment, nothing
    /// registered in the set yet.
    killed_holding_lock: AtomicU64,
    killed_queued: AtomicU64,
    killed_with_undo: AtomicU64,
    killed_unregistered: AtomicU64,
    /// Workers killed at the end of the run.
    final_kills: AtomicU64,
    /// Workers started.
    spawned: AtomicU64,
    /// Successful semop calls, by kind.
    takes: AtomicU64,
    gives: AtomicU64,
    balanced: AtomicU64,
    zero: AtomicU64,
    /// Calls that failed with EAGAIN (IPC_NOWAIT or a timeout).
    would_block: AtomicU64,
    /// Workers that ended other than by the killer's SIGKILL.
    failures: AtomicU64,
    /// The first such failure: pid << 32 | code (code: errno or exit code,
    /// 1000 + signal for a death by another signal).
    first_failure: AtomicI64,
}

impl Stats {
    fn ops(&self) -> u64 {
        self.takes.load(Ordering::Relaxed)
            + self.gives.load(Ordering::Relaxed)
            + self.balanced.load(Ordering::Relaxed)
            + self.zero.load(Ordering::Relaxed)
    }

    fn fail(&self, pid: Pid, code: i64) {
        if self.failures.fetch_add(1, Ordering::Relaxed) == 0 {
            self.first_failure
                .store(((pid.as_raw() as i64) << 32) | code, Ordering::Relaxed);
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Config {
    /// Minimum duration.
    secs: f64,
    /// Minimum kills.
    min_kills: u64,
    seed: u64,
    workers: usize,
    /// Mix in calls without undo that are balanced within the call.
    balanced: bool,
    /// Threads per worker process, each running the worker loop (they
    /// share the process's table entry and undo adjustments).
    threads: usize,
}

impl Config {
    fn from_env(balanced: bool, threads: usize) -> Config {
        fn var<T: std::str::FromStr>(name: &str) -> Option<T> {
            let v = std::env::var(name).ok()?;
            Some(
                v.parse()
                    .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
            )
        }
        let seed = var("SHMSEM_CHAOS_SEED").unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
        Config {
            secs: var("SHMSEM_CHAOS_SECS").unwrap_or(3.0),
            min_kills: var("SHMSEM_CHAOS_KILLS").unwrap_or(0),
            seed,
            workers: var("SHMSEM_CHAOS_WORKERS").unwrap_or(8),
            balanced,
            threads,
        }
    }

    /// The watchdog: generous, from the minimum duration and kill count.
    fn watchdog_secs(&self) -> u64 {
        // A kill takes a few milliseconds; allow 50 ms each under load.
        let by_kills = self.min_kills / 20;
        self.secs.ceil() as u64 + by_kills + 240
    }
}

fn main_limits() -> Limits {
    Limits {
        proc_slots: PROC_SLOTS,
        queue_slots: QUEUE_SLOTS,
        ..Limits::default()
    }
}

// ------------------------------------------------------------------ worker

/// How a worker's call may block.
#[derive(Clone, Copy)]
enum Mode {
    Block,
    Timed(Duration),
    NoWait,
}

/// One worker: random calls for ever (until SIGKILLed). Returns only on an
/// unexpected error, with its errno.
fn worker(set: &SemaphoreSet, stats: &Stats, seed: u64, balanced: bool) -> i32 {
    let mut rng = Rng::new(seed);
    // One worker in four never sleeps (every call IPC_NOWAIT): it spends
    // its life taking the set's lock, so kills hit lock holders more often.
    let busy = rng.pct(25);
    // Units this worker holds (taken with SEM_UNDO and not given back).
    let mut held = [0i16; NSEMS];
    let mut ops: Vec<Op> = Vec::new();
    loop {
        ops.clear();
        let mode = match rng.below(10) {
            _ if busy => Mode::NoWait,
            0..=3 => Mode::Block,
            4..=6 => Mode::Timed(Duration::from_micros(100 + rng.below(20_000))),
            _ => Mode::NoWait,
        };
        let holds_any = held.iter().any(|&h| h > 0);
        let roll = rng.below(100);
        // What the call does to `held` if it succeeds.
        let mut delta = [0i16; NSEMS];
        let counter: &AtomicU64;
        if holds_any && roll < 40 {
            // Give back some of what is held (with undo: the adjustment
            // shrinks with the value).
            for s in 0..NSEMS {
                if held[s] > 0 && (rng.pct(60) || ops.is_empty() && s == NSEMS - 1) {
                    let n = 1 + rng.below(held[s] as u64) as i16;
                    ops.push(Op::post(s as u16, n).undo());
                    delta[s] = -n;
                }
            }
            if ops.is_empty() {
                let s = held.iter().position(|&h| h > 0).unwrap();
                ops.push(Op::post(s as u16, held[s]).undo());
                delta[s] = -held[s];
            }
            counter = &stats.gives;
        } else if balanced && roll >= 80 {
            if roll >= 92 {
                // A single wait-for-zero without undo: the fast path.
                ops.push(Op::zero(rng.below(NSEMS as u64) as u16));
                counter = &stats.zero;
            } else {
                // Take and give back within one call, without undo: no unit
                // is at risk whatever happens to this process.
                let first = rng.below(NSEMS as u64) as usize;
                for k in 0..1 + rng.below(2) as usize {
                    let s = (first + k) % NSEMS;
                    let n = 1 + rng.below(INIT[s] as u64) as i16;
                    ops.push(Op::wait(s as u16, n));
                    ops.push(Op::post(s as u16, n));
                }
                if rng.pct(30) {
                    ops.push(Op::zero(rng.below(NSEMS as u64) as u16));
                }
                counter = &stats.balanced;
            }
        } else {
            // Take 1..=3 semaphores' units with undo, sometimes with a
            // wait-for-zero on another one.
            let first = rng.below(NSEMS as u64) as usize;
            let count = 1 + rng.below(3) as usize;
            for k in 0..count {
                let s = (first + k) % NSEMS;
                let room = INIT[s] as i16 - held[s];
                if room > 0 {
                    let n = 1 + rng.below(room as u64) as i16;
                    ops.push(Op::wait(s as u16, n).undo());
                    delta[s] = n;
                }
            }
            if ops.is_empty() || rng.pct(10) {
                ops.push(Op::zero(((first + count) % NSEMS) as u16));
            }
            counter = &stats.takes;
        }
        // Shuffle the order now and then: it decides which op blocks.
        if ops.len() > 1 && rng.pct(50) {
            let i = rng.below(ops.len() as u64) as usize;
            ops.swap(0, i);
        }
        let r = match mode {
            Mode::Block => set.op(&ops),
            Mode::Timed(t) => set.op_timeout(&ops, t),
            Mode::NoWait => {
                for op in ops.iter_mut() {
                    *op = op.nowait();
                }
                set.op(&ops)
            }
        };
        match r {
            Ok(()) => {
                for s in 0..NSEMS {
                    held[s] += delta[s];
                }
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Err(Error::WouldBlock) => {
                stats.would_block.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                eprintln!(
                    "chaos worker {}: {:?} failed: {e}",
                    std::process::id(),
                    ops.iter().map(|o| o.as_sembuf()).collect::<Vec<_>>()
                );
                return e.errno();
            }
        }
    }
}

/// A worker process: `cfg.threads` threads running [`worker`]. Returns the
/// first unexpected errno (the other threads die with the process).
fn worker_process(set: &SemaphoreSet, stats: &Stats, seed: u64, cfg: Config) -> i32 {
    if cfg.threads <= 1 {
        return worker(set, stats, seed, cfg.balanced);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    thread::scope(|s| {
        for t in 0..cfg.threads as u64 {
            let tx = tx.clone();
            s.spawn(move || {
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    worker(set, stats, seed ^ (t << 56), cfg.balanced)
                }))
                .unwrap_or(PANICKED);
                let _ = tx.send(code);
            });
        }
        drop(tx);
        // The workers only return on an error: end the whole process then.
        let code = rx.recv().unwrap_or(PANICKED);
        // SAFETY: _exit ends the process at once, with every thread.
        unsafe { libc::_exit(code) }
    })
}

// ------------------------------------------------------------------ killer

/// Records how worker `pid` ended. Returns true for the killer's SIGKILL,
/// false (a failure, recorded in `stats`) for anything else.
fn record_end(stats: &Stats, pid: Pid, status: WaitStatus) -> bool {
    match status {
        WaitStatus::Signaled(_, Signal::SIGKILL, _) => return true,
        WaitStatus::Signaled(_, sig, _) => stats.fail(pid, 1000 + sig as i64),
        WaitStatus::Exited(_, code) => stats.fail(pid, code as i64),
        other => {
            eprintln!("chaos killer: unexpected status of {pid}: {other:?}");
            stats.fail(pid, 999);
        }
    }
    false
}

/// Reaps `pid` (just SIGKILLed) and records how it ended (see
/// [`record_end`]).
fn reap_worker(stats: &Stats, pid: Pid) -> bool {
    let deadline = Instant::now() + LONG_DEADLINE;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            // A stop reported late: the SIGKILL ends it anyway.
            Ok(WaitStatus::StillAlive) | Ok(WaitStatus::Stopped(..)) => {}
            Ok(status) => return record_end(stats, pid, status),
            Err(e) => {
                eprintln!("chaos killer: waitpid({pid}): {e}");
                stats.fail(pid, 998);
                return false;
            }
        }
        if Instant::now() > deadline {
            eprintln!("chaos killer: worker {pid} still not dead {LONG_DEADLINE:?} after SIGKILL");
            stats.fail(pid, 997);
            return false;
        }
        thread::sleep(Duration::from_micros(200));
    }
}

/// SIGSTOPs `pid` and waits until it is stopped: `Ok(())`. If it has ended
/// instead, it is reaped and `Err(status)` says how.
fn stop(pid: Pid) -> Result<(), WaitStatus> {
    let _ = kill(pid, Signal::SIGSTOP);
    let deadline = Instant::now() + LONG_DEADLINE;
    loop {
        let flags = WaitPidFlag::WUNTRACED | WaitPidFlag::WNOHANG;
        match waitpid(pid, Some(flags)) {
            Ok(WaitStatus::Stopped(..)) => return Ok(()),
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                thread::sleep(Duration::from_micros(50))
            }
            Ok(WaitStatus::StillAlive) => {
                eprintln!("chaos killer: worker {pid} not stopped {LONG_DEADLINE:?} after SIGSTOP");
                return Ok(()); // the SIGKILL and reap that follow decide
            }
            Ok(status) => return Err(status),
            Err(e) => panic!("chaos killer: waitpid({pid}): {e}"),
        }
    }
}

/// The killer process: keeps `cfg.workers` workers alive, SIGKILLs a random
/// one every 1–5 ms and starts a new one, until told to stop; then kills and
/// reaps them all. Each victim is frozen with SIGSTOP first, so that what it
/// held at the moment of its death can be read from the segment.
fn killer(set: &SemaphoreSet, stats: &Stats, cfg: Config) -> i32 {
    let mut rng = Rng::new(cfg.seed ^ 0x6b69_6c6c_6572);
    let spawn = |rng: &mut Rng| {
        let seed = cfg.seed ^ rng.next();
        stats.spawned.fetch_add(1, Ordering::Relaxed);
        let set = set.clone();
        fork_child(ChildNet::alarm_and_parent_death(600), move || {
            worker_process(&set, stats, seed, cfg)
        })
    };
    let mut workers: Vec<Pid> = (0..cfg.workers).map(|_| spawn(&mut rng)).collect();
    while stats.stop.load(Ordering::Relaxed) == 0 {
        thread::sleep(Duration::from_micros(1000 + rng.below(4000)));
        let i = rng.below(workers.len() as u64) as usize;
        let pid = workers[i];
        // Freeze the victim, see what it holds, then kill it. A worker that
        // ended on its own (a failure) is recorded instead.
        match stop(pid) {
            Ok(()) => {
                let usage = Usage::read(set.namespace(), set.id(), NSEMS as u32);
                let held = usage.held_by(pid.as_raw());
                for (flag, counter) in [
                    (held.lock, &stats.killed_holding_lock),
                    (held.queued, &stats.killed_queued),
                    (held.undo, &stats.killed_with_undo),
                    (!held.registered, &stats.killed_unregistered),
                ] {
                    if flag {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let _ = kill(pid, Signal::SIGKILL);
                if reap_worker(stats, pid) {
                    stats.kills.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(status) => {
                record_end(stats, pid, status);
            }
        }
        workers[i] = spawn(&mut rng);
    }
    for &pid in &workers {
        let _ = kill(pid, Signal::SIGKILL);
    }
    for &pid in &workers {
        if reap_worker(stats, pid) {
            stats.final_kills.fetch_add(1, Ordering::Relaxed);
        }
    }
    OK
}

// ------------------------------------------------------------------ checks

/// Checks that the process table and the queue arena have their full
/// capacity back: first every process-table entry but the test process's
/// own is taken by a sleeping child and one more process gets ENOMEM; then
/// the whole arena is taken by sleepers of 10-slot calls and single ops,
/// and a further sleeper of the test process gets ENOMEM. Each
/// time the sleepers are woken and must all succeed. Semaphore 0 must be 0
/// and nobody else may use the set.
///
/// Only processes sleep here, never threads of the test process: GETNCNT
/// from the test process must stay answerable while they sleep.
fn fill_tables_and_drain(set: &SemaphoreSet) {
    let mut kids = Kids::long();
    let sleep_with = |kids: &mut Kids, nops: usize| {
        let set = set.clone();
        kids.spawn(move || rc(set.op(&vec![Op::wait(0, 1); nops])))
    };
    // The process table.
    let sleepers = PROC_SLOTS - 1;
    let pids: Vec<Pid> = (0..sleepers).map(|_| sleep_with(&mut kids, 1)).collect();
    poll_until_within(
        LONG_DEADLINE,
        "every process-table entry taken by a sleeper",
        || set.ncnt(0).unwrap() == sleepers,
    );
    let extra = {
        let set = set.clone();
        kids.spawn(move || rc(set.op_timeout(&[Op::wait(0, 1)], Duration::from_secs(10))))
    };
    kids.expect_exit(
        extra,
        libc::ENOMEM,
        "a sleeper beyond the process table after the chaos run",
    );
    set.set_value(0, sleepers as u16)
        .expect("SETVAL: wake the sleepers");
    for pid in pids {
        kids.expect_exit(pid, OK, "a process-table sleeper");
    }
    assert_eq!(
        set.value(0).unwrap(),
        0,
        "semaphore 0 after the first drain"
    );

    // The queue arena.
    let (big, small) = (QUEUE_SLOTS / 10, QUEUE_SLOTS % 10);
    let demand = big * 10 * SLOT_OPS as u32 + small;
    let mut pids: Vec<Pid> = (0..big)
        .map(|_| sleep_with(&mut kids, 10 * SLOT_OPS))
        .collect();
    pids.extend((0..small).map(|_| sleep_with(&mut kids, 1)));
    poll_until_within(LONG_DEADLINE, "every queue slot taken", || {
        set.ncnt(0).unwrap() == big + small
    });
    let r = set.op_timeout(&[Op::wait(0, 1)], Duration::from_secs(10));
    set.set_value(0, demand as u16)
        .expect("SETVAL: wake the sleepers");
    assert_eq!(
        r,
        Err(Error::NoMemory),
        "a sleeper beyond the queue arena after the chaos run"
    );
    for pid in pids {
        kids.expect_exit(pid, OK, "a queue-arena sleeper");
    }
    assert_eq!(set.value(0).unwrap(), 0, "semaphore 0 after the drain");
    assert_eq!(set.ncnt(0).unwrap(), 0, "GETNCNT(0) after the drain");
}

// ------------------------------------------------------------------ the run

/// SIGKILLs and reaps the killer when dropped, unless disarmed (once the
/// killer has been reaped, its pid may belong to someone else).
struct KillerGuard(Option<Pid>);

impl KillerGuard {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for KillerGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            kill_and_reap(pid);
        }
    }
}

fn run(name: &str, balanced: bool, threads: usize) {
    let cfg = Config::from_env(balanced, threads);
    let env = TestEnv::with_limits(name, cfg.watchdog_secs(), main_limits());
    let set = SemaphoreSet::create_private(&env.ns, NSEMS as u16, 0o600).expect("create the set");
    set.set_values(&INIT).expect("SETALL the initial values");
    // SAFETY: Stats is made of atomics, valid when zero, and needs no drop.
    let stats = unsafe { Shared::<Stats>::zeroed() };
    eprintln!(
        "{name}: seed {} (SHMSEM_CHAOS_SEED), at least {} s and {} kills, {} workers, \
         initial values {INIT:?}",
        cfg.seed, cfg.secs, cfg.min_kills, cfg.workers
    );

    let started = Instant::now();
    let killer_pid = {
        let set = set.clone();
        let stats = &*stats;
        let net = ChildNet::alarm_and_parent_death((cfg.watchdog_secs() + 60) as u32);
        fork_child(net, move || killer(&set, stats, cfg))
    };
    // Kill the killer (and by PDEATHSIG its workers) if this test fails
    // before the killer is reaped.
    let mut guard = KillerGuard(Some(killer_pid));

    // Watch: values never above the initial ones, progress, the killer.
    let mut above_initial: Vec<String> = Vec::new();
    let mut last_ops = 0;
    let mut last_progress = Instant::now();
    let mut last_report = Instant::now();
    loop {
        thread::sleep(Duration::from_millis(20));
        let vals = set.values().expect("GETALL during the run");
        for s in 0..NSEMS {
            if vals[s] > INIT[s] && above_initial.len() < 10 {
                above_initial.push(format!(
                    "at {:?}: semaphore {s} = {} > initial {}",
                    started.elapsed(),
                    vals[s],
                    INIT[s]
                ));
            }
        }
        if let Ok(st) = waitpid(killer_pid, Some(WaitPidFlag::WNOHANG)) {
            if st != WaitStatus::StillAlive {
                guard.disarm();
                panic!("{name}: the killer ended before it was told to: {st:?}");
            }
        }
        let ops = stats.ops();
        if ops != last_ops {
            last_ops = ops;
            last_progress = Instant::now();
        }
        assert!(
            last_progress.elapsed() < STALL_LIMIT,
            "{name}: HANG: no operation completed for {STALL_LIMIT:?} (ops {ops}, kills {}, \
             values {vals:?}, GETNCNT {:?})",
            stats.kills.load(Ordering::Relaxed),
            (0..NSEMS as u16)
                .map(|s| set.ncnt(s).unwrap())
                .collect::<Vec<_>>()
        );
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "{name}: {:.0?}: kills {}, ops {}, would-block {}, values {vals:?}",
                started.elapsed(),
                stats.kills.load(Ordering::Relaxed),
                ops,
                stats.would_block.load(Ordering::Relaxed)
            );
        }
        if started.elapsed().as_secs_f64() >= cfg.secs
            && stats.kills.load(Ordering::Relaxed) >= cfg.min_kills
        {
            break;
        }
    }
    stats.stop.store(1, Ordering::Relaxed);
    let killer_status = wait_for(killer_pid, LONG_DEADLINE * 2, "the killer");
    guard.disarm();
    let run_time = started.elapsed();

    let kills = stats.kills.load(Ordering::Relaxed);
    let final_kills = stats.final_kills.load(Ordering::Relaxed);
    let failures = stats.failures.load(Ordering::Relaxed);
    let ff = stats.first_failure.load(Ordering::Relaxed);
    let figures = format!(
        "seed {}, {:.1} s, kills {kills} (+{final_kills} at the end), workers started {}, \
         ops completed {} (take {}, give {}, balanced {}, zero {}), would-block/timeouts {}; \
         victims holding the lock {}, queued {}, holding undo {}, not yet registered {}",
        cfg.seed,
        run_time.as_secs_f64(),
        stats.spawned.load(Ordering::Relaxed),
        stats.ops(),
        stats.takes.load(Ordering::Relaxed),
        stats.gives.load(Ordering::Relaxed),
        stats.balanced.load(Ordering::Relaxed),
        stats.zero.load(Ordering::Relaxed),
        stats.would_block.load(Ordering::Relaxed),
        stats.killed_holding_lock.load(Ordering::Relaxed),
        stats.killed_queued.load(Ordering::Relaxed),
        stats.killed_with_undo.load(Ordering::Relaxed),
        stats.killed_unregistered.load(Ordering::Relaxed),
    );
    assert_eq!(
        killer_status,
        WaitStatus::Exited(killer_pid, OK),
        "{name}: the killer ({figures})"
    );
    assert_eq!(
        failures,
        0,
        "{name}: {failures} worker(s) did not end by the killer's SIGKILL; the first: pid {}, \
         {} ({figures})",
        ff >> 32,
        match ff & 0xffff_ffff {
            c @ 997..=999 => format!("killer-side problem {c}"),
            c if c >= 1000 => format!("died by signal {}", c - 1000),
            c => format!("exit code {}", describe(c as i32)),
        }
    );

    // Every unit back: all initial values in one call.
    let all: Vec<Op> = (0..NSEMS)
        .map(|s| Op::wait(s as u16, INIT[s] as i16))
        .collect();
    let recovery = Instant::now();
    let r = set.op_timeout(&all, RECOVERY_TIMEOUT);
    let recovered_in = recovery.elapsed();
    if let Err(e) = r {
        let vals = set.values().expect("GETALL");
        let lost: Vec<i32> = (0..NSEMS)
            .map(|s| INIT[s] as i32 - vals[s] as i32)
            .collect();
        panic!(
            "{name}: LOST UNITS: the initial values {INIT:?} could not be acquired in \
             {RECOVERY_TIMEOUT:?} ({e}); values {vals:?}, lost {lost:?} ({figures}); \
             above-initial sightings: {above_initial:?}"
        );
    }
    let after = set.values().expect("GETALL after the recovery");
    let units: u32 = INIT.iter().map(|&v| v as u32).sum();
    eprintln!("{name}: {figures}; recovered all {units} units ({INIT:?}) in {recovered_in:.1?}");
    assert_eq!(
        after,
        vec![0; NSEMS],
        "{name}: GAINED UNITS: values left after taking the initial ones ({figures})"
    );
    assert!(
        above_initial.is_empty(),
        "{name}: values above the initial ones during the run: {above_initial:?} ({figures})"
    );
    for s in 0..NSEMS as u16 {
        assert_eq!(set.ncnt(s).unwrap(), 0, "{name}: GETNCNT({s}) at the end");
        assert_eq!(set.zcnt(s).unwrap(), 0, "{name}: GETZCNT({s}) at the end");
    }
    let usage = Usage::read(&env.ns, set.id(), NSEMS as u32);
    let leaks = usage.leaks(std::process::id() as i32);
    assert!(
        leaks.is_empty(),
        "{name}: LEAKS in the segment after the run: {leaks:#?} ({figures})"
    );
    eprintln!(
        "{name}: segment clean: {} process entries ACTIVE (dead ones holding nothing, \
         reclaimable), 0 queue slots busy",
        usage.active_procs.len()
    );
    fill_tables_and_drain(&set);
    // Give the units back and check that the set still works normally.
    set.op(&(0..NSEMS)
        .map(|s| Op::post(s as u16, INIT[s] as i16))
        .collect::<Vec<_>>())
        .expect("give the units back");
    assert_eq!(set.values().unwrap(), INIT.to_vec());
}

/// Workers use SEM_UNDO for every unit they take and give back.
#[test]
fn chaos_undo_workers_killed_at_random() {
    run("chaos-undo", false, 1);
}

/// As above, plus calls without SEM_UNDO that are balanced within the call
/// (take and give back the same units; wait-for-zero, alone on the fast
/// path or with others): no unit is at risk in them either.
#[test]
fn chaos_mixed_undo_and_balanced_calls_without_undo() {
    run("chaos-mixed", true, 1);
}

/// As the mixed test, with two threads in every worker process: they share
/// the process's table entry and undo adjustments, take the set's lock
/// from each other, and die together.
#[test]
fn chaos_mixed_with_two_threads_per_worker() {
    run("chaos-threads", true, 2);
}
