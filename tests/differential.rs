//! Differential tests: the kernel is the oracle.
//!
//! Every call is made on the kernel's System V semaphores and on shmsem (in
//! a namespace of its own), and the two must agree on every return value and
//! errno, and then on the full observable state of every set (GETALL, GETVAL,
//! GETPID, GETNCNT, GETZCNT per semaphore; IPC_STAT's key, nsems, mode, uid,
//! gid, cuid, cgid; otime/ctime only as "zero or not" and "changed or not").
//! Ids, sequence numbers and exact times are never compared.
//!
//! The kernel's sets are made with IPC_PRIVATE or with keys checked to be
//! unused, and are removed at the end of each test (also on failure).
//! Checks that need another process (exit undo, another user) fork a child
//! that runs the calls on both sides and reports over a pipe; the
//! permission tests also run the test binary again as a new process of
//! uid/gid 65534 (no inherited mapping). Tests that fork hold a lock that
//! keeps every other test of this binary out of library calls meanwhile.
//!
//! Run: `cargo test --test differential` (as root: the permission tests
//! need a child that becomes uid/gid 65534; they are skipped otherwise).
//! Tests marked `#[ignore]` check a difference listed in README.md
//! ("Differences from the kernel"); `-- --include-ignored` runs them too,
//! and they fail until the difference is gone.
//! `DIFF_SELFTEST=1` runs everything kernel against kernel (the second side
//! uses other keys): it checks the harness and every expectation written
//! here against the oracle alone.
// The ban on std atomics, fences and raw futex calls (clippy.toml) keeps them
// inside the library's shim; this program is not the library: its atomics
// are its own (process-local counters, or words of a mapping it made), and
// its raw futex and semtimedop calls are the competitors it measures.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "differential/harness.rs"]
mod harness;
mod support;

use harness::*;
use shmsem::sysv::{
    Sembuf, Timespec, GETALL, GETNCNT, GETPID, GETVAL, GETZCNT, IPC_CREAT, IPC_EXCL, IPC_INFO,
    IPC_NOWAIT, IPC_PRIVATE, IPC_RMID, IPC_SET, IPC_STAT, SEMVMX, SEM_INFO, SEM_STAT, SEM_STAT_ANY,
    SEM_UNDO, SETALL, SETVAL,
};
use support::is_root;

const NW: i32 = IPC_NOWAIT;
const UN: i32 = SEM_UNDO;
const IDX_MASK: i32 = 0x7fff;

fn ts(sec: i64, nsec: i64) -> Option<Timespec> {
    Some(Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    })
}

/// A private set of `nsems` semaphores with mode 0o600 on both sides.
fn private(d: &mut Dual, nsems: i32) -> usize {
    d.semget(IPC_PRIVATE, nsems, IPC_CREAT | 0o600)
        .expect("creating a private set")
}

fn setall(d: &mut Dual, p: usize, vals: &[u16]) {
    d.ctl(p, 0, SETALL, Arg::SetAll(vals.to_vec()))
        .expect("SETALL");
}

fn getall(d: &mut Dual, p: usize) -> Vec<u16> {
    let n = d.pairs[p].nsems;
    d.ctl(p, 0, GETALL, Arg::GetAll(n))
        .expect("GETALL")
        .0
        .all
        .unwrap()
}

fn getpid_of(d: &mut Dual, p: usize, n: i32) -> (i32, i32) {
    let (k, s) = d.ctl(p, n, GETPID, Arg::None).expect("GETPID");
    (k.ret, s.ret)
}

fn rmid(d: &mut Dual, p: usize) {
    d.ctl(p, 0, IPC_RMID, Arg::None).expect("IPC_RMID");
}

// ===========================================================================
// B. semget
// ===========================================================================

#[test]
fn semget_nsems_range_is_checked_first() {
    let _g = shared();
    let mut d = Dual::new("getrange");
    assert_eq!(
        d.semget(IPC_PRIVATE, -1, IPC_CREAT | 0o600),
        Err(libc::EINVAL)
    );
    assert_eq!(
        d.semget(IPC_PRIVATE, 32001, IPC_CREAT | 0o600),
        Err(libc::EINVAL)
    );
    assert_eq!(d.semget(IPC_PRIVATE, i32::MIN, 0), Err(libc::EINVAL));
    let key = unused_kernel_key();
    d.semget(key, 2, IPC_CREAT | IPC_EXCL | 0o600).unwrap();
    // Even for an existing key, and even where CREAT|EXCL would say EEXIST.
    assert_eq!(
        d.semget(key, -1, IPC_CREAT | IPC_EXCL | 0o600),
        Err(libc::EINVAL)
    );
    assert_eq!(
        d.semget(key, 32001, IPC_CREAT | IPC_EXCL | 0o600),
        Err(libc::EINVAL)
    );
    assert_eq!(d.semget(key, -1, 0), Err(libc::EINVAL));
    // Within SEMMSL but above the set's size: EINVAL from step 5.
    assert_eq!(d.semget(key, 32000, 0), Err(libc::EINVAL));
    // A key that does not exist, with a bad nsems: EINVAL, not ENOENT.
    let free = unused_kernel_key();
    assert_eq!(d.semget(free, -5, 0), Err(libc::EINVAL));
    assert_eq!(d.semget(free, 32001, IPC_CREAT), Err(libc::EINVAL));
}

#[test]
fn semget_private_is_always_new() {
    let _g = shared();
    let mut d = Dual::new("getpriv");
    let a = d
        .semget(IPC_PRIVATE, 1, IPC_CREAT | IPC_EXCL | 0o600)
        .unwrap();
    let b = d
        .semget(IPC_PRIVATE, 1, IPC_CREAT | IPC_EXCL | 0o600)
        .unwrap();
    let c = d.semget(IPC_PRIVATE, 3, 0).unwrap(); // CREAT not even needed
    assert!(
        a != b && b != c && a != c,
        "IPC_PRIVATE gave an existing set"
    );
    assert_ne!(d.pairs[a].s, d.pairs[b].s);
    // Creating with nsems == 0 is EINVAL.
    assert_eq!(
        d.semget(IPC_PRIVATE, 0, IPC_CREAT | 0o600),
        Err(libc::EINVAL)
    );
    assert_eq!(d.semget(IPC_PRIVATE, 0, 0), Err(libc::EINVAL));
}

#[test]
fn semget_missing_key_and_creation() {
    let _g = shared();
    let mut d = Dual::new("getnew");
    let key = unused_kernel_key();
    assert_eq!(d.semget(key, 1, 0), Err(libc::ENOENT));
    assert_eq!(d.semget(key, 0, 0), Err(libc::ENOENT));
    assert_eq!(d.semget(key, 1, IPC_EXCL | 0o600), Err(libc::ENOENT));
    // Creating with nsems == 0.
    assert_eq!(d.semget(key, 0, IPC_CREAT | 0o600), Err(libc::EINVAL));
    // Mode is semflg & 0o777, whatever else is in semflg.
    let p = d.semget(key, 3, IPC_CREAT | IPC_NOWAIT | 0o7640).unwrap();
    let (k, s) = d.ctl(p, 0, IPC_STAT, Arg::Stat).unwrap();
    let (k, s) = (k.stat.unwrap(), s.stat.unwrap());
    assert_eq!(k.perm.mode, 0o640);
    assert_eq!(s.perm.mode, 0o640);
    assert_eq!(s.perm.key, key);
    assert_eq!(s.otime, 0, "new set: otime 0");
    assert_ne!(s.ctime, 0, "new set: ctime = now");
    assert_eq!(getall(&mut d, p), vec![0, 0, 0]);
}

#[test]
fn semget_existing_key() {
    let _g = shared();
    let mut d = Dual::new("getold");
    let key = unused_kernel_key();
    let p = d.semget(key, 2, IPC_CREAT | 0o600).unwrap();
    // EEXIST comes before the nsems comparison.
    assert_eq!(
        d.semget(key, 5, IPC_CREAT | IPC_EXCL | 0o600),
        Err(libc::EEXIST)
    );
    assert_eq!(d.semget(key, 0, IPC_CREAT | IPC_EXCL), Err(libc::EEXIST));
    // nsems above the set's size.
    assert_eq!(d.semget(key, 3, 0), Err(libc::EINVAL));
    assert_eq!(d.semget(key, 3, IPC_CREAT | 0o600), Err(libc::EINVAL));
    // nsems 0, 1, 2 all find the same set; CREAT without EXCL too.
    assert_eq!(d.semget(key, 0, 0), Ok(p));
    assert_eq!(d.semget(key, 1, 0o600), Ok(p));
    assert_eq!(d.semget(key, 2, IPC_CREAT | 0o600), Ok(p));
    assert_eq!(d.semget(key, 2, IPC_CREAT | 0o666), Ok(p));
    // The mode did not change by asking with another one.
    let (_, s) = d.ctl(p, 0, IPC_STAT, Arg::Stat).unwrap();
    assert_eq!(s.stat.unwrap().perm.mode, 0o600);
}

#[test]
fn semget_key_is_free_after_rmid() {
    let _g = shared();
    let mut d = Dual::new("getrm");
    let key = unused_kernel_key();
    let p = d.semget(key, 2, IPC_CREAT | 0o600).unwrap();
    d.semop(p, &[sb(0, 3, 0)]).unwrap();
    rmid(&mut d, p);
    assert_eq!(d.semget(key, 0, 0), Err(libc::ENOENT));
    let q = d.semget(key, 1, IPC_CREAT | 0o600).unwrap();
    assert_ne!(p, q, "a removed set came back");
    assert_ne!(
        d.pairs[p].s, d.pairs[q].s,
        "shmsem reused the removed set's id at once"
    );
    assert_eq!(getall(&mut d, q), vec![0]);
}

