//! How late a reader's wait for zero returns (README, "Differences from the
//! kernel": a process whose class the set's mode gives `r--` waits in timed
//! slices, re-reading the value, instead of being queued and woken).
//!
//! Run as root: `cargo run --release --example reader_latency`. A child
//! becomes uid/gid 61002 (the other class of a set of mode 0644, so its
//! mapping is read-only), waits for zero on a semaphore at 1; the parent
//! sets it to 0 after the child has been waiting D ms, and the child
//! reports when its semop returned. The same with a child of the owner's
//! class (a queued, woken waiter) for comparison. Times are
//! CLOCK_MONOTONIC, shared by both processes.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shmsem::sysv::{Sembuf, GETZCNT, SETVAL};
use shmsem::{sysv::SemctlArg, Namespace};

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// [waiting since, returned at, SETVAL 0 at, id], shared with the children.
fn shared_words() -> &'static [AtomicU64; 4] {
    // SAFETY: a fresh anonymous shared mapping, zeroed, never unmapped;
    // zeroed atomics are valid.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert!(p != libc::MAP_FAILED);
        &*(p as *const [AtomicU64; 4])
    }
}

/// Runs `f` in a forked child (this process never opens the namespace, so
/// that no child inherits a mapping: each maps the set as its own uid
/// allows); returns its pid.
fn child(f: impl FnOnce() -> bool) -> libc::pid_t {
    // SAFETY: the parent is single-threaded; the child runs `f` and _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let ok = f();
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    pid
}

fn reap(pid: libc::pid_t) {
    let mut st = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    assert_eq!(st, 0, "a child failed");
}

/// One round: the latency in µs between the SETVAL 0 and the waiter's return.
fn round(name: &str, reader: bool, wait_ms: u64, w: &'static [AtomicU64; 4]) -> f64 {
    for x in &w[..3] {
        x.store(0, Ordering::SeqCst);
    }
    let id = w[3].load(Ordering::SeqCst) as i32;
    reap(child(|| {
        let ns = Namespace::open(name).unwrap();
        ns.semctl(id, 0, SETVAL, SemctlArg::Val(1)).is_ok()
    }));
    let waiter = child(|| {
        if reader {
            // SAFETY: plain system calls in the child.
            unsafe {
                libc::setgroups(0, std::ptr::null());
                libc::setresgid(61002, 61002, 61002);
                libc::setresuid(61002, 61002, 61002);
            }
        }
        let ns = Namespace::open(name).unwrap();
        w[0].store(now_ns(), Ordering::SeqCst);
        let r = ns.semop(id, &[Sembuf::new(0, 0, 0)]);
        w[1].store(now_ns(), Ordering::SeqCst);
        r.is_ok()
    });
    let setter = child(|| {
        let ns = Namespace::open(name).unwrap();
        while w[0].load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        if !reader {
            // The queued waiter: wait until it is counted.
            while ns.semctl(id, 0, GETZCNT, SemctlArg::None).unwrap() == 0 {
                std::thread::yield_now();
            }
        }
        std::thread::sleep(Duration::from_millis(wait_ms));
        w[2].store(now_ns(), Ordering::SeqCst);
        ns.semctl(id, 0, SETVAL, SemctlArg::Val(0)).is_ok()
    });
    reap(waiter);
    reap(setter);
    (w[1].load(Ordering::SeqCst) - w[2].load(Ordering::SeqCst)) as f64 / 1000.0
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("run as root (the reader is a child of another uid)");
        std::process::exit(2);
    }
    let name = format!("reader-latency-{}", std::process::id());
    let w = shared_words();
    reap(child(|| {
        let ns = Namespace::open(&name).unwrap();
        let id = ns.semget(shmsem::sysv::IPC_PRIVATE, 1, 0o644).unwrap();
        w[3].store(id as u64, Ordering::SeqCst);
        true
    }));
    println!("| waiter | waited before SETVAL 0 | latency µs: min / median / max (20 rounds) |");
    println!("|---|---:|---|");
    for reader in [false, true] {
        for wait_ms in [0u64, 1, 5, 20, 100] {
            let mut l: Vec<f64> = (0..20).map(|_| round(&name, reader, wait_ms, w)).collect();
            l.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!(
                "| {} | {wait_ms} ms | {:.0} / {:.0} / {:.0} |",
                if reader {
                    "reader (r--)"
                } else {
                    "queued (rw-)"
                },
                l[0],
                l[l.len() / 2],
                l[l.len() - 1]
            );
        }
    }
    reap(child(|| {
        let ns = Namespace::open(&name).unwrap();
        let id = w[3].load(Ordering::SeqCst) as i32;
        ns.semctl(id, 0, shmsem::sysv::IPC_RMID, SemctlArg::None)
            .is_ok()
            && ns.destroy().is_ok()
    }));
}
