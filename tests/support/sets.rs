//! A set's observable state, unwrapped (a failed read fails the test), waits
//! for it, and the wall clock as sets stamp otime and ctime.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shmsem::{Op, SemaphoreSet};

use super::children::poll_until;

/// How long the tests allow for the undo of a dead process to be applied
/// by whoever notices the death ("a few seconds").
pub const UNDO_DEADLINE: Duration = Duration::from_secs(5);

/// GETNCNT, unwrapped.
pub fn ncnt(set: &SemaphoreSet, n: u16) -> u32 {
    set.ncnt(n).expect("GETNCNT")
}

/// GETZCNT, unwrapped.
pub fn zcnt(set: &SemaphoreSet, n: u16) -> u32 {
    set.zcnt(n).expect("GETZCNT")
}

/// GETVAL, unwrapped.
pub fn val(set: &SemaphoreSet, n: u16) -> u16 {
    set.value(n).expect("GETVAL")
}

/// GETALL, unwrapped.
pub fn vals(set: &SemaphoreSet) -> Vec<u16> {
    set.values().expect("GETALL")
}

/// GETPID, unwrapped.
pub fn sempid(set: &SemaphoreSet, n: u16) -> i32 {
    set.pid(n).expect("GETPID")
}

/// Waits until semaphore `n` has exactly `count` processes in GETNCNT.
pub fn wait_ncnt(set: &SemaphoreSet, n: u16, count: u32) {
    poll_until(&format!("GETNCNT({n}) == {count}"), || {
        ncnt(set, n) == count
    });
}

/// Waits until semaphore `n` has exactly `count` processes in GETZCNT.
pub fn wait_zcnt(set: &SemaphoreSet, n: u16, count: u32) {
    poll_until(&format!("GETZCNT({n}) == {count}"), || {
        zcnt(set, n) == count
    });
}

/// Takes one unit of semaphore `n` (no undo), waiting at most
/// [`UNDO_DEADLINE`]: used to see that a dead process's undo, which gives the
/// unit back, has been applied.
pub fn take_within_undo_deadline(set: &SemaphoreSet, n: u16, what: &str) {
    if let Err(e) = set.op_timeout(&[Op::wait(n, 1)], UNDO_DEADLINE) {
        panic!("{what}: P on semaphore {n} did not get its unit within {UNDO_DEADLINE:?}: {e}");
    }
}

/// Wall-clock seconds now, as the kernel stamps otime and ctime.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Waits until the wall clock is well into a second later than `t` (50 ms
/// past the boundary, so a coarse clock has caught up too) and returns the
/// new second.
pub fn next_second_after(t: i64) -> i64 {
    poll_until("the wall clock to pass a second boundary", || {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        d.as_secs() as i64 > t && d.subsec_millis() >= 50
    });
    now_secs()
}

/// Checks, from the set's report, that nothing is left of other processes'
/// calls: every queue slot free (none queued, done, continued or
/// withdrawn), no process but this one in the table, no adjustment, no
/// operation queued. The caller sweeps first.
pub fn assert_nothing_left(r: &shmsem::SetReport, what: &str) {
    let s = r.slots;
    assert_eq!(
        (s.queued, s.done, s.cont, s.withdrawn),
        (0, 0, 0, 0),
        "{what}: queue slots leaked: {s:?}"
    );
    let me = std::process::id() as i32;
    let others: Vec<_> = r.processes.iter().filter(|p| p.pid != me).collect();
    assert!(
        others.is_empty(),
        "{what}: process entries leaked: {others:?}"
    );
    assert!(
        r.processes.iter().all(|p| p.adjustments.is_empty()),
        "{what}: adjustments left: {:?}",
        r.processes
    );
    assert!(
        r.pending.is_empty(),
        "{what}: operations left queued: {:?}",
        r.pending
    );
}