/// semget by another user, on sets whose mode grants that user's class
/// something.
#[test]
fn semget_permissions_other_user() {
    as_nobody(
        "semget_permissions_other_user",
        "getperm",
        ALL_MODES,
        |d| {
            let keys = [unused_kernel_key(), unused_kernel_key()];
            d.semget(keys[0], 2, IPC_CREAT | 0o604).unwrap();
            d.semget(keys[1], 1, IPC_CREAT | 0o606).unwrap();
            keys.to_vec()
        },
        |d, k| {
            let (kb, kd) = (k[0], k[1]);
            d.semget(kb, 0, 0).unwrap();
            // The requested access folds the three classes together.
            d.semget(kb, 0, 0o400).unwrap();
            d.semget(kb, 0, 0o004).unwrap();
            d.semget(kb, 0, 0o044).unwrap();
            d.semget(kb, 2, IPC_CREAT | 0o444).unwrap();
            assert_eq!(d.semget(kb, 0, 0o200), Err(libc::EACCES));
            assert_eq!(d.semget(kb, 0, 0o002), Err(libc::EACCES));
            assert_eq!(d.semget(kb, 1, IPC_CREAT | 0o600), Err(libc::EACCES));
            // nsems is compared before permissions, EEXIST before both.
            assert_eq!(d.semget(kb, 3, 0o600), Err(libc::EINVAL));
            assert_eq!(
                d.semget(kb, 3, IPC_CREAT | IPC_EXCL | 0o600),
                Err(libc::EEXIST)
            );
            d.semget(kd, 0, 0o666).unwrap();
            d.semget(kd, 1, IPC_CREAT | 0o600).unwrap();
        },
    );
}

fn semget_no_access(test: &str, modes: &[&str]) {
    as_nobody(
        test,
        "getnone",
        modes,
        |d| {
            let keys = [unused_kernel_key(), unused_kernel_key()];
            d.semget(keys[0], 2, IPC_CREAT | 0o600).unwrap();
            d.semget(keys[1], 1, IPC_CREAT | 0o640).unwrap();
            keys.to_vec()
        },
        |d, k| {
            let (ka, kc) = (k[0], k[1]);
            // Asking for nothing always works, even with no access at all.
            d.semget(ka, 0, 0).unwrap();
            d.semget(ka, 2, IPC_CREAT).unwrap();
            assert_eq!(d.semget(ka, 0, 0o400), Err(libc::EACCES));
            assert_eq!(d.semget(ka, 1, 0o600), Err(libc::EACCES));
            assert_eq!(d.semget(ka, 2, IPC_CREAT | 0o600), Err(libc::EACCES));
            // nsems is compared before permissions, EEXIST before both.
            assert_eq!(d.semget(ka, 5, 0o600), Err(libc::EINVAL));
            assert_eq!(
                d.semget(ka, 5, IPC_CREAT | IPC_EXCL | 0o600),
                Err(libc::EEXIST)
            );
            assert_eq!(d.semget(kc, 0, 0o040), Err(libc::EACCES));
            assert_eq!(d.semget(kc, 0, 0o004), Err(libc::EACCES));
            d.semget(kc, 0, 0).unwrap();
        },
    );
}

/// semget by another user whose class the mode grants nothing.
#[test]
fn semget_permissions_no_access() {
    semget_no_access("semget_permissions_no_access", FORK_MODES);
}

/// The same from a new process (no mapping inherited).
#[test]
fn semget_permissions_no_access_new_process() {
    semget_no_access("semget_permissions_no_access_new_process", EXEC_MODE);
}

// ===========================================================================
// C. semop / semtimedop argument checks
// ===========================================================================

#[test]
fn semop_e2big_comes_first() {
    let _g = shared();
    let mut d = Dual::new("e2big");
    let p = private(&mut d, 2);
    let (k, s) = (d.pairs[p].k, d.pairs[p].s);
    let many = vec![sb(0, 1, 0); 501];
    assert_eq!(d.semop_ids(-1, -1, &many), Err(libc::E2BIG));
    assert_eq!(d.semop(p, &many), Err(libc::E2BIG));
    let bad_sem = vec![sb(9, 1, 0); 501];
    assert_eq!(d.semop(p, &bad_sem), Err(libc::E2BIG));
    assert_eq!(d.semtimedop_ids(-1, -1, &many, ts(-1, 0)), Err(libc::E2BIG));
    assert_eq!(d.semtimedop_ids(k, s, &many, ts(0, -1)), Err(libc::E2BIG));
    // Exactly SEMOPM is fine.
    let max = vec![sb(1, 1, 0); 500];
    d.semop(p, &max).unwrap();
    assert_eq!(getall(&mut d, p), vec![0, 500]);
}

#[test]
fn semop_nsops_zero_and_negative_id() {
    let _g = shared();
    let mut d = Dual::new("nsops0");
    let p = private(&mut d, 1);
    assert_eq!(d.semop(p, &[]), Err(libc::EINVAL));
    assert_eq!(d.semop_ids(-1, -1, &[]), Err(libc::EINVAL));
    assert_eq!(d.semtimedop(p, &[], ts(-1, 0)), Err(libc::EINVAL));
    assert_eq!(d.semtimedop(p, &[], ts(0, 0)), Err(libc::EINVAL));
    assert_eq!(d.semop_ids(-1, -1, &[sb(0, 1, 0)]), Err(libc::EINVAL));
    assert_eq!(
        d.semop_ids(i32::MIN, i32::MIN, &[sb(0, 1, 0)]),
        Err(libc::EINVAL)
    );
    assert_eq!(
        d.semtimedop_ids(-1, -1, &[sb(0, 1, 0)], ts(0, 0)),
        Err(libc::EINVAL)
    );
    assert_eq!(getall(&mut d, p), vec![0]);
}

#[test]
fn semtimedop_invalid_timeout_even_if_completable() {
    let _g = shared();
    let mut d = Dual::new("badts");
    let p = private(&mut d, 2);
    for t in [
        ts(-1, 0),
        ts(0, -1),
        ts(0, 1_000_000_000),
        ts(5, 2_000_000_000),
        ts(i64::MIN, 0),
    ] {
        assert_eq!(d.semtimedop(p, &[sb(0, 1, 0)], t), Err(libc::EINVAL));
        assert_eq!(d.semtimedop(p, &[sb(0, 0, 0)], t), Err(libc::EINVAL));
        // The timeout is checked before the semaphore numbers.
        assert_eq!(d.semtimedop(p, &[sb(7, 1, 0)], t), Err(libc::EINVAL));
    }
    assert_eq!(getall(&mut d, p), vec![0, 0]);
    // Valid extremes.
    d.semtimedop(p, &[sb(0, 1, 0)], ts(0, 999_999_999)).unwrap();
    d.semtimedop(p, &[sb(0, 1, 0)], ts(0, 0)).unwrap();
    d.semtimedop(p, &[sb(1, 0, 0)], ts(i64::MAX, 0)).unwrap();
    assert_eq!(getall(&mut d, p), vec![2, 0]);
}

#[test]
fn semop_stale_and_unknown_ids() {
    let _g = shared();
    let mut d = Dual::new("stale");
    let p = private(&mut d, 1);
    d.semop(p, &[sb(0, 1, 0)]).unwrap();
    rmid(&mut d, p);
    // A removed set's id: EINVAL, not EIDRM.
    assert_eq!(d.semop(p, &[sb(0, 1, 0)]), Err(libc::EINVAL));
    assert_eq!(d.semop(p, &[sb(0, -1, NW)]), Err(libc::EINVAL));
    assert_eq!(d.semop(p, &[sb(5, 1, 0)]), Err(libc::EINVAL));
    assert_eq!(d.semtimedop(p, &[sb(0, 0, 0)], ts(0, 0)), Err(libc::EINVAL));
    // An id that was never handed out (top index, top seq).
    let unknown = 0x7fff_fffe;
    assert_eq!(
        d.semop_ids(unknown, unknown, &[sb(0, 1, 0)]),
        Err(libc::EINVAL)
    );
    // A live set's index with a wrong sequence number.
    let q = private(&mut d, 1);
    let (k, s) = (d.pairs[q].k, d.pairs[q].s);
    let (k2, s2) = (k ^ (1 << 20), s ^ (1 << 20));
    assert_eq!(d.semop_ids(k2, s2, &[sb(0, 1, 0)]), Err(libc::EINVAL));
    assert_eq!(getall(&mut d, q), vec![0]);
}

#[test]
fn semop_efbig() {
    let _g = shared();
    let mut d = Dual::new("efbig");
    let p = private(&mut d, 3);
    assert_eq!(d.semop(p, &[sb(3, 1, 0)]), Err(libc::EFBIG));
    assert_eq!(d.semop(p, &[sb(u16::MAX, 1, 0)]), Err(libc::EFBIG));
    // The largest sem_num is checked before any op runs: before EAGAIN and ERANGE.
    assert_eq!(d.semop(p, &[sb(0, -1, NW), sb(3, 1, 0)]), Err(libc::EFBIG));
    d.ctl(p, 1, SETVAL, Arg::Val(SEMVMX)).unwrap();
    assert_eq!(d.semop(p, &[sb(1, 1, 0), sb(4, 0, 0)]), Err(libc::EFBIG));
    assert_eq!(d.semop(p, &[sb(2, 1, UN), sb(3, 0, UN)]), Err(libc::EFBIG));
    assert_eq!(getall(&mut d, p), vec![0, SEMVMX as u16, 0]);
}

#[test]
fn semtimedop_zero_timeout_on_blocking_op_is_eagain() {
    let _g = shared();
    let mut d = Dual::new("ts0");
    let p = private(&mut d, 2);
    d.ctl(p, 1, SETVAL, Arg::Val(2)).unwrap();
    assert_eq!(
        d.semtimedop(p, &[sb(0, -1, 0)], ts(0, 0)),
        Err(libc::EAGAIN)
    );
    assert_eq!(d.semtimedop(p, &[sb(1, 0, 0)], ts(0, 0)), Err(libc::EAGAIN));
    assert_eq!(
        d.semtimedop(p, &[sb(0, -1, UN)], ts(0, 0)),
        Err(libc::EAGAIN)
    );
    assert_eq!(
        d.semtimedop(p, &[sb(0, 1, UN), sb(1, -3, 0)], ts(0, 0)),
        Err(libc::EAGAIN)
    );
    // Nothing was left behind: no waiter counts, no values, no sempid.
    assert_eq!(getall(&mut d, p), vec![0, 2]);
    // Completable with a zero timeout.
    d.semtimedop(p, &[sb(1, -2, 0), sb(0, 0, 0)], ts(0, 0))
        .unwrap();
    assert_eq!(getall(&mut d, p), vec![0, 0]);
}

