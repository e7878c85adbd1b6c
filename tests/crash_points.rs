//! Crash-point tests: a process is stopped after its k-th counted write to
//! a set (`shmsem::__private::crash_after`), for every k from 1 to the last
//! write of the update, for each kind of update made under the global lock:
//! a multi-op semop, the completion of queued operations, SETVAL, SETALL,
//! the application of a dead process's undo, IPC_RMID and IPC_SET. The next
//! process to take the lock must find the set exactly in the state before
//! the update or in the state after it, with nothing leaked: no queue slot,
//! no process-table entry, no undo adjustment of a dead process.
//!
//! A last test stops the lock holder with SIGSTOP instead and checks that a
//! live (if stopped) holder is never robbed.
//!
//! Run: `cargo test --test crash_points`.
// The ban on std atomics, fences and raw futex calls (clippy.toml) keeps them
// inside the library's shim; this program is not the library: its atomics
// are its own (process-local counters, or words of a mapping it made), and
// its raw futex and semtimedop calls are the competitors it measures.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use shmsem::__private::{crash_after, crash_countdown};
use shmsem::{Error, Op, SemaphoreSet, SetReport};
use support::*;

/// Exit code of a crashing child whose update finished before its k-th
/// write: k is past the end of the update.
const FINISHED: i32 = 99;

/// What must be exactly "before" or "after": everything a process can see of
/// the set, and the adjustments live helpers hold (by helper, not by pid).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Removed,
    Set {
        values: Vec<u16>,
        ncnt: Vec<u32>,
        zcnt: Vec<u32>,
        mode: u32,
        uid: u32,
        gid: u32,
        adjustments: Vec<Vec<(u16, i16)>>,
    },
}

/// One kind of update: how to prepare a set (and its helper processes), and
/// the update itself, run in a child that will be stopped.
struct Scenario {
    name: &'static str,
    initial: &'static [u16],
    /// Starts helpers (returned in a fixed order) once the set has its
    /// initial values; returns when they are in place.
    setup: fn(&SemaphoreSet, &mut Kids) -> Vec<Pid>,
    /// The update (in the child).
    action: fn(&SemaphoreSet),
}

/// Forces recovery (the sweep takes the lock) and reads the state.
fn observe(set: &SemaphoreSet, helpers: &[Pid]) -> Seen {
    let ns = set.namespace();
    match ns.sweep(set.id()) {
        Err(Error::Invalid) | Err(Error::Removed) => return Seen::Removed,
        r => r.expect("sweep"),
    }
    let r: SetReport = match ns.report(set.id()) {
        // Removed by the recovery the sweep ran.
        Err(Error::Invalid) => return Seen::Removed,
        r => r.expect("report"),
    };
    let st = set.status().expect("IPC_STAT");
    let adjustments = helpers
        .iter()
        .map(|h| {
            r.processes
                .iter()
                .find(|p| p.pid == h.as_raw())
                .map(|p| p.adjustments.clone())
                .unwrap_or_default()
        })
        .collect();
    Seen::Set {
        values: r.values,
        ncnt: r.ncnt,
        zcnt: r.zcnt,
        mode: st.perm.mode,
        uid: st.perm.uid,
        gid: st.perm.gid,
        adjustments,
    }
}

/// Kills the helpers, sweeps, and checks that nothing is left: every queue
/// slot free, no process in the table but this one, no adjustment.
fn check_no_leak(set: &SemaphoreSet, kids: &mut Kids, helpers: &[Pid], what: &str) {
    for &h in helpers {
        if kids.running(h).is_ok() {
            kids.signal(h, Signal::SIGKILL);
            kids.wait(h, what);
        }
    }
    let ns = set.namespace();
    if ns.sweep(set.id()).is_err() {
        return; // removed: its segment is gone with everything in it
    }
    let r = ns.report(set.id()).expect("report");
    assert_nothing_left(&r, what);
}

