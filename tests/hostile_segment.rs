//! Hostile segment contents (issue 3, item 5): a process with write access
//! may write anything into a segment. Other processes using the set may get
//! errors (EINVAL, EIDRM, ERANGE, EAGAIN, ENOMEM, EUCLEAN = `Error::Corrupt`
//! ...) but must never crash, panic, hang, or touch memory outside the
//! mapping.
//!
//! The test process never uses the library on these namespaces: it only
//! maps the segment files raw (`/dev/shm/shmsem.NS` and
//! `/dev/shm/shmsem.NS.INDEX.SEQ`) and writes garbage into them. Everything
//! that uses the library runs in worker processes (this test binary run
//! again as the ignored test `hostile_worker`): a setup process creates the
//! namespace and sets, user processes run random operations (semop with and
//! without SEM_UNDO, IPC_NOWAIT, blocking waits with timeouts, semctl reads
//! and writes, semget, SEM_STAT, IPC_INFO, set creation and removal, the
//! diagnostic `Namespace::report`, `sweep` and `gc`; some of
//! them as uid 65534 so that the permission check reads the segment too),
//! and a teardown process destroys the namespace.
//!
//! Every user announces each operation (and its timeout) on a shared control
//! page; the test polls it and calls an operation that runs longer than its
//! timeout plus `HOSTILE_HANG_SECS` (default 5) a hang. Users also arm
//! `alarm` around each operation. A user that dies of a signal (SIGSEGV,
//! SIGBUS, SIGABRT...), panics (caught, reported, exit 101), hangs, gets a
//! negative id from semget or SEM_STAT, or an errno no semaphore call can
//! return, is a failure.
//!
//! Tests:
//! * `fuzz_live_segments`: the seeded random mutator. Each round makes a
//!   namespace with one or two sets, starts three users, then applies
//!   `HOSTILE_FUZZ_MUTATIONS` (default 40) mutations — random bytes and
//!   words anywhere, chosen fields of the header (lock word, sequence
//!   counter, FIFO heads, sizes...), semaphore words and counts, process
//!   table, undo cells, queue slots, the region after the queue (the
//!   intent record), the hints file and garbage names (claims naming
//!   nothing or another set, garbage and FIFO set files); plausible values (a
//!   live process's lock token, a dead holder's, an odd sequence counter,
//!   valid-looking indices, a committed intent record of a valid kind with
//!   garbage contents followed by a dead lock holder, so that the next
//!   locker "recovers" it) as well as random ones; killing a user and
//!   starting a fresh one (which maps the set anew); growing the file —
//!   waiting after each for every user to complete more operations (see
//!   `KINDS`). `HOSTILE_FUZZ_ROUNDS` (default 16, ~8 s) rounds from
//!   `HOSTILE_FUZZ_SEED` (default 0); `HOSTILE_FUZZ_SECS=600` runs rounds
//!   for ten minutes instead; `HOSTILE_FUZZ_MUTATIONS` per round.
//!   `HOSTILE_FUZZ_EXCLUDE=lock-token,header.id` leaves mutation kinds (and
//!   single header fields) out, to look past a known bug. Failures print
//!   the round's seed and its last mutations; a seed replays the same
//!   mutations (`HOSTILE_FUZZ_SEED=S HOSTILE_FUZZ_ROUNDS=1`, same
//!   exclusions), though not the same interleaving with the users.
//!   `HOSTILE_VERBOSE=1` prints every round's events and per-user results.
//! * hand-written cases for what the fuzzer cannot make likely or what is
//!   worth a name: a sequence counter left odd, a lock word naming a live
//!   process, wrong magic / version / sizes for new openers (set and
//!   limits file), a grown file, a truncated set segment, hints or limits
//!   file, garbage claims and hints.
//!
//! * `fuzz_cross_user` (issue #9): the fuzzer's cross-user mode. Inside a
//!   private /dev/shm (tests/support/users.rs), alice's processes (setup,
//!   three users, teardown) use sets of a random mode (0600, 0640, 0644,
//!   0660, 0666; her users never IPC_SET); the mutator opens every file of
//!   the namespace as mallory (effective uid, gid and groups; in alice's
//!   group or not), and mutates only what she could open for writing (set
//!   segments, the hints file, any other file of the namespace: kind
//!   `ns-file`; and names, which anyone may make: kind `claims`); the rest
//!   is refused and counted. Where the mode gives her
//!   class no write bit the round is "protected": any harm alice's users
//!   see on their sets (EUCLEAN, EIDRM, EINVAL, ENOMEM, ENOENT, EPERM,
//!   EACCES, ENOSPC from a set operation or the namespace's open), or a set
//!   that the teardown no longer finds by its key or whose owner is not
//!   alice, is a finding; elsewhere the fuzzer's own contract holds.
//!   `HOSTILE_CROSS_ROUNDS` (default 6) rounds from `HOSTILE_FUZZ_SEED`.
//!
//! Run: `cargo test --test hostile_segment` (as root, some users run as
//! uid 65534). Workers are started as `/proc/self/exe`, so rebuilding
//! during a long run does not disturb it.
// The ban on std atomics, fences and raw futex calls (clippy.toml) keeps them
// inside the library's shim; this program is not the library: its atomics
// are its own (process-local counters, or words of a mapping it made), and
// its raw futex and semtimedop calls are the competitors it measures.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "hostile/harness.rs"]
mod harness;
mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::mem::{offset_of, size_of};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::*;
use shmsem::layout::{
    self, IntentHeader, ProcEntry, QueueSlot, SemEntry, SetGeometry, SetHeader, SEMMNI_MAX,
};
use shmsem::sysv::{
    Sembuf, SemctlArg, SemidDs, Seminfo, Timespec, GETALL, GETNCNT, GETPID, GETVAL, GETZCNT,
    IPC_CREAT, IPC_INFO, IPC_NOWAIT, IPC_PRIVATE, IPC_RMID, IPC_SET, IPC_STAT, SEM_INFO, SEM_STAT,
    SEM_UNDO, SETALL, SETVAL,
};
use shmsem::{Error, Limits, Namespace, Op, SemaphoreSet};
use support::{
    env_list, env_u64, errno_symbol, hints_path, is_root, limits_path, ns_paths, panic_message,
    serial, set_path, unique_ns_name, RawMap, User,
};

/// Limits of the test namespaces: small tables, so that random offsets hit
/// the interesting regions often and segments stay small.
const PROC_SLOTS: u32 = 16;
const QUEUE_SLOTS: u32 = 32;
const SEMMNI: u32 = 64;

fn hang_ns() -> u64 {
    env_u64("HOSTILE_HANG_SECS", 5) * 1_000_000_000
}

/// A namespace name no other test (or run) uses.
fn unique_ns(test: &str) -> String {
    unique_ns_name("hs", test)
}

// ===========================================================================
// The operations users run
// ===========================================================================

/// Operation names; a user's code for an operation is its index here.
const OPS: &[(&str, u64)] = &[
    // (name, weight)
    ("open", 0),
    ("semop-nowait", 10),
    ("semop-multi", 8),
    ("semop-undo", 6),
    ("timed-wait", 10),
    ("timed-zero", 4),
    ("timed-multi", 6),
    ("timed-post", 5),
    ("getval", 6),
    ("getpid", 3),
    ("getncnt", 4),
    ("getzcnt", 3),
    ("getall", 5),
    ("ipc-stat", 4),
    ("setval", 4),
    ("setall", 2),
    ("semget-key", 3),
    ("sem-stat", 2),
    ("info", 2),
    ("api-timeout", 4),
    ("semop-efbig", 1),
    ("ipc-set", 1),
    ("create-remove", 1),
    ("report", 2),
    ("sweep", 1),
    ("gc", 1),
    // Only when a test names it.
    ("rmid", 0),
];
const OP_OPEN: u32 = 0;

fn op_code(name: &str) -> u32 {
    OPS.iter()
        .position(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("unknown operation {name}")) as u32
}

/// Operations that do not touch the given sets (namespace-wide ones).
fn touches_set(op: &str) -> bool {
    !matches!(op, "open" | "info" | "create-remove" | "gc")
}

/// Errnos a semaphore call may give here (EUCLEAN is shmsem's "corrupt").
fn allowed_errno(e: i32) -> bool {
    matches!(
        e,
        libc::EAGAIN
            | libc::EINVAL
            | libc::EIDRM
            | libc::ERANGE
            | libc::EFBIG
            | libc::EUCLEAN
            | libc::ENOMEM
            | libc::EACCES
            | libc::EPERM
            | libc::ENOENT
            | libc::ENOSPC
            | libc::EEXIST
            | libc::EFAULT
    )
}

/// An errno's name, or `errnoN`: one word (the tally lines the users print
/// are split at spaces).
fn errno_word(e: i32) -> String {
    match errno_symbol(e) {
        Some(n) => n.to_string(),
        None => format!("errno{e}"),
    }
}

/// A set as the users know it.
#[derive(Clone, Copy, Debug)]
struct SetInfo {
    id: i32,
    nsems: usize,
    key: i32,
}

fn parse_sets(s: &str) -> Vec<SetInfo> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| {
            let f: Vec<i64> = x.split(':').map(|v| v.parse().unwrap()).collect();
            SetInfo {
                id: f[0] as i32,
                nsems: f[1] as usize,
                key: f[2] as i32,
            }
        })
        .collect()
}

fn sets_string(sets: &[SetInfo]) -> String {
    sets.iter()
        .map(|s| format!("{}:{}:{}", s.id, s.nsems, s.key))
        .collect::<Vec<_>>()
        .join(",")
}

fn sb(num: usize, op: i16, flg: i32) -> Sembuf {
    Sembuf::new(num as u16, op, flg as i16)
}

/// What one operation gave: a value, or an errno; and anything that breaks
/// the contract whatever the segment holds.
struct Outcome {
    result: Result<i64, i32>,
    violation: Option<String>,
}

impl Outcome {
    fn of<T: Into<i64>>(r: Result<T, Error>) -> Outcome {
        Outcome {
            result: r.map(Into::into).map_err(|e| e.errno()),
            violation: None,
        }
    }
}