// ===========================================================================
// D. What an operation does (IPC_NOWAIT only, nothing blocks)
// ===========================================================================

#[test]
fn duplicate_sem_nums_see_each_other() {
    let _g = shared();
    let mut d = Dual::new("dups");
    let p = private(&mut d, 1);
    d.ctl(p, 0, SETVAL, Arg::Val(1)).unwrap();
    d.semop(p, &[sb(0, 1, 0), sb(0, -2, 0)]).unwrap();
    assert_eq!(getall(&mut d, p), vec![0]);
    assert_eq!(d.semop(p, &[sb(0, 1, 0), sb(0, 0, NW)]), Err(libc::EAGAIN));
    assert_eq!(d.semop(p, &[sb(0, -1, NW), sb(0, 1, 0)]), Err(libc::EAGAIN));
    d.semop(p, &[sb(0, 1, 0), sb(0, -1, NW), sb(0, 0, NW)])
        .unwrap();
    d.semop(
        p,
        &[
            sb(0, 3, 0),
            sb(0, -1, 0),
            sb(0, -1, 0),
            sb(0, -1, 0),
            sb(0, 0, 0),
        ],
    )
    .unwrap();
    assert_eq!(getall(&mut d, p), vec![0]);
}

#[test]
fn first_failing_op_decides() {
    let _g = shared();
    let mut d = Dual::new("first");
    let p = private(&mut d, 3);
    d.ctl(p, 1, SETVAL, Arg::Val(SEMVMX)).unwrap();
    assert_eq!(d.semop(p, &[sb(0, -1, NW), sb(1, 1, 0)]), Err(libc::EAGAIN));
    assert_eq!(d.semop(p, &[sb(1, 1, 0), sb(0, -1, NW)]), Err(libc::ERANGE));
    assert_eq!(d.semop(p, &[sb(1, 0, NW), sb(1, 1, 0)]), Err(libc::EAGAIN));
    assert_eq!(
        d.semop(p, &[sb(2, 5, 0), sb(1, 1, NW), sb(0, -1, NW)]),
        Err(libc::ERANGE)
    );
    // IPC_NOWAIT is per op: a later op's flag does not matter if an earlier
    // op already fails with ERANGE; and a positive op never blocks.
    assert_eq!(d.semop(p, &[sb(2, 1, NW), sb(1, 1, NW)]), Err(libc::ERANGE));
    assert_eq!(getall(&mut d, p), vec![0, SEMVMX as u16, 0]);
}

#[test]
fn erange_over_semvmx() {
    let _g = shared();
    let mut d = Dual::new("erange");
    let p = private(&mut d, 2);
    d.semop(p, &[sb(0, i16::MAX, 0)]).unwrap();
    assert_eq!(d.semop(p, &[sb(0, 1, 0)]), Err(libc::ERANGE));
    assert_eq!(d.semop(p, &[sb(0, 1, NW)]), Err(libc::ERANGE));
    assert_eq!(
        d.semop(p, &[sb(1, i16::MAX, 0), sb(1, 1, 0)]),
        Err(libc::ERANGE)
    );
    d.semop(p, &[sb(0, -1, 0), sb(0, 1, 0)]).unwrap();
    // A decrement larger than the value blocks (here: EAGAIN), never wraps.
    assert_eq!(d.semop(p, &[sb(0, i16::MIN, NW)]), Err(libc::EAGAIN));
    d.semop(p, &[sb(0, -i16::MAX, NW)]).unwrap();
    d.semop(
        p,
        &[sb(1, i16::MAX, 0), sb(1, -i16::MAX, 0), sb(1, i16::MAX, 0)],
    )
    .unwrap();
    assert_eq!(getall(&mut d, p), vec![0, SEMVMX as u16]);
}

#[test]
fn nothing_changes_on_failure() {
    let _g = shared();
    let mut d = Dual::new("nochange");
    let p = private(&mut d, 3);
    setall(&mut d, p, &[1, 2, 0]);
    for ops in [
        vec![sb(0, 5, 0), sb(1, 3, 0), sb(2, -1, NW)],
        vec![sb(0, -1, UN), sb(1, -2, UN), sb(2, 0, NW), sb(2, -1, NW)],
        vec![sb(0, 1, UN), sb(1, i16::MAX, UN)],
        vec![sb(0, -1, 0), sb(0, -1, NW)],
        vec![sb(2, 0, 0), sb(0, 0, NW)],
    ] {
        let r = d.semop(p, &ops);
        assert!(r.is_err(), "{ops:?} succeeded");
    }
    assert_eq!(getall(&mut d, p), vec![1, 2, 0]);
}

#[test]
fn sempid_and_otime_for_every_named_semaphore() {
    let _g = exclusive();
    let mut d = Dual::new("sempid");
    let p = private(&mut d, 4);
    setall(&mut d, p, &[0, 0, 3, 0]);
    let child = fork_child(|_io| {
        d.ctx.push_str(" [child]");
        // Zero ops count as "named": sempid set for 0, 1, 2 but not 3.
        d.semop(p, &[sb(0, 1, 0), sb(1, 0, NW), sb(2, -1, 0), sb(2, 1, 0)])
            .unwrap();
        // A failing call sets nothing.
        assert_eq!(
            d.semop(p, &[sb(3, 0, NW), sb(3, -1, NW)]),
            Err(libc::EAGAIN)
        );
    });
    let cpid = child.pid;
    child.finish();
    d.check_state();
    for n in 0..3 {
        assert_eq!(getpid_of(&mut d, p, n), (cpid, cpid), "GETPID({n})");
    }
    // Semaphore 3 keeps the pid of the parent's SETALL.
    let me = std::process::id() as i32;
    assert_eq!(getpid_of(&mut d, p, 3), (me, me));
    // A zero-only call also sets sempid and otime.
    let q = private(&mut d, 2);
    let child = fork_child(|_io| {
        d.semop(q, &[sb(1, 0, NW)]).unwrap();
    });
    let cpid = child.pid;
    child.finish();
    d.check_state();
    assert_eq!(getpid_of(&mut d, q, 1), (cpid, cpid));
    assert_eq!(getpid_of(&mut d, q, 0), (0, 0));
    let (k, s) = d.ctl(q, 0, IPC_STAT, Arg::Stat).unwrap();
    assert_ne!(k.stat.unwrap().otime, 0);
    assert_ne!(
        s.stat.unwrap().otime,
        0,
        "a zero-op semop did not set otime"
    );
}

// ===========================================================================
// E. SEM_UNDO
// ===========================================================================

#[test]
fn undo_adjustment_out_of_range_is_erange() {
    let _g = shared();
    let mut d = Dual::new("undorange");
    let p = private(&mut d, 2);
    // adj = -32767, then -32768 (the limit), then -32769: ERANGE.
    d.semop(p, &[sb(0, i16::MAX, UN)]).unwrap();
    d.semop(p, &[sb(0, -i16::MAX, 0)]).unwrap();
    d.semop(p, &[sb(0, 1, UN)]).unwrap();
    d.semop(p, &[sb(0, -1, 0)]).unwrap();
    assert_eq!(d.semop(p, &[sb(0, 1, UN)]), Err(libc::ERANGE));
    assert_eq!(d.semop(p, &[sb(0, 1, UN | NW)]), Err(libc::ERANGE));
    // ...and within one call, committed only as a whole.
    assert_eq!(d.semop(p, &[sb(1, 2, UN), sb(0, 1, UN)]), Err(libc::ERANGE));
    // The range is checked op by op: an intermediate -32769 fails even
    // though the call's net adjustment would be back in range.
    assert_eq!(
        d.semop(p, &[sb(0, 1, UN), sb(0, -1, UN)]),
        Err(libc::ERANGE)
    );
    d.semop(p, &[sb(0, 0, UN), sb(1, 1, UN), sb(1, -1, UN)])
        .unwrap();
    // Positive side: adj +32767 is the limit, +32768 is ERANGE.
    d.ctl(p, 1, SETVAL, Arg::Val(SEMVMX)).unwrap();
    d.semop(p, &[sb(1, -i16::MAX, UN)]).unwrap();
    d.semop(p, &[sb(1, i16::MAX, 0)]).unwrap();
    assert_eq!(d.semop(p, &[sb(1, -1, UN)]), Err(libc::ERANGE));
    assert_eq!(d.semop(p, &[sb(1, -1, UN | NW)]), Err(libc::ERANGE));
    // SETVAL clears this process's adjustment of that semaphore.
    d.ctl(p, 1, SETVAL, Arg::Val(5)).unwrap();
    d.semop(p, &[sb(1, -1, UN)]).unwrap();
    // SETALL clears all of them.
    setall(&mut d, p, &[0, 0]);
    d.semop(p, &[sb(0, 1, UN)]).unwrap();
    assert_eq!(getall(&mut d, p), vec![1, 0]);
}

/// Forks a child that runs `ops` (each must give the listed result) and
/// exits, then compares the state.
fn child_ops(d: &mut Dual, calls: &[(usize, Vec<Sembuf>, R<()>)]) -> i32 {
    let child = fork_child(|io| {
        d.ctx.push_str(" [child]");
        let n0 = d.log.len();
        for (p, ops, want) in calls {
            assert_eq!(&d.semop(*p, ops), want, "{}", show_sops(ops));
        }
        io.log(&d.log[n0..]);
    });
    let pid = child.pid;
    let lines = child.finish();
    d.log.extend(lines);
    d.check_state();
    pid
}