/// Runs the update once to completion in a child (which then SIGKILLs
/// itself, so that its exit is the same as in the crashed runs) and
/// returns the states before and after, and how many counted writes the
/// update made.
fn reference(env: &TestEnv, sc: &Scenario) -> (Seen, Seen, u64) {
    let mut kids = Kids::new();
    let set = env.set_with(sc.initial);
    let helpers = (sc.setup)(&set, &mut kids);
    let before = observe(&set, &helpers);
    let (mut rx, mut tx) = pipe();
    let action = sc.action;
    let s2 = set.clone();
    let child = kids.spawn(move || {
        const BIG: u64 = 1 << 40;
        crash_after(BIG, libc::SIGKILL);
        action(&s2);
        let n = BIG - crash_countdown();
        crash_after(0, 0);
        let _ = tx.write_all(&n.to_le_bytes());
        // SAFETY: raise has no preconditions; the child dies here, as the
        // crashed children do (so exit undo is the same).
        unsafe { libc::raise(libc::SIGKILL) };
        FINISHED
    });
    let mut buf = [0u8; 8];
    rx.read_exact(&mut buf).expect("write count from the child");
    kids.wait(child, "reference child");
    let writes = u64::from_le_bytes(buf);
    // Let helpers that the update completed finish.
    let after = observe(&set, &helpers);
    check_no_leak(
        &set,
        &mut kids,
        &helpers,
        &format!("{}: reference", sc.name),
    );
    let _ = set.remove();
    (before, after, writes)
}

fn run(sc: Scenario) {
    let env = TestEnv::new(sc.name, 300);
    let (before, after, writes) = reference(&env, &sc);
    assert!(
        writes > 1,
        "{}: the update made {writes} counted writes",
        sc.name
    );
    assert_ne!(
        before, after,
        "{}: the update changes nothing visible",
        sc.name
    );
    // Every k up to the end of the update in that run: the count can differ
    // a little from the reference run's (sleepers' sweeps move the
    // global-mode hysteresis, so a section may or may not mark every word).
    let mut saw = (0, 0);
    let mut k = 0;
    loop {
        k += 1;
        let what = format!("{}: crash after write {k} (reference: {writes})", sc.name);
        let mut kids = Kids::new();
        let set = env.set_with(sc.initial);
        let helpers = (sc.setup)(&set, &mut kids);
        let action = sc.action;
        let s2 = set.clone();
        let child = kids.spawn(move || {
            crash_after(k, libc::SIGKILL);
            action(&s2);
            FINISHED
        });
        let finished = match kids.wait(child, &what) {
            WaitStatus::Signaled(_, Signal::SIGKILL, _) => false,
            WaitStatus::Exited(_, FINISHED) => true,
            other => panic!("{what}: the child neither crashed nor finished: {other:?}"),
        };
        let seen = observe(&set, &helpers);
        let mut helpers = helpers;
        if seen == Seen::Removed {
            // Removed means every sleeper was told so.
            for h in helpers.drain(..) {
                kids.expect_exit(h, libc::EIDRM, &format!("{what}: sleeper of a removed set"));
            }
        }
        if seen == after {
            saw.1 += 1;
        } else if seen == before && !finished {
            saw.0 += 1;
        } else {
            panic!("{what}: recovered to neither state\n  before: {before:?}\n  after:  {after:?}\n  seen:   {seen:?}");
        }
        check_no_leak(&set, &mut kids, &helpers, &what);
        let _ = set.remove();
        if finished {
            break;
        }
        assert!(k < writes * 4 + 200, "{what}: the update never ends");
    }
    eprintln!(
        "{}: {k} crash points (the reference run made {writes} writes): \
         {} recovered to before, {} to after",
        sc.name, saw.0, saw.1
    );
}

/// A helper that runs `ops` (blocking) and exits with its result.
fn sleeper(set: &SemaphoreSet, kids: &mut Kids, ops: Vec<Op>) -> Pid {
    let s2 = set.clone();
    kids.spawn(move || rc(s2.op(&ops)))
}

/// A helper that runs `first` (which must not block), then blocks in
/// `then` for ever (until killed or completed).
fn holder(set: &SemaphoreSet, kids: &mut Kids, first: Vec<Op>, then: Vec<Op>) -> Pid {
    let s2 = set.clone();
    kids.spawn(move || {
        if s2.op(&first).is_err() {
            return CHECK_FAILED;
        }
        rc(s2.op(&then))
    })
}

#[test]
fn multi_op_semop() {
    run(Scenario {
        name: "multiop",
        initial: &[5, 5, 5],
        setup: |_, _| Vec::new(),
        action: |s| {
            s.op(&[Op::wait(0, 1).undo(), Op::post(1, 2), Op::wait(2, 3)])
                .expect("multi-op")
        },
    });
}

#[test]
fn completion_of_queued_operations() {
    run(Scenario {
        name: "completion",
        initial: &[0, 1],
        setup: |s, kids| {
            let a = sleeper(s, kids, vec![Op::wait(0, 2), Op::wait(1, 1)]);
            let b = sleeper(s, kids, vec![Op::zero(1), Op::post(0, 1)]);
            wait_ncnt(s, 0, 1);
            poll_until("the zero-waiter queued", || {
                s.namespace().report(s.id()).unwrap().pending.len() == 2
            });
            vec![a, b]
        },
        // Completes the first sleeper, whose op makes sem 1 zero, which
        // completes the second.
        action: |s| s.op(&[Op::post(0, 2)]).expect("V"),
    });
}

