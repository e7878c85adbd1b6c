//! The benchmark suite of issue 5: shmsem beside the kernel's System V
//! semaphores, POSIX process-shared `sem_t`, a process-shared pthread mutex
//! and a raw shared futex, measured in one run, with one table of ratios.
//!
//! ```text
//! cargo bench --bench suite                          # full run (a few minutes)
//! SHMSEM_BENCH_QUICK=1 cargo bench --bench suite     # every scenario, tiny sizes (seconds)
//! SHMSEM_BENCH_ONLY=micro,pingpong cargo bench --bench suite   # some sections only
//! cargo bench --bench suite -- single_op             # criterion filter (micro section)
//! benches/profile.sh                                 # instruction counts (callgrind)
//! ```
//!
//! Sections (`SHMSEM_BENCH_ONLY` takes a comma-separated list of them):
//! `micro` (criterion, uncontended; see micro.rs), `pingpong`, `contended`,
//! `waiters`, `sets` (multiproc.rs), `memory` (memory.rs).
//!
//! It prints one table (scenario, each implementation's figure, shmsem's
//! ratio against the kernel and against sem_t, the target from ANCHORS.md
//! and whether it is met), and writes it to `benches/results/suite.md` and
//! as a bar chart of the ratios to `benches/results/suite.svg` (quick mode:
//! `suite-quick.md` / `suite-quick.svg`; with SHMSEM_BENCH_ONLY:
//! `suite-only.*`). Ratios are "higher is better for shmsem": for times,
//! other / shmsem; for fairness, shmsem / other.
//!
//! Nothing is left behind: the namespace is destroyed, kernel sets removed
//! (IPC_RMID) and children killed by guards, also when a scenario panics
//! (the panic becomes "err" in the table and the run goes on). Children also
//! die with the parent (PR_SET_PDEATHSIG) and by an alarm.
// The ban on std atomics, fences and raw futex calls (clippy.toml) keeps them
// inside the library's shim; this program is not the library: its atomics
// are its own (process-local counters, or words of a mapping it made), and
// its raw futex and semtimedop calls are the competitors it measures.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use criterion::Criterion;

/// Runs `$f::<Impl>(args)` for every implementation, in the table's column
/// order, each under `catch` (a panic becomes a failed figure).
macro_rules! each_impl {
    ($f:ident ( $($a:expr),* )) => {
        [
            $crate::catch(|| $f::<$crate::impls::Shmsem>($($a),*)),
            $crate::catch(|| $f::<$crate::impls::Kernel>($($a),*)),
            $crate::catch(|| $f::<$crate::impls::PosixSem>($($a),*)),
            $crate::catch(|| $f::<$crate::impls::Mutex>($($a),*)),
            $crate::catch(|| $f::<$crate::impls::Futex>($($a),*)),
        ]
    };
}

mod impls;
mod memory;
mod micro;
mod multiproc;
mod profile;
mod report;

use impls::{Env, Futex, Kernel, Mutex, PosixSem, Sem, Shmsem};
use multiproc::{contended, ping_pong, sets, waiters, Contended};
use report::{Better, Fig, Row, IMPLS, KERNEL};

/// A result that a panic can stand in for.
pub trait Failable {
    fn failed(why: String) -> Self;
}

impl Failable for Fig {
    fn failed(why: String) -> Fig {
        Fig::Failed(why)
    }
}

impl Failable for Contended {
    fn failed(why: String) -> Contended {
        Contended {
            ns_per_op: Fig::Failed(why.clone()),
            fairness: Fig::Failed(why.clone()),
            ctx_per_op: Fig::Failed(why),
        }
    }
}

impl Failable for [Fig; 4] {
    fn failed(why: String) -> [Fig; 4] {
        std::array::from_fn(|_| Fig::Failed(why.clone()))
    }
}

/// Runs `f`; a panic becomes a failed result carrying the panic's message.
pub fn catch<T: Failable>(f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".to_string());
            T::failed(msg)
        }
    }
}