#[test]
fn undo_applied_at_exit() {
    let _g = exclusive();
    let mut d = Dual::new("undoexit");
    let p = private(&mut d, 3);
    setall(&mut d, p, &[0, 3, 0]);
    let cpid = child_ops(
        &mut d,
        &[(p, vec![sb(0, 2, UN), sb(1, -1, UN), sb(2, 1, 0)], Ok(()))],
    );
    assert_eq!(getall(&mut d, p), vec![0, 3, 1]);
    assert_eq!(getpid_of(&mut d, p, 0), (cpid, cpid));
    assert_eq!(getpid_of(&mut d, p, 1), (cpid, cpid));
    // Net adjustment zero: no undo at exit, sempid from the op itself.
    let cpid2 = child_ops(
        &mut d,
        &[(
            p,
            vec![sb(0, 5, UN), sb(0, -5, UN), sb(2, 1, UN), sb(2, -1, UN)],
            Ok(()),
        )],
    );
    assert_eq!(getall(&mut d, p), vec![0, 3, 1]);
    assert_eq!(getpid_of(&mut d, p, 0), (cpid2, cpid2));
    // A failing call commits no adjustment.
    child_ops(
        &mut d,
        &[(p, vec![sb(0, 1, UN), sb(1, -4, UN | NW)], Err(libc::EAGAIN))],
    );
    assert_eq!(getall(&mut d, p), vec![0, 3, 1]);
    // Wait-for-zero with SEM_UNDO leaves the adjustment alone.
    child_ops(&mut d, &[(p, vec![sb(0, 0, UN | NW)], Ok(()))]);
    assert_eq!(getall(&mut d, p), vec![0, 3, 1]);
}

/// The kernel makes a process's undo record for a set on its first
/// SEM_UNDO op, even one that fails (E1), and at exit updates otime for
/// every set it has a record for, even when every adjustment is zero.
#[test]
fn exit_with_undo_record_sets_otime() {
    let _g = exclusive();
    let mut d = Dual::new("undootime");
    let a = private(&mut d, 2);
    let b = private(&mut d, 2);
    let c = private(&mut d, 2);
    let e = private(&mut d, 2);
    child_ops(
        &mut d,
        &[
            // EAGAIN.
            (a, vec![sb(0, -1, UN | NW)], Err(libc::EAGAIN)),
            // EFBIG.
            (b, vec![sb(0, 1, UN), sb(5, 1, 0)], Err(libc::EFBIG)),
            // ERANGE.
            (c, vec![sb(0, i16::MAX, 0), sb(0, 1, UN)], Err(libc::ERANGE)),
            // Net zero adjustment.
            (e, vec![sb(1, 1, UN), sb(1, -1, UN)], Ok(())),
        ],
    );
    for p in [a, b, c, e] {
        let (k, s) = d.ctl(p, 0, IPC_STAT, Arg::Stat).unwrap();
        let (k, s) = (k.stat.unwrap(), s.stat.unwrap());
        assert_eq!(
            (k.otime != 0, s.otime != 0),
            (true, true),
            "otime after exit"
        );
    }
}

#[test]
fn undo_at_exit_is_clamped() {
    let _g = exclusive();
    let mut d = Dual::new("undoclamp");
    let p = private(&mut d, 2);
    setall(&mut d, p, &[SEMVMX as u16, 0]);
    child_ops(
        &mut d,
        &[
            // sem 0: adj +1, back to SEMVMX without undo: exit would give SEMVMX+1.
            (p, vec![sb(0, -1, UN)], Ok(())),
            (p, vec![sb(0, 1, 0)], Ok(())),
            // sem 1: adj -3, back to 0 without undo: exit would give -3.
            (p, vec![sb(1, 3, UN)], Ok(())),
            (p, vec![sb(1, -3, 0)], Ok(())),
        ],
    );
    assert_eq!(getall(&mut d, p), vec![SEMVMX as u16, 0]);
    // Partly clamped: value 2, adj -5.
    setall(&mut d, p, &[0, 0]);
    child_ops(
        &mut d,
        &[
            (p, vec![sb(0, 5, UN)], Ok(())),
            (p, vec![sb(0, -3, 0)], Ok(())),
        ],
    );
    assert_eq!(getall(&mut d, p), vec![0, 0]);
}

#[test]
fn undo_not_inherited_by_fork() {
    let _g = exclusive();
    let mut d = Dual::new("undofork");
    let p = private(&mut d, 1);
    d.semop(p, &[sb(0, 2, UN)]).unwrap();
    child_ops(&mut d, &[(p, vec![sb(0, 1, 0)], Ok(()))]);
    assert_eq!(getall(&mut d, p), vec![3]);
    child_ops(&mut d, &[]);
    assert_eq!(getall(&mut d, p), vec![3]);
}

/// A child makes adjustments, waits while the parent runs `between`, then exits.
fn undo_with_parent_action(name: &str, between: impl FnOnce(&mut Dual, usize), want: &[u16]) {
    let _g = exclusive();
    let mut d = Dual::new(name);
    let p = private(&mut d, 3);
    setall(&mut d, p, &[1, 1, 1]);
    let mut child = fork_child(|io| {
        d.ctx.push_str(" [child]");
        d.semop(p, &[sb(0, 2, UN), sb(1, 3, UN), sb(2, -1, UN)])
            .unwrap();
        io.ready();
        io.wait_go();
    });
    child.expect_ready();
    d.check_state();
    between(&mut d, p);
    child.go();
    child.finish();
    d.check_state();
    assert_eq!(getall(&mut d, p), want);
}

#[test]
fn undo_cleared_by_setval() {
    undo_with_parent_action(
        "undosetval",
        |d, p| {
            d.ctl(p, 1, SETVAL, Arg::Val(10)).unwrap();
        },
        &[1, 10, 1],
    );
}

#[test]
fn undo_cleared_by_setall() {
    undo_with_parent_action(
        "undosetall",
        |d, p| {
            d.ctl(p, 0, SETALL, Arg::SetAll(vec![7, 8, 9])).unwrap();
        },
        &[7, 8, 9],
    );
}

#[test]
fn undo_not_cleared_by_ipc_set_or_failed_setval() {
    undo_with_parent_action(
        "undoipcset",
        |d, p| {
            d.ctl(
                p,
                0,
                IPC_SET,
                Arg::Set {
                    uid: 0,
                    gid: 0,
                    mode: 0o666,
                },
            )
            .unwrap();
            assert_eq!(d.ctl(p, 1, SETVAL, Arg::Val(-1)), Err(libc::ERANGE));
            assert_eq!(d.ctl(p, 7, SETVAL, Arg::Val(1)), Err(libc::EINVAL));
            assert_eq!(
                d.ctl(p, 0, SETALL, Arg::SetAll(vec![1, 40000, 1])),
                Err(libc::ERANGE)
            );
            d.semop(p, &[sb(0, 5, 0)]).unwrap();
        },
        // 1+2+5-2, 1+3-3, 1-1+1
        &[6, 1, 1],
    );
}

#[test]
fn undo_of_removed_set_is_skipped() {
    let _g = exclusive();
    let mut d = Dual::new("undorm");
    let a = private(&mut d, 1);
    let b = private(&mut d, 1);
    let mut child = fork_child(|io| {
        d.semop(a, &[sb(0, 2, UN)]).unwrap();
        d.semop(b, &[sb(0, 4, UN)]).unwrap();
        io.ready();
        io.wait_go();
    });
    child.expect_ready();
    d.check_state();
    rmid(&mut d, a);
    // A new set in between must not receive the old set's adjustments.
    let c = private(&mut d, 1);
    d.semop(c, &[sb(0, 6, 0)]).unwrap();
    child.go();
    child.finish();
    d.check_state();
    assert_eq!(getall(&mut d, b), vec![0]);
    assert_eq!(getall(&mut d, c), vec![6]);
}

#[test]
fn undo_of_two_children() {
    let _g = exclusive();
    let mut d = Dual::new("undotwo");
    let p = private(&mut d, 2);
    d.ctl(p, 0, SETVAL, Arg::Val(10)).unwrap();
    let mut c1 = fork_child(|io| {
        d.semop(p, &[sb(0, -3, UN), sb(1, 1, UN)]).unwrap();
        io.ready();
        io.wait_go();
    });
    c1.expect_ready();
    let mut c2 = fork_child(|io| {
        d.semop(p, &[sb(0, -4, UN), sb(1, 2, 0)]).unwrap();
        io.ready();
        io.wait_go();
    });
    c2.expect_ready();
    d.check_state();
    let pid2 = c2.pid;
    c2.go();
    c2.finish();
    d.check_state();
    assert_eq!(getall(&mut d, p), vec![7, 3]);
    assert_eq!(getpid_of(&mut d, p, 0), (pid2, pid2));
    let pid1 = c1.pid;
    c1.go();
    c1.finish();
    d.check_state();
    assert_eq!(getall(&mut d, p), vec![10, 2]);
    assert_eq!(getpid_of(&mut d, p, 1), (pid1, pid1));
}

// ===========================================================================
// F. semctl
// ===========================================================================

fn arg_for(cmd: i32, nsems: usize) -> Arg {
    match cmd {
        IPC_STAT | SEM_STAT | SEM_STAT_ANY => Arg::Stat,
        IPC_SET => Arg::Set {
            uid: 0,
            gid: 0,
            mode: 0o600,
        },
        GETALL => Arg::GetAll(nsems),
        SETALL => Arg::SetAll(vec![1; nsems]),
        IPC_INFO | SEM_INFO => Arg::Info,
        SETVAL => Arg::Val(1),
        _ => Arg::None,
    }
}

#[test]
fn semctl_negative_id_is_einval_for_every_cmd() {
    let _g = shared();
    let mut d = Dual::new("ctlneg");
    let p = private(&mut d, 2);
    for cmd in ALL_CMDS {
        for id in [-1, i32::MIN] {
            assert_eq!(
                d.ctl_ids(id, id, 0, cmd, arg_for(cmd, 2)).map(|_| ()),
                Err(libc::EINVAL),
                "{}",
                cmd_name(cmd)
            );
        }
    }
    // Even before SETVAL's range check.
    assert_eq!(
        d.ctl_ids(-1, -1, 0, SETVAL, Arg::Val(-1)).map(|_| ()),
        Err(libc::EINVAL)
    );
    assert_eq!(getall(&mut d, p), vec![0, 0]);
}

