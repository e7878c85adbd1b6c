//! Resource exhaustion (issue 3, item 7): a full pending-queue arena, a full
//! process table, SEMMNI sets, SEMMNS semaphores and a full /dev/shm. Each
//! must give its documented error (README difference 5, SEMANTICS.md A),
//! change nothing, and leave the set working for the processes already in
//! it: the sleepers that were queued before complete with the right values
//! once woken, and nothing (queue slot, process entry, unit) is lost.
//!
//! | test | limit | documented error |
//! |---|---|---|
//! | `queue_arena_full_*` | 1024 queue slots per set (a call takes one per `layout::SLOT_OPS` ops) | ENOMEM from a call that must sleep |
//! | `process_table_full_*` | 512 (or a smaller limit) processes per set that sleep, hold undo or take its lock | ENOMEM |
//! | `semmni_*` | SEMMNI sets per namespace | semget ENOSPC |
//! | `semmns_*` | SEMMNS semaphores per namespace | semget ENOSPC |
//! | `full_dev_shm_*` | the filesystem behind /dev/shm | semget ENOSPC (README "Segments"); nothing half-created |
//!
//! Every sleeper is a real process (or a thread of one, where that is the
//! point), every wait is bounded, and each test has a watchdog.
// The ban on std atomics, fences and raw futex calls (clippy.toml) keeps them
// inside the library's shim; this program is not the library: its atomics
// are its own (process-local counters, or words of a mapping it made), and
// its raw futex and semtimedop calls are the competitors it measures.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod support;

use std::time::Duration;

use nix::unistd::Pid;
use shmsem::layout::{IPC_CREAT, IPC_EXCL, IPC_PRIVATE, SEM_INFO, SLOT_OPS};
use shmsem::sysv::{SemctlArg, Seminfo};
use shmsem::{Error, Limits, Namespace, Op, SemaphoreSet};
use support::*;

/// A bounded wait for something that must not block: a call expected to
/// fail at once with ENOMEM gets this timeout, so that a call that wrongly
/// sleeps ends with EAGAIN instead of hanging.
const SHOULD_NOT_SLEEP: Duration = Duration::from_secs(10);

/// The call of `n` ops `wait(k % nsems, 1)`, k = 0..n (with SEM_UNDO if
/// `undo`). Its first op is on semaphore 0, so with every value at 0 it
/// sleeps there and counts in GETNCNT(0).
fn spread_call(n: usize, nsems: usize, undo: bool) -> Vec<Op> {
    (0..n)
        .map(|k| {
            let op = Op::wait((k % nsems) as u16, 1);
            if undo {
                op.undo()
            } else {
                op
            }
        })
        .collect()
}

/// What `calls` need from each semaphore to complete.
fn demand(calls: &[Vec<Op>], nsems: usize) -> Vec<u16> {
    let mut d = vec![0u16; nsems];
    for c in calls {
        for op in c {
            let b = op.as_sembuf();
            d[b.sem_num as usize] += (-b.sem_op) as u16;
        }
    }
    d
}

