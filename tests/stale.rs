//! Stale state after crashes: a namespace whose processes were all killed,
//! at the worst moments, is usable by the next process with no manual
//! cleanup, and `Namespace::gc` removes what nobody can use any more.
//!
//! Run: `cargo test --test stale`.
// The ban on std atomics, fences and raw futex calls (clippy.toml) keeps them
// inside the library's shim; this program is not the library: its atomics
// are its own (process-local counters, or words of a mapping it made), and
// its raw futex and semtimedop calls are the competitors it measures.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod support;

use std::io::{Read, Write};

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use shmsem::__private::{crash_after, crash_countdown};
use shmsem::{Error, Op, SemaphoreSet};
use support::*;

/// Counted writes of an IPC_RMID of a set with no sleepers.
fn rmid_writes(env: &TestEnv, kids: &mut Kids) -> u64 {
    let set = env.set_with(&[1]);
    let (mut rx, mut tx) = pipe();
    let s2 = set.clone();
    let child = kids.spawn(move || {
        const BIG: u64 = 1 << 40;
        crash_after(BIG, libc::SIGKILL);
        s2.remove().expect("IPC_RMID");
        let n = BIG - crash_countdown();
        let _ = tx.write_all(&n.to_le_bytes());
        OK
    });
    let mut buf = [0u8; 8];
    rx.read_exact(&mut buf).expect("count");
    kids.expect_exit(child, OK, "reference remover");
    u64::from_le_bytes(buf)
}

/// Every process of a namespace is SIGKILLed: one holding units with
/// SEM_UNDO, one asleep in the queue, one in the middle of IPC_RMID (holding
/// the set's lock). The next process finds the key
/// free, the other set whole with its units back, and gc finds nothing
/// left to do but the dead processes' entries.
#[test]
fn a_namespace_whose_processes_all_died_is_usable() {
    let env = TestEnv::new("alldied", 60);
    let mut kids = Kids::new();
    let n = rmid_writes(&env, &mut kids);

    let keep = SemaphoreSet::create(&env.ns, 0x5eed, 2, 0o600).expect("create");
    keep.set_values(&[3, 0]).expect("SETALL");
    let doomed = SemaphoreSet::create(&env.ns, 0xd00d, 1, 0o600).expect("create");
    let k2 = keep.clone();
    let holder = kids.spawn(move || {
        k2.op(&[Op::wait(0, 2).undo()]).expect("take two");
        rc(k2.op(&[Op::wait(1, 1)]))
    });
    wait_ncnt(&keep, 1, 1);
    let k3 = keep.clone();
    let sleeper = kids.spawn(move || rc(k3.op(&[Op::wait(0, 5).undo()])));
    wait_ncnt(&keep, 0, 1);
    let d2 = doomed.clone();
    // Dies in the middle of IPC_RMID: at each of its writes in turn would
    // be the crash-point tests' job; here, at the middle one.
    let remover = kids.spawn(move || {
        crash_after(n / 2, libc::SIGKILL);
        rc(d2.remove())
    });
    match kids.wait(remover, "remover") {
        WaitStatus::Signaled(_, Signal::SIGKILL, _) => {}
        other => panic!("the remover was not killed mid-update: {other:?}"),
    }
    for p in [holder, sleeper] {
        kids.signal(p, Signal::SIGKILL);
        kids.wait(p, "killing everyone");
    }

    // The next process: the units are back, the queue is empty.
    let ns = &env.ns;
    let k = SemaphoreSet::open(ns, 0x5eed).expect("open the surviving set");
    k.op_timeout(&[Op::wait(0, 3)], std::time::Duration::from_secs(5))
        .expect("all three units back");
    assert_eq!((ncnt(&k, 0), ncnt(&k, 1)), (0, 0));
    // The doomed set is either whole or gone, never half.
    match SemaphoreSet::open(ns, 0xd00d) {
        Ok(d) => {
            assert_eq!(vals(&d), vec![0]);
            d.remove().expect("remove it for real");
        }
        Err(Error::NotFound) => {}
        Err(e) => panic!("the doomed set is neither whole nor gone: {e}"),
    }
    SemaphoreSet::create(ns, 0xd00d, 1, 0o600).expect("its key is free again");
    let r = ns.gc().expect("gc");
    assert_eq!((r.stale_entries, r.orphan_segments), (0, 0), "{r:?}");
    let report = ns.report(k.id()).expect("report");
    let me = std::process::id() as i32;
    assert!(
        report.processes.iter().all(|p| p.pid == me),
        "dead processes left after gc: {:?}",
        report.processes
    );
}

/// A remover killed after its last write to the set but before it freed the
/// id leaves the names (key and index claims, file) of a removed set; and a
/// creator killed after making the file leaves a file nobody names. Both
/// are cleaned: the names by the next semget of its key (or gc), the file
/// by gc.
#[test]
fn gc_removes_what_half_done_removals_leave() {
    let env = TestEnv::new("gcstale", 60);
    let mut kids = Kids::new();
    let n = rmid_writes(&env, &mut kids);
    let ns = &env.ns;
    for via_gc in [false, true] {
        let set = SemaphoreSet::create(ns, 0xabc, 1, 0o600).expect("create");
        let s2 = set.clone();
        let remover = kids.spawn(move || {
            crash_after(n, libc::SIGKILL);
            rc(s2.remove())
        });
        match kids.wait(remover, "remover") {
            WaitStatus::Signaled(_, Signal::SIGKILL, _) => {}
            other => panic!("the remover was not killed: {other:?}"),
        }
        assert_eq!(set.value(0), Err(Error::Invalid), "the set is removed");
        if via_gc {
            let r = ns.gc().expect("gc");
            assert_eq!(r.stale_entries, 1, "{r:?}");
        }
        let again = SemaphoreSet::create(ns, 0xabc, 1, 0o600).expect("the key is free");
        again.remove().expect("remove");
    }
    // A set file of this namespace that no index claim names (its
    // creation lock free: a creator that died before it claimed an index).
    let orphan = format!("/dev/shm/shmsem.{}.s.7.42", ns.name());
    std::fs::write(&orphan, b"left by a dead creator").expect("write the orphan");
    let r = ns.gc().expect("gc");
    assert_eq!(r.orphan_segments, 1, "{r:?}");
    assert!(!std::path::Path::new(&orphan).exists());
}