#[test]
fn semctl_unknown_cmd() {
    let _g = shared();
    let mut d = Dual::new("ctlcmd");
    let p = private(&mut d, 1);
    for cmd in [
        4,
        5,
        10,
        21,
        99,
        -1,
        0x100 | GETVAL,
        0x100 | IPC_STAT,
        0x100 | IPC_RMID,
    ] {
        assert_eq!(
            d.ctl(p, 0, cmd, Arg::None).map(|_| ()),
            Err(libc::EINVAL),
            "cmd {cmd}"
        );
    }
    // The set is still there.
    assert_eq!(getall(&mut d, p), vec![0]);
}

#[test]
fn setval_check_order() {
    let _g = shared();
    let mut d = Dual::new("setval");
    let p = private(&mut d, 2);
    let dead = private(&mut d, 2);
    rmid(&mut d, dead);
    let e = |r: R<(Out, Out)>| r.map(|_| ());
    // ERANGE before the lookup and before the semnum check.
    assert_eq!(e(d.ctl(dead, 0, SETVAL, Arg::Val(-1))), Err(libc::ERANGE));
    assert_eq!(
        e(d.ctl(dead, 0, SETVAL, Arg::Val(SEMVMX + 1))),
        Err(libc::ERANGE)
    );
    assert_eq!(
        e(d.ctl(p, 9, SETVAL, Arg::Val(SEMVMX + 1))),
        Err(libc::ERANGE)
    );
    assert_eq!(
        e(d.ctl(p, -1, SETVAL, Arg::Val(i32::MIN))),
        Err(libc::ERANGE)
    );
    assert_eq!(e(d.ctl(p, 0, SETVAL, Arg::Val(65536))), Err(libc::ERANGE));
    // Then the lookup, then semnum.
    assert_eq!(e(d.ctl(dead, 0, SETVAL, Arg::Val(1))), Err(libc::EINVAL));
    assert_eq!(e(d.ctl(p, 2, SETVAL, Arg::Val(1))), Err(libc::EINVAL));
    assert_eq!(e(d.ctl(p, -1, SETVAL, Arg::Val(1))), Err(libc::EINVAL));
    assert_eq!(e(d.ctl(p, 65536, SETVAL, Arg::Val(1))), Err(libc::EINVAL));
    assert_eq!(getall(&mut d, p), vec![0, 0]);
    // Extremes; sets sempid and ctime, not otime.
    d.ctl(p, 1, SETVAL, Arg::Val(SEMVMX)).unwrap();
    d.ctl(p, 0, SETVAL, Arg::Val(0)).unwrap();
    assert_eq!(getall(&mut d, p), vec![0, SEMVMX as u16]);
    let me = std::process::id() as i32;
    assert_eq!(getpid_of(&mut d, p, 1), (me, me));
    assert_eq!(getpid_of(&mut d, p, 0), (me, me));
    let (k, s) = d.ctl(p, 0, IPC_STAT, Arg::Stat).unwrap();
    assert_eq!(k.stat.unwrap().otime, 0);
    assert_eq!(s.stat.unwrap().otime, 0, "SETVAL set otime");
}

#[test]
fn get_commands_check_order() {
    let _g = shared();
    let mut d = Dual::new("getcmds");
    let p = private(&mut d, 3);
    let dead = private(&mut d, 3);
    rmid(&mut d, dead);
    for cmd in [GETVAL, GETPID, GETNCNT, GETZCNT] {
        for n in [-1, 3, 4, 65535, 65536, i32::MAX, i32::MIN] {
            assert_eq!(d.ctl(p, n, cmd, Arg::None).map(|_| ()), Err(libc::EINVAL));
        }
        assert_eq!(
            d.ctl(dead, 0, cmd, Arg::None).map(|_| ()),
            Err(libc::EINVAL)
        );
        for n in 0..3 {
            let (k, s) = d.ctl(p, n, cmd, Arg::None).unwrap();
            assert_eq!((k.ret, s.ret), (0, 0));
        }
    }
    assert_eq!(
        d.ctl(dead, 0, GETALL, Arg::GetAll(3)).map(|_| ()),
        Err(libc::EINVAL)
    );
    assert_eq!(
        d.ctl(dead, 0, IPC_STAT, Arg::Stat).map(|_| ()),
        Err(libc::EINVAL)
    );
    // GETALL ignores semnum.
    let (k, s) = d.ctl(p, 99, GETALL, Arg::GetAll(3)).unwrap();
    assert_eq!(k.all, s.all);
}

#[test]
fn getall_setall() {
    let _g = shared();
    let mut d = Dual::new("setall");
    let p = private(&mut d, 4);
    setall(&mut d, p, &[1, 2, 3, SEMVMX as u16]);
    assert_eq!(getall(&mut d, p), vec![1, 2, 3, SEMVMX as u16]);
    let e = |r: R<(Out, Out)>| r.map(|_| ());
    assert_eq!(
        e(d.ctl(p, 0, SETALL, Arg::SetAll(vec![9, 9, 32768, 9]))),
        Err(libc::ERANGE)
    );
    assert_eq!(
        e(d.ctl(p, 0, SETALL, Arg::SetAll(vec![65535, 0, 0, 0]))),
        Err(libc::ERANGE)
    );
    assert_eq!(getall(&mut d, p), vec![1, 2, 3, SEMVMX as u16]);
    // semnum is ignored.
    d.ctl(p, 77, SETALL, Arg::SetAll(vec![0, 5, 0, 5])).unwrap();
    let me = std::process::id() as i32;
    for n in 0..4 {
        assert_eq!(getpid_of(&mut d, p, n), (me, me));
    }
    let dead = private(&mut d, 4);
    rmid(&mut d, dead);
    assert_eq!(
        e(d.ctl(dead, 0, SETALL, Arg::SetAll(vec![1; 4]))),
        Err(libc::EINVAL)
    );
}

#[test]
fn ipc_set_and_stat() {
    let _g = shared();
    let mut d = Dual::new("ipcset");
    let p = private(&mut d, 2);
    d.ctl(
        p,
        0,
        IPC_SET,
        Arg::Set {
            uid: 1000,
            gid: 2000,
            mode: 0o7777,
        },
    )
    .unwrap();
    let (k, s) = d.ctl(p, 0, IPC_STAT, Arg::Stat).unwrap();
    let (k, s) = (k.stat.unwrap(), s.stat.unwrap());
    assert_eq!((k.perm.uid, k.perm.gid, k.perm.mode), (1000, 2000, 0o777));
    assert_eq!((s.perm.uid, s.perm.gid, s.perm.mode), (1000, 2000, 0o777));
    assert_eq!((s.perm.cuid, s.perm.cgid), (0, 0));
    assert_eq!(s.nsems, 2);
    d.ctl(
        p,
        0,
        IPC_SET,
        Arg::Set {
            uid: 0,
            gid: 0,
            mode: 0o4400,
        },
    )
    .unwrap();
    // The stored mode has only the 9 bits; semnum is ignored.
    let (_, s) = d.ctl(p, 42, IPC_STAT, Arg::Stat).unwrap();
    assert_eq!(s.stat.unwrap().perm.mode, 0o400);
    rmid(&mut d, p);
    assert_eq!(
        d.ctl(
            p,
            0,
            IPC_SET,
            Arg::Set {
                uid: 0,
                gid: 0,
                mode: 0o600
            }
        )
        .map(|_| ()),
        Err(libc::EINVAL)
    );
}

#[test]
fn ipc_rmid_then_everything_is_einval() {
    let _g = shared();
    let mut d = Dual::new("rmid");
    let p = private(&mut d, 2);
    d.semop(p, &[sb(0, 1, UN)]).unwrap();
    rmid(&mut d, p);
    for cmd in ALL_CMDS {
        if matches!(cmd, IPC_INFO | SEM_INFO | SEM_STAT | SEM_STAT_ANY) {
            continue; // these do not look the id up
        }
        assert_eq!(
            d.ctl(p, 0, cmd, arg_for(cmd, 2)).map(|_| ()),
            Err(libc::EINVAL),
            "{}",
            cmd_name(cmd)
        );
    }
}

#[test]
fn ipc_info_and_sem_info() {
    let _g = shared();
    let mut d = Dual::new("info");
    // shmsem's namespace is empty: IPC_INFO returns 0 there. The kernel's
    // answer is global (other sets exist on this machine), so only its
    // limits are compared.
    let s0 = d.s.semctl(0, 0, IPC_INFO, &Arg::Info).expect("IPC_INFO");
    if d.is_shm() {
        assert_eq!(s0.ret, 0, "IPC_INFO on an empty namespace");
    }
    let p = private(&mut d, 3);
    let q = private(&mut d, 2);
    let (kq, sq) = (d.pairs[q].k, d.pairs[q].s);
    for id in [0, 12345, kq, 0x7fff_fffe] {
        let (k, s) = d.ctl_ids(id, id, 0, IPC_INFO, Arg::Info).unwrap();
        // The limits agree (compared in Dual::ctl_ids, with semusz/semaem).
        let (ki, si) = (k.info.unwrap(), s.info.unwrap());
        assert_eq!(si.semmsl, 32000);
        assert_eq!(si.semopm, 500);
        assert_eq!(si.semvmx, SEMVMX);
        assert_eq!(ki.semaem, si.semaem);
        // The highest index in use: each side's own.
        assert!(
            k.ret >= kq & IDX_MASK,
            "kernel IPC_INFO ret {} < own index",
            k.ret
        );
        if d.is_shm() {
            assert_eq!(s.ret, (d.pairs[p].s & IDX_MASK).max(sq & IDX_MASK));
        }
    }
    // SEM_INFO: usage counts are per namespace in shmsem, global in the
    // kernel: shmsem must count exactly its own sets; the kernel at least ours.
    let (k, s) = d.ctl(p, 0, SEM_INFO, Arg::Info).unwrap();
    let (ki, si) = (k.info.unwrap(), s.info.unwrap());
    assert!(ki.semusz >= 2 && ki.semaem >= 5);
    if !d.is_shm() {
        return;
    }
    assert_eq!((si.semusz, si.semaem), (2, 5), "SEM_INFO sets/sems in use");
    assert_eq!(s.ret, (d.pairs[p].s & IDX_MASK).max(sq & IDX_MASK));
    rmid(&mut d, q);
    let (_, s) = d.ctl_ids(0, 0, 0, SEM_INFO, Arg::Info).unwrap();
    let si = s.info.unwrap();
    assert_eq!((si.semusz, si.semaem), (1, 3), "SEM_INFO after IPC_RMID");
}