/// Runs user operation `code` on a random set; `timeout` is the relative
/// timeout of the timed operations.
fn run_op(
    code: u32,
    ns: &Arc<Namespace>,
    sets: &[SetInfo],
    r: &mut Rng,
    timeout: Duration,
) -> Outcome {
    let s = sets[r.below(sets.len() as u64) as usize];
    let n = r.below(s.nsems as u64) as usize;
    let ts = Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: timeout.subsec_nanos() as i64,
    };
    let undo = |r: &mut Rng| if r.pct(50) { SEM_UNDO } else { 0 };
    let multi = |r: &mut Rng, flg: i32| -> Vec<Sembuf> {
        (0..r.range(2, 3))
            .map(|_| {
                let f = flg | undo(r);
                sb(r.below(s.nsems as u64) as usize, r.range(-1, 1) as i16, f)
            })
            .collect()
    };
    match OPS[code as usize].0 {
        "semop-nowait" => {
            let op = if r.pct(50) { 1 } else { -1 };
            Outcome::of(ns.semop(s.id, &[sb(n, op, IPC_NOWAIT)]).map(|_| 0))
        }
        "semop-multi" => {
            let ops = multi(r, IPC_NOWAIT);
            Outcome::of(ns.semop(s.id, &ops).map(|_| 0))
        }
        "semop-undo" => {
            let op = if r.pct(50) { 1 } else { -1 };
            Outcome::of(
                ns.semop(s.id, &[sb(n, op, IPC_NOWAIT | SEM_UNDO)])
                    .map(|_| 0),
            )
        }
        "timed-wait" => {
            let op = -(r.range(1, 2) as i16);
            let f = undo(r);
            Outcome::of(ns.semtimedop(s.id, &[sb(n, op, f)], Some(&ts)).map(|_| 0))
        }
        "timed-zero" => Outcome::of(ns.semtimedop(s.id, &[sb(n, 0, 0)], Some(&ts)).map(|_| 0)),
        "timed-multi" => {
            let mut ops = multi(r, 0);
            ops[0].sem_op = -1;
            Outcome::of(ns.semtimedop(s.id, &ops, Some(&ts)).map(|_| 0))
        }
        "timed-post" => {
            let f = undo(r);
            Outcome::of(ns.semtimedop(s.id, &[sb(n, 1, f)], Some(&ts)).map(|_| 0))
        }
        "getval" => Outcome::of(ns.semctl(s.id, n as i32, GETVAL, SemctlArg::None)),
        "getpid" => Outcome::of(ns.semctl(s.id, n as i32, GETPID, SemctlArg::None)),
        "getncnt" => Outcome::of(ns.semctl(s.id, n as i32, GETNCNT, SemctlArg::None)),
        "getzcnt" => Outcome::of(ns.semctl(s.id, n as i32, GETZCNT, SemctlArg::None)),
        "getall" => {
            let mut v = vec![0u16; s.nsems];
            Outcome::of(ns.semctl(s.id, 0, GETALL, SemctlArg::GetAll(&mut v)))
        }
        "ipc-stat" => {
            let mut ds = SemidDs::default();
            Outcome::of(ns.semctl(s.id, 0, IPC_STAT, SemctlArg::StatOut(&mut ds)))
        }
        "setval" => {
            let v = r.range(0, 3) as i32;
            Outcome::of(ns.semctl(s.id, n as i32, SETVAL, SemctlArg::Val(v)))
        }
        "setall" => {
            let v: Vec<u16> = (0..s.nsems).map(|_| r.range(0, 3) as u16).collect();
            Outcome::of(ns.semctl(s.id, 0, SETALL, SemctlArg::SetAll(&v)))
        }
        "semget-key" => {
            let r = ns.semget(s.key, 0, 0);
            let violation = match r {
                Ok(id) if id < 0 => Some(format!("semget(key) succeeded with a negative id {id}")),
                _ => None,
            };
            Outcome {
                result: r.map(i64::from).map_err(|e| e.errno()),
                violation,
            }
        }
        "sem-stat" => {
            let mut ds = SemidDs::default();
            let r = ns.semctl(s.id & 0x7fff, 0, SEM_STAT, SemctlArg::StatOut(&mut ds));
            let violation = match r {
                Ok(id) if id < 0 => Some(format!("SEM_STAT succeeded with a negative id {id}")),
                _ => None,
            };
            Outcome {
                result: r.map(i64::from).map_err(|e| e.errno()),
                violation,
            }
        }
        "info" => {
            let mut si = Seminfo::default();
            let cmd = if r.pct(50) { IPC_INFO } else { SEM_INFO };
            Outcome::of(ns.semctl(0, 0, cmd, SemctlArg::Info(&mut si)))
        }
        "api-timeout" => {
            let set = SemaphoreSet::from_id(ns, s.id);
            let mut r1 = set.op_timeout(&[Op::wait(n as u16, 1).undo()], timeout);
            if r1.is_ok() {
                r1 = set.op(&[Op::post(n as u16, 1).undo().nowait()]);
            }
            Outcome::of(r1.map(|_| 0))
        }
        "semop-efbig" => Outcome::of(
            ns.semop(s.id, &[sb(s.nsems + r.below(3) as usize, 1, IPC_NOWAIT)])
                .map(|_| 0),
        ),
        "ipc-set" => {
            let mut ds = SemidDs::default();
            ds.perm.mode = 0o666;
            Outcome::of(ns.semctl(s.id, 0, IPC_SET, SemctlArg::Set(&ds)))
        }
        "create-remove" => {
            let r = ns.semget(IPC_PRIVATE, 1, IPC_CREAT | 0o666);
            let violation = match r {
                Ok(id) if id < 0 => Some(format!(
                    "semget(IPC_PRIVATE) succeeded with a negative id {id}"
                )),
                _ => None,
            };
            if let Ok(id) = r {
                let _ = ns.semctl(id, 0, IPC_RMID, SemctlArg::None);
            }
            Outcome {
                result: r.map(i64::from).map_err(|e| e.errno()),
                violation,
            }
        }
        "report" => Outcome::of(ns.report(s.id).map(|_| 0)),
        "sweep" => Outcome::of(ns.sweep(s.id).map(|_| 0)),
        "gc" => Outcome::of(ns.gc().map(|_| 0)),
        "rmid" => Outcome::of(ns.semctl(s.id, 0, IPC_RMID, SemctlArg::None)),
        other => panic!("operation {other} has no implementation"),
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("worker without {name}"))
}

/// The worker processes' entry point (this binary run again by the tests,
/// with `HOSTILE_ROLE` set). Run by hand it does nothing.
#[test]
#[ignore = "entry point of the worker processes that the hostile-segment tests start"]
fn hostile_worker() {
    let Ok(role) = std::env::var("HOSTILE_ROLE") else {
        eprintln!("hostile_worker: only the hostile-segment tests run this");
        return;
    };
    // The test harness has printed "test hostile_worker ... " without a
    // newline: start our lines on a line of their own.
    println!();
    match role.as_str() {
        "setup" => worker_setup(),
        "user" => worker_user(),
        "teardown" => worker_teardown(),
        other => panic!("unknown role {other}"),
    }
}

fn limits() -> Limits {
    Limits {
        semmni: SEMMNI,
        proc_slots: PROC_SLOTS,
        queue_slots: QUEUE_SLOTS,
        ..Limits::default()
    }
}

/// Creates the namespace and the sets (mode 0666, random values); prints
/// `SET id nsems key` for each.
fn worker_setup() {
    let ns_name = env("HOSTILE_NS");
    let mut r = Rng::new(env("HOSTILE_SEED").parse().unwrap());
    let ns = Namespace::open_with_limits(&ns_name, limits()).expect("creating the namespace");
    for (i, nsems) in env("HOSTILE_NSEMS").split(',').enumerate() {
        let nsems: i32 = nsems.parse().unwrap();
        let key = 0x4000 + i as i32;
        let id = ns
            .semget(key, nsems, IPC_CREAT | set_mode())
            .expect("creating a set");
        let vals: Vec<u16> = (0..nsems).map(|_| r.range(0, 3) as u16).collect();
        ns.semctl(id, 0, SETALL, SemctlArg::SetAll(&vals))
            .expect("SETALL");
        println!("SET {id} {nsems} {key}");
    }
}

/// The sets' mode: `HOSTILE_MODE` (octal; the cross-user mode), else 0666.
fn set_mode() -> i32 {
    std::env::var("HOSTILE_MODE")
        .ok()
        .and_then(|m| i32::from_str_radix(&m, 8).ok())
        .unwrap_or(0o666)
}

/// Destroys the namespace; prints `DESTROYED` or why not. With
/// `HOSTILE_CHECK_SETS`, first checks that every set of `HOSTILE_SETS` is
/// still found by its key and still this user's: `SET-LOST ...` if not.
fn worker_teardown() {
    let ns_name = env("HOSTILE_NS");
    let ns = Namespace::open_with_limits(&ns_name, limits());
    if std::env::var_os("HOSTILE_CHECK_SETS").is_some() {
        let ns = ns.as_ref().map_err(|e| *e);
        for s in parse_sets(&env("HOSTILE_SETS")) {
            let found = ns.and_then(|ns| ns.semget(s.key, 0, 0));
            let mut ds = SemidDs::default();
            let st = ns.and_then(|ns| ns.semctl(s.id, 0, IPC_STAT, SemctlArg::StatOut(&mut ds)));
            // SAFETY: no preconditions.
            let me = unsafe { libc::getuid() };
            if found != Ok(s.id) || st.is_err() || ds.perm.uid != me || ds.perm.cuid != me {
                println!(
                    "SET-LOST key={:#x} id={} semget={found:?} IPC_STAT={st:?} uid={} cuid={}",
                    s.key, s.id, ds.perm.uid, ds.perm.cuid
                );
            }
        }
    }
    match ns {
        Ok(ns) => match ns.destroy() {
            Ok(()) => println!("DESTROYED"),
            Err(e) => println!("DESTROY-FAILED {e}"),
        },
        Err(e) => println!("OPEN-FAILED {e}"),
    }
}