/// Waits until GETNCNT(0) is `n`; on a timeout the message says what was
/// seen and how busy the segment's tables are.
fn wait_ncnt0(set: &SemaphoreSet, n: u32, what: &str) {
    let start = std::time::Instant::now();
    loop {
        let seen = set.ncnt(0).expect("GETNCNT");
        if seen == n {
            return;
        }
        if start.elapsed() > LONG_DEADLINE {
            let nsems = set.status().expect("IPC_STAT").nsems as u32;
            let u = Usage::read(set.namespace(), set.id(), nsems);
            panic!(
                "{what}: GETNCNT(0) is still {seen} after {LONG_DEADLINE:?}, expected {n}; \
                 segment: {} queue slots busy, {} process entries active",
                u.busy_slots.len(),
                u.active_procs.len()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The namespace's SEM_INFO: (sets in use, semaphores in use).
fn usage_counts(ns: &Namespace) -> (i32, i32) {
    let mut info = Seminfo::default();
    ns.semctl(0, 0, SEM_INFO, SemctlArg::Info(&mut info))
        .expect("SEM_INFO");
    (info.semusz, info.semaem)
}

/// A set's segment must show nothing held once everybody but this process
/// is dead and swept.
fn assert_no_leaks(set: &SemaphoreSet, what: &str) {
    let nsems = set.status().expect("IPC_STAT").nsems as u32;
    let leaks = Usage::read(set.namespace(), set.id(), nsems).leaks(std::process::id() as i32);
    assert!(leaks.is_empty(), "{what}: leaks in the segment: {leaks:#?}");
}

// ------------------------------------------------------------ queue arena

/// Fills the 1024-slot arena exactly with sleeping processes (calls of
/// 50 × SLOT_OPS ops take 50 slots; half of them with SEM_UNDO), then checks
/// at the edge:
///
/// * a 2-slot call when one slot is left gets ENOMEM and gives back the slot
///   it had reserved (a 1-slot call then sleeps);
/// * with the arena full a sleeper gets ENOMEM, IPC_NOWAIT gets EAGAIN, and
///   calls that need no slot (wait-for-zero on zeros, a V then a P) work;
/// * nothing changed: values, GETNCNT;
/// * waking everybody completes every queued call with the right values,
///   the undo of the exited processes returns their units, and no slot is
///   left busy.
#[test]
fn queue_arena_full_gives_enomem_and_loses_nothing() {
    const NSEMS: usize = 4;
    let env = TestEnv::new("arena", 300);
    let slots = env.ns.limits().queue_slots as usize;
    assert_eq!(slots, 1024, "the default arena size");
    let set = SemaphoreSet::create_private(&env.ns, NSEMS as u16, 0o600).unwrap();
    let mut kids = Kids::long();

    // 20 calls of 50 slots = 1000, 2 of 11 slots = 22, and 1 single op:
    // 1023 slots.
    let mut calls: Vec<Vec<Op>> = (0..20)
        .map(|i| spread_call(50 * SLOT_OPS, NSEMS, i % 2 == 0))
        .collect();
    calls.push(spread_call(11 * SLOT_OPS, NSEMS, false));
    calls.push(spread_call(11 * SLOT_OPS - 3, NSEMS, true));
    calls.push(spread_call(1, NSEMS, false));
    let used: usize = calls.iter().map(|c| c.len().div_ceil(SLOT_OPS)).sum();
    assert_eq!(used, slots - 1);
    let mut sleepers: Vec<Pid> = Vec::new();
    for c in &calls {
        let (set, c) = (set.clone(), c.clone());
        sleepers.push(kids.spawn(move || rc(set.op(&c))));
    }
    wait_ncnt0(&set, calls.len() as u32, "1023 slots taken by sleepers");

    // One slot left: a call needing two gets ENOMEM.
    let two = spread_call(SLOT_OPS + 1, NSEMS, false);
    let p = {
        let (set, two) = (set.clone(), two.clone());
        kids.spawn(move || rc(set.op_timeout(&two, SHOULD_NOT_SLEEP)))
    };
    kids.expect_exit(p, libc::ENOMEM, "a 2-slot sleeper with 1 slot free");
    assert_eq!(set.values().unwrap(), vec![0; NSEMS], "values after ENOMEM");
    assert_eq!(
        set.ncnt(0).unwrap(),
        calls.len() as u32,
        "GETNCNT after ENOMEM"
    );

    // ... and did not keep the slot it had reserved: a 1-slot call sleeps.
    let last = spread_call(1, NSEMS, true);
    {
        let (set, last) = (set.clone(), last.clone());
        sleepers.push(kids.spawn(move || rc(set.op(&last))));
    }
    calls.push(last);
    wait_ncnt0(
        &set,
        calls.len() as u32,
        "the 1024th slot taken after a failed 2-slot call",
    );

    // Full. A sleeper gets ENOMEM; a call that needs no slot works.
    let p = {
        let set = set.clone();
        kids.spawn(move || {
            if set.op_timeout(&[Op::wait(0, 1)], SHOULD_NOT_SLEEP) != Err(Error::NoMemory) {
                return CHECK_FAILED + 1;
            }
            if set.op_timeout(&[Op::wait(1, 1), Op::wait(2, 1)], SHOULD_NOT_SLEEP)
                != Err(Error::NoMemory)
            {
                return CHECK_FAILED + 2;
            }
            if set.op(&[Op::wait(0, 1).nowait(), Op::wait(1, 1)]) != Err(Error::WouldBlock) {
                return CHECK_FAILED + 3;
            }
            if set.op(&[Op::zero(1), Op::zero(2)]) != Ok(()) {
                return CHECK_FAILED + 4;
            }
            if set.op(&[Op::post(3, 1).undo()]) != Ok(()) {
                return CHECK_FAILED + 5;
            }
            if set.op(&[Op::wait(3, 1).undo()]) != Ok(()) {
                return CHECK_FAILED + 6;
            }
            OK
        })
    };
    kids.expect_exit(p, OK, "calls against a full arena");
    assert_eq!(
        set.values().unwrap(),
        vec![0; NSEMS],
        "values after the probes"
    );
    assert_eq!(
        set.ncnt(0).unwrap(),
        calls.len() as u32,
        "GETNCNT after the probes"
    );

    // Wake everybody: exactly the demand, so every call completes.
    let need = demand(&calls, NSEMS);
    set.set_values(&need).expect("SETALL the demand");
    for pid in sleepers {
        kids.expect_exit(pid, OK, "a sleeper of the full arena");
    }
    // The SEM_UNDO sleepers have exited: their units come back. All of
    // them at once, in one call.
    let undo_calls: Vec<Vec<Op>> = calls
        .iter()
        .filter(|c| c[0].as_sembuf().sem_flg != 0)
        .cloned()
        .collect();
    let back = demand(&undo_calls, NSEMS);
    let take: Vec<Op> = (0..NSEMS)
        .map(|s| Op::wait(s as u16, back[s] as i16))
        .collect();
    assert_eq!(
        set.op_timeout(&take, Duration::from_secs(5)),
        Ok(()),
        "the exited SEM_UNDO sleepers' units {back:?} (values {:?})",
        set.values().unwrap()
    );
    assert_eq!(set.values().unwrap(), vec![0; NSEMS], "values at the end");
    assert_eq!(set.ncnt(0).unwrap(), 0);
    assert_no_leaks(&set, "after the full arena");
}

/// The same edge, with the sleepers being threads of a few processes
/// (threads share their process's table entry but each sleeps in its own
/// slot): 4 processes × 8 threads × calls of 32 slots = 1024 slots.
#[test]
fn queue_arena_full_with_threads_in_a_few_processes() {
    const NSEMS: usize = 4;
    const PROCS: usize = 4;
    const THREADS: usize = 8;
    let env = TestEnv::new("arena-thr", 300);
    let set = SemaphoreSet::create_private(&env.ns, NSEMS as u16, 0o600).unwrap();
    let mut kids = Kids::long();
    let call = spread_call(32 * SLOT_OPS, NSEMS, false);
    let mut procs = Vec::new();
    for p in 0..PROCS {
        let (set, call) = (set.clone(), call.clone());
        procs.push(kids.spawn(move || {
            let undo_call: Vec<Op> = call.iter().map(|o| o.undo()).collect();
            let hs: Vec<_> = (0..THREADS)
                .map(|t| {
                    let set = set.clone();
                    let c = if (p + t) % 2 == 0 {
                        call.clone()
                    } else {
                        undo_call.clone()
                    };
                    std::thread::spawn(move || set.op(&c))
                })
                .collect();
            let mut code = OK;
            for h in hs {
                match h.join() {
                    Ok(r) if code == OK => code = rc(r),
                    Ok(_) => {}
                    Err(_) => code = PANICKED,
                }
            }
            code
        }));
    }
    wait_ncnt0(
        &set,
        (PROCS * THREADS) as u32,
        "32 threads in 4 processes asleep (1024 slots)",
    );
    let p = {
        let set = set.clone();
        kids.spawn(move || rc(set.op_timeout(&[Op::wait(0, 1)], SHOULD_NOT_SLEEP)))
    };
    let busy = Usage::read(&env.ns, set.id(), NSEMS as u32)
        .busy_slots
        .len();
    kids.expect_exit(
        p,
        libc::ENOMEM,
        &format!(
            "a sleeper beyond the arena (with 32 calls of 32 slots asleep, {busy} of 1024 \
             slots were busy)"
        ),
    );
    let per_call = demand(&[call], NSEMS);
    let need: Vec<u16> = per_call
        .iter()
        .map(|d| d * (PROCS * THREADS) as u16)
        .collect();
    set.set_values(&need).expect("SETALL the demand");
    for pid in procs {
        kids.expect_exit(pid, OK, "a process whose threads slept");
    }
    // Half the threads used SEM_UNDO: their processes have exited.
    let back: Vec<i16> = per_call
        .iter()
        .map(|d| (*d as usize * PROCS * THREADS / 2) as i16)
        .collect();
    let take: Vec<Op> = (0..NSEMS).map(|s| Op::wait(s as u16, back[s])).collect();
    assert_eq!(
        set.op_timeout(&take, Duration::from_secs(5)),
        Ok(()),
        "the SEM_UNDO threads' units {back:?} (values {:?})",
        set.values().unwrap()
    );
    assert_eq!(set.values().unwrap(), vec![0; NSEMS]);
    assert_no_leaks(&set, "after the full arena (threads)");
}

// ---------------------------------------------------------- process table

/// A process SIGKILLed between claiming a free process-table entry
/// (FREE → CLAIMING) and making it ACTIVE leaves the entry CLAIMING, and
/// holds no lock on its byte any more. That entry must not be lost for
/// ever: with a table of two entries, one taken by the test process and
/// the other left so, a new process must still get in. (The death inside
/// the claim is written into the segment as it leaves it: no hook can stop
/// a process between those two stores. Found by the chaos test's leak
/// check, about one run in six.)
#[test]
fn claimer_killed_mid_claim_leaves_no_stuck_entry() {
    use shmsem::layout::{SetGeometry, PROC_CLAIMING, PROC_GEN_SHIFT, PROC_STATE_MASK};
    let limits = Limits {
        proc_slots: 2,
        ..Limits::default()
    };
    let env = TestEnv::with_limits("midclaim", 60, limits);
    let set = SemaphoreSet::create_private(&env.ns, 1, 0o600).unwrap();
    // The test process takes entry 0 (SETVAL takes the lock).
    set.set_value(0, 1).unwrap();
    let geo = SetGeometry::new(1, limits.proc_slots, limits.queue_slots);
    let map = RawMap::open(&set_path(env.ns.name(), set.id())).expect("map the set");
    let e1 = map.proc_entry(&geo, 1);
    let sg = e1.state_gen.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        sg & PROC_STATE_MASK,
        0,
        "entry 1 is free before the forged claim"
    );
    let gen = (sg >> PROC_GEN_SHIFT) + 1;
    e1.state_gen.store(
        (gen << PROC_GEN_SHIFT) | PROC_CLAIMING,
        std::sync::atomic::Ordering::SeqCst,
    );
    let mut kids = Kids::new();
    let p = {
        let set = set.clone();
        kids.spawn(move || {
            // SEM_UNDO needs an entry: the left-over claim is the only one.
            match set.op(&[Op::wait(0, 1).undo()]) {
                Ok(()) => OK,
                Err(Error::NoMemory) => CHECK_FAILED + 1,
                Err(_) => CHECK_FAILED + 2,
            }
        })
    };
    kids.expect_exit(p, OK, "a process after a claimer died mid-claim");
    // Its undo gave the unit back when it exited.
    assert_eq!(set.value(0).unwrap(), 1, "value after the newcomer's exit");
    set.remove().unwrap();
}

/// With a table of 64 entries: 63 sleeping processes with SEM_UNDO plus
/// the test process fill it. A 65th process gets ENOMEM for anything that
/// needs an entry (sleeping, SEM_UNDO) but can still do what needs none (a
/// fast-path V, GETVAL). When a sleeper is SIGKILLed its entry becomes free
/// and a new process gets in. Waking everybody completes them all, and
/// their undo gives every unit back when they exit.
#[test]
fn process_table_full_gives_enomem_and_recovers() {
    let limits = Limits {
        proc_slots: 64,
        ..Limits::default()
    };
    process_table_full(TestEnv::with_limits("proctab", 120, limits));
}

/// The same with the default table of 512 entries (511 sleeping processes).
#[test]
fn process_table_full_at_the_default_size() {
    let env = TestEnv::new("proctab512", 600);
    assert_eq!(env.ns.limits().proc_slots, 512, "the default table size");
    process_table_full(env);
}

fn process_table_full(env: TestEnv) {
    let entries = env.ns.limits().proc_slots;
    let set = SemaphoreSet::create_private(&env.ns, 3, 0o600).unwrap();
    // The test process takes its entry here (SETALL takes the lock).
    set.set_values(&[0, 0, 0]).unwrap();
    let mut kids = Kids::long();
    let sleep = |kids: &mut Kids| {
        let set = set.clone();
        kids.spawn(move || rc(set.op(&[Op::wait(0, 1).undo()])))
    };
    let n = entries - 1;
    let mut sleepers: Vec<Pid> = (0..n).map(|_| sleep(&mut kids)).collect();
    wait_ncnt0(&set, n, &format!("{n} sleeping processes"));

    let p = {
        let set = set.clone();
        kids.spawn(move || {
            if set.op_timeout(&[Op::wait(0, 1)], SHOULD_NOT_SLEEP) != Err(Error::NoMemory) {
                return CHECK_FAILED + 1;
            }
            if set.op(&[Op::post(1, 1).undo()]) != Err(Error::NoMemory) {
                return CHECK_FAILED + 2;
            }
            // No entry needed: a single V without undo, GETVAL.
            if set.op(&[Op::post(1, 1)]) != Ok(()) {
                return CHECK_FAILED + 3;
            }
            if set.value(1) != Ok(1) {
                return CHECK_FAILED + 4;
            }
            OK
        })
    };
    kids.expect_exit(p, OK, "a process beyond the table");
    assert_eq!(
        set.values().unwrap(),
        vec![0, 1, 0],
        "values after the process beyond the table"
    );
    assert_eq!(
        set.ncnt(0).unwrap(),
        n,
        "GETNCNT after the process beyond the table"
    );

    // A sleeper dies: its entry is swept and a new process gets in.
    let victim = sleepers.pop().unwrap();
    kids.kill(victim, "a sleeper");
    let newcomer = {
        let set = set.clone();
        kids.spawn(move || {
            let until = std::time::Instant::now() + LONG_DEADLINE;
            loop {
                match set.op(&[Op::wait(0, 1).undo()]) {
                    Err(Error::NoMemory) if std::time::Instant::now() < until => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    r => return rc(r),
                }
            }
        })
    };
    sleepers.push(newcomer);
    wait_ncnt0(&set, n, "a new process asleep in the dead sleeper's place");

    // Wake everybody; their undo returns the units when they exit.
    set.set_value(0, n as u16).expect("SETVAL");
    for pid in sleepers {
        kids.expect_exit(pid, OK, "a sleeper of the full table");
    }
    assert_eq!(
        set.op_timeout(&[Op::wait(0, n as i16)], Duration::from_secs(5)),
        Ok(()),
        "the exited sleepers' {n} units (value {:?})",
        set.value(0)
    );
    assert_eq!(set.values().unwrap(), vec![0, 1, 0], "values at the end");
    assert_eq!(set.ncnt(0).unwrap(), 0);
    assert_no_leaks(&set, "after the full process table");
}

// ----------------------------------------------------------------- SEMMNI

/// With SEMMNI = 4: the 5th set (keyed or private) gets ENOSPC and changes
/// nothing; looking up existing keys still works; the 4 sets keep working
/// (a sleeper with SEM_UNDO in another process); removing one makes room.
#[test]
fn semmni_limit_gives_enospc_and_existing_sets_keep_working() {
    let limits = Limits {
        semmni: 4,
        ..Limits::default()
    };
    let env = TestEnv::with_limits("semmni", 120, limits);
    let ns = &env.ns;
    let mut sets: Vec<SemaphoreSet> = (1..=3)
        .map(|k| SemaphoreSet::create(ns, 0x5e00 + k, 2, 0o600).unwrap())
        .collect();
    sets.push(SemaphoreSet::create_private(ns, 2, 0o600).unwrap());
    for (i, s) in sets.iter().enumerate() {
        s.set_values(&[i as u16 + 1, 0]).unwrap();
    }
    assert_eq!(usage_counts(ns), (4, 8));
    let files_before = ns_files(ns.name());

    assert_eq!(
        SemaphoreSet::create(ns, 0x5e99, 2, 0o600).map(|s| s.id()),
        Err(Error::NoSpace),
        "a 5th keyed set"
    );
    assert_eq!(
        ns.semget(IPC_PRIVATE, 1, 0o600),
        Err(Error::NoSpace),
        "a 5th private set"
    );
    assert_eq!(
        ns.semget(0x5e98, 1, IPC_CREAT | IPC_EXCL | 0o600),
        Err(Error::NoSpace),
        "a 5th set with IPC_EXCL"
    );
    // Existing keys are found, with or without IPC_CREAT.
    assert_eq!(ns.semget(0x5e01, 0, 0), Ok(sets[0].id()));
    assert_eq!(ns.semget(0x5e02, 2, IPC_CREAT | 0o600), Ok(sets[1].id()));
    assert_eq!(usage_counts(ns), (4, 8), "SEM_INFO after the failures");
    assert_eq!(
        ns_files(ns.name()),
        files_before,
        "segments after the failures"
    );
    for (i, s) in sets.iter().enumerate() {
        assert_eq!(s.values().unwrap(), vec![i as u16 + 1, 0]);
    }
    exercise(&sets[3], "the private set with SEMMNI reached");
    exercise(&sets[0], "a keyed set with SEMMNI reached");

    // Removing a set makes room for exactly one more.
    sets.remove(1).remove().unwrap();
    assert_eq!(usage_counts(ns), (3, 6));
    let s = SemaphoreSet::create(ns, 0x5e99, 1, 0o600).expect("a set after a removal");
    assert_eq!(
        ns.semget(IPC_PRIVATE, 1, 0o600),
        Err(Error::NoSpace),
        "full again"
    );
    exercise(&s, "the new set");
    sets.push(s);
    assert_eq!(usage_counts(ns), (4, 7));
}

// ----------------------------------------------------------------- SEMMNS

/// With SEMMNS = 10: a set that would exceed it gets ENOSPC and changes
/// nothing; the sets keep
/// working; removing one gives its semaphores back.
#[test]
fn semmns_limit_gives_enospc_and_existing_sets_keep_working() {
    let limits = Limits {
        semmns: 10,
        ..Limits::default()
    };
    let env = TestEnv::with_limits("semmns", 120, limits);
    let ns = &env.ns;
    let a = SemaphoreSet::create(ns, 0x5f01, 6, 0o600).unwrap();
    a.set_values(&[1, 2, 3, 4, 5, 6]).unwrap();
    let files_before = ns_files(ns.name());
    assert_eq!(
        SemaphoreSet::create(ns, 0x5f02, 5, 0o600).map(|s| s.id()),
        Err(Error::NoSpace),
        "6 + 5 > SEMMNS 10"
    );
    assert_eq!(ns.semget(IPC_PRIVATE, 5, 0o600), Err(Error::NoSpace));
    assert_eq!(usage_counts(ns), (1, 6), "SEM_INFO after the failures");
    assert_eq!(
        ns_files(ns.name()),
        files_before,
        "segments after the failures"
    );
    let b = SemaphoreSet::create(ns, 0x5f02, 4, 0o600).expect("6 + 4 = SEMMNS");
    assert_eq!(usage_counts(ns), (2, 10));
    assert_eq!(
        ns.semget(IPC_PRIVATE, 1, 0o600),
        Err(Error::NoSpace),
        "SEMMNS reached"
    );
    // A set whose key exists is found even with SEMMNS reached.
    assert_eq!(ns.semget(0x5f01, 6, IPC_CREAT | 0o600), Ok(a.id()));
    assert_eq!(a.values().unwrap(), vec![1, 2, 3, 4, 5, 6]);
    exercise(&a, "a set with SEMMNS reached");
    exercise(&b, "the other set with SEMMNS reached");
    a.remove().unwrap();
    assert_eq!(usage_counts(ns), (1, 4));
    let c = SemaphoreSet::create_private(ns, 6, 0o600).expect("6 after the removal");
    exercise(&c, "the set made after the removal");
    assert_eq!(usage_counts(ns), (2, 10));
}

/// Shows that `set` works for its users: a child sleeps on semaphore 0 with
/// SEM_UNDO, a V wakes it, its exit gives the unit back. Semaphore 0's
/// value is unchanged at the end.
fn exercise(set: &SemaphoreSet, what: &str) {
    let before = set.value(0).unwrap();
    set.set_value(0, 0).unwrap();
    let mut kids = Kids::long();
    let child = {
        let set = set.clone();
        kids.spawn(move || rc(set.op(&[Op::wait(0, 1).undo()])))
    };
    poll_until_within(LONG_DEADLINE, &format!("{what}: a sleeper"), || {
        set.ncnt(0).unwrap() == 1
    });
    set.op(&[Op::post(0, 1)]).unwrap();
    kids.expect_exit(child, OK, what);
    assert_eq!(
        set.op_timeout(&[Op::wait(0, 1)], Duration::from_secs(5)),
        Ok(()),
        "{what}: the exited sleeper's unit"
    );
    set.set_value(0, before).unwrap();
}

// ------------------------------------------------------------- /dev/shm

/// A full /dev/shm: in a private mount namespace (so the machine's real
/// /dev/shm is untouched) a 1 MiB tmpfs is mounted on /dev/shm; sets are
/// created until the filesystem is full to the page. The next semget gets
/// ENOSPC and leaves nothing behind (no file, no registry entry, SEM_INFO
/// unchanged); opening a new namespace on the full filesystem fails without
/// leaving a registry file; the sets made before keep working; removing one
/// (by a process that then exits) makes room.
///
/// Needs CAP_SYS_ADMIN (unshare + mount); without it the test says so and
/// checks nothing.
#[test]
fn full_dev_shm_gives_enospc_and_loses_nothing() {
    let env = TestEnv::new("devshm", 120);
    let mut kids = Kids::long();
    let child = kids.spawn(full_dev_shm_in_private_mount);
    match kids.wait(child, "the /dev/shm child") {
        nix::sys::wait::WaitStatus::Exited(_, OK) => {}
        nix::sys::wait::WaitStatus::Exited(_, c) if c == SKIPPED => {
            support::skipped("full_dev_shm: cannot unshare the mount namespace (not root?)")
        }
        other => panic!(
            "the /dev/shm child: {other:?} (codes: {})",
            describe_status(&other)
        ),
    }
    drop(env);
}

/// Exit code of the /dev/shm child when it cannot set up its tmpfs.
const SKIPPED: i32 = 77;

fn describe_status(st: &nix::sys::wait::WaitStatus) -> String {
    match st {
        nix::sys::wait::WaitStatus::Exited(_, c) => describe(*c),
        other => format!("{other:?}"),
    }
}

/// Panics (exit code PANICKED, message on stderr) on a failed check.
fn full_dev_shm_in_private_mount() -> i32 {
    // SAFETY: unshare(CLONE_NEWNS) only changes this (single-threaded,
    // forked) process's mount namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return SKIPPED;
    }
    let none = c"none";
    let root = c"/";
    // SAFETY: valid NUL-terminated strings; makes every mount of this new
    // namespace private, so nothing below propagates to the host.
    let r = unsafe {
        libc::mount(
            none.as_ptr(),
            root.as_ptr(),
            core::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            core::ptr::null(),
        )
    };
    assert_eq!(r, 0, "make / private: {}", std::io::Error::last_os_error());
    let shm = c"/dev/shm";
    let tmpfs = c"tmpfs";
    let opts = c"size=1m,mode=1777";
    // SAFETY: valid NUL-terminated strings; mounts a tmpfs over /dev/shm in
    // this private mount namespace only.
    let r = unsafe {
        libc::mount(
            none.as_ptr(),
            shm.as_ptr(),
            tmpfs.as_ptr(),
            0,
            opts.as_ptr().cast(),
        )
    };
    assert_eq!(r, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
    assert!(
        std::fs::read_dir("/dev/shm").unwrap().next().is_none(),
        "the private /dev/shm is empty"
    );

    // Fresh names: the namespace cache inherited from the parent must not
    // be hit.
    let pid = std::process::id();
    let limits = Limits {
        semmni: 64,
        ..Limits::default()
    };
    let ns = Namespace::open_with_limits(&format!("full-{pid}"), limits).unwrap();
    let mut sets: Vec<SemaphoreSet> = Vec::new();
    let err = loop {
        match SemaphoreSet::create_private(&ns, 8, 0o600) {
            Ok(s) => sets.push(s),
            Err(e) => break e,
        }
        assert!(sets.len() < 64, "1 MiB holds fewer than 64 sets of 156 KiB");
    };
    assert_eq!(err, Error::NoSpace, "semget on a full /dev/shm");
    assert!(!sets.is_empty(), "at least one set fits in 1 MiB");
    // Fill what is left to the page with tiny sets (one page each) of a
    // namespace with tiny tables. A short-lived process makes them, so
    // that their memory is not kept mapped here (README difference 7: a
    // process keeps the mapping of every set it used until it drops its
    // namespace handle, so removing a set it used frees no space).
    let tiny_limits = Limits {
        semmni: 256,
        queue_slots: 1,
        proc_slots: 1,
        ..Limits::default()
    };
    let tiny_name = format!("tiny-{pid}");
    let mut kids = Kids::long();
    let tiny_key = |i: i32| 0x7100 + i;
    let filler = kids.spawn(|| {
        let tiny = Namespace::open_with_limits(&tiny_name, tiny_limits).unwrap();
        for i in 0..255 {
            match tiny.semget(tiny_key(i), 1, IPC_CREAT | IPC_EXCL | 0o600) {
                Ok(_) => {}
                Err(Error::NoSpace) if i > 0 => return OK,
                Err(e) => {
                    eprintln!("tiny semget #{i}: {e}");
                    return CHECK_FAILED + 1;
                }
            }
        }
        CHECK_FAILED + 2 // the filesystem never filled up
    });
    kids.expect_exit(filler, OK, "filling /dev/shm to the page");
    let tiny = Namespace::open_with_limits(&tiny_name, tiny_limits).unwrap();
    let (tiny_sets, _) = usage_counts(&tiny);

    let n = sets.len();
    let files = ns_files(ns.name());
    // The limits and hints files, and per set its file and index claim.
    assert_eq!(
        files.len(),
        2 + 2 * n,
        "files of the full namespace: {files:?}"
    );
    assert_eq!(usage_counts(&ns), (n as i32, 8 * n as i32));

    // Full: ENOSPC for every kind of create, and nothing left behind.
    assert_eq!(
        ns.semget(0x7e57, 8, IPC_CREAT | IPC_EXCL | 0o600),
        Err(Error::NoSpace),
        "a keyed semget on a full /dev/shm"
    );
    assert_eq!(
        ns.semget(0x7e57, 0, 0),
        Err(Error::NotFound),
        "no half-made set"
    );
    assert_eq!(
        ns.semget(IPC_PRIVATE, 1, 0o600),
        Err(Error::NoSpace),
        "a private semget on a full /dev/shm"
    );
    assert_eq!(
        tiny.semget(IPC_PRIVATE, 1, 0o600),
        Err(Error::NoSpace),
        "a one-page set on a full /dev/shm"
    );
    assert_eq!(ns_files(ns.name()), files, "segments after the failures");
    assert_eq!(usage_counts(&ns), (n as i32, 8 * n as i32));
    assert_eq!(usage_counts(&tiny).0, tiny_sets);
    // A new namespace cannot be made either, and leaves no file.
    let other = format!("other-{pid}");
    match Namespace::open_with_limits(&other, tiny_limits) {
        Err(e) => assert_eq!(e, Error::NoSpace, "a new namespace on a full /dev/shm"),
        Ok(_) => panic!("a new namespace was created on a full /dev/shm"),
    }
    assert!(
        ns_files(&other).is_empty(),
        "half-made namespace: {:?}",
        ns_files(&other)
    );

    // The sets keep working for their users.
    for s in &sets {
        s.set_values(&[0, 1, 2, 3, 4, 5, 6, 7]).unwrap();
    }
    exercise(&sets[0], "a set on the full /dev/shm");
    let s = &sets[n - 1];
    s.op(&[Op::wait(7, 7).undo(), Op::post(0, 3)]).unwrap();
    assert_eq!(s.values().unwrap(), vec![3, 1, 2, 3, 4, 5, 6, 0]);
    s.op(&[Op::post(7, 7).undo(), Op::wait(0, 3)]).unwrap();

    // A set removed by a process that then exits makes room for one more.
    let remover = kids.spawn(|| {
        let tiny = Namespace::open_with_limits(&tiny_name, tiny_limits).unwrap();
        let id = tiny.semget(tiny_key(0), 0, 0).unwrap();
        rc(SemaphoreSet::from_id(&tiny, id).remove())
    });
    kids.expect_exit(remover, OK, "removing a tiny set");
    let maker = kids.spawn(|| {
        let tiny = Namespace::open_with_limits(&tiny_name, tiny_limits).unwrap();
        match tiny.semget(IPC_PRIVATE, 1, 0o600) {
            Ok(_) => OK,
            Err(e) => e.errno(),
        }
    });
    kids.expect_exit(maker, OK, "a one-page set after a removal");
    assert_eq!(
        usage_counts(&tiny).0,
        tiny_sets,
        "tiny sets after remove + create"
    );

    eprintln!(
        "full_dev_shm: 1 MiB tmpfs full after {n} sets of 8 and {tiny_sets} one-page sets; \
         ENOSPC for keyed, private and one-page sets and a new namespace; nothing left behind"
    );
    tiny.destroy().unwrap();
    ns.destroy().unwrap();
    assert!(
        std::fs::read_dir("/dev/shm").unwrap().next().is_none(),
        "the private /dev/shm is empty after destroy"
    );
    OK
}