#[test]
fn sem_stat_by_index() {
    let _g = shared();
    let mut d = Dual::new("semstat");
    let p = private(&mut d, 2);
    d.semop(p, &[sb(1, 4, 0)]).unwrap();
    let (k, s) = (d.pairs[p].k, d.pairs[p].s);
    for cmd in [SEM_STAT, SEM_STAT_ANY] {
        // By index.
        let (ko, so) = d
            .ctl_ids(k & IDX_MASK, s & IDX_MASK, 0, cmd, Arg::Stat)
            .unwrap();
        assert_eq!(ko.ret, k, "kernel {} returns the id", cmd_name(cmd));
        assert_eq!(so.ret, s, "shmsem {} returns the full id", cmd_name(cmd));
        assert_eq!(so.stat.unwrap().nsems, 2);
        // The full id works too: only the index bits are used.
        let (ko, so) = d.ctl_ids(k, s, 0, cmd, Arg::Stat).unwrap();
        assert_eq!((ko.ret, so.ret), (k, s));
        // An empty slot.
        assert_eq!(
            d.ctl_ids(0x7ffe, 0x7ffe, 0, cmd, Arg::Stat).map(|_| ()),
            Err(libc::EINVAL)
        );
    }
    rmid(&mut d, p);
    for cmd in [SEM_STAT, SEM_STAT_ANY] {
        assert_eq!(
            d.ctl_ids(k & IDX_MASK, s & IDX_MASK, 0, cmd, Arg::Stat)
                .map(|_| ()),
            Err(libc::EINVAL)
        );
    }
}

// ===========================================================================
// I. Permissions, from a child that is another user
// ===========================================================================

/// The ways `as_nobody` runs its child.
const ALL_MODES: &[&str] = &["fork", "fork+reopen", "exec"];
const FORK_MODES: &[&str] = &["fork", "fork+reopen"];
const EXEC_MODE: &[&str] = &["exec"];

/// Runs `body` in a child that became uid/gid 65534, once per mode: "fork",
/// a forked child using the namespace it inherited; "fork+reopen", a forked
/// child that opens the namespace again by name; "exec", a new process
/// (this test binary run again: no inherited mapping, cache or registration).
///
/// `setup` runs in the parent and returns numbers for `body` (pair indices
/// or keys). `test` is the name of the #[test] function calling this: the
/// exec'd child runs that test, which lands in `exec_side` below.
fn as_nobody(
    test: &str,
    name: &str,
    modes: &[&str],
    setup: impl Fn(&mut Dual) -> Vec<i32>,
    body: impl Fn(&mut Dual, &[i32]),
) {
    if std::env::var(EXEC_CHILD_VAR).as_deref() == Ok(test) {
        return exec_side(test, body);
    }
    if !is_root() {
        eprintln!("skipped {name}: needs root to run a child as another user");
        return;
    }
    let _g = exclusive();
    for &mode in modes {
        let mut d = Dual::new(name);
        d.ctx = format!("{test} ({mode})");
        let params = setup(&mut d);
        if mode == "exec" {
            let p: Vec<String> = params.iter().map(|x| x.to_string()).collect();
            exec_child(
                test,
                &[
                    ("DIFF_NS", d.ns_name.clone()),
                    ("DIFF_PAIRS", d.pairs_string()),
                    ("DIFF_PARAMS", p.join(",")),
                ],
            );
        } else {
            let child = fork_child(|_io| {
                become_nobody();
                if mode == "fork+reopen" {
                    d.reopen_shm();
                }
                d.ctx.push_str(" [child uid 65534]");
                body(&mut d, &params);
            });
            child.finish();
        }
        d.check_state();
    }
}

/// The exec'd child's side of `as_nobody`.
fn exec_side(test: &str, body: impl Fn(&mut Dual, &[i32])) {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let params: Vec<i32> = var("DIFF_PARAMS")
        .split(',')
        .filter(|x| !x.is_empty())
        .map(|x| x.parse().unwrap())
        .collect();
    become_nobody();
    let ctx = format!("{test} (exec) [new process uid 65534]");
    let mut d = Dual::attach(&ctx, &var("DIFF_NS"), &parse_pairs(&var("DIFF_PAIRS")));
    d.check_state();
    body(&mut d, &params);
}

/// semop by another user whose class is granted read only or write only.
#[test]
fn perm_semop() {
    as_nobody(
        "perm_semop",
        "permop",
        ALL_MODES,
        |d| {
            let b = d.semget(IPC_PRIVATE, 2, IPC_CREAT | 0o644).unwrap();
            let c = d.semget(IPC_PRIVATE, 2, IPC_CREAT | 0o602).unwrap();
            for p in [b, c] {
                d.ctl(p, 0, SETVAL, Arg::Val(1)).unwrap();
            }
            d.excuse_reader_waits(b);
            vec![b as i32, c as i32]
        },
        |d, s| {
            let (b, c) = (s[0] as usize, s[1] as usize);
            // Read only: zero ops allowed (and fail with EAGAIN on value 1).
            assert_eq!(d.semop_reader(b, &[sb(0, 0, NW)]), Err(libc::EAGAIN));
            d.semop_reader(b, &[sb(1, 0, NW)]).unwrap();
            d.semop_reader(b, &[sb(1, 0, NW | UN)]).unwrap();
            assert_eq!(d.semop(b, &[sb(1, 1, NW)]), Err(libc::EACCES));
            assert_eq!(d.semop(b, &[sb(1, 0, NW), sb(0, 1, 0)]), Err(libc::EACCES));
            // EFBIG before EACCES, invalid timeout before both.
            assert_eq!(d.semop(b, &[sb(2, 1, 0)]), Err(libc::EFBIG));
            assert_eq!(
                d.semtimedop(b, &[sb(2, 1, 0)], ts(-1, 0)),
                Err(libc::EINVAL)
            );
            // Write only: altering calls allowed, zero-only calls not.
            d.semop(c, &[sb(0, 1, 0)]).unwrap();
            d.semop(c, &[sb(0, -1, NW), sb(1, 0, NW)]).unwrap();
            assert_eq!(d.semop(c, &[sb(1, 0, NW)]), Err(libc::EACCES));
            assert_eq!(d.semop(c, &[sb(3, 0, NW)]), Err(libc::EFBIG));
            d.semop(c, &[sb(1, 1, 0)]).unwrap();
        },
    );
}

fn semop_no_access(test: &str, modes: &[&str]) {
    as_nobody(
        test,
        "opnone",
        modes,
        |d| {
            let a = d.semget(IPC_PRIVATE, 2, IPC_CREAT | 0o600).unwrap();
            d.ctl(a, 0, SETVAL, Arg::Val(1)).unwrap();
            vec![a as i32]
        },
        |d, s| {
            let a = s[0] as usize;
            assert_eq!(d.semop(a, &[sb(0, -1, NW)]), Err(libc::EACCES));
            assert_eq!(d.semop(a, &[sb(1, 0, NW)]), Err(libc::EACCES));
            // EFBIG before EACCES, invalid timeout before both.
            assert_eq!(d.semop(a, &[sb(2, 1, 0)]), Err(libc::EFBIG));
            assert_eq!(
                d.semtimedop(a, &[sb(2, 1, 0)], ts(-1, 0)),
                Err(libc::EINVAL)
            );
        },
    );
}

/// semop by another user whose class the mode grants nothing.
#[test]
fn perm_semop_no_access() {
    semop_no_access("perm_semop_no_access", FORK_MODES);
}

/// The same from a new process (no mapping inherited).
#[test]
fn perm_semop_no_access_new_process() {
    semop_no_access("perm_semop_no_access_new_process", EXEC_MODE);
}

/// semctl by another user whose class is granted read only.
#[test]
fn perm_semctl() {
    as_nobody(
        "perm_semctl",
        "permctl",
        ALL_MODES,
        |d| {
            let b = d.semget(IPC_PRIVATE, 2, IPC_CREAT | 0o644).unwrap();
            vec![b as i32]
        },
        |d, s| {
            let b = s[0] as usize;
            let e = |r: R<(Out, Out)>| r.map(|_| ());
            let (kb, sid) = (d.pairs[b].k, d.pairs[b].s);
            for cmd in [GETVAL, GETPID, GETNCNT, GETZCNT] {
                d.ctl(b, 1, cmd, Arg::None).unwrap();
                assert_eq!(e(d.ctl(b, 5, cmd, Arg::None)), Err(libc::EINVAL));
            }
            d.ctl(b, 0, GETALL, Arg::GetAll(2)).unwrap();
            d.ctl(b, 0, IPC_STAT, Arg::Stat).unwrap();
            for cmd in [SEM_STAT, SEM_STAT_ANY] {
                let (ko, so) = d
                    .ctl_ids(kb & IDX_MASK, sid & IDX_MASK, 0, cmd, Arg::Stat)
                    .unwrap();
                assert_eq!((ko.ret, so.ret), (kb, sid));
            }
            // SETVAL: range, then semnum, then permission.
            assert_eq!(e(d.ctl(b, 0, SETVAL, Arg::Val(-1))), Err(libc::ERANGE));
            assert_eq!(e(d.ctl(b, 5, SETVAL, Arg::Val(1))), Err(libc::EINVAL));
            assert_eq!(e(d.ctl(b, 0, SETVAL, Arg::Val(1))), Err(libc::EACCES));
            // SETALL: permission before the values' range.
            assert_eq!(
                e(d.ctl(b, 0, SETALL, Arg::SetAll(vec![1, 1]))),
                Err(libc::EACCES)
            );
            assert_eq!(
                e(d.ctl(b, 0, SETALL, Arg::SetAll(vec![1, 40000]))),
                Err(libc::EACCES)
            );
            // IPC_SET / IPC_RMID: EPERM for a non-owner, whatever the mode.
            let set = Arg::Set {
                uid: 65534,
                gid: 65534,
                mode: 0o666,
            };
            assert_eq!(e(d.ctl(b, 0, IPC_SET, set)), Err(libc::EPERM));
            assert_eq!(e(d.ctl(b, 0, IPC_RMID, Arg::None)), Err(libc::EPERM));
            // Info needs nothing.
            d.ctl(b, 0, IPC_INFO, Arg::Info).unwrap();
            d.ctl(b, 0, SEM_INFO, Arg::Info).unwrap();
        },
    );
}