/// Runs random operations until the test says stop (or HOSTILE_MAX_OPS),
/// announcing each on the control page. With HOSTILE_OPS2, it then waits
/// for the test's "phase 2" and runs HOSTILE_MAX_OPS2 of those operations;
/// with HOSTILE_LINGER it stays alive, idle, until told to stop.
fn worker_user() {
    let ctl = Control::inherited(env("HOSTILE_CTL_FD").parse().unwrap());
    let slot: usize = env("HOSTILE_SLOT").parse().unwrap();
    let mut w = UserState {
        slot,
        ns_name: env("HOSTILE_NS"),
        sets: parse_sets(&env("HOSTILE_SETS")),
        r: Rng::new(env("HOSTILE_SEED").parse().unwrap()),
        ns: None,
        tally: BTreeMap::new(),
        done: 0,
    };
    ctl.set_pid(slot, std::process::id());
    let ops = |var: &str| -> Vec<u32> {
        match std::env::var(var) {
            Ok(list) => list.split(',').map(op_code).collect(),
            // Every operation with a weight (not the ones tests ask for
            // by name).
            Err(_) => (1..OPS.len() as u32)
                .filter(|&c| OPS[c as usize].1 > 0)
                .collect(),
        }
    };
    w.run(&ctl, &ops("HOSTILE_OPS"), env_u64("HOSTILE_MAX_OPS", 0));
    if std::env::var_os("HOSTILE_OPS2").is_some() {
        while !ctl.stopped() && ctl.phase() < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        w.run(&ctl, &ops("HOSTILE_OPS2"), env_u64("HOSTILE_MAX_OPS2", 0));
    }
    if std::env::var_os("HOSTILE_LINGER").is_some() {
        // Stay alive, registered, doing nothing, until the test says stop.
        while !ctl.stopped() {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    for ((code, res), n) in &w.tally {
        println!("STAT {} {res} {n}", OPS[*code as usize].0);
    }
    println!("WORKER DONE ops={}", w.done);
}

/// A user process's state across its phases.
struct UserState {
    slot: usize,
    ns_name: String,
    sets: Vec<SetInfo>,
    r: Rng,
    ns: Option<Arc<Namespace>>,
    tally: BTreeMap<(u32, String), u64>,
    done: u64,
}

impl UserState {
    /// Runs operations drawn from `allowed` (by weight) until stopped or
    /// `max_ops` (0: no limit) more are done.
    fn run(&mut self, ctl: &Control, allowed: &[u32], max_ops: u64) {
        let hang_secs = (hang_ns() / 1_000_000_000) as u32;
        let total_weight: u64 = allowed.iter().map(|&c| OPS[c as usize].1.max(1)).sum();
        let until = self.done + max_ops;
        while !ctl.stopped() && (max_ops == 0 || self.done < until) {
            let code = if self.ns.is_none() {
                OP_OPEN
            } else {
                let mut x = self.r.below(total_weight);
                let mut pick = allowed[0];
                for &c in allowed {
                    let w = OPS[c as usize].1.max(1);
                    if x < w {
                        pick = c;
                        break;
                    }
                    x -= w;
                }
                pick
            };
            let timeout = Duration::from_micros(self.r.range(1_000, 20_000) as u64);
            let timed = matches!(
                OPS[code as usize].0,
                "timed-wait" | "timed-zero" | "timed-multi" | "timed-post" | "api-timeout"
            );
            // SAFETY: alarm has no preconditions; it is this process's own
            // watchdog (SIGALRM kills it, and the test reports that).
            unsafe { libc::alarm(hang_secs * 3 + 2) };
            ctl.begin(
                self.slot,
                code,
                if timed { timeout.as_nanos() as u64 } else { 0 },
            );
            let out = std::panic::catch_unwind(AssertUnwindSafe(|| {
                if code == OP_OPEN {
                    let o = Namespace::open_with_limits(&self.ns_name, limits());
                    let res = o.as_ref().map(|_| 0).map_err(|e| e.errno());
                    if let Ok(n) = o {
                        self.ns = Some(n);
                    }
                    Outcome {
                        result: res,
                        violation: None,
                    }
                } else {
                    let ns = self.ns.clone().expect("opened");
                    run_op(code, &ns, &self.sets, &mut self.r, timeout)
                }
            }));
            ctl.end(self.slot);
            // SAFETY: as above (cancels the watchdog).
            unsafe { libc::alarm(0) };
            let name = OPS[code as usize].0;
            let out = match out {
                Ok(o) => o,
                Err(p) => {
                    println!(
                        "PANIC op={name} {}",
                        panic_message(&*p).replace('\n', " | ")
                    );
                    let _ = std::io::stdout().flush();
                    std::process::exit(101);
                }
            };
            if let Some(v) = &out.violation {
                println!("VIOLATION op={name} {v}");
            }
            let res = match out.result {
                Ok(_) => "ok".to_string(),
                Err(e) => {
                    if !allowed_errno(e) {
                        println!("ODD-ERRNO op={name} errno={e} ({})", errno_word(e));
                    }
                    errno_word(e)
                }
            };
            *self.tally.entry((code, res)).or_default() += 1;
            self.done += 1;
            std::thread::sleep(Duration::from_micros(300));
        }
    }
}

// ===========================================================================
// The test side: a namespace under attack
// ===========================================================================

/// A set's segment as the test maps it, with its geometry (from the header
/// as it was before any mutation).
struct SetMap {
    info: SetInfo,
    map: RawMap,
    /// The mutator may write it (always, but in the cross-user mode).
    writable: bool,
    geo: SetGeometry,
}

impl SetMap {
    fn queue_end(&self) -> usize {
        self.geo.queue_off + self.geo.queue_slots as usize * size_of::<QueueSlot>()
    }
}

/// What a round of attack found.
#[derive(Default)]
struct RoundReport {
    findings: Vec<String>,
    ops: u64,
    mutations: u64,
    tally: Tally,
    /// Per worker slot: ((op, result) -> count) of its last process.
    per_worker: Vec<BTreeMap<(String, String), u64>>,
}

/// One namespace with sets, its users, and the mutations applied so far.
struct Round {
    test: String,
    seed: u64,
    ns: String,
    ctl: Control,
    sets: Vec<SetMap>,
    reg: Option<RawMap>,
    users: Vec<Worker>,
    nobody: Vec<bool>,
    ops_allowed: Option<String>,
    max_ops: u64,
    /// Users stay alive (idle) after `max_ops` until the round ends.
    linger: bool,
    /// Operations for a second phase (after `Control::set_phase(2)`).
    ops2: Option<(String, u64)>,
    /// The sets users work on (default: all).
    user_sets: Option<Vec<SetInfo>>,
    log: Vec<String>,
    report: RoundReport,
    rng: Rng,
    respawns: u64,
    /// Mutation kinds (and `header.FIELD`s) not to make.
    exclude: Vec<String>,
    /// The cross-user mode: who the users are and who the mutator is.
    cross: Option<Cross>,
    /// Cross-user mode: the namespace's other files the mutator may write
    /// (neither a set segment nor the hints file).
    others: Vec<(String, RawMap)>,
    /// Mutations not made: the mutator may not write their target.
    refused: u64,
}

/// The cross-user mode of a round: the users (setup, users, teardown)
/// run as `victim`, their sets of mode `mode`; the mutator opens every
/// file as `attacker` (effective ids during the opens), so it writes only
/// what the OS lets her class write.
#[derive(Clone, Copy, Debug)]
struct Cross {
    mode: u32,
    victim: User,
    attacker: User,
}

impl Cross {
    /// The permission bits the mode gives the attacker's class.
    fn class_bits(&self) -> u32 {
        if self.attacker.groups.contains(&self.victim.gid) {
            (self.mode >> 3) & 7
        } else {
            self.mode & 7
        }
    }
    /// The attacker may not write the sets (`r--` or nothing): nothing of
    /// hers may then change what the victim observes of them.
    fn protected(&self) -> bool {
        self.class_bits() & 2 == 0
    }
    fn ids(&self) -> Option<(u32, u32)> {
        Some((self.victim.uid, self.victim.gid))
    }
}

/// The effective ids (and groups) of `user` until dropped (root keeps its
/// real and saved uid 0, so it can come back).
struct EffectiveAs;

impl EffectiveAs {
    fn new(u: User) -> EffectiveAs {
        let keep = u32::MAX; // -1: unchanged
                             // SAFETY: plain system calls on this process's credentials; the
                             // groups vector is live across the call.
        unsafe {
            assert_eq!(libc::setgroups(u.groups.len(), u.groups.as_ptr()), 0);
            assert_eq!(libc::setresgid(keep, u.gid, keep), 0);
            assert_eq!(libc::setresuid(keep, u.uid, keep), 0);
        }
        EffectiveAs
    }
}

impl Drop for EffectiveAs {
    fn drop(&mut self) {
        let keep = u32::MAX;
        // SAFETY: as above; back to root (the saved uid is 0).
        unsafe {
            libc::setresuid(keep, 0, keep);
            libc::setresgid(keep, 0, keep);
            libc::setgroups(1, [0u32].as_ptr());
        }
    }
}

impl Round {
    /// Creates a namespace with sets of these sizes (through a setup
    /// worker) and maps their files.
    fn new(test: &str, seed: u64, nsems: &[usize]) -> Round {
        Round::with(test, seed, nsems, None)
    }

    /// [`Round::new`], in the cross-user mode if `cross` says so.
    fn with(test: &str, seed: u64, nsems: &[usize], cross: Option<Cross>) -> Round {
        let ns = unique_ns(test);
        let mut round = Round {
            test: test.to_string(),
            seed,
            ns: ns.clone(),
            ctl: Control::new(),
            sets: Vec::new(),
            reg: None,
            users: Vec::new(),
            nobody: Vec::new(),
            ops_allowed: None,
            max_ops: 0,
            linger: false,
            ops2: None,
            user_sets: None,
            log: Vec::new(),
            report: RoundReport::default(),
            rng: Rng::new(seed),
            respawns: 0,
            exclude: Vec::new(),
            cross,
            others: Vec::new(),
            refused: 0,
        };
        let list = nsems
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut setup_env = vec![
            ("HOSTILE_ROLE", "setup".to_string()),
            ("HOSTILE_NS", ns.clone()),
            ("HOSTILE_SEED", seed.to_string()),
            ("HOSTILE_NSEMS", list),
        ];
        if let Some(c) = cross {
            setup_env.push(("HOSTILE_MODE", format!("{:o}", c.mode)));
        }
        let mut w = spawn_worker_as(0, &setup_env, cross.and_then(|c| c.ids()));
        let ended = w.wait_until(Instant::now() + Duration::from_secs(30));
        let out = w.output();
        assert!(
            ended && w.bad_end().is_none(),
            "setup of {ns} failed ({:?}):\n{}",
            w.bad_end(),
            out.join("\n")
        );
        for l in &out {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() == 4 && f[0] == "SET" {
                let info = SetInfo {
                    id: f[1].parse().unwrap(),
                    nsems: f[2].parse().unwrap(),
                    key: f[3].parse().unwrap(),
                };
                let path = set_path(&ns, info.id);
                // Cross-user mode: opened as the attacker, read-only if
                // that is all she may.
                let as_attacker = cross.map(|c| EffectiveAs::new(c.attacker));
                let opened = RawMap::open(&path);
                drop(as_attacker);
                // Not writable by the attacker: mapped read-only by the test
                // itself, only to read (geometry); never written.
                let (map, writable) = match opened {
                    Ok(m) => (m, true),
                    Err(_) if cross.is_some() => (
                        RawMap::open_read_only(&path)
                            .unwrap_or_else(|e| panic!("mapping {path} read-only: {e}")),
                        false,
                    ),
                    Err(e) => panic!("mapping {path}: {e}"),
                };
                let geo = SetGeometry::new(
                    map.load_u32(offset_of!(SetHeader, nsems)),
                    map.load_u32(offset_of!(SetHeader, proc_slots)),
                    map.load_u32(offset_of!(SetHeader, queue_slots)),
                );
                assert_eq!(geo.size, map.len(), "geometry of {path}");
                round.sets.push(SetMap {
                    info,
                    map,
                    writable,
                    geo,
                });
            }
        }
        assert_eq!(
            round.sets.len(),
            nsems.len(),
            "setup output:\n{}",
            out.join("\n")
        );
        if let Some(c) = cross {
            let _as = EffectiveAs::new(c.attacker);
            round.reg = RawMap::open(&hints_path(&ns)).ok();
            let sets: Vec<String> = round
                .sets
                .iter()
                .map(|s| set_path(&ns, s.info.id))
                .collect();
            for p in ns_paths(&ns) {
                if p != hints_path(&ns) && !sets.contains(&p) {
                    if let Ok(m) = RawMap::open(&p) {
                        round.others.push((p, m));
                    }
                }
            }
            round.log.push(format!(
                "cross-user: mode {:o}, attacker {} may write: sets {:?}, hints {}, others {:?}",
                c.mode,
                c.attacker.name,
                round.sets.iter().map(|s| s.writable).collect::<Vec<_>>(),
                round.reg.is_some(),
                round.others.iter().map(|o| &o.0).collect::<Vec<_>>()
            ));
        } else {
            // The hints file: what every user may write (the registry was).
            round.reg = Some(RawMap::open(&hints_path(&ns)).expect("mapping the hints file"));
        }
        round
    }

    fn set_infos(&self) -> Vec<SetInfo> {
        self.sets.iter().map(|s| s.info).collect()
    }

    /// Starts (or restarts) the user in control slot `slot`.
    fn spawn_user(&mut self, slot: usize) {
        self.ctl.reset(slot);
        let seed = self.rng.next();
        let mut env = vec![
            ("HOSTILE_ROLE", "user".to_string()),
            ("HOSTILE_NS", self.ns.clone()),
            ("HOSTILE_CTL_FD", self.ctl.raw_fd().to_string()),
            ("HOSTILE_SLOT", slot.to_string()),
            (
                "HOSTILE_SETS",
                sets_string(self.user_sets.as_deref().unwrap_or(&self.set_infos())),
            ),
            ("HOSTILE_SEED", seed.to_string()),
            ("HOSTILE_MAX_OPS", self.max_ops.to_string()),
        ];
        if let Some(ops) = &self.ops_allowed {
            env.push(("HOSTILE_OPS", ops.clone()));
        }
        if self.linger {
            env.push(("HOSTILE_LINGER", "1".into()));
        }
        if let Some((ops, n)) = &self.ops2 {
            env.push(("HOSTILE_OPS2", ops.clone()));
            env.push(("HOSTILE_MAX_OPS2", n.to_string()));
        }
        let nobody = self.nobody[slot];
        let w = match self.cross {
            Some(c) => spawn_worker_as(slot, &env, c.ids()),
            None => spawn_worker(slot, &env, nobody),
        };
        self.log.push(format!(
            "start user {slot} (pid {}, {}, seed {seed})",
            w.pid(),
            if nobody && is_root() {
                "uid 65534"
            } else {
                "uid 0"
            }
        ));
        if slot < self.users.len() {
            let old = std::mem::replace(&mut self.users[slot], w);
            self.collect(old);
        } else {
            self.users.push(w);
        }
    }

    /// Starts `n` users; `nobody[i]` makes user i run as uid 65534.
    fn start_users(&mut self, nobody: &[bool]) {
        self.nobody = nobody.to_vec();
        for i in 0..nobody.len() {
            self.spawn_user(i);
        }
    }

    fn who(&self, slot: usize) -> String {
        let w = &self.users[slot];
        format!(
            "user {slot} (pid {}, {})",
            w.pid(),
            if self.nobody[slot] && is_root() {
                "uid 65534"
            } else {
                "uid 0"
            }
        )
    }

    /// Looks at every user: one that died badly or runs an operation far
    /// beyond its timeout is a finding. Returns false if the round must end.
    fn check(&mut self) -> bool {
        let now = monotonic_ns();
        let limit = hang_ns();
        for slot in 0..self.users.len() {
            let hb = self.ctl.heartbeat(slot);
            if let Some(op) = hb.op {
                let ran = now.saturating_sub(hb.since_ns);
                if ran > hb.timeout_ns + limit {
                    let msg = format!(
                        "HANG: {} has been in operation {} for {:.1} s (its timeout: {} ms)",
                        self.who(slot),
                        OPS[op as usize].0,
                        ran as f64 / 1e9,
                        hb.timeout_ns / 1_000_000
                    );
                    self.finding(msg);
                    return false;
                }
            }
            if self.users[slot].poll().is_some() && !self.users[slot].killed {
                if let Some(how) = self.users[slot].bad_end() {
                    let out = self.users[slot].output();
                    let tail: Vec<&String> = out.iter().rev().take(12).rev().collect();
                    let msg = format!(
                        "CRASH: {} {how} in operation {}; its last output:\n    {}",
                        self.who(slot),
                        hb.op.map(|o| OPS[o as usize].0).unwrap_or("(none)"),
                        tail.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join("\n    ")
                    );
                    self.users[slot].killed = true; // reported once
                    self.finding(msg);
                    return false;
                }
            }
        }
        true
    }

    fn finding(&mut self, what: String) {
        let last: Vec<String> = self.log.iter().rev().take(14).rev().cloned().collect();
        self.report.findings.push(format!(
            "{what}\n  [{} seed={} ns={}] last events:\n    {}",
            self.test,
            self.seed,
            self.ns,
            last.join("\n    ")
        ));
    }

    /// Waits until every running user completed `more` further operations
    /// (users that stopped by themselves are skipped). False if the round
    /// must end (a finding was made).
    fn wait_progress(&mut self, more: u64) -> bool {
        let base: Vec<u64> = (0..self.users.len())
            .map(|s| self.ctl.heartbeat(s).ops)
            .collect();
        let deadline = Instant::now() + Duration::from_nanos(hang_ns()) + Duration::from_secs(10);
        loop {
            if !self.check() {
                return false;
            }
            let behind = (0..self.users.len()).find(|&s| {
                self.users[s].poll().is_none() && self.ctl.heartbeat(s).ops < base[s] + more
            });
            let Some(slot) = behind else { return true };
            if Instant::now() > deadline {
                let hb = self.ctl.heartbeat(slot);
                let msg = format!(
                    "HANG: {} made no progress for {:.0} s (operations done: {}, in operation: {:?})",
                    self.who(slot),
                    (hang_ns() as f64 / 1e9) + 10.0,
                    hb.ops,
                    hb.op.map(|o| OPS[o as usize].0)
                );
                self.finding(msg);
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Reads a finished (or killed) user's output into the report.
    fn collect(&mut self, mut w: Worker) {
        let slot = w.slot;
        let out = w.output();
        let mut mine = BTreeMap::new();
        for l in &out {
            if l.starts_with("PANIC ") || l.starts_with("VIOLATION ") || l.starts_with("ODD-ERRNO ")
            {
                let msg = format!("{l}\n  from user {slot} (pid {})", w.pid());
                self.finding(msg);
            } else if let Some(rest) = l.strip_prefix("STAT ") {
                let f: Vec<&str> = rest.split_whitespace().collect();
                if f.len() == 3 {
                    let n: u64 = f[2].parse().unwrap_or(0);
                    *mine
                        .entry((f[0].to_string(), f[1].to_string()))
                        .or_default() += n;
                    *self
                        .report
                        .tally
                        .entry(format!("{} {}", f[0], f[1]))
                        .or_default() += n;
                    self.report.ops += n;
                }
            }
        }
        if self.report.per_worker.len() <= slot {
            self.report.per_worker.resize(slot + 1, BTreeMap::new());
        }
        self.report.per_worker[slot] = mine;
    }

    /// Stops the users, collects what they report, destroys the namespace
    /// (through a teardown worker) and checks nothing is left.
    fn finish(mut self) -> RoundReport {
        self.ctl.stop();
        let deadline = Instant::now() + Duration::from_nanos(hang_ns()) + Duration::from_secs(5);
        for slot in 0..self.users.len() {
            let exited = self.users[slot].wait_until(deadline);
            if !exited && !self.users[slot].killed {
                let hb = self.ctl.heartbeat(slot);
                let msg = format!(
                    "HANG: {} did not stop (in operation {:?})",
                    self.who(slot),
                    hb.op.map(|o| OPS[o as usize].0)
                );
                self.finding(msg);
            } else if let Some(how) = self.users[slot].bad_end() {
                if !self.users[slot].killed {
                    let msg = format!("CRASH: {} {how} while stopping", self.who(slot));
                    self.finding(msg);
                }
            }
        }
        let users = std::mem::take(&mut self.users);
        for w in users {
            self.collect(w);
        }
        self.teardown();
        eprintln!(
            "[{} seed={}] {} mutations, {} respawns, {} user operations: {}",
            self.test,
            self.seed,
            self.report.mutations,
            self.respawns,
            self.report.ops,
            summarize_tally(&self.report.tally)
        );
        if std::env::var_os("HOSTILE_VERBOSE").is_some() {
            for l in &self.log {
                eprintln!("    {l}");
            }
            for (slot, t) in self.report.per_worker.iter().enumerate() {
                eprintln!("    user {slot}: {t:?}");
            }
        }
        std::mem::take(&mut self.report)
    }

    fn teardown(&mut self) {
        let infos = self.set_infos();
        self.sets.clear();
        self.reg = None;
        self.others.clear();
        let mut env = vec![
            ("HOSTILE_ROLE", "teardown".to_string()),
            ("HOSTILE_NS", self.ns.clone()),
        ];
        if self.cross.is_some() {
            env.push(("HOSTILE_CHECK_SETS", "1".into()));
            env.push(("HOSTILE_SETS", sets_string(&infos)));
        }
        let mut w = match self.cross {
            Some(c) => spawn_worker_as(0, &env, c.ids()),
            None => spawn_worker(0, &env, false),
        };
        let ended = w
            .wait_until(Instant::now() + Duration::from_nanos(hang_ns()) + Duration::from_secs(10));
        let out = w.output();
        let bad = w.bad_end();
        let destroyed = out.iter().any(|l| l == "DESTROYED");
        if self.cross.is_some_and(|c| c.protected()) {
            for l in out.iter().filter(|l| l.starts_with("SET-LOST")) {
                self.finding(format!(
                    "LOST: a set the attacker may not write is lost or not the victim's: {l}"
                ));
            }
        }
        if !ended {
            self.finding("HANG: destroying the namespace did not finish".to_string());
        } else if let Some(how) = bad {
            let msg = format!(
                "CRASH: the teardown process (Namespace::destroy) {how}:\n    {}",
                out.join("\n    ")
            );
            self.finding(msg);
        }
        // What the attacker made (in the cross-user mode) is hers: the
        // sticky /dev/shm lets nobody else remove it.
        let attacker = self.cross.map(|c| c.attacker.uid);
        let left: Vec<String> = ns_paths(&self.ns)
            .into_iter()
            .filter(|p| {
                let owner = std::fs::symlink_metadata(p).map(|m| {
                    use std::os::unix::fs::MetadataExt;
                    m.uid()
                });
                attacker.is_none() || owner.ok() != attacker
            })
            .collect();
        if destroyed && !left.is_empty() {
            self.finding(format!("LEAK: destroy() succeeded but left {left:?}"));
        }
        if !destroyed {
            // A corrupt limits file cannot be read; the library cannot
            // remove what it cannot read. Not a failure: clean up by hand.
            self.log.push(format!(
                "teardown: {}",
                out.iter()
                    .find(|l| l.contains("FAILED"))
                    .cloned()
                    .unwrap_or_default()
            ));
        }
        for f in left {
            let _ = std::fs::remove_file(f);
        }
    }
}

impl Drop for Round {
    fn drop(&mut self) {
        // On a panic in the test itself: no process and no file may stay.
        for w in &mut self.users {
            w.kill();
        }
        for f in ns_paths(&self.ns) {
            let _ = std::fs::remove_file(f);
        }
    }
}

// ===========================================================================
// Mutations
// ===========================================================================

/// Kinds of mutation, with weights. `HOSTILE_FUZZ_EXCLUDE` names kinds to
/// leave out.
const KINDS: &[(&str, u64)] = &[
    ("byte", 8),
    ("word", 8),
    ("header", 10),
    ("lock-token", 3),
    ("seq-odd", 3),
    ("sem-word", 10),
    ("sem-counts", 6),
    ("proc", 8),
    ("undo", 5),
    ("queue", 12),
    ("tail", 4),
    ("claims", 5),
    ("hints", 3),
    ("intent-recovery", 5),
    ("lock-dead", 3),
    ("respawn", 4),
    ("grow", 1),
];

/// Header fields: (name, offset, size in bytes).
fn header_fields() -> Vec<(&'static str, usize, usize)> {
    vec![
        ("magic", offset_of!(SetHeader, magic), 8),
        ("version", offset_of!(SetHeader, version), 4),
        ("nsems", offset_of!(SetHeader, nsems), 4),
        ("size", offset_of!(SetHeader, size), 8),
        ("key", offset_of!(SetHeader, key), 4),
        ("id", offset_of!(SetHeader, id), 4),
        ("proc_slots", offset_of!(SetHeader, proc_slots), 4),
        ("queue_slots", offset_of!(SetHeader, queue_slots), 4),
        ("lock", offset_of!(SetHeader, lock), 4),
        ("lock", offset_of!(SetHeader, lock), 4),
        ("seq", offset_of!(SetHeader, seq), 4),
        ("global_mode", offset_of!(SetHeader, global_mode), 4),
        ("removed", offset_of!(SetHeader, removed), 4),
        ("uid", offset_of!(SetHeader, uid), 4),
        ("mode", offset_of!(SetHeader, mode), 4),
        ("alter_head", offset_of!(SetHeader, alter_head), 4),
        ("alter_tail", offset_of!(SetHeader, alter_tail), 4),
        ("const_head", offset_of!(SetHeader, const_head), 4),
        ("const_tail", offset_of!(SetHeader, const_tail), 4),
        ("alloc_hint", offset_of!(SetHeader, alloc_hint), 4),
        ("ctime", offset_of!(SetHeader, ctime), 8),
    ]
}

fn sem_fields() -> Vec<(&'static str, usize, usize)> {
    vec![
        ("word", offset_of!(SemEntry, word), 8),
        ("otime", offset_of!(SemEntry, otime), 8),
        ("nwait", offset_of!(SemEntry, nwait), 4),
        ("nundo", offset_of!(SemEntry, nundo), 4),
    ]
}

fn proc_fields() -> Vec<(&'static str, usize, usize)> {
    vec![
        ("state_gen", offset_of!(ProcEntry, state_gen), 4),
        ("pid", offset_of!(ProcEntry, pid), 4),
        ("start_time", offset_of!(ProcEntry, start_time), 8),
        ("undo_count", offset_of!(ProcEntry, undo_count), 4),
        ("queued", offset_of!(ProcEntry, queued), 4),
    ]
}

fn queue_fields() -> Vec<(&'static str, usize, usize)> {
    vec![
        ("status", offset_of!(QueueSlot, status), 4),
        ("status", offset_of!(QueueSlot, status), 4),
        ("next", offset_of!(QueueSlot, next), 4),
        ("prev", offset_of!(QueueSlot, prev), 4),
        ("proc_slot", offset_of!(QueueSlot, proc_slot), 4),
        ("pid", offset_of!(QueueSlot, pid), 4),
        ("nsops", offset_of!(QueueSlot, nsops), 4),
        ("flags", offset_of!(QueueSlot, flags), 4),
        ("blocked", offset_of!(QueueSlot, blocked), 4),
        ("cont", offset_of!(QueueSlot, cont), 4),
        ("op0", offset_of!(QueueSlot, ops), 8),
        ("op1", offset_of!(QueueSlot, ops) + 8, 8),
    ]
}

/// A value worth writing over `cur` in a field of `size` bytes whose
/// indices go up to `small`.
fn interesting(r: &mut Rng, cur: u64, size: usize, small: u64) -> u64 {
    let bits = size as u32 * 8;
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let v = match r.below(14) {
        0 => 0,
        1 => 1,
        2 => mask,
        3 => mask - 1,
        4 => mask >> 1,
        5 => (mask >> 1) + 1,
        6 => cur ^ (1 << r.below(bits as u64)),
        7 => cur.wrapping_add(1),
        8 => cur.wrapping_sub(1),
        9 => r.below(small + 3),
        10 => r.below(small + 3) | (r.next() << 16),
        11 => cur | 1,
        12 => r.below(16),
        _ => r.next(),
    };
    v & mask
}

fn store(m: &RawMap, off: usize, size: usize, v: u64) -> u64 {
    match size {
        8 => {
            let old = m.load_u64(off);
            m.store_u64(off, v);
            old
        }
        4 => {
            let old = m.load_u32(off) as u64;
            m.store_u32(off, v as u32);
            old
        }
        _ => {
            let old = m.load_u8(off) as u64;
            m.store_u8(off, v as u8);
            old
        }
    }
}

fn load(m: &RawMap, off: usize, size: usize) -> u64 {
    match size {
        8 => m.load_u64(off),
        4 => m.load_u32(off) as u64,
        _ => m.load_u8(off) as u64,
    }
}

/// The lock token of process-table entry `slot` with state word `sg`, as
/// the library builds it ([`layout::LockWord::token`]).
fn lock_token(slot: u32, sg: u32) -> layout::LockWord {
    layout::LockWord::token(slot, layout::ProcState::from_raw(sg).gen())
}

/// Active entries of the process table: (index, state word, pid).
fn active_procs(s: &SetMap) -> Vec<(u32, u32, i32)> {
    (0..s.geo.proc_slots)
        .filter_map(|p| {
            let e = s.map.proc_entry(&s.geo, p);
            let sg = e.state_gen.load(std::sync::atomic::Ordering::SeqCst);
            let pid = e.pid.load(std::sync::atomic::Ordering::SeqCst);
            layout::ProcState::from_raw(sg)
                .is_active()
                .then_some((p, sg, pid))
        })
        .collect()
}

impl Round {
    /// Applies one mutation of kind `kind`; logs it.
    fn mutate(&mut self, kind: &str) {
        let si = self.rng.below(self.sets.len() as u64) as usize;
        // The cross-user mode: only what the attacker may write.
        let registry = kind == "hints";
        if kind == "ns-file" {
            self.mutate_other();
            return;
        }
        // Names are anyone's to make: in the cross-user mode the attacker
        // makes them (`claims`), as herself.
        let _as_attacker = match (kind, self.cross) {
            ("claims", Some(c)) => Some(EffectiveAs::new(c.attacker)),
            _ => None,
        };
        if (registry && self.reg.is_none())
            || (!registry && kind != "respawn" && !self.sets[si].writable)
        {
            self.log
                .push(format!("{kind} on set {si}: refused (no write access)"));
            self.refused += 1;
            return;
        }
        let r = &mut self.rng;
        let s = &self.sets[si];
        let m = &s.map;
        let g = s.geo;
        let small = g.queue_slots.max(g.proc_slots).max(g.nsems) as u64;
        // (description, offset, size, value); None if the kind did its own thing.
        let field = |r: &mut Rng,
                     name: String,
                     base: usize,
                     fields: &[(&'static str, usize, usize)]|
         -> (String, usize, usize, u64) {
            let (f, off, size) = fields[r.below(fields.len() as u64) as usize];
            let cur = load(m, base + off, size);
            let v = interesting(r, cur, size, small);
            (format!("{name}.{f}"), base + off, size, v)
        };
        let write: Option<(String, usize, usize, u64)> = match kind {
            "byte" => {
                let off = r.below(m.len() as u64) as usize;
                Some(("byte".into(), off, 1, r.next() & 0xff))
            }
            "word" => {
                let size = if r.pct(50) { 4 } else { 8 };
                let off = r.below((m.len() / size) as u64) as usize * size;
                let cur = load(m, off, size);
                Some(("word".into(), off, size, interesting(r, cur, size, small)))
            }
            "header" => {
                let fields: Vec<_> = header_fields()
                    .into_iter()
                    .filter(|(f, _, _)| !self.exclude.iter().any(|e| *e == format!("header.{f}")))
                    .collect();
                if fields.is_empty() {
                    None
                } else {
                    Some(field(r, "header".into(), 0, &fields))
                }
            }
            "lock-token" => {
                let act = active_procs(s);
                let tok = if act.is_empty() {
                    r.next() as u32
                } else {
                    let (p, sg, _) = act[r.below(act.len() as u64) as usize];
                    lock_token(p, sg).with_contended(r.pct(50)).raw()
                };
                Some((
                    "header.lock (a registered process's token)".into(),
                    offset_of!(SetHeader, lock),
                    4,
                    tok as u64,
                ))
            }
            "seq-odd" => {
                let off = offset_of!(SetHeader, seq);
                let cur = m.load_u32(off);
                Some(("header.seq (made odd)".into(), off, 4, (cur | 1) as u64))
            }
            "sem-word" => {
                let n = r.below(g.nsems as u64) as usize;
                let off = g.sems_off + n * size_of::<SemEntry>() + offset_of!(SemEntry, word);
                let cur = m.load_u64(off);
                let w = layout::SemWord::from_raw(cur);
                let v = match r.below(6) {
                    0 => w
                        .with_value(r.pick(&[0u64, 32767, 32768, 65535]) as u16)
                        .raw(),
                    // One slow bit flipped.
                    1 => match r.below(3) {
                        0 => w.with_waiters(!w.waiters()),
                        1 => w.with_global(!w.global()),
                        _ => w.with_undo_held(!w.undo_held()),
                    }
                    .raw(),
                    2 => w.with_pid(w.pid() ^ (r.next() >> 32) as u32 as i32).raw(),
                    3 => w
                        .with_waiters(true)
                        .with_global(true)
                        .with_undo_held(true)
                        .raw(),
                    4 => w.unmarked(false, false).raw(),
                    _ => r.next(),
                };
                Some((format!("sem[{n}].word"), off, 8, v))
            }
            "sem-counts" => {
                let n = r.below(g.nsems as u64) as usize;
                Some(field(
                    r,
                    format!("sem[{n}]"),
                    g.sems_off + n * size_of::<SemEntry>(),
                    &sem_fields(),
                ))
            }
            "proc" => {
                let act = active_procs(s);
                let p = if !act.is_empty() && r.pct(60) {
                    act[r.below(act.len() as u64) as usize].0
                } else {
                    r.below(g.proc_slots as u64) as u32
                };
                let base = g.procs_off + p as usize * size_of::<ProcEntry>();
                if r.pct(20) {
                    // A plausible live stranger: ACTIVE, pid 1.
                    let sg = m.load_u32(base + offset_of!(ProcEntry, state_gen));
                    let v = layout::ProcState::from_raw(sg).activated().raw();
                    store(m, base + offset_of!(ProcEntry, pid), 4, 1);
                    Some((
                        format!("proc[{p}].state_gen (ACTIVE, pid 1)"),
                        base + offset_of!(ProcEntry, state_gen),
                        4,
                        v as u64,
                    ))
                } else {
                    Some(field(r, format!("proc[{p}]"), base, &proc_fields()))
                }
            }
            "undo" => {
                let cells = (g.queue_off - g.undo_off) / 2;
                let c = r.below(cells as u64) as usize;
                let x = r.next() & 0xffff;
                let v = r.pick(&[0x8000u64, 0x7fff, 1, 0xffff, x]);
                // 2-byte cell: write it as two bytes (atomic enough: the
                // readers' atomics see either byte order mix, which is garbage
                // anyway).
                let off = g.undo_off + c * 2;
                store(m, off, 1, v & 0xff);
                Some((format!("undo cell {c}"), off + 1, 1, v >> 8))
            }
            "queue" => {
                let q = r.below(g.queue_slots as u64) as usize;
                let base = g.queue_off + q * size_of::<QueueSlot>();
                let (name, off, size, mut v) =
                    field(r, format!("queue[{q}]"), base, &queue_fields());
                if name.ends_with(".status") && r.pct(50) {
                    // A well-formed status: gen, state (FREE/QUEUED/DONE/CONT), errno.
                    let st = r.below(5);
                    let x = r.below(4096);
                    let errno = r.pick(&[0u64, 11, 22, 43, 117, 0xfff, x]);
                    v = (r.next() & 0xffff_0000) | (st << 12) | errno;
                }
                Some((name, off, size, v))
            }
            "tail" => {
                let start = s.queue_end();
                if start + 8 > m.len() {
                    None
                } else {
                    // The first words after the queue (the intent record's
                    // header) get small values often, so that "committed"
                    // records of a valid kind with garbage contents appear.
                    let near = r.pct(60);
                    let span = if near {
                        64.min(m.len() - start)
                    } else {
                        m.len() - start
                    };
                    let off = start + (r.below((span / 4) as u64) as usize) * 4;
                    let v = if near && r.pct(70) {
                        r.below(8)
                    } else {
                        r.next() & 0xffff_ffff
                    };
                    Some((format!("tail+{}", off - start), off, 4, v))
                }
            }
            "claims" => {
                // Garbage under the names a set is found by: claims that
                // name nothing, another index's set, a FIFO, garbage set
                // files (the fuzzer is the users' own uid here, so they
                // may clean these up: what they must not do is crash,
                // hang, or take one for a set).
                let ns = &self.ns;
                let idx = if r.pct(60) {
                    (s.info.id & 0x7fff) as u32
                } else {
                    r.below(SEMMNI as u64) as u32
                };
                let other = r.below(SEMMNI as u64) as u32;
                let any = r.next() & 0xffff_ffff;
                let key = r.pick(&[0x4000u64, s.info.key as u32 as u64, any]) as u32;
                let (what, name) = match r.below(6) {
                    0 => ("dangling index claim", format!("shmsem.{ns}.i.{idx}")),
                    1 => (
                        "index claim of another index",
                        format!("shmsem.{ns}.i.{other}"),
                    ),
                    2 => ("dangling key claim", format!("shmsem.{ns}.k.{key:08x}")),
                    3 => (
                        "key claim of another set",
                        format!("shmsem.{ns}.k.{key:08x}"),
                    ),
                    4 => (
                        "garbage set file",
                        format!("shmsem.{ns}.s.{idx}.{}", r.below(3)),
                    ),
                    _ => (
                        "FIFO set file",
                        format!("shmsem.{ns}.s.{idx}.{}", r.below(3)),
                    ),
                };
                let path = format!("/dev/shm/{name}");
                let target = match what {
                    "dangling index claim" => format!("shmsem.{ns}.s.{idx}.9999"),
                    "dangling key claim" => format!("shmsem.{ns}.s.{}.7", r.below(SEMMNI as u64)),
                    _ => set_path(ns, s.info.id)
                        .trim_start_matches("/dev/shm/")
                        .to_string(),
                };
                let made = match what {
                    // A name not yet used (a live set's file is left alone:
                    // truncating it is the "truncated" cases' business).
                    "garbage set file" => std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .and_then(|mut f| std::io::Write::write_all(&mut f, &[0xa5u8; 4096]))
                        .is_ok(),
                    "FIFO set file" => nix::unistd::mkfifo(
                        path.as_str(),
                        nix::sys::stat::Mode::from_bits_truncate(0o600),
                    )
                    .is_ok(),
                    _ => std::os::unix::fs::symlink(&target, &path).is_ok(),
                };
                if made {
                    self.log.push(format!("{what}: {name} -> {target}"));
                }
                None
            }
            "hints" => {
                let reg = self.reg.as_ref().expect("hints mapped");
                let (f, off) = if r.pct(50) {
                    ("next_idx", layout::HINTS_NEXT_IDX_OFF)
                } else {
                    ("seq", layout::HINTS_SEQ_OFF)
                };
                if off + 4 > reg.len() {
                    // Truncated meanwhile: nothing to write.
                    return;
                }
                let cur = load(reg, off, 4);
                let v = match f {
                    "seq" if r.pct(50) => r.pick(&[u32::MAX as u64, 0xffff, 0x10000, 0x8000_0000]),
                    "next_idx" if r.pct(50) => {
                        r.pick(&[SEMMNI as u64 - 1, SEMMNI as u64, u32::MAX as u64])
                    }
                    _ => interesting(r, cur, 4, SEMMNI as u64),
                };
                let old = store(reg, off, 4, v);
                self.log
                    .push(format!("hints.{f} @{off:#x}: {old:#x} -> {v:#x}"));
                None
            }
            "lock-dead" => {
                // A holder that is gone: an index past the table, or a
                // generation that does not match. The next locker repairs.
                let tok = if r.pct(50) {
                    g.proc_slots + 1 + r.below(100) as u32
                } else {
                    let p = r.below(g.proc_slots as u64) as u32;
                    let base = g.procs_off + p as usize * size_of::<ProcEntry>();
                    let sg = m.load_u32(base + offset_of!(ProcEntry, state_gen));
                    // The next generation's token: a holder that is gone.
                    let next = layout::ProcState::from_raw(sg).claiming();
                    lock_token(p, next.raw()).raw()
                };
                Some((
                    "header.lock (a dead holder)".into(),
                    offset_of!(SetHeader, lock),
                    4,
                    tok as u64,
                ))
            }
            "intent-recovery" => {
                // A committed intent record of a valid kind with garbage
                // contents, then a dead lock holder: the next locker redoes
                // the record during recovery.
                let base = g.intent_off;
                let f = |name| match name {
                    "commit" => offset_of!(IntentHeader, commit),
                    "kind" => offset_of!(IntentHeader, kind),
                    "count" => offset_of!(IntentHeader, count),
                    "proc_slot" => offset_of!(IntentHeader, proc_slot),
                    "pid" => offset_of!(IntentHeader, pid),
                    "q_slot" => offset_of!(IntentHeader, q_slot),
                    "q_from" => offset_of!(IntentHeader, q_from),
                    "q_to" => offset_of!(IntentHeader, q_to),
                    "proc_sg" => offset_of!(IntentHeader, proc_sg),
                    _ => offset_of!(IntentHeader, otime_sem),
                };
                let mut what = Vec::new();
                let kind = r.range(1, 6) as u64;
                let (x, y) = (r.below(8), r.below(64));
                let count = r.pick(&[
                    0u64,
                    1,
                    g.nsems as u64,
                    g.nsems as u64 + 1,
                    u32::MAX as u64,
                    x,
                ]);
                for (name, v) in [
                    ("kind", kind),
                    ("count", count),
                    (
                        "proc_slot",
                        r.pick(&[0u64, 1, g.proc_slots as u64, u32::MAX as u64]),
                    ),
                    ("pid", r.next() & 0xffff),
                    (
                        "q_slot",
                        r.pick(&[0u64, 1, g.queue_slots as u64, u32::MAX as u64, y]),
                    ),
                    ("q_from", r.next() & 0xffff_ffff),
                    ("q_to", (r.below(4) << 12) | r.pick(&[0u64, 22, 0xfff])),
                    ("proc_sg", r.next() & 0xffff_ffff),
                    (
                        "otime_sem",
                        r.pick(&[0u64, g.nsems as u64, u32::MAX as u64]),
                    ),
                ] {
                    store(m, base + f(name), 4, v);
                    what.push(format!("{name}={v:#x}"));
                }
                // Entries: semaphore numbers in and out of range, any value.
                let entries = base + size_of::<IntentHeader>();
                for e in 0..g.nsems as usize {
                    let n = if r.pct(80) {
                        r.below(g.nsems as u64)
                    } else {
                        r.next() & 0xffff
                    };
                    let v = n
                        | (r.pick(&[0u64, 1, 32767, 32768, 65535]) << 16)
                        | (r.next() & 0x1_ffff_0000_0000);
                    store(m, entries + e * 8, 8, v);
                }
                store(m, base + f("commit"), 4, layout::INTENT_COMMITTED as u64);
                let tok = g.proc_slots + 1 + r.below(100) as u32;
                Some((
                    format!(
                        "intent record committed ({}), then header.lock (a dead holder)",
                        what.join(" ")
                    ),
                    offset_of!(SetHeader, lock),
                    4,
                    tok as u64,
                ))
            }
            "respawn" => {
                let slot = r.below(self.users.len() as u64) as usize;
                self.users[slot].kill();
                self.log.push(format!("SIGKILL user {slot}"));
                self.respawns += 1;
                self.spawn_user(slot);
                None
            }
            "grow" => {
                let len = m.len() as u64 + 4096 * (1 + r.below(4));
                let _ = m.set_file_len(len);
                self.log
                    .push(format!("set {si}: file grown to {len} bytes"));
                None
            }
            other => panic!("unknown mutation kind {other}"),
        };
        if let Some((what, off, size, v)) = write {
            let m = &self.sets[si].map;
            let old = store(m, off, size, v);
            self.log
                .push(format!("set {si} {what} @{off:#x}: {old:#x} -> {v:#x}"));
        }
        self.report.mutations += 1;
    }
}

// ===========================================================================
// The fuzzer
// ===========================================================================

/// One fuzz round: a fresh namespace, three users (one as uid 65534), and
/// `mutations` mutations, each followed by progress of every user.
fn fuzz_round(seed: u64, mutations: u64, exclude: &[String]) -> RoundReport {
    let mut r = Rng::new(seed);
    let nsets = if r.pct(30) { 2 } else { 1 };
    let nsems: Vec<usize> = (0..nsets).map(|_| r.range(1, 6) as usize).collect();
    let mut round = Round::new("fuzz", seed, &nsems);
    round.exclude = exclude.to_vec();
    round.start_users(&[false, true, false]);
    let kinds: Vec<(&str, u64)> = KINDS
        .iter()
        .filter(|(k, _)| !exclude.iter().any(|e| e == k))
        .copied()
        .collect();
    assert!(!kinds.is_empty(), "every mutation kind is excluded");
    let total: u64 = kinds.iter().map(|k| k.1).sum();
    if round.wait_progress(3) {
        for _ in 0..mutations {
            let mut x = round.rng.below(total);
            let kind = kinds
                .iter()
                .find(|(_, w)| {
                    if x < *w {
                        true
                    } else {
                        x -= w;
                        false
                    }
                })
                .expect("weights")
                .0;
            // Sometimes several writes at once.
            let burst = if round.rng.pct(20) { 3 } else { 1 };
            for _ in 0..burst {
                round.mutate(kind);
            }
            if !round.wait_progress(2) {
                break;
            }
        }
    }
    round.finish()
}

impl Round {
    /// Cross-user mode: a random byte or word into one of the namespace's
    /// other files the attacker may write.
    fn mutate_other(&mut self) {
        if self.others.is_empty() {
            self.log
                .push("ns-file: refused (no other writable file)".into());
            self.refused += 1;
            return;
        }
        let i = self.rng.below(self.others.len() as u64) as usize;
        let (name, m) = &self.others[i];
        let size = self.rng.pick(&[1usize, 4, 8]);
        let off = self.rng.below((m.len() / size) as u64) as usize * size;
        let v = self.rng.next();
        let old = store(m, off, size, v);
        self.log.push(format!(
            "{name} @{off:#x}: {old:#x} -> {v:#x} ({size} bytes)"
        ));
        self.report.mutations += 1;
    }
}

/// The cross-user mode's mutation kinds: the fuzzer's, and random writes
/// into the namespace's other files.
fn cross_kinds() -> Vec<(&'static str, u64)> {
    let mut k = KINDS.to_vec();
    k.push(("ns-file", 6));
    k
}

/// Results of set operations that mean the set was harmed: in a protected
/// round (the attacker may not write the sets) none may appear.
fn harmed(op: &str, res: &str) -> bool {
    let set_op = touches_set(op) || op == "open";
    set_op
        && matches!(
            res,
            "EUCLEAN" | "EIDRM" | "EINVAL" | "ENOMEM" | "ENOENT" | "EPERM" | "EACCES" | "ENOSPC"
        )
}

/// One cross-user round: alice's namespace with one or two sets of a
/// random mode, three users of hers, and `mutations` mutations by mallory
/// (in alice's group or not) through what she could open.
fn cross_round(seed: u64, mutations: u64) -> RoundReport {
    let mut r = Rng::new(seed ^ 0xc055);
    let mode = r.pick(&[0o600u32, 0o640, 0o644, 0o660, 0o666]);
    let attacker = if r.pct(50) {
        support::MALLORY_IN_GROUP
    } else {
        support::MALLORY
    };
    let cross = Cross {
        mode,
        victim: support::ALICE,
        attacker,
    };
    let nsets = if r.pct(30) { 2 } else { 1 };
    let nsems: Vec<usize> = (0..nsets).map(|_| r.range(1, 6) as usize).collect();
    let mut round = Round::with("cross", seed, &nsems, Some(cross));
    // Her users never change the mode (IPC_SET) mid-round.
    let ops: Vec<&str> = OPS
        .iter()
        .filter(|(n, w)| *w > 0 && *n != "ipc-set")
        .map(|(n, _)| *n)
        .collect();
    round.ops_allowed = Some(ops.join(","));
    round.start_users(&[false, false, false]);
    let kinds = cross_kinds();
    let total: u64 = kinds.iter().map(|k| k.1).sum();
    if round.wait_progress(3) {
        for _ in 0..mutations {
            let mut x = round.rng.below(total);
            let kind = kinds
                .iter()
                .find(|(_, w)| {
                    if x < *w {
                        true
                    } else {
                        x -= w;
                        false
                    }
                })
                .expect("weights")
                .0;
            round.mutate(kind);
            if !round.wait_progress(2) {
                break;
            }
        }
    }
    let refused = round.refused;
    let log_head = round.log.first().cloned().unwrap_or_default();
    let protected = cross.protected();
    let mut rep = round.finish();
    if protected {
        for (k, n) in &rep.tally {
            let (op, res) = k.split_once(' ').unwrap_or((k, ""));
            if harmed(op, res) {
                rep.findings.push(format!(
                    "HARMED: mode {mode:o}, {}: alice's {op} gave {res} {n} times, \
                     though the attacker may not write her sets [cross seed={seed}]\n  {log_head}",
                    attacker.name
                ));
            }
        }
    }
    support::note(&format!(
        "[cross seed={seed}] mode {mode:o} vs {} ({}): {} mutations made, {refused} refused \
         (no write access), {} user operations: {}; {} findings\n  {log_head}",
        attacker.name,
        if protected { "protected" } else { "writer" },
        rep.mutations,
        rep.ops,
        summarize_tally(&rep.tally),
        rep.findings.len()
    ));
    rep
}

/// The hostile-segment fuzzer's cross-user mode (issue #9): the mutator
/// has only the access the set's mode gives its class (see [`Cross`]).
/// Where that is no write bit, alice's users must see no harm at all
/// ([`harmed`], and the teardown's check that every set is still found and
/// still hers); elsewhere the fuzzer's own contract holds (no crash, no
/// hang, no odd errno). Runs inside a private /dev/shm (root only);
/// `HOSTILE_CROSS_ROUNDS` (default 6) rounds from `HOSTILE_FUZZ_SEED`,
/// `HOSTILE_FUZZ_MUTATIONS` each.
#[test]
fn fuzz_cross_user() {
    if !support::can_sandbox("fuzz_cross_user") {
        return;
    }
    let _g = serial();
    let rounds = env_u64("HOSTILE_CROSS_ROUNDS", 6);
    let mutations = env_u64("HOSTILE_FUZZ_MUTATIONS", 40);
    let first = env_u64("HOSTILE_FUZZ_SEED", 0);
    let limit = Duration::from_secs(60 + rounds * 40);
    support::in_sandbox_ok("fuzz_cross_user", limit, || {
        let mut findings = Vec::new();
        for seed in first..first + rounds {
            let rep = cross_round(seed, mutations);
            findings.extend(rep.findings);
        }
        for f in &findings {
            support::note(f);
        }
        fail_with("fuzz_cross_user", &findings);
        0
    });
}

fn summarize_tally(t: &Tally) -> String {
    // Per result over all operations, then the few most common pairs.
    let mut by_result: BTreeMap<String, u64> = BTreeMap::new();
    for (k, v) in t {
        let res = k.rsplit(' ').next().unwrap_or("").to_string();
        *by_result.entry(res).or_default() += v;
    }
    by_result
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Fails with every finding, grouped by its first line.
fn fail_with(test: &str, findings: &[String]) {
    if findings.is_empty() {
        return;
    }
    let mut groups: BTreeMap<String, Vec<&String>> = BTreeMap::new();
    for f in findings {
        let first = f.lines().next().unwrap_or("");
        // Group without pids and times.
        let key: String = first
            .split_whitespace()
            .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
            .collect::<Vec<_>>()
            .join(" ");
        groups.entry(key).or_default().push(f);
    }
    let mut msg = format!(
        "{test}: {} findings ({} kinds)\n",
        findings.len(),
        groups.len()
    );
    for (k, fs) in &groups {
        msg.push_str(&format!("\n### {k}  ({} times)\n{}\n", fs.len(), fs[0]));
    }
    panic!("{msg}");
}

/// The seeded random mutator against live segments.
#[test]
fn fuzz_live_segments() {
    let _g = serial();
    let rounds = env_u64("HOSTILE_FUZZ_ROUNDS", 16);
    let secs = env_u64("HOSTILE_FUZZ_SECS", 0);
    let mutations = env_u64("HOSTILE_FUZZ_MUTATIONS", 40);
    let first = env_u64("HOSTILE_FUZZ_SEED", 0);
    let exclude = env_list("HOSTILE_FUZZ_EXCLUDE");
    let started = Instant::now();
    let mut findings = Vec::new();
    let mut total = RoundReport::default();
    let mut seed = first;
    loop {
        let done = seed - first;
        if secs > 0 {
            if started.elapsed() >= Duration::from_secs(secs) {
                break;
            }
        } else if done >= rounds {
            break;
        }
        let rep = fuzz_round(seed, mutations, &exclude);
        eprintln!(
            "round seed={seed}: {} mutations, {} user operations, {} findings",
            rep.mutations,
            rep.ops,
            rep.findings.len()
        );
        findings.extend(rep.findings.iter().cloned());
        total.ops += rep.ops;
        total.mutations += rep.mutations;
        add_tally(&mut total.tally, &rep.tally);
        seed += 1;
    }
    eprintln!(
        "fuzz_live_segments: {} rounds (seeds {first}..{seed}), {} mutations, {} user operations in {:.1?}; results: {}",
        seed - first,
        total.mutations,
        total.ops,
        started.elapsed(),
        summarize_tally(&total.tally)
    );
    fail_with("fuzz_live_segments", &findings);
}

// ===========================================================================
// Hand-written cases
// ===========================================================================

/// Starts users (`nobody[i]`: user i runs as uid 65534) for `ops`
/// operations each and waits until they are done (or a finding ends it).
fn run_users(round: &mut Round, nobody: &[bool], ops: u64) {
    round.max_ops = ops;
    round.start_users(nobody);
    // Users stop by themselves after `ops` operations: wait for that.
    let deadline = Instant::now() + Duration::from_nanos(hang_ns()) + Duration::from_secs(30);
    loop {
        if !round.check() {
            return;
        }
        if (0..round.users.len()).all(|s| round.users[s].poll().is_some()) {
            return;
        }
        if Instant::now() > deadline {
            round.finding("HANG: users did not finish their operations".to_string());
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A sequence counter left odd (by a writer that died mid-section, or by
/// garbage): readers that wait for it to become even must not wait for
/// ever when nobody writes. Only readers run here (GETVAL, GETPID, GETALL,
/// IPC_STAT, and semop by uid 65534, whose permission check reads the
/// header consistently).
#[test]
fn odd_sequence_counter_does_not_hang_readers() {
    let _g = serial();
    let mut round = Round::new("oddseq", 1, &[3]);
    let off = offset_of!(SetHeader, seq);
    let m = &round.sets[0].map;
    let old = m.load_u32(off);
    m.store_u32(off, old | 1);
    round
        .log
        .push(format!("header.seq: {old:#x} -> {:#x}", old | 1));
    round.ops_allowed = Some("getval,getpid,getall,ipc-stat,semop-nowait,timed-zero".into());
    run_users(&mut round, &[false, true], 40);
    let rep = round.finish();
    fail_with("odd_sequence_counter_does_not_hang_readers", &rep.findings);
}

/// The lock word names a registered, live process that does not hold the
/// lock (garbage that happens to look valid, or a hostile write): calls
/// with a timeout must still return by their timeout (give or take the
/// watchdog's slack).
#[test]
fn lock_word_naming_a_live_process_timed_calls_return() {
    lock_word_case("locktimed", "timed-wait,timed-multi,timed-post,api-timeout");
}

/// As above, for the semctl calls that take the lock (GETNCNT, SETVAL,
/// SETALL), which the kernel never blocks in.
#[test]
fn lock_word_naming_a_live_process_semctl_returns() {
    lock_word_case("lockctl", "getncnt,getzcnt,setval,setall");
}

fn lock_word_case(test: &str, ops: &str) {
    let _g = serial();
    let mut round = Round::new(test, 2, &[2]);
    // A user that registers (SEM_UNDO ops) and then stays alive, idle.
    round.ops_allowed = Some("semop-undo".into());
    round.max_ops = 4;
    round.linger = true;
    round.start_users(&[false]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while round.ctl.heartbeat(0).ops < 4 {
        assert!(
            round.check() && Instant::now() < deadline,
            "the first user did not start"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    round.linger = false;
    let s = &round.sets[0];
    let pid = round.users[0].pid();
    let act = active_procs(s);
    let Some(&(p, sg, _)) = act.iter().find(|a| a.2 == pid) else {
        panic!("user pid {pid} has no process-table entry: {act:?}");
    };
    let tok = lock_token(p, sg).raw();
    s.map.store_u32(offset_of!(SetHeader, lock), tok);
    round.log.push(format!(
        "header.lock := {tok:#x} (the token of live pid {pid}, entry {p})"
    ));
    // Fresh users run the operations under test.
    round.ops_allowed = Some(ops.into());
    round.max_ops = 20;
    round.nobody = vec![false, false, true];
    round.spawn_user(1);
    round.spawn_user(2);
    let deadline = Instant::now() + Duration::from_nanos(hang_ns()) + Duration::from_secs(30);
    while round.check() {
        if round.users[1].poll().is_some() && round.users[2].poll().is_some() {
            break;
        }
        if Instant::now() > deadline {
            round.finding("HANG: users did not finish".to_string());
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let rep = round.finish();
    fail_with(test, &rep.findings);
}

/// Header fields that every opener checks: a process that maps the set
/// after the damage gets errors (EUCLEAN or EINVAL) from every call on the
/// set, never a success, a crash or a hang; a process that had it mapped
/// before goes on without crashing.
#[test]
fn damaged_header_new_openers_get_errors() {
    let _g = serial();
    let mut findings = Vec::new();
    type Damage = Box<dyn Fn(u64) -> u64>;
    let cases: Vec<(&str, usize, usize, Damage)> = vec![
        (
            "magic",
            offset_of!(SetHeader, magic),
            8,
            Box::new(|v| v ^ 0xff),
        ),
        (
            "version 0",
            offset_of!(SetHeader, version),
            4,
            Box::new(|_| 0),
        ),
        (
            "version 99",
            offset_of!(SetHeader, version),
            4,
            Box::new(|_| 99),
        ),
        (
            "nsems + 1",
            offset_of!(SetHeader, nsems),
            4,
            Box::new(|v| v + 1),
        ),
        (
            "nsems + 1000",
            offset_of!(SetHeader, nsems),
            4,
            Box::new(|v| v + 1000),
        ),
        ("nsems 0", offset_of!(SetHeader, nsems), 4, Box::new(|_| 0)),
        (
            "nsems huge",
            offset_of!(SetHeader, nsems),
            4,
            Box::new(|_| u32::MAX as u64),
        ),
        (
            "size + 4096",
            offset_of!(SetHeader, size),
            8,
            Box::new(|v| v + 4096),
        ),
        (
            "size huge",
            offset_of!(SetHeader, size),
            8,
            Box::new(|_| u64::MAX),
        ),
        (
            "proc_slots + 1",
            offset_of!(SetHeader, proc_slots),
            4,
            Box::new(|v| v + 1),
        ),
        (
            "proc_slots x 8",
            offset_of!(SetHeader, proc_slots),
            4,
            Box::new(|v| v * 8),
        ),
        (
            "queue_slots x 2",
            offset_of!(SetHeader, queue_slots),
            4,
            Box::new(|v| v * 2),
        ),
        (
            "id of another index",
            offset_of!(SetHeader, id),
            4,
            Box::new(|v| v ^ 1),
        ),
        ("file grown", 0, 0, Box::new(|v| v)),
    ];
    for (i, (what, off, size, f)) in cases.iter().enumerate() {
        let mut round = Round::new("badhdr", 100 + i as u64, &[3]);
        // An old user, mapped before the damage, keeps going.
        round.start_users(&[false]);
        if !round.wait_progress(5) {
            findings.extend(round.finish().findings);
            continue;
        }
        let s = &round.sets[0];
        if *size == 0 {
            let len = s.map.len() as u64 + 8192;
            s.map.set_file_len(len).expect("growing the file");
            round.log.push(format!("file grown to {len}"));
        } else {
            let old = load(&s.map, *off, *size);
            let new = f(old);
            store(&s.map, *off, *size, new);
            round
                .log
                .push(format!("header {what}: {old:#x} -> {new:#x}"));
        }
        // Does the header still describe a segment of this file's size? If
        // it does (e.g. one more semaphore that fits the same pages), an
        // opener cannot tell, and only "no crash, no hang" is required.
        let m = &s.map;
        let geo = SetGeometry::new(
            m.load_u32(offset_of!(SetHeader, nsems)),
            m.load_u32(offset_of!(SetHeader, proc_slots)),
            m.load_u32(offset_of!(SetHeader, queue_slots)),
        );
        let plausible = *size != 0
            && !what.starts_with("magic")
            && !what.starts_with("version")
            && !what.starts_with("id")
            && !what.starts_with("size")
            && geo.nsems >= 1
            && geo.nsems <= layout::SEMMSL_MAX
            && geo.proc_slots < layout::PROC_SLOTS_MAX
            && geo.queue_slots <= layout::QUEUE_SLOTS_MAX
            && geo.size == m.len();
        if plausible {
            round
                .log
                .push("(the damaged header still matches the file's size)".into());
        }
        // A new process opens the set now (the old one keeps running).
        round.max_ops = 60;
        round.ops_allowed = Some(
            "semop-nowait,semop-undo,timed-wait,getval,getall,ipc-stat,setval,semget-key,sem-stat"
                .into(),
        );
        round.nobody.push(false);
        round.spawn_user(1);
        let ok = round.wait_progress(5);
        let deadline = Instant::now() + Duration::from_secs(20);
        while ok && round.users[1].poll().is_none() && Instant::now() < deadline && round.check() {
            std::thread::sleep(Duration::from_millis(2));
        }
        let rep = round.finish();
        // The new opener: nothing on the set may have succeeded.
        if let (false, Some(new)) = (plausible, rep.per_worker.get(1)) {
            let wrong: Vec<String> = new
                .iter()
                .filter(|((op, res), _)| {
                    touches_set(op)
                        && res != "EUCLEAN"
                        && res != "EINVAL"
                        && !(*what == "version 0" && res == "ENOENT")
                })
                .map(|((op, res), n)| format!("{op} -> {res} x{n}"))
                .collect();
            if !wrong.is_empty() {
                findings.push(format!(
                    "WRONG RESULT: after header damage '{what}', a process that maps the set anew got {wrong:?} \
                     (expected EUCLEAN or EINVAL from every call on the set)"
                ));
            }
        }
        findings.extend(rep.findings);
    }
    fail_with("damaged_header_new_openers_get_errors", &findings);
}

/// The set's file is truncated (by a process that can write it) while
/// others have it mapped: they must not die of SIGBUS.
#[test]
fn truncated_set_segment_does_not_crash_users() {
    let _g = serial();
    let mut findings = Vec::new();
    for (i, keep) in [4096u64, 0].into_iter().enumerate() {
        let mut round = Round::new("trunc", 200 + i as u64, &[4]);
        round.start_users(&[false, true]);
        if round.wait_progress(5) {
            round.sets[0]
                .map
                .set_file_len(keep)
                .expect("truncating the set's file");
            round
                .log
                .push(format!("set file truncated to {keep} bytes"));
            // Make sure a user that maps it anew runs too.
            round.nobody.push(false);
            round.spawn_user(2);
            round.wait_progress(20);
        }
        findings.extend(round.finish().findings);
    }
    fail_with("truncated_set_segment_does_not_crash_users", &findings);
}

/// The namespace's hints file (anyone may write it) and its limits file
/// are truncated while processes use the namespace. (Was: the registry,
/// truncated while processes had it mapped.)
#[test]
fn truncated_hints_and_limits_do_not_crash_users() {
    let _g = serial();
    let mut round = Round::new("truncreg", 300, &[2]);
    round.ops_allowed = Some("semget-key,sem-stat,info,create-remove,getval,semop-nowait".into());
    round.start_users(&[false, true]);
    if round.wait_progress(5) {
        round
            .reg
            .as_ref()
            .expect("hints")
            .set_file_len(0)
            .expect("truncating the hints file");
        std::fs::OpenOptions::new()
            .write(true)
            .open(limits_path(&round.ns))
            .and_then(|f| f.set_len(0))
            .expect("truncating the limits file");
        round
            .log
            .push("hints and limits files truncated to 0 bytes".into());
        round.wait_progress(20);
    }
    let rep = round.finish();
    fail_with(
        "truncated_hints_and_limits_do_not_crash_users",
        &rep.findings,
    );
}

/// Garbage names and hints: index claims that name sets that do not
/// exist, a key claim naming garbage, garbage and FIFO set files, and the
/// hints at their extremes (a sequence number about to overflow, the
/// cursor at the end or past SEMMNI). Calls give errors or work; semget
/// never returns a negative id; nothing crashes, panics or hangs. (Was:
/// LIVE garbage entries and counters at their extremes in the registry.)
#[test]
fn corrupt_claims_and_hints() {
    let _g = serial();
    let mut findings = Vec::new();
    let variants: &[(&str, u64, u64)] = &[
        // (what, seq hint, next_idx hint)
        (
            "seq u32::MAX, next_idx at the end",
            u32::MAX as u64,
            SEMMNI as u64 - 1,
        ),
        ("seq 0x10000 (ids overflow i32)", 0x10000, 5),
        ("seq 0xffff, next_idx past semmni", 0xffff, u32::MAX as u64),
    ];
    for (i, (what, seq, next)) in variants.iter().enumerate() {
        let mut round = Round::new("badreg", 400 + i as u64, &[2]);
        let ns = round.ns.clone();
        // Garbage claims: with sequence numbers no file has.
        for idx in [SEMMNI - 1, 7, 9] {
            let _ = std::os::unix::fs::symlink(
                format!("shmsem.{ns}.s.{idx}.3"),
                format!("/dev/shm/shmsem.{ns}.i.{idx}"),
            );
        }
        let _ = std::fs::write(format!("/dev/shm/shmsem.{ns}.k.00004000"), [0u8; 64]);
        let _ = std::fs::write(format!("/dev/shm/shmsem.{ns}.s.8.0"), [0xffu8; 4096]);
        let _ = nix::unistd::mkfifo(
            format!("/dev/shm/shmsem.{ns}.s.10.0").as_str(),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        );
        let reg = round.reg.as_ref().expect("hints");
        reg.store_u32(layout::HINTS_SEQ_OFF, *seq as u32);
        reg.store_u32(layout::HINTS_NEXT_IDX_OFF, *next as u32);
        round.log.push(format!(
            "hints: {what}; garbage claims at 7, 9, {}; a garbage key claim; garbage and FIFO set files",
            SEMMNI - 1
        ));
        round.ops_allowed = Some(
            "semget-key,sem-stat,info,create-remove,getval,semop-nowait,timed-wait,ipc-stat".into(),
        );
        run_users(&mut round, &[false, true], 60);
        findings.extend(round.finish().findings);
    }
    fail_with("corrupt_claims_and_hints", &findings);
}

/// The limits file damaged (its owner may write it; nobody else can): a
/// process that opens the namespace after the damage cannot (EUCLEAN), and
/// nobody crashes or hangs. (Version 0 means "being created": an opener
/// waits for it, bounded, then, the file being its own uid's, treats it as
/// a creator's leftover and makes a new one.) (Was: the registry's header.)
#[test]
fn damaged_limits_file_new_openers_get_errors() {
    let _g = serial();
    let mut findings = Vec::new();
    let lim = |f: &str| match f {
        "magic" => 0,
        "version" => layout::LIMITS_VERSION_OFF,
        "semmni" => std::mem::offset_of!(layout::LimitsRecord, semmni),
        _ => unreachable!(),
    };
    let cases: &[(&str, &str, usize, u64)] = &[
        ("magic", "magic", 8, 0x1234),
        ("version 99", "version", 4, 99),
        ("version 0", "version", 4, 0),
        ("semmni 0", "semmni", 4, 0),
        ("semmni huge", "semmni", 4, u32::MAX as u64),
        ("semmni x 2", "semmni", 4, SEMMNI_MAX as u64 * 2),
        ("size", "size", 0, 1 << 20),
    ];
    for (i, &(what, field, size, v)) in cases.iter().enumerate() {
        let mut round = Round::new("badreghdr", 500 + i as u64, &[2]);
        round.start_users(&[false]);
        if !round.wait_progress(5) {
            findings.extend(round.finish().findings);
            continue;
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(limits_path(&round.ns))
            .expect("the limits file");
        if field == "size" {
            file.set_len(v).expect("grow the limits file");
        } else {
            use std::os::unix::fs::FileExt;
            file.write_all_at(&v.to_le_bytes()[..size], lim(field) as u64)
                .expect("damage the limits file");
        }
        round.log.push(format!("limits file {what}: -> {v:#x}"));
        // With version 0 every open waits 2 s for the "creator" first.
        round.max_ops = if what == "version 0" { 3 } else { 30 };
        round.nobody.push(true);
        round.spawn_user(1);
        let deadline = Instant::now() + Duration::from_secs(30);
        while round.users[1].poll().is_none() && Instant::now() < deadline && round.check() {
            std::thread::sleep(Duration::from_millis(2));
        }
        let rep = round.finish();
        if what != "version 0" {
            if let Some(new) = rep.per_worker.get(1) {
                if new.contains_key(&("open".to_string(), "ok".to_string())) {
                    findings.push(format!(
                        "WRONG RESULT: after limits file damage '{what}', a new process opened \
                         the namespace: {new:?}"
                    ));
                }
            }
        }
        findings.extend(rep.findings);
    }
    fail_with("damaged_limits_file_new_openers_get_errors", &findings);
}

/// The header's `id` is garbage too: the library must not take it for the
/// set's identity. Case 1: set A's header claims B's id; a process that had
/// A mapped removes A: B must be unaffected (its key and id still work for
/// a new process). Case 2: A's header id is 0x7fffffff / -1; a process that
/// had A mapped runs SETVAL, SETALL, SEM_STAT, semget(key), IPC_SET: no
/// panic, and no negative id returned.
#[test]
fn garbage_header_id_is_not_trusted() {
    let _g = serial();
    let mut findings = Vec::new();
    for (case, (what, ops2)) in [
        ("B's id", "rmid"),
        (
            "0x7fffffff",
            "setval,setall,sem-stat,semget-key,ipc-set,getval,timed-post",
        ),
        (
            "-1",
            "setval,setall,sem-stat,semget-key,ipc-set,getval,timed-post",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut round = Round::new("hdrid", 600 + case as u64, &[2, 2]);
        let (a, b) = (round.sets[0].info, round.sets[1].info);
        // A user maps A (phase 1), then waits for phase 2.
        round.user_sets = Some(vec![a]);
        round.ops_allowed = Some("getval".into());
        round.max_ops = 3;
        round.ops2 = Some((ops2.into(), if ops2 == "rmid" { 1 } else { 30 }));
        round.start_users(&[false]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while round.ctl.heartbeat(0).ops < 3 && round.check() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let id = match what {
            "B's id" => b.id as u32,
            "0x7fffffff" => 0x7fff_ffff,
            _ => u32::MAX,
        };
        let m = &round.sets[0].map;
        let old = m.load_u32(offset_of!(SetHeader, id));
        m.store_u32(offset_of!(SetHeader, id), id);
        round.log.push(format!(
            "set A header.id: {old:#x} -> {id:#x} ({what}); then {ops2}"
        ));
        round.ctl.set_phase(2);
        let deadline = Instant::now() + Duration::from_secs(30);
        while round.users[0].poll().is_none() && round.check() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        if case == 0 {
            // A new process uses B.
            round.user_sets = Some(vec![b]);
            round.ops_allowed = Some("semget-key,getval,ipc-stat,semop-nowait".into());
            round.max_ops = 12;
            round.ops2 = None;
            round.nobody.push(false);
            round.spawn_user(1);
            let deadline = Instant::now() + Duration::from_secs(30);
            while round.users[1].poll().is_none() && round.check() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let rep = round.finish();
        if case == 0 {
            if let Some(t) = rep.per_worker.get(1) {
                let broken: Vec<String> = t
                    .iter()
                    .filter(|((op, res), _)| op != "open" && res != "ok" && res != "EAGAIN")
                    .map(|((op, res), n)| format!("{op} -> {res} x{n}"))
                    .collect();
                if !broken.is_empty() {
                    findings.push(format!(
                        "WRONG RESULT: removing set A, whose header claimed set B's id, broke B for \
                         a new process: {broken:?} (A's removal: {:?})",
                        rep.per_worker.first()
                    ));
                }
            }
        }
        findings.extend(rep.findings);
    }
    fail_with("garbage_header_id_is_not_trusted", &findings);
}
