//! Uncontended semop: the kernel's against shmsem's, measured in one run.
//!
//! ```text
//! cargo bench --bench semop                    # full run (about 15 s)
//! SHMSEM_BENCH_QUICK=1 cargo bench --bench semop   # a few seconds
//! cargo bench --bench semop -- --test          # run each once (CI smoke test)
//! ```
//!
//! Both sides do the same thing: one set of one semaphore, no SEM_UNDO, and
//! each iteration is a V (+1) then a P (-1) as two separate calls, so the
//! value alternates 0, 1, 0 and no call ever blocks. The kernel side calls
//! `libc::semop` on an IPC_PRIVATE set; the shmsem side calls
//! `Namespace::semop` on a set of a namespace of its own. Both are removed at
//! the end.
//!
//! Criterion runs and reports the measurements (per iteration, i.e. per two
//! calls). The benchmark also keeps every timed batch it ran (through
//! `iter_custom`) and fits time = slope x iterations through the origin, as
//! criterion's "slope" estimate does; half the slope is the time of one call,
//! and the last line prints the two and their ratio.
// The ban on std atomics, fences and raw futex calls (clippy.toml) keeps them
// inside the library's shim; this program is not the library: its atomics
// are its own (process-local counters, or words of a mapping it made), and
// its raw futex and semtimedop calls are the competitors it measures.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use shmsem::sysv::Sembuf;
use shmsem::Namespace;

/// Every (iterations, nanoseconds) batch a routine timed.
type Batches = Arc<Mutex<Vec<(u64, f64)>>>;

/// A kernel System V set, removed (IPC_RMID) when dropped.
struct KernelSet(i32);

impl KernelSet {
    fn new() -> KernelSet {
        // SAFETY: semget takes only integers.
        let id = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) };
        assert!(
            id >= 0,
            "semget(IPC_PRIVATE): {}",
            std::io::Error::last_os_error()
        );
        KernelSet(id)
    }

    fn op(&self, sem_op: i16) {
        let mut sb = libc::sembuf {
            sem_num: 0,
            sem_op,
            sem_flg: 0,
        };
        // SAFETY: `sb` is a valid sembuf and we pass a count of 1.
        let r = unsafe { libc::semop(self.0, &mut sb, 1) };
        debug_assert_eq!(r, 0);
        black_box(r);
    }
}

impl Drop for KernelSet {
    fn drop(&mut self) {
        // SAFETY: IPC_RMID takes no fourth argument.
        unsafe { libc::semctl(self.0, 0, libc::IPC_RMID) };
    }
}

/// A shmsem namespace of our own, destroyed when dropped.
struct ShmsemSet {
    ns: Arc<Namespace>,
    id: i32,
}

impl ShmsemSet {
    fn new() -> ShmsemSet {
        let name = format!("bench-semop-{}", std::process::id());
        let ns = Namespace::open(&name).expect("open the benchmark's namespace");
        match ns.semget(libc::IPC_PRIVATE, 1, 0o600) {
            Ok(id) => ShmsemSet { ns, id },
            Err(e) => {
                let _ = ns.destroy();
                panic!("semget in the benchmark's namespace: {e}");
            }
        }
    }

    fn op(&self, sem_op: i16) {
        let r = self.ns.semop(self.id, &[Sembuf::new(0, sem_op, 0)]);
        debug_assert_eq!(r, Ok(()));
        let _ = black_box(r);
    }
}

impl Drop for ShmsemSet {
    fn drop(&mut self) {
        if let Err(e) = self.ns.destroy() {
            eprintln!("warning: could not destroy {}: {e}", self.ns.name());
        }
    }
}

/// Fits time = slope x iterations through the origin (least squares), the
/// same estimator as criterion's "slope"; returns ns per iteration.
fn slope(batches: &[(u64, f64)]) -> Option<f64> {
    let xy: f64 = batches.iter().map(|&(x, y)| x as f64 * y).sum();
    let xx: f64 = batches.iter().map(|&(x, _)| (x as f64) * (x as f64)).sum();
    (xx > 0.0).then(|| xy / xx)
}

/// Times `iters` iterations of V then P and keeps the batch.
fn timed(batches: &Batches, iters: u64, op: impl Fn(i16)) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        op(1);
        op(-1);
    }
    let elapsed = start.elapsed();
    batches
        .lock()
        .unwrap()
        .push((iters, elapsed.as_nanos() as f64));
    elapsed
}

fn main() {
    let quick = std::env::var_os("SHMSEM_BENCH_QUICK").is_some_and(|v| v != "0");
    let mut c = Criterion::default();
    if quick {
        c = c
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(600))
            .sample_size(10);
    } else {
        c = c
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(5));
    }
    // Command-line options (--test, filters, --sample-size, ...) win.
    let mut c = c.configure_from_args();
    let smoke = std::env::args().any(|a| a == "--test");

    let kernel = KernelSet::new();
    let shm = ShmsemSet::new();
    let kernel_batches = Batches::default();
    let shm_batches = Batches::default();

    {
        let mut g = c.benchmark_group("uncontended_semop");
        // Two calls per iteration: criterion's throughput is calls per second.
        g.throughput(Throughput::Elements(2));
        g.bench_function("kernel", |b| {
            b.iter_custom(|iters| timed(&kernel_batches, iters, |op| kernel.op(op)))
        });
        g.bench_function("shmsem", |b| {
            b.iter_custom(|iters| timed(&shm_batches, iters, |op| shm.op(op)))
        });
        g.finish();
    }
    c.final_summary();

    // Both sets must be back at 0: every V was matched by a P.
    // SAFETY: GETVAL takes no fourth argument.
    let kval = unsafe { libc::semctl(kernel.0, 0, libc::GETVAL) };
    let sval = shm
        .ns
        .semctl(shm.id, 0, libc::GETVAL, shmsem::sysv::SemctlArg::None);
    assert_eq!(kval, 0, "kernel semaphore ends at {kval}");
    assert_eq!(sval, Ok(0), "shmsem semaphore ends at {sval:?}");

    let k = slope(&kernel_batches.lock().unwrap()).map(|ns| ns / 2.0);
    let s = slope(&shm_batches.lock().unwrap()).map(|ns| ns / 2.0);
    let note = if smoke {
        " (smoke run: each routine ran once, the numbers mean nothing)"
    } else {
        ""
    };
    match (k, s) {
        (Some(k), Some(s)) => println!(
            "uncontended semop: kernel {k:.1} ns, shmsem {s:.1} ns, ratio {:.1}x{note}",
            k / s
        ),
        (Some(k), None) => println!("uncontended semop: kernel {k:.1} ns (shmsem not run){note}"),
        (None, Some(s)) => println!("uncontended semop: shmsem {s:.1} ns (kernel not run){note}"),
        (None, None) => {}
    }
    drop(shm);
    drop(kernel);
}