fn semctl_no_access(test: &str, modes: &[&str]) {
    as_nobody(
        test,
        "ctlnone",
        modes,
        |d| {
            let a = d.semget(IPC_PRIVATE, 2, IPC_CREAT | 0o600).unwrap();
            vec![a as i32]
        },
        |d, s| {
            let a = s[0] as usize;
            let e = |r: R<(Out, Out)>| r.map(|_| ());
            let (ka, sa) = (d.pairs[a].k, d.pairs[a].s);
            for cmd in [GETVAL, GETPID, GETNCNT, GETZCNT] {
                assert_eq!(e(d.ctl(a, 0, cmd, Arg::None)), Err(libc::EACCES));
                // Permission before the semnum check.
                assert_eq!(e(d.ctl(a, 5, cmd, Arg::None)), Err(libc::EACCES));
            }
            assert_eq!(e(d.ctl(a, 0, GETALL, Arg::GetAll(2))), Err(libc::EACCES));
            assert_eq!(e(d.ctl(a, 0, IPC_STAT, Arg::Stat)), Err(libc::EACCES));
            assert_eq!(
                e(d.ctl_ids(ka & IDX_MASK, sa & IDX_MASK, 0, SEM_STAT, Arg::Stat)),
                Err(libc::EACCES)
            );
            let (ko, so) = d
                .ctl_ids(ka & IDX_MASK, sa & IDX_MASK, 0, SEM_STAT_ANY, Arg::Stat)
                .unwrap();
            assert_eq!((ko.ret, so.ret), (ka, sa));
            // SETVAL: range, then semnum, then permission.
            assert_eq!(e(d.ctl(a, 0, SETVAL, Arg::Val(-1))), Err(libc::ERANGE));
            assert_eq!(e(d.ctl(a, 5, SETVAL, Arg::Val(1))), Err(libc::EINVAL));
            assert_eq!(e(d.ctl(a, 0, SETVAL, Arg::Val(1))), Err(libc::EACCES));
            assert_eq!(
                e(d.ctl(a, 0, SETALL, Arg::SetAll(vec![1, 40000]))),
                Err(libc::EACCES)
            );
            let set = Arg::Set {
                uid: 65534,
                gid: 65534,
                mode: 0o666,
            };
            assert_eq!(e(d.ctl(a, 0, IPC_SET, set)), Err(libc::EPERM));
            assert_eq!(e(d.ctl(a, 0, IPC_RMID, Arg::None)), Err(libc::EPERM));
            d.ctl(a, 0, IPC_INFO, Arg::Info).unwrap();
        },
    );
}

/// semctl by another user whose class the mode grants nothing.
#[test]
fn perm_semctl_no_access() {
    semctl_no_access("perm_semctl_no_access", FORK_MODES);
}

/// The same from a new process (no mapping inherited).
#[test]
fn perm_semctl_no_access_new_process() {
    semctl_no_access("perm_semctl_no_access_new_process", EXEC_MODE);
}

/// Owner and group classes that are granted something: the class decides,
/// with no fallthrough to a class that would grant more; the owner (not
/// the creator) may IPC_SET and IPC_RMID.
#[test]
fn perm_granted_classes() {
    as_nobody(
        "perm_granted_classes",
        "permgrant",
        ALL_MODES,
        |d| {
            let mut v = Vec::new();
            for (uid, gid, mode) in [
                (65534, 0, 0o600), // owner rw
                (0, 65534, 0o060), // group rw
                (0, 65534, 0o646), // group r, other rw: read only
                (65534, 0, 0o466), // owner r, others rw: read only
            ] {
                let p = d.semget(IPC_PRIVATE, 1, IPC_CREAT | 0o600).unwrap();
                d.ctl(p, 0, IPC_SET, Arg::Set { uid, gid, mode }).unwrap();
                v.push(p as i32);
            }
            // The group class of c may only read it.
            d.excuse_reader_waits(v[2] as usize);
            v
        },
        |d, s| {
            let (a, b, c, o) = (s[0] as usize, s[1] as usize, s[2] as usize, s[3] as usize);
            let e = |r: R<(Out, Out)>| r.map(|_| ());
            d.ctl(a, 0, GETVAL, Arg::None).unwrap();
            d.semop(a, &[sb(0, 2, 0)]).unwrap();
            d.ctl(b, 0, SETVAL, Arg::Val(3)).unwrap();
            d.semop(b, &[sb(0, -1, NW)]).unwrap();
            assert_eq!(
                e(d.ctl(
                    b,
                    0,
                    IPC_SET,
                    Arg::Set {
                        uid: 65534,
                        gid: 65534,
                        mode: 0o666
                    }
                )),
                Err(libc::EPERM)
            );
            d.ctl(c, 0, GETVAL, Arg::None).unwrap();
            d.semop_reader(c, &[sb(0, 0, NW)]).unwrap();
            assert_eq!(d.semop(c, &[sb(0, 1, 0)]), Err(libc::EACCES));
            assert_eq!(e(d.ctl(c, 0, SETVAL, Arg::Val(1))), Err(libc::EACCES));
            d.semop(o, &[sb(0, 0, NW)]).unwrap();
            assert_eq!(d.semop(o, &[sb(0, 1, 0)]), Err(libc::EACCES));
            // The owner changes the mode (cuid stays root), then removes it.
            d.ctl(
                o,
                0,
                IPC_SET,
                Arg::Set {
                    uid: 65534,
                    gid: 65534,
                    mode: 0o640,
                },
            )
            .unwrap();
            d.semop(o, &[sb(0, 1, 0)]).unwrap();
            d.ctl(
                a,
                0,
                IPC_SET,
                Arg::Set {
                    uid: 65534,
                    gid: 65534,
                    mode: 0o644,
                },
            )
            .unwrap();
            d.ctl(a, 0, IPC_RMID, Arg::None).unwrap();
        },
    );
}

#[test]
fn perm_owner_and_group_classes() {
    as_nobody(
        "perm_owner_and_group_classes",
        "permcls",
        ALL_MODES,
        |d| {
            // Owned by nobody (created by root), owner bits empty: no
            // fallthrough to group or other.
            let a = d.semget(IPC_PRIVATE, 1, IPC_CREAT | 0o600).unwrap();
            d.ctl(
                a,
                0,
                IPC_SET,
                Arg::Set {
                    uid: 65534,
                    gid: 0,
                    mode: 0o066,
                },
            )
            .unwrap();
            // Group nobody, group bits rw.
            let b = d.semget(IPC_PRIVATE, 1, IPC_CREAT | 0o600).unwrap();
            d.ctl(
                b,
                0,
                IPC_SET,
                Arg::Set {
                    uid: 0,
                    gid: 65534,
                    mode: 0o060,
                },
            )
            .unwrap();
            // Group nobody, group bits empty, other rw: no fallthrough.
            let c = d.semget(IPC_PRIVATE, 1, IPC_CREAT | 0o600).unwrap();
            d.ctl(
                c,
                0,
                IPC_SET,
                Arg::Set {
                    uid: 0,
                    gid: 65534,
                    mode: 0o606,
                },
            )
            .unwrap();
            vec![a as i32, b as i32, c as i32]
        },
        |d, s| {
            let (a, b, c) = (s[0] as usize, s[1] as usize, s[2] as usize);
            let e = |r: R<(Out, Out)>| r.map(|_| ());
            assert_eq!(e(d.ctl(a, 0, GETVAL, Arg::None)), Err(libc::EACCES));
            assert_eq!(d.semop(a, &[sb(0, 1, 0)]), Err(libc::EACCES));
            // The owner may IPC_SET (cuid stays root), then has access.
            d.ctl(
                a,
                0,
                IPC_SET,
                Arg::Set {
                    uid: 65534,
                    gid: 65534,
                    mode: 0o600,
                },
            )
            .unwrap();
            d.ctl(a, 0, GETVAL, Arg::None).unwrap();
            d.semop(a, &[sb(0, 1, UN)]).unwrap();
            d.ctl(b, 0, GETVAL, Arg::None).unwrap();
            d.semop(b, &[sb(0, 2, 0)]).unwrap();
            assert_eq!(
                e(d.ctl(
                    b,
                    0,
                    IPC_SET,
                    Arg::Set {
                        uid: 65534,
                        gid: 65534,
                        mode: 0o666
                    }
                )),
                Err(libc::EPERM)
            );
            assert_eq!(e(d.ctl(c, 0, GETVAL, Arg::None)), Err(libc::EACCES));
            assert_eq!(d.semop(c, &[sb(0, 1, 0)]), Err(libc::EACCES));
            // The owner may remove the set.
            d.ctl(a, 0, IPC_RMID, Arg::None).unwrap();
        },
    );
}

// ===========================================================================
// Seeded random sequences (nothing blocks: every op has IPC_NOWAIT, or the
// call has a zero timeout)
// ===========================================================================

fn random_sops(r: &mut Rng, nsems: usize) -> Vec<Sembuf> {
    let n = match r.below(100) {
        0 => 0,
        1 => 501,
        _ => r.range(1, 5) as usize,
    };
    (0..n)
        .map(|_| {
            let num = if r.pct(92) {
                r.below(nsems as u64) as u16
            } else {
                [nsems as u16, nsems as u16 + 1, u16::MAX][r.below(3) as usize]
            };
            let op = if r.pct(90) {
                r.range(-3, 3) as i16
            } else {
                [i16::MAX, -i16::MAX, i16::MIN, 16384, -16384, 32766][r.below(6) as usize]
            };
            let flg = NW | if r.pct(30) { UN } else { 0 };
            sb(num, op, flg)
        })
        .collect()
}