#[test]
fn setval() {
    run(Scenario {
        name: "setval",
        initial: &[3, 0],
        setup: |s, kids| {
            let h = holder(s, kids, vec![Op::wait(0, 1).undo()], vec![Op::wait(1, 1)]);
            wait_ncnt(s, 1, 1);
            let w = sleeper(s, kids, vec![Op::wait(0, 5)]);
            wait_ncnt(s, 0, 1);
            vec![h, w]
        },
        action: |s| s.set_value(0, 7).expect("SETVAL"),
    });
}

#[test]
fn setall() {
    run(Scenario {
        name: "setall",
        initial: &[3, 0],
        setup: |s, kids| {
            let h = holder(s, kids, vec![Op::wait(0, 1).undo()], vec![Op::wait(1, 1)]);
            wait_ncnt(s, 1, 1);
            let w = sleeper(s, kids, vec![Op::wait(0, 5)]);
            wait_ncnt(s, 0, 1);
            vec![h, w]
        },
        action: |s| s.set_values(&[9, 0]).expect("SETALL"),
    });
}

#[test]
fn undo_of_a_dead_process() {
    run(Scenario {
        name: "reap",
        initial: &[5, 5, 0],
        setup: |s, kids| {
            let d = holder(
                s,
                kids,
                vec![Op::wait(0, 1).undo(), Op::post(1, 1).undo()],
                vec![Op::wait(2, 1)],
            );
            wait_ncnt(s, 2, 1);
            // Dead, not yet swept: the update under test is its reaping.
            kids.signal(d, Signal::SIGKILL);
            kids.wait(d, "killing the undo holder");
            Vec::new()
        },
        // Touches a semaphore the dead process held an adjustment on: the
        // call sweeps (reaps it) first. Observing "before" reaps it too, so
        // both states hold its undo applied exactly once.
        action: |s| s.op(&[Op::post(0, 1)]).expect("V on a swept set"),
    });
}

#[test]
fn ipc_rmid() {
    run(Scenario {
        name: "rmid",
        initial: &[0, 1],
        setup: |s, kids| {
            let a = sleeper(s, kids, vec![Op::wait(0, 1)]);
            let b = sleeper(s, kids, vec![Op::zero(1)]);
            wait_ncnt(s, 0, 1);
            wait_zcnt(s, 1, 1);
            vec![a, b]
        },
        action: |s| s.remove().expect("IPC_RMID"),
    });
}

#[test]
fn ipc_set() {
    run(Scenario {
        name: "ipcset",
        initial: &[1],
        setup: |_, _| Vec::new(),
        // Every field changes, so a half-applied IPC_SET would show. (As
        // root, the caller keeps access whatever the new owner.)
        action: |s| s.set_permissions(1234, 5678, 0o640).expect("IPC_SET"),
    });
}

/// A holder stopped (SIGSTOP) in the middle of a multi-op update keeps the
/// lock however long it is stopped: another process waits for it, and both
/// finish once it continues.
#[test]
fn a_stopped_holder_is_never_robbed() {
    let env = TestEnv::new("stopped", 60);
    let mut kids = Kids::new();
    let set = env.set_with(&[5, 5, 5]);
    let s2 = set.clone();
    let holder = kids.spawn(move || {
        // Stop well inside the update: after the marks and the record.
        crash_after(12, libc::SIGSTOP);
        rc(s2.op(&[Op::wait(0, 1), Op::post(1, 2), Op::wait(2, 3)]))
    });
    poll_until("the holder stops", || process_state(holder) == Some('T'));
    let s3 = set.clone();
    let other = kids.spawn(move || rc(s3.op(&[Op::wait(0, 1), Op::wait(1, 1)])));
    // Several liveness checks' worth of time: the other process must still
    // be waiting for the lock, not have taken it from the stopped holder.
    let until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < until {
        assert!(
            kids.running(other).is_ok(),
            "the other process finished while the holder was stopped: robbed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    kids.signal(holder, Signal::SIGCONT);
    kids.expect_exit(holder, OK, "the holder, continued");
    kids.expect_exit(other, OK, "the other process");
    assert_eq!(vals(&set), vec![3, 6, 2]);
}