/// A time budget: `quick_ms` in quick mode, else `full_ms`.
pub fn budget(quick: bool, quick_ms: u64, full_ms: u64) -> Duration {
    Duration::from_millis(if quick { quick_ms } else { full_ms })
}

/// ns per iteration of `f(n)` (which runs n iterations): the iteration
/// count is doubled until one batch takes a tenth of `budget`, then 5
/// batches are timed and the median is taken.
pub fn time_per_iter(budget: Duration, mut f: impl FnMut(u64)) -> f64 {
    let mut n = 1u64;
    loop {
        let t = std::time::Instant::now();
        f(n);
        if t.elapsed() >= budget / 10 || n >= 1 << 32 {
            break;
        }
        n *= 2;
    }
    let mut per: Vec<f64> = (0..5)
        .map(|_| {
            let t = std::time::Instant::now();
            f(n);
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    per.sort_by(|a, b| a.total_cmp(b));
    per[2]
}

/// The median of repeated figures; the first failure if any failed.
fn median(v: Vec<Fig>) -> Fig {
    if let Some(bad) = v.iter().find(|f| !matches!(f, Fig::Val(_))) {
        return bad.clone();
    }
    let mut vals: Vec<f64> = v
        .iter()
        .filter_map(|f| match f {
            Fig::Val(x) => Some(*x),
            _ => None,
        })
        .collect();
    if vals.is_empty() {
        return Fig::NotApplicable;
    }
    vals.sort_by(|a, b| a.total_cmp(b));
    Fig::Val(vals[vals.len() / 2])
}

fn row_with(mut row: Row, figs: [Fig; 5]) -> Row {
    row.figs = figs;
    row
}

struct Config {
    quick: bool,
    smoke: bool,
    only: Option<Vec<String>>,
}

impl Config {
    fn wants(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|l| l.iter().any(|s| s == section))
    }
}

fn pingpong_rows(env: &Env, cfg: &Config, notes: &mut Vec<String>) -> Vec<Row> {
    let cpus = multiproc::allowed_cpus();
    let rounds = if cfg.quick { 1_000 } else { 50_000 };
    let reps = if cfg.quick { 1 } else { 3 };
    let mut rows = Vec::new();
    let mut run = |label: &str, pair: Option<(usize, usize)>, row: Row| {
        let figs = match pair {
            None => std::array::from_fn(|_| Fig::Failed(format!("{label}: not enough CPUs"))),
            Some(p) => {
                let mut per: [Vec<Fig>; 5] = Default::default();
                // Repetitions interleave the implementations, so drift in
                // the machine's load hits all of them alike.
                for _ in 0..reps {
                    let f = each_impl!(ping_pong(env, p, rounds));
                    for (k, x) in f.into_iter().enumerate() {
                        per[k].push(x);
                    }
                }
                per.map(median)
            }
        };
        rows.push(row_with(row, figs));
    };
    let two = (cpus.len() >= 2).then(|| (cpus[0], cpus[1]));
    run(
        "two cores",
        two,
        Row::new("ping-pong, two cores", "ns/round trip", Better::Lower).target(
            KERNEL,
            5.0,
            "≥5× kernel",
        ),
    );
    run(
        "one core",
        Some((cpus[0], cpus[0])),
        Row::new("ping-pong, one core", "ns/round trip", Better::Lower).target(
            KERNEL,
            1.0,
            "no slower than kernel",
        ),
    );
    notes.push(format!(
        "ping-pong: {rounds} round trips per run (median of {reps} runs), CPUs {:?}",
        two.map_or(vec![cpus[0]], |(a, b)| vec![a, b])
    ));
    rows
}

fn contended_rows(env: &Env, cfg: &Config, notes: &mut Vec<String>) -> Vec<Row> {
    let run = budget(cfg.quick, 100, 1500);
    let mut rows = Vec::new();
    for undo in [false, true] {
        for n in [2usize, 4, 8] {
            let r = each_impl!(contended(env, n, undo, run));
            let u = if undo { " SEM_UNDO" } else { "" };
            let [a, b, c, d, e] = r;
            let split =
                |f: fn(&Contended) -> Fig| -> [Fig; 5] { [f(&a), f(&b), f(&c), f(&d), f(&e)] };
            rows.push(row_with(
                Row::new(format!("contended N={n}{u}"), "ns/(P+V)", Better::Lower).target(
                    KERNEL,
                    3.0,
                    "≥3× kernel throughput",
                ),
                split(|c| c.ns_per_op.clone()),
            ));
            rows.push(row_with(
                Row::new(
                    format!("contended N={n}{u}: fairness"),
                    "fairness",
                    Better::Higher,
                )
                .target_within(KERNEL, 1.0, 0.01, "fairness ≥ kernel's"),
                split(|c| c.fairness.clone()),
            ));
            rows.push(row_with(
                Row::new(
                    format!("contended N={n}{u}: context switches"),
                    "ctx sw/op",
                    Better::Info,
                ),
                split(|c| c.ctx_per_op.clone()),
            ));
        }
    }
    notes.push(format!(
        "contended: each run lasts {run:?}; fairness = fewest ops of any process / most (met when within 1% of the kernel's or better); context switches from getrusage(RUSAGE_SELF) in each child around its loop"
    ));
    rows
}

fn waiters_rows(env: &Env, cfg: &Config, notes: &mut Vec<String>) -> Vec<Row> {
    let sizes: &[usize] = if cfg.quick {
        &[1, 10]
    } else {
        &[1, 10, 100, 1000]
    };
    let mut rows = Vec::new();
    for &w in sizes {
        let r = each_impl!(waiters(env, w, cfg.quick));
        let [a, b, c, d, e] = r;
        let kinds = [
            ("single op", "ns/call", Better::Lower),
            ("single op SEM_UNDO", "ns/call", Better::Lower),
            ("2-op", "ns/call", Better::Lower),
            ("CPU of the sleeping waiters", "% of a core", Better::Info),
        ];
        for (k, (what, unit, better)) in kinds.into_iter().enumerate() {
            rows.push(row_with(
                Row::new(format!("{w} queued waiters: {what}"), unit, better),
                [
                    a[k].clone(),
                    b[k].clone(),
                    c[k].clone(),
                    d[k].clone(),
                    e[k].clone(),
                ],
            ));
        }
    }
    let per = multiproc::waiters_per_process();
    notes.push(format!(
        "queued waiters: W threads (in ceil(W/{per}) processes) blocked in P on semaphore 2 of a 3-semaphore set; timed: calls on semaphores 0 and 1 that never block; CPU of the sleeping waiters: their user+system time (/proc/PID/stat) over a quiet window before the timed calls"
    ));
    rows
}

fn sets_rows(env: &Env, cfg: &Config) -> Vec<Row> {
    let sizes: &[usize] = if cfg.quick {
        &[1, 10]
    } else {
        &[1, 10, 100, 1000]
    };
    let mut rows = Vec::new();
    for &n in sizes {
        rows.push(row_with(
            Row::new(
                format!("{n} sets round-robin: single op"),
                "ns/call",
                Better::Lower,
            ),
            each_impl!(sets(env, n, false, cfg.quick)),
        ));
        rows.push(row_with(
            Row::new(
                format!("{n} sets round-robin: SEM_UNDO"),
                "ns/call",
                Better::Lower,
            ),
            each_impl!(sets(env, n, true, cfg.quick)),
        ));
    }
    rows
}

fn uname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn main() {
    if let Ok(which) = std::env::var("SHMSEM_BENCH_PROFILE") {
        std::process::exit(profile::run(&which));
    }
    let quick_env = std::env::var_os("SHMSEM_BENCH_QUICK").is_some_and(|v| v != "0");
    let smoke = std::env::args().any(|a| a == "--test");
    let cfg = Config {
        quick: quick_env || smoke,
        smoke,
        only: std::env::var("SHMSEM_BENCH_ONLY")
            .ok()
            .map(|s| s.split(',').map(|x| x.trim().to_string()).collect()),
    };
    assert_eq!(
        IMPLS,
        [
            Shmsem::NAME,
            Kernel::NAME,
            PosixSem::NAME,
            Mutex::NAME,
            Futex::NAME
        ],
        "the table's columns follow each_impl!'s order"
    );

    let mut c = Criterion::default();
    c = if cfg.quick {
        c.warm_up_time(Duration::from_millis(30))
            .measurement_time(Duration::from_millis(100))
            .sample_size(10)
    } else {
        c.warm_up_time(Duration::from_millis(700))
            .measurement_time(Duration::from_secs(3))
    };
    // Command-line options (--test, filters, --sample-size, ...) win.
    let mut c = c.configure_from_args();

    let env = Env::new();
    let started = std::time::Instant::now();
    let mut rows = Vec::new();
    let mut notes = Vec::new();

    if cfg.wants("micro") {
        rows.extend(micro::run(&mut c, &env));
        notes.extend(micro::references(cfg.quick));
    }
    if cfg.wants("pingpong") {
        eprintln!("== ping-pong");
        rows.extend(pingpong_rows(&env, &cfg, &mut notes));
    }
    if cfg.wants("contended") {
        eprintln!("== contended");
        rows.extend(contended_rows(&env, &cfg, &mut notes));
    }
    if cfg.wants("waiters") {
        eprintln!("== queued waiters");
        rows.extend(waiters_rows(&env, &cfg, &mut notes));
    }
    if cfg.wants("sets") {
        eprintln!("== sets");
        rows.extend(sets_rows(&env, &cfg));
    }
    if cfg.wants("memory") {
        let (r, n) = memory::run(&env);
        rows.extend(r);
        notes.extend(n);
    }
    drop(env);

    let mode = if cfg.smoke {
        "smoke run (--test: each micro-benchmark ran once; the figures mean nothing)"
    } else if cfg.quick {
        "quick mode (SHMSEM_BENCH_QUICK=1: tiny sizes; the figures are rough)"
    } else {
        "full mode"
    };
    let cpus = multiproc::allowed_cpus().len();
    let mut all_notes = vec![format!(
        "{mode}; Linux {}, {cpus} CPUs, {}; took {:.0} s",
        uname(),
        now_utc(),
        started.elapsed().as_secs_f64()
    )];
    all_notes.extend(notes);
    all_notes.extend(report::failures(&rows));

    println!();
    println!("{}", report::text_table(&rows));
    for n in &all_notes {
        println!("- {n}");
    }

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    // Only a complete run replaces the committed table: a run of some
    // sections (SHMSEM_BENCH_ONLY) or a quick one writes beside it.
    let stem = match (cfg.only.is_some(), cfg.quick) {
        (true, _) => "suite-only",
        (false, true) => "suite-quick",
        (false, false) => "suite",
    };
    let title = format!(
        "shmsem benchmark suite ({})",
        if cfg.quick { "quick mode" } else { "full mode" }
    );
    let md = format!(
        "# {title}\n\nReproduce with `{}cargo bench --bench suite`.\n\n{}",
        if cfg.quick {
            "SHMSEM_BENCH_QUICK=1 "
        } else {
            ""
        },
        report::markdown(&rows, &all_notes)
    );
    let written = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(dir.join(format!("{stem}.md")), md))
        .and_then(|_| std::fs::write(dir.join(format!("{stem}.svg")), report::svg(&rows, &title)));
    match written {
        Ok(()) => println!("\nwrote {0}/{stem}.md and {0}/{stem}.svg", dir.display()),
        Err(e) => eprintln!(
            "warning: could not write the results to {}: {e}",
            dir.display()
        ),
    }
}