fn random_value(r: &mut Rng) -> i32 {
    if r.pct(85) {
        r.range(0, 6) as i32
    } else {
        [-1, SEMVMX, SEMVMX + 1, 65535, 65536, i32::MIN][r.below(6) as usize]
    }
}

fn random_semnum(r: &mut Rng, nsems: usize) -> i32 {
    if r.pct(90) {
        r.below(nsems as u64) as i32
    } else {
        [-1, nsems as i32, 65536][r.below(3) as usize]
    }
}

/// One random call on the set of pair `p` in the parent. Returns the
/// semaphores (bit n for semaphore n) whose undo adjustments the call
/// cleared in every process (a successful SETVAL or SETALL).
fn random_step(d: &mut Dual, r: &mut Rng, p: usize) -> u8 {
    let nsems = d.pairs[p].nsems;
    match r.below(100) {
        0..=49 => {
            let ops = random_sops(r, nsems);
            let _ = d.semop(p, &ops);
        }
        50..=56 => {
            // semtimedop: zero timeout (blocking ops give EAGAIN at once),
            // ops without IPC_NOWAIT, sometimes an invalid timeout.
            let mut ops = random_sops(r, nsems);
            for o in &mut ops {
                if r.pct(50) {
                    o.sem_flg &= !(NW as i16);
                }
            }
            let t = if r.pct(90) { ts(0, 0) } else { ts(0, -1) };
            let _ = d.semtimedop(p, &ops, t);
        }
        57..=66 => {
            let (n, v) = (random_semnum(r, nsems), random_value(r));
            if d.ctl(p, n, SETVAL, Arg::Val(v)).is_ok() {
                return 1 << n;
            }
        }
        67..=73 => {
            let vals = (0..nsems)
                .map(|_| {
                    if r.pct(95) {
                        r.range(0, 6) as u16
                    } else {
                        [32767, 32768, 65535][r.below(3) as usize]
                    }
                })
                .collect();
            if d.ctl(p, 0, SETALL, Arg::SetAll(vals)).is_ok() {
                return u8::MAX;
            }
        }
        74..=85 => {
            let cmd = [GETVAL, GETPID, GETNCNT, GETZCNT][r.below(4) as usize];
            let n = random_semnum(r, nsems);
            let _ = d.ctl(p, n, cmd, Arg::None);
        }
        86..=90 => {
            let _ = d.ctl(p, 0, GETALL, Arg::GetAll(nsems));
        }
        91..=94 => {
            let _ = d.ctl(p, 0, IPC_STAT, Arg::Stat);
        }
        _ => {
            let uid = [0, 1000, 65534][r.below(3) as usize];
            let gid = [0, 100, 65534][r.below(3) as usize];
            let mode = r.below(0o10000) as u32;
            let _ = d.ctl(p, 0, IPC_SET, Arg::Set { uid, gid, mode });
        }
    }
    0
}

fn random_seeds(first: u64, count: u64, steps: usize) {
    let _g = shared();
    let mut d = Dual::new("rand");
    for seed in first..first + count {
        let mut r = Rng::new(seed);
        let nsems = r.range(1, 4) as i32;
        d.ctx = format!("random seed={seed} (nsems={nsems}) step=create");
        d.log.clear();
        let mut p = private(&mut d, nsems);
        for step in 0..steps {
            d.ctx = format!("random seed={seed} (nsems={nsems}) step={step}");
            if r.below(200) == 0 {
                // Remove and make a new set: the old id must now be dead.
                rmid(&mut d, p);
                let _ = d.semop(p, &[sb(0, 1, NW)]);
                p = private(&mut d, nsems);
            }
            let _ = random_step(&mut d, &mut r, p);
        }
        rmid(&mut d, p);
        // Keep the per-call state check cheap: forget removed sets.
        d.pairs.clear();
    }
}

#[test]
fn random_sequences_0() {
    random_seeds(0, 50, 200);
}

#[test]
fn random_sequences_1() {
    random_seeds(50, 50, 200);
}

#[test]
fn random_sequences_2() {
    random_seeds(100, 50, 200);
}

#[test]
fn random_sequences_3() {
    random_seeds(150, 50, 200);
}

/// Random episodes with children that make SEM_UNDO adjustments and exit
/// (possibly after the parent changed the set meanwhile), compared after
/// each exit: exit undo, its clamping, and its clearing by SETVAL/SETALL.
///
/// With `keep_nonzero`, a child that ever made a SEM_UNDO call ends with at
/// least one non-zero adjustment (it tracks its own adjustments and those
/// the parent cleared, and adds a last ±1 SEM_UNDO op if all are zero), so
/// every exit has adjustments to apply; without it, many exits leave an
/// all-zero record, which must still set otime.
fn random_exit_undo_run(test: &str, seeds: std::ops::Range<u64>, keep_nonzero: bool) {
    let _g = exclusive();
    let mut d = Dual::new("randundo");
    for seed in seeds {
        let mut r = Rng::new(seed);
        let nsems = r.range(1, 4) as i32;
        d.ctx = format!("{test} seed={seed} (nsems={nsems}) step=create");
        d.log.clear();
        let p = private(&mut d, nsems);
        let n = nsems as usize;
        for step in 0..25 {
            d.ctx = format!("{test} seed={seed} (nsems={nsems}) step={step}");
            if r.pct(40) {
                let _ = random_step(&mut d, &mut r, p);
                continue;
            }
            // A child episode.
            let mut cr = Rng::new(r.next());
            let wait = r.pct(50);
            let mut child = fork_child(|io| {
                d.ctx.push_str(" [child]");
                let mut n0 = d.log.len();
                let mut adj = vec![0i32; n];
                let mut record = false;
                for _ in 0..cr.range(1, 4) {
                    let mut ops = random_sops(&mut cr, n);
                    for o in &mut ops {
                        if cr.pct(80) {
                            o.sem_flg |= UN as i16;
                        }
                    }
                    let undo = |o: &Sembuf| o.sem_flg & UN as i16 != 0;
                    record |= ops.iter().any(undo);
                    if d.semop(p, &ops).is_ok() {
                        for o in ops.iter().filter(|o| undo(o)) {
                            adj[o.sem_num as usize] -= o.sem_op as i32;
                        }
                    }
                }
                io.log(&d.log[n0..]);
                n0 = d.log.len();
                io.ready();
                if wait {
                    let cleared = io.wait_go();
                    for (i, a) in adj.iter_mut().enumerate() {
                        if cleared & (1 << i) != 0 {
                            *a = 0;
                        }
                    }
                }
                if keep_nonzero && record && adj.iter().all(|&a| a == 0) {
                    // One of the two succeeds: the value cannot be both 0
                    // and SEMVMX.
                    if d.semop(p, &[sb(0, 1, UN | NW)]).is_err() {
                        d.semop(p, &[sb(0, -1, UN | NW)]).unwrap();
                    }
                }
                io.log(&d.log[n0..]);
            });
            child.expect_ready();
            d.log.extend(child.take_log());
            if wait {
                // The child is parked in wait_go(): its adjustments are live.
                d.check_state();
                let mut cleared = 0;
                for _ in 0..r.range(1, 3) {
                    cleared |= random_step(&mut d, &mut r, p);
                }
                child.go_with(cleared);
            }
            let pid = child.pid;
            let lines = child.finish();
            d.log.extend(lines);
            d.log.push(format!("[child {pid} exited]"));
            d.check_state();
        }
        rmid(&mut d, p);
        d.pairs.clear();
    }
}

/// Exit undo in random sequences, exactly as the kernel does it.
#[test]
fn random_exit_undo() {
    random_exit_undo_run("random_exit_undo", 1000..1100, false);
}

/// The same, with children that always exit holding a non-zero adjustment.
#[test]
fn random_exit_undo_nonzero_adjustments() {
    random_exit_undo_run("random_exit_undo_nonzero_adjustments", 1000..1100, true);
}

/// Random semget/IPC_RMID sequences over a small pool of keys: creation,
/// EEXIST, ENOENT, nsems checks, mode bits, and lookups of existing sets
/// (which must return the set made earlier on both sides).
#[test]
fn random_semget_sequences() {
    let _g = shared();
    let mut d = Dual::new("randget");
    for seed in 2000..2040u64 {
        let mut r = Rng::new(seed);
        let keys = [
            unused_kernel_key(),
            unused_kernel_key(),
            unused_kernel_key(),
        ];
        d.log.clear();
        for step in 0..60 {
            d.ctx =
                format!("random_semget_sequences seed={seed} step={step} (keys drawn at run time)");
            let key = if r.pct(15) {
                IPC_PRIVATE
            } else {
                keys[r.below(3) as usize]
            };
            if r.pct(20) {
                // Remove whatever this key names now, on both sides.
                if let Ok(p) = d.semget(key, 0, 0) {
                    rmid(&mut d, p);
                }
                continue;
            }
            let nsems = if r.pct(90) {
                r.range(0, 4) as i32
            } else {
                [-1, 32000, 32001][r.below(3) as usize]
            };
            if nsems == 32000 {
                // Never create a 32000-semaphore set (IPC_PRIVATE would,
                // whatever the flags): only look one up by key.
                let key = keys[r.below(3) as usize];
                let _ = d.semget(key, nsems, 0);
                continue;
            }
            let mut flg = r.below(0o1000) as i32;
            if r.pct(60) {
                flg |= IPC_CREAT;
            }
            if r.pct(30) {
                flg |= IPC_EXCL;
            }
            if r.pct(10) {
                flg |= IPC_NOWAIT;
            }
            let _ = d.semget(key, nsems, flg);
        }
        for key in keys {
            if let Ok(p) = d.semget(key, 0, 0) {
                rmid(&mut d, p);
            }
        }
        d.pairs.clear();
    }
}
