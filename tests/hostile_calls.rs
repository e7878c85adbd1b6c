//! Hostile calls (issue 3, item 6): every entry point of the System V face
//! with out-of-range arguments and bad values, made on the kernel and on
//! shmsem side by side with the differential harness, which compares every
//! result and errno and then the full observable state of every set.
//!
//! * `random_hostile_calls`: a seeded generator drives many thousands of
//!   calls: nsems negative, zero, huge; semnum out of range; sem_op at its
//!   extremes; sem_flg with garbage bits; nsops 0, SEMOPM, above SEMOPM;
//!   timeouts huge, negative, with tv_nsec out of range; every semctl
//!   command number, unknown ones and IPC_64 variants; NULL buffers; ids
//!   negative, stale, huge; SETVAL/SETALL values out of range; IPC_SET with
//!   invalid uids. Every seed runs on fresh sets; a mismatch ends its seed
//!   and the run goes on, and the test fails at the end with every distinct
//!   mismatch, its seed and step.
//! * hand-written tests for the mismatches the generator found, each
//!   asserting the kernel's behaviour, and tables of edges (every command
//!   number, semop and semget arguments).
//! * `c_random_bad_arguments`: the same idea at the C level
//!   (tests/hostile/fuzz_calls.c): seeded random calls through glibc's
//!   functions and `syscall()`, with bad pointers (NULL, wild, PROT_NONE,
//!   read-only, straddling a page end) as well as bad values, run against
//!   the kernel and under the preload library; the outputs must be equal
//!   line for line and neither run may crash. `HOSTILE_C_SEEDS` (default 3)
//!   seeds of `HOSTILE_C_CALLS` (default 1500) calls; needs gcc.
//!
//! Garbage ids are only ever used after checking that the kernel has no set
//! with that id or index (other programs on the machine have kernel sets);
//! stale ids are ids of this test's own removed sets. Comparing the full
//! state after every call costs ten times the calls, so the random test
//! compares it after every call that changed something, every 8th call and
//! at the end of each seed. `DIFF_SELFTEST=1` runs it all kernel against
//! kernel (checks the expectations written here).
//!
//! Run: `cargo test --test hostile_calls`. Environment:
//! `HOSTILE_CALLS` (total calls, default 8000), `HOSTILE_CALLS_SEED`
//! (first seed, default 0), `HOSTILE_CALLS_PER_SEED` (default 400),
//! `HOSTILE_CALLS_EXCLUDE` (comma-separated feature tags not to generate,
//! e.g. `timeout-huge,ipc_set-bad-id`, to look past a known bug).
//! To replay one seed: `HOSTILE_CALLS_SEED=S HOSTILE_CALLS=400`.
// The ban on std atomics, fences and raw futex calls (clippy.toml) keeps them
// inside the library's shim; this program is not the library: its atomics
// are its own (process-local counters, or words of a mapping it made), and
// its raw futex and semtimedop calls are the competitors it measures.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[allow(dead_code)]
#[path = "differential/harness.rs"]
mod harness;
mod support;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use harness::*;
use shmsem::sysv::{
    Sembuf, Timespec, GETALL, GETNCNT, GETPID, GETVAL, GETZCNT, IPC_CREAT, IPC_EXCL, IPC_INFO,
    IPC_NOWAIT, IPC_PRIVATE, IPC_RMID, IPC_SET, IPC_STAT, SEM_INFO, SEM_STAT, SEM_STAT_ANY,
    SEM_UNDO, SETALL, SETVAL,
};
use support::{
    compile_c, env_list, env_u64, have_gcc, manifest_dir, output_within, panic_message,
    preload_lib, NsNameGuard, ScratchDir,
};

const NW: i32 = IPC_NOWAIT;
const UN: i32 = SEM_UNDO;
const IDX_MASK: i32 = 0x7fff;
const SEMOPM: usize = 500;
const SEMMSL: i32 = 32000;
/// The kernel's IPC_64 flag (x86-64: an unknown command when set).
const IPC_64: i32 = 0x100;
/// At most this many live sets per seed (the state check reads them all
/// after every call).
const MAX_LIVE: usize = 4;

fn ts(sec: i64, nsec: i64) -> Timespec {
    Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

// ===========================================================================
// The generator
// ===========================================================================

/// One seed's world: the dual runner, the live sets (`d.pairs`), the ids of
/// removed sets, and keys known to be unused on the kernel.
struct World {
    d: Dual,
    r: Rng,
    stale: Vec<(i32, i32)>,
    keys: Vec<i32>,
    /// Feature tags of the call being generated (for grouping mismatches).
    tags: Vec<&'static str>,
    exclude: Vec<String>,
}

impl World {
    fn tag(&mut self, t: &'static str) {
        if !self.tags.contains(&t) {
            self.tags.push(t);
        }
    }

    /// True with probability p/100, unless feature `t` is excluded;
    /// records the tag when it fires.
    fn feature(&mut self, p: u64, t: &'static str) -> bool {
        if self.exclude.iter().any(|e| e == t) {
            return false;
        }
        if self.r.pct(p) {
            self.tag(t);
            true
        } else {
            false
        }
    }

    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.r.below(v.len() as u64) as usize]
    }

    /// A set on both sides (IPC_PRIVATE, normal flags). Returns its index
    /// in `d.pairs`.
    fn fresh_set(&mut self) -> usize {
        let nsems = self.r.range(1, 6) as i32;
        self.d
            .semget(IPC_PRIVATE, nsems, IPC_CREAT | 0o600)
            .expect("creating a private set")
    }

    /// Removes live pair `p` on both sides and remembers its stale ids.
    fn remove_pair(&mut self, p: usize) {
        let (k, s) = (self.d.pairs[p].k, self.d.pairs[p].s);
        if self.d.ctl_ids(k, s, 0, IPC_RMID, Arg::None).is_ok() {
            self.forget(k, s);
        }
    }

    fn forget(&mut self, k: i32, s: i32) {
        self.d.pairs.retain(|p| !(p.k == k && p.s == s));
        self.stale.push((k, s));
    }

    /// A target set: (kernel id, shmsem id, nsems the call may assume).
    /// Mostly a live set; sometimes a stale, negative or huge id.
    fn target(&mut self) -> (i32, i32, usize) {
        if self.d.pairs.is_empty() {
            self.fresh_set();
        }
        if !self.stale.is_empty() && self.feature(8, "id-stale") {
            let (k, s) = self.pick(&self.stale.clone());
            return (k, s, 3);
        }
        if self.feature(5, "id-negative") {
            let x = -(self.r.below(1 << 30) as i32) - 1;
            let id = self.pick(&[-1, i32::MIN, -0x8000, x]);
            return (id, id, 3);
        }
        if self.feature(5, "id-huge") {
            if let Some(id) = self.garbage_id() {
                return (id, id, 3);
            }
        }
        let p = self.r.below(self.d.pairs.len() as u64) as usize;
        let pr = &self.d.pairs[p];
        (pr.k, pr.s, pr.nsems)
    }

    /// A non-negative id that names no set on either side: its index is
    /// beyond shmsem's SEMMNI (32000) and the kernel has no set with that
    /// id or at that index (checked).
    fn garbage_id(&mut self) -> Option<i32> {
        let id = if self.r.pct(30) {
            i32::MAX
        } else {
            let idx = self.r.range(32000, 32767) as i32;
            let seq = self.r.below(1 << 16) as i32;
            (seq << 15) | idx
        };
        let free = |cmd| KERNEL.semctl(id, 0, cmd, &Arg::Stat).map(|_| ()) == Err(libc::EINVAL);
        (free(IPC_STAT) && free(SEM_STAT_ANY)).then_some(id)
    }

    /// A key for semget: IPC_PRIVATE, or one of this seed's keys (each
    /// checked unused on the kernel when it was made).
    fn key(&mut self) -> i32 {
        if self.r.pct(25) {
            return IPC_PRIVATE;
        }
        if self.keys.len() < 3 || self.r.pct(5) {
            let k = if self.feature(30, "key-negative") {
                // A negative key no kernel set uses.
                loop {
                    let k = -((self.r.below(1 << 30) as i32) + 0x1000);
                    if KERNEL.semget(k, 0, 0) == Err(libc::ENOENT) {
                        break k;
                    }
                }
            } else {
                unused_kernel_key()
            };
            self.keys.push(k);
        }
        self.pick(&self.keys.clone())
    }

    fn nsems_arg(&mut self) -> i32 {
        if self.feature(25, "nsems-hostile") {
            let x = -(self.r.below(1 << 20) as i32);
            self.pick(&[
                -1,
                0,
                i32::MIN,
                i32::MAX,
                SEMMSL,
                SEMMSL + 1,
                65535,
                65536,
                x,
            ])
        } else {
            self.r.range(0, 6) as i32
        }
    }

    fn semget_flags(&mut self) -> i32 {
        let mut f = 0o600;
        if self.r.pct(70) {
            f |= IPC_CREAT;
        }
        if self.r.pct(25) {
            f |= IPC_EXCL;
        }
        if self.feature(20, "semflg-garbage") {
            // Garbage in the bits semget does not define (not the 9 mode
            // bits: as root every request is granted anyway).
            f |= (self.r.next() as i32) & !0o7777 | (self.r.below(8) as i32) << 9;
        }
        if self.r.pct(20) {
            f = (f & !0o777) | self.r.below(0o1000) as i32;
        }
        f
    }

    fn sem_num(&mut self, nsems: usize) -> u16 {
        if self.feature(10, "semnum-out-of-range") {
            let x = self.r.next() as u16;
            self.pick(&[nsems as u16, nsems as u16 + 1, u16::MAX, x, 32000])
        } else {
            self.r.below(nsems as u64) as u16
        }
    }

    fn sem_op(&mut self) -> i16 {
        if self.feature(12, "semop-extreme") {
            let x = self.r.next() as i16;
            self.pick(&[
                i16::MIN,
                i16::MAX,
                -i16::MAX,
                i16::MAX - 1,
                16384,
                -16384,
                x,
            ])
        } else {
            self.r.range(-2, 2) as i16
        }
    }

    fn sem_flg(&mut self) -> i16 {
        let mut f = if self.r.pct(35) { UN } else { 0 };
        if self.feature(10, "semflg-garbage-bits") {
            f |= self.r.next() as u16 as i32;
        }
        f as u16 as i16
    }

    /// Operations for a set of `nsems`. With `nowait` every op gets
    /// IPC_NOWAIT, so the call never sleeps (on the kernel either).
    fn sops(&mut self, nsems: usize, nowait: bool) -> Vec<Sembuf> {
        let n = if self.feature(4, "nsops-0") {
            0
        } else if self.feature(3, "nsops-semopm") {
            SEMOPM
        } else if self.feature(4, "nsops-above-semopm") {
            self.pick(&[SEMOPM + 1, SEMOPM + 2, 4096, 65536])
        } else {
            self.r.range(1, 4) as usize
        };
        (0..n)
            .map(|_| {
                let num = self.sem_num(nsems);
                let op = self.sem_op();
                let mut flg = self.sem_flg();
                if nowait {
                    flg |= NW as i16;
                }
                sb(num, op, flg as i32)
            })
            .collect()
    }

    /// A timeout for semtimedop, and whether blocking ops are allowed with
    /// it (only short valid timeouts allow them: the kernel would sleep
    /// for the whole timeout).
    fn timeout(&mut self) -> (Option<Timespec>, bool) {
        if self.feature(20, "timeout-invalid") {
            let t = self.pick(&[
                ts(-1, 0),
                ts(0, -1),
                ts(0, 1_000_000_000),
                ts(i64::MIN, 0),
                ts(0, i64::MAX),
                ts(0, i64::MIN),
                ts(5, 1_000_000_000),
                ts(-1, 999_999_999),
            ]);
            return (Some(t), true);
        }
        if self.feature(15, "timeout-huge") {
            let t = self.pick(&[
                ts(i64::MAX, 999_999_999),
                ts(i64::MAX, 0),
                ts(i64::MAX / 1_000_000_000, 0),
                ts(1 << 40, 0),
                ts(u32::MAX as i64, 999_999_999),
            ]);
            return (Some(t), false);
        }
        if self.r.pct(15) {
            return (None, false);
        }
        if self.r.pct(50) {
            return (Some(ts(0, 0)), true);
        }
        (Some(ts(0, self.r.below(300_000) as i64)), true)
    }

    fn setval_value(&mut self) -> i32 {
        if self.feature(30, "setval-out-of-range") {
            let x = self.r.next() as i32;
            self.pick(&[-1, 32768, 65535, 65536, i32::MIN, i32::MAX, -32768, x])
        } else {
            self.pick(&[0, 1, 2, 3, 32767, 32766])
        }
    }

    fn semnum_arg(&mut self, nsems: usize) -> i32 {
        if self.feature(25, "semctl-semnum-out-of-range") {
            let x = self.r.next() as i32;
            self.pick(&[-1, i32::MIN, i32::MAX, nsems as i32, 65535, 65536, x])
        } else {
            self.r.below(nsems as u64) as i32
        }
    }

    /// A command number: mostly a known one, else unknown ones, IPC_64
    /// variants, extremes.
    fn cmd(&mut self) -> i32 {
        if self.feature(12, "cmd-ipc64") {
            return IPC_64 | self.pick(&ALL_CMDS);
        }
        if self.feature(12, "cmd-unknown") {
            let x = self.r.next() as i32;
            let y = self.r.below(40) as i32 - 5;
            return self.pick(&[
                -1,
                4,
                5,
                9,
                10,
                21,
                22,
                99,
                0x200,
                0x1000 | GETVAL,
                i32::MIN,
                i32::MAX,
                x,
                y,
            ]);
        }
        // IPC_RMID is rare, so sets live long enough to get some state.
        let c = self.pick(&ALL_CMDS);
        if c == IPC_RMID && !self.r.pct(15) {
            return GETVAL;
        }
        c
    }

    /// The fourth argument for `cmd` on a set of `nsems` (sometimes a NULL
    /// buffer where the command takes a pointer). Only argument kinds that
    /// mean the same thing in C and in the typed Rust API are made: SETVAL
    /// always gets a value, IPC_SET a buffer to read or NULL, and so on.
    fn arg(&mut self, cmd: i32, nsems: usize) -> Arg {
        let null = |w: &mut World| w.feature(10, "arg-null-buffer");
        match cmd {
            IPC_STAT | SEM_STAT | SEM_STAT_ANY => {
                if null(self) {
                    Arg::None
                } else {
                    Arg::Stat
                }
            }
            IPC_INFO | SEM_INFO => {
                if null(self) {
                    Arg::None
                } else {
                    Arg::Info
                }
            }
            GETALL => {
                if null(self) {
                    Arg::None
                } else {
                    Arg::GetAll(nsems + self.r.below(3) as usize)
                }
            }
            SETALL => {
                if null(self) {
                    return Arg::None;
                }
                let hostile = self.feature(25, "setall-out-of-range");
                let mut v: Vec<u16> = (0..nsems).map(|_| self.r.range(0, 4) as u16).collect();
                if hostile {
                    let i = self.r.below(nsems as u64) as usize;
                    v[i] = self.pick(&[32768, 65535, 40000, 32767]);
                }
                Arg::SetAll(v)
            }
            SETVAL => Arg::Val(self.setval_value()),
            IPC_SET => {
                if null(self) {
                    return Arg::None;
                }
                let uid = if self.feature(20, "ipc_set-uid-invalid") {
                    u32::MAX
                } else {
                    self.pick(&[0, 0, 1000, 65534])
                };
                let gid = if self.feature(20, "ipc_set-gid-invalid") {
                    u32::MAX
                } else {
                    self.pick(&[0, 0, 100, 65534])
                };
                let mode = if self.feature(30, "ipc_set-mode-garbage") {
                    self.r.next() as u32
                } else {
                    self.pick(&[0o600, 0o640, 0o666, 0o400, 0])
                };
                Arg::Set { uid, gid, mode }
            }
            IPC_RMID | GETPID | GETVAL | GETNCNT | GETZCNT => Arg::None,
            _ => match self.r.below(5) {
                0 => Arg::None,
                1 => Arg::Val(self.r.next() as i32),
                2 => Arg::Stat,
                3 => Arg::Info,
                _ => Arg::GetAll(nsems + 2),
            },
        }
    }

    // -----------------------------------------------------------------
    // The calls
    // -----------------------------------------------------------------

    /// One random call. Returns whether it may have changed some state (a
    /// call that succeeded and is not a pure read).
    fn step(&mut self) -> bool {
        self.tags.clear();
        match self.r.below(100) {
            0..=9 => self.call_semget(),
            10..=34 => self.call_semop(),
            35..=54 => self.call_semtimedop(),
            _ => self.call_semctl(),
        }
    }

    fn call_semget(&mut self) -> bool {
        self.tag("semget");
        let key = self.key();
        let nsems = self.nsems_arg();
        let flg = self.semget_flags();
        let Ok(p) = self.d.semget(key, nsems, flg) else {
            return false;
        };
        // Keep the state comparison cheap: big sets and sets beyond
        // MAX_LIVE are removed at once.
        if self.d.pairs[p].nsems > 8 {
            self.remove_pair(p);
        } else if self.d.pairs.len() > MAX_LIVE {
            self.remove_pair(0);
        }
        true
    }

    fn call_semop(&mut self) -> bool {
        self.tag("semop");
        let (k, s, nsems) = self.target();
        let sops = self.sops(nsems, true);
        self.d.semop_ids(k, s, &sops).is_ok()
    }

    fn call_semtimedop(&mut self) -> bool {
        self.tag("semtimedop");
        let (k, s, nsems) = self.target();
        let (t, may_block) = self.timeout();
        let nowait = !may_block || self.r.pct(50);
        let sops = self.sops(nsems, nowait);
        self.d.semtimedop_ids(k, s, &sops, t).is_ok()
    }

    fn call_semctl(&mut self) -> bool {
        self.tag("semctl");
        let cmd = self.cmd();
        let (mut k, mut s, nsems) = self.target();
        if cmd == SEM_STAT || cmd == SEM_STAT_ANY {
            // By index. The kernel's indices are machine-wide: only our own
            // sets' indices, or indices checked empty, may be used.
            let live = self.d.pairs.iter().any(|p| (p.k, p.s) == (k, s));
            if live {
                let high = if self.feature(30, "sem_stat-high-bits") {
                    (self.r.below(1 << 16) as i32) << 15
                } else {
                    0
                };
                k = (k & IDX_MASK) | high;
                s = (s & IDX_MASK) | high;
            } else if k >= 0 {
                // A stale id's index may host a kernel set by now.
                match self.garbage_id() {
                    Some(id) => (k, s) = (id, id),
                    None => return false,
                }
            }
        }
        let semnum = self.semnum_arg(nsems);
        let arg = self.arg(cmd, nsems);
        let r = self.d.ctl_ids(k, s, semnum, cmd, arg);
        if cmd == IPC_RMID && r.is_ok() {
            self.forget(k, s);
        }
        r.is_ok() && matches!(cmd, IPC_RMID | IPC_SET | SETVAL | SETALL)
    }
}

/// What went wrong in one seed.
struct Failure {
    seed: u64,
    step: usize,
    tags: String,
    summary: String,
    message: String,
}

/// The first lines of a mismatch message that identify it: the kind of
/// mismatch and the two results (for a result mismatch), without ids.
fn summarize(msg: &str) -> String {
    let mut lines = msg.lines().filter(|l| !l.trim().is_empty());
    if !msg.contains("=== MISMATCH") {
        // A panic inside the library or the test.
        return format!("panic: {}", lines.next().unwrap_or(""));
    }
    let _header = lines.next();
    let what = lines.next().unwrap_or("");
    if what.starts_with("state of set") {
        return "state differs after the call".to_string();
    }
    let k = lines.next().unwrap_or("");
    let s = lines.next().unwrap_or("");
    format!("{k} / {s}")
}

/// Runs `steps` random calls from `seed`; `Err` with the failure if a
/// mismatch (or a panic) ended the seed.
fn run_seed(seed: u64, steps: usize, exclude: &[String]) -> Result<usize, Failure> {
    let mut w = World {
        d: Dual::new("hostile"),
        r: Rng::new(seed ^ 0x405f_11e0),
        stale: Vec::new(),
        keys: Vec::new(),
        tags: Vec::new(),
        exclude: exclude.to_vec(),
    };
    // Comparing the full state of every set after every call costs ten
    // times the calls themselves: it is compared after every call that
    // changed something, after every 8th call (a failed call must change
    // nothing: a change shows up there or at the next check) and at the end.
    w.d.check_after_each = false;
    let mut step = 0;
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
        while step < steps {
            w.d.ctx = format!("hostile_calls seed={seed} step={step}");
            if w.step() || step % 8 == 7 {
                w.d.check_state();
            }
            step += 1;
        }
        w.d.ctx = format!("hostile_calls seed={seed} after the last step");
        w.d.check_state();
    }));
    match r {
        Ok(()) => Ok(step),
        Err(p) => {
            let message = panic_message(&*p);
            Err(Failure {
                seed,
                step,
                tags: w.tags.join(","),
                summary: summarize(&message),
                message,
            })
        }
    }
}

/// Many thousands of random hostile calls, kernel and shmsem side by side.
#[test]
fn random_hostile_calls() {
    let _g = shared();
    let total = env_u64("HOSTILE_CALLS", 8_000);
    let first = env_u64("HOSTILE_CALLS_SEED", 0);
    let per_seed = env_u64("HOSTILE_CALLS_PER_SEED", 400).max(1) as usize;
    let exclude = env_list("HOSTILE_CALLS_EXCLUDE");
    // The library's own panic messages would flood the output: the
    // failures are reported at the end.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let mut calls = 0u64;
    let mut seed = first;
    let mut failures: Vec<Failure> = Vec::new();
    while calls < total {
        let steps = per_seed.min((total - calls) as usize);
        match run_seed(seed, steps, &exclude) {
            Ok(n) => calls += n as u64,
            Err(f) => {
                calls += f.step as u64 + 1;
                failures.push(f);
            }
        }
        seed += 1;
    }
    std::panic::set_hook(hook);
    eprintln!(
        "random_hostile_calls: {calls} calls, seeds {first}..{seed}, {} failed, {:.1?}",
        failures.len(),
        started.elapsed()
    );
    if failures.is_empty() {
        return;
    }
    // Group by what went wrong and which hostile features the call had.
    let mut groups: BTreeMap<(String, String), Vec<&Failure>> = BTreeMap::new();
    for f in &failures {
        groups
            .entry((f.summary.clone(), f.tags.clone()))
            .or_default()
            .push(f);
    }
    let mut report = format!(
        "{} of the seeds ended in a mismatch with the kernel ({} distinct):\n",
        failures.len(),
        groups.len()
    );
    for ((summary, tags), fs) in &groups {
        let seeds: Vec<String> = fs
            .iter()
            .take(8)
            .map(|f| format!("{}@{}", f.seed, f.step))
            .collect();
        report.push_str(&format!(
            "\n* {summary}\n  call features: {tags}\n  {} seeds (seed@step): {}\n",
            fs.len(),
            seeds.join(" ")
        ));
    }
    for (shown, fs) in groups.values().enumerate() {
        if shown == 6 {
            report.push_str("\n(further groups' details omitted)\n");
            break;
        }
        let f = fs[0];
        let msg: String = f.message.lines().take(40).collect::<Vec<_>>().join("\n");
        report.push_str(&format!(
            "\n--- first of group: seed {} step {} ---\n{msg}\n",
            f.seed, f.step
        ));
    }
    report.push_str(
        "\nReplay one seed: HOSTILE_CALLS_SEED=<seed> HOSTILE_CALLS=<step+1> \
         cargo test --test hostile_calls random_hostile_calls\n",
    );
    panic!("{report}");
}

// ===========================================================================
// Hand-written cases (each one a mismatch the generator found, or an edge
// it cannot reach)
// ===========================================================================

/// A private set of `nsems` on both sides.
fn private(d: &mut Dual, nsems: i32) -> usize {
    d.semget(IPC_PRIVATE, nsems, IPC_CREAT | 0o600)
        .expect("creating a private set")
}

/// A huge but valid timeout is no timeout (the kernel clamps it): a call
/// that can complete at once completes, on the slow path too (SEM_UNDO, or
/// several ops).
#[test]
fn huge_timeouts_on_calls_that_complete() {
    let _g = shared();
    let mut d = Dual::new("hugets");
    let p = private(&mut d, 2);
    for t in [
        ts(i64::MAX, 999_999_999),
        ts(i64::MAX, 0),
        ts(i64::MAX / 1_000_000_000 + 1, 0),
        ts(1 << 40, 0),
    ] {
        for ops in [
            vec![sb(0, 1, 0)],
            vec![sb(0, 1, UN)],
            vec![sb(0, 1, 0), sb(1, 1, 0)],
            vec![sb(0, -1, NW), sb(1, -1, UN | NW)],
        ] {
            d.semtimedop(p, &ops, Some(t))
                .unwrap_or_else(|e| panic!("{:?} with timeout {t:?}: {}", ops, errno_name(e)));
        }
    }
}

/// A huge valid timeout on a call that blocks: the kernel sleeps until the
/// call can complete (here: until another process posts).
#[test]
fn huge_timeout_on_a_blocking_call_waits() {
    let _g = exclusive();
    let mut d = Dual::new("hugewait");
    let p = private(&mut d, 1);
    let (kid, sid) = (d.pairs[p].k, d.pairs[p].s);
    let ns = d.ns.clone();
    for side in ["kernel", "shmsem"] {
        if side == "shmsem" && ns.is_none() {
            continue; // self-test: the kernel side is enough
        }
        let api: Box<dyn SemApi> = match (side, &ns) {
            ("shmsem", Some(ns)) => Box::new(Shm { ns: ns.clone() }),
            _ => Box::new(KERNEL),
        };
        let id = if side == "kernel" { kid } else { sid };
        let t = ts(i64::MAX, 999_999_999);
        let child = fork_child(|io| {
            let r = api.semtimedop(id, &[sb(0, -1, 0)], Some(&t));
            io.log(&[format!(
                "{side}: semtimedop -1 with timeout {t:?}: {}",
                show(&r)
            )]);
            assert_eq!(r, Ok(()), "{side}: the waiter must get the unit");
        });
        // Wait (bounded) until the child sleeps on the semaphore.
        let until = Instant::now() + Duration::from_secs(5);
        let mut slept = false;
        while Instant::now() < until {
            if api.semctl(id, 0, GETNCNT, &Arg::None).map(|o| o.ret) == Ok(1) {
                slept = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        api.semop(id, &[sb(0, 1, 0)]).expect("post");
        // Reports the child's own failure first, if it had one.
        child.finish();
        assert!(slept, "{side}: the child never slept on the semaphore");
    }
}

/// The idiomatic API's timeout at its extreme: `Duration::MAX` is no
/// timeout (a call that can complete does).
#[test]
fn api_op_timeout_duration_max() {
    let _g = shared();
    let name = unique_ns("apimax");
    let ns = shmsem::Namespace::open(&name).expect("namespace");
    struct Destroy(std::sync::Arc<shmsem::Namespace>);
    impl Drop for Destroy {
        fn drop(&mut self) {
            let _ = self.0.destroy();
        }
    }
    let _destroy = Destroy(ns.clone());
    let set = shmsem::SemaphoreSet::create_private(&ns, 2, 0o600).expect("set");
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
        set.op_timeout(
            &[shmsem::Op::post(0, 1), shmsem::Op::post(1, 1)],
            Duration::MAX,
        )
    }));
    let r =
        r.unwrap_or_else(|p| panic!("op_timeout(Duration::MAX) panicked: {}", panic_message(&*p)));
    assert_eq!(r, Ok(()));
    assert_eq!(set.values(), Ok(vec![1, 1]));
}

/// IPC_SET with a uid or gid that is not valid ((uid_t)-1) is EINVAL on
/// the kernel, and nothing changes.
#[test]
fn ipc_set_invalid_uid_or_gid() {
    let _g = shared();
    let mut d = Dual::new("setinval");
    let p = private(&mut d, 1);
    for (uid, gid) in [(u32::MAX, 0), (0, u32::MAX), (u32::MAX, u32::MAX)] {
        let r = d.ctl(
            p,
            0,
            IPC_SET,
            Arg::Set {
                uid,
                gid,
                mode: 0o640,
            },
        );
        assert_eq!(
            r.map(|_| ()),
            Err(libc::EINVAL),
            "uid {uid:#x} gid {gid:#x}"
        );
    }
}

/// IPC_SET copies its buffer in before looking the id up: a NULL buffer is
/// EFAULT even for a stale or unknown id (but EINVAL for a negative id).
#[test]
fn ipc_set_null_buffer_is_efault_before_the_lookup() {
    let _g = shared();
    let mut d = Dual::new("setnull");
    let p = private(&mut d, 1);
    let (k, s) = (d.pairs[p].k, d.pairs[p].s);
    assert_eq!(
        d.ctl(p, 0, IPC_SET, Arg::None).map(|_| ()),
        Err(libc::EFAULT)
    );
    d.ctl(p, 0, IPC_RMID, Arg::None).expect("IPC_RMID");
    d.pairs.clear();
    assert_eq!(
        d.ctl_ids(k, s, 0, IPC_SET, Arg::None).map(|_| ()),
        Err(libc::EFAULT),
        "stale id"
    );
    assert_eq!(
        d.ctl_ids(-1, -1, 0, IPC_SET, Arg::None).map(|_| ()),
        Err(libc::EINVAL),
        "negative id"
    );
}

/// Every command number from -2 to 40, every IPC_64 variant and a few
/// extremes, on a live, a stale and a negative id, with semnum in and out
/// of range: the kernel's result, and nothing changes on errors.
#[test]
fn every_command_number() {
    let _g = shared();
    let mut d = Dual::new("everycmd");
    let p = private(&mut d, 3);
    d.ctl(p, 0, SETALL, Arg::SetAll(vec![1, 2, 3]))
        .expect("SETALL");
    let dead = private(&mut d, 2);
    let (dk, ds) = (d.pairs[dead].k, d.pairs[dead].s);
    d.ctl(dead, 0, IPC_RMID, Arg::None).expect("IPC_RMID");
    d.pairs.truncate(1);
    let mut cmds: Vec<i32> = (-2..=40).collect();
    cmds.extend((0..=20).map(|c| c | IPC_64));
    cmds.extend([0x200, 0x1000, i32::MIN, i32::MAX, -256]);
    for &cmd in &cmds {
        if cmd == IPC_RMID {
            continue; // below, last
        }
        let args: Vec<Arg> = match cmd {
            IPC_STAT | SEM_STAT | SEM_STAT_ANY => vec![Arg::Stat, Arg::None],
            IPC_INFO | SEM_INFO => vec![Arg::Info, Arg::None],
            GETALL => vec![Arg::GetAll(3), Arg::None],
            SETALL => vec![Arg::SetAll(vec![3, 2, 1]), Arg::None],
            SETVAL => vec![Arg::Val(4), Arg::Val(-1), Arg::Val(32768)],
            IPC_SET => vec![
                Arg::Set {
                    uid: 0,
                    gid: 0,
                    mode: 0o600,
                },
                Arg::None,
            ],
            _ => vec![Arg::None, Arg::Stat, Arg::Val(7)],
        };
        for arg in args {
            for semnum in [0, 2, 3, -1, i32::MAX] {
                let (k, s) = (d.pairs[0].k, d.pairs[0].s);
                let (k, s) = if cmd == SEM_STAT || cmd == SEM_STAT_ANY {
                    (k & IDX_MASK, s & IDX_MASK)
                } else {
                    (k, s)
                };
                let _ = d.ctl_ids(k, s, semnum, cmd, arg.clone());
                if cmd != SEM_STAT && cmd != SEM_STAT_ANY {
                    let _ = d.ctl_ids(dk, ds, semnum, cmd, arg.clone());
                }
                let _ = d.ctl_ids(-1, -1, semnum, cmd, arg.clone());
            }
        }
    }
    d.ctl(0, 0, IPC_RMID, Arg::None)
        .expect("IPC_RMID at the end");
}

/// semop/semtimedop argument extremes in a fixed table: nsops 0, SEMOPM,
/// SEMOPM + 1; sem_num 65535; sem_op -32768 and 32767; every sem_flg bit;
/// timeouts at every edge.
#[test]
fn semop_argument_edges() {
    let _g = shared();
    let mut d = Dual::new("semopedge");
    let p = private(&mut d, 2);
    // nsops.
    assert_eq!(d.semop(p, &[]), Err(libc::EINVAL));
    let many = vec![sb(0, 1, NW); SEMOPM];
    d.semop(p, &many).expect("SEMOPM ops");
    let down = vec![sb(0, -1, NW | UN); SEMOPM];
    d.semop(p, &down).expect("SEMOPM ops with SEM_UNDO");
    let too_many = vec![sb(0, 1, NW); SEMOPM + 1];
    assert_eq!(d.semop(p, &too_many), Err(libc::E2BIG));
    // sem_num, sem_op extremes.
    for num in [2u16, 3, 32000, u16::MAX] {
        assert_eq!(d.semop(p, &[sb(num, 0, NW)]), Err(libc::EFBIG));
    }
    let _ = d.semop(p, &[sb(0, i16::MAX, NW)]);
    let _ = d.semop(p, &[sb(0, 1, NW)]);
    let _ = d.semop(p, &[sb(0, i16::MIN, NW)]);
    let _ = d.semop(p, &[sb(1, i16::MAX, UN | NW)]);
    let _ = d.semop(p, &[sb(1, i16::MIN + 1, UN | NW)]);
    let _ = d.semop(p, &[sb(1, i16::MAX, UN | NW), sb(1, -1, UN | NW)]);
    // Every single sem_flg bit, with and without IPC_NOWAIT.
    for bit in 0..16 {
        let f = (1u16 << bit) as i16 as i32;
        let _ = d.semop(p, &[sb(0, 1, f | NW)]);
        let _ = d.semop(p, &[sb(0, -1, f | NW)]);
        let _ = d.semtimedop(p, &[sb(1, -1, f)], Some(ts(0, 0)));
    }
    // Timeouts at every edge (the op could complete at once).
    for t in [
        ts(0, 999_999_999),
        ts(0, 1_000_000_000),
        ts(0, -1),
        ts(-1, 0),
        ts(i64::MIN, i64::MIN),
        ts(0, i64::MAX),
    ] {
        let _ = d.semtimedop(p, &[sb(0, 1, 0)], Some(t));
        let _ = d.semtimedop(p, &[sb(0, 1, UN), sb(1, 0, NW)], Some(t));
        let _ = d.semtimedop(p, &[], Some(t));
        let _ = d.semtimedop_ids(-1, -1, &[sb(0, 1, 0)], Some(t));
    }
}

/// semget's arguments at their extremes, on new and existing keys.
#[test]
fn semget_argument_edges() {
    let _g = shared();
    let mut d = Dual::new("semgetedge");
    let key = unused_kernel_key();
    d.semget(key, 3, IPC_CREAT | 0o600).expect("create");
    let free = unused_kernel_key();
    for k in [key, free, IPC_PRIVATE] {
        for nsems in [
            i32::MIN,
            -1,
            0,
            1,
            3,
            4,
            SEMMSL,
            SEMMSL + 1,
            65536,
            i32::MAX,
        ] {
            for flg in [
                0,
                IPC_CREAT,
                IPC_CREAT | IPC_EXCL,
                IPC_EXCL,
                !0o777,
                i32::MIN | IPC_CREAT | 0o600,
                IPC_NOWAIT | SEM_UNDO | 0o600,
            ] {
                if k != key && nsems > 8 && flg & IPC_CREAT != 0 && nsems <= SEMMSL {
                    continue; // would create a big set; the random test does it
                }
                if let Ok(p) = d.semget(k, nsems, flg) {
                    let pr = &d.pairs[p];
                    if pr.k != d.pairs[0].k {
                        let (pk, ps) = (pr.k, pr.s);
                        d.ctl_ids(pk, ps, 0, IPC_RMID, Arg::None).expect("remove");
                        d.pairs.retain(|x| x.k != pk);
                    }
                }
            }
        }
    }
}

// ===========================================================================
// The C level: random calls with bad pointers through the preload library
// ===========================================================================

/// Runs `cmd` to the end (at most 120 s); returns (exit status, stdout
/// lines, stderr).
fn run_program(mut cmd: std::process::Command) -> (String, Vec<String>, String) {
    let out = output_within(&mut cmd, Duration::from_secs(120), "the C program")
        .unwrap_or_else(|_| panic!("watchdog: the C program ran for more than 120 s"));
    (
        format!("{}", out.status),
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Random calls with out-of-range arguments and bad pointers from C,
/// through the glibc functions and through `syscall()`, under the preload
/// library and against the kernel: the two outputs must be the same line
/// for line, and neither program may crash.
/// `HOSTILE_C_SEEDS` (default 3) seeds of `HOSTILE_C_CALLS` (default 1500)
/// calls each.
#[test]
fn c_random_bad_arguments() {
    let _g = exclusive();
    if !have_gcc() {
        support::skipped("c_random_bad_arguments: gcc not found");
        return;
    }
    let lib = preload_lib();
    let dir = ScratchDir::new(&format!("hostile-c-{}", std::process::id()));
    let exe = dir.path().join("fuzz_calls");
    compile_c(
        &manifest_dir().join("tests/hostile/fuzz_calls.c"),
        &exe,
        &[],
    );
    let seeds = env_u64("HOSTILE_C_SEEDS", 3);
    let calls = env_u64("HOSTILE_C_CALLS", 1500);
    let first = env_u64("HOSTILE_CALLS_SEED", 0);
    for seed in first..first + seeds {
        // The kernel.
        let mut k = std::process::Command::new(&exe);
        k.args([seed.to_string(), calls.to_string()])
            .env_remove("LD_PRELOAD")
            .env_remove("SHMSEM_NAMESPACE");
        let (kst, kout, kerr) = run_program(k);
        // Sets the program left behind (it failed before removing them).
        for l in kerr.lines() {
            if let Some(id) = l
                .strip_prefix("SET ")
                .and_then(|x| x.trim().parse::<i32>().ok())
            {
                let _ = KERNEL.semctl(id, 0, IPC_RMID, &Arg::None);
            }
        }
        // shmsem, in a namespace of its own.
        let ns_name = unique_ns("cfuzz");
        let _destroy = NsNameGuard(ns_name.clone());
        let mut s = std::process::Command::new(&exe);
        s.args([seed.to_string(), calls.to_string()])
            .env("LD_PRELOAD", lib)
            .env("SHMSEM_NAMESPACE", &ns_name);
        let (sst, sout, serr) = run_program(s);
        assert_eq!(
            kst, "exit status: 0",
            "seed {seed}: the program failed against the kernel:\n{kerr}"
        );
        assert_eq!(
            sst,
            "exit status: 0",
            "seed {seed}: the program failed under the preload library (last lines: {:?}):\n{serr}",
            &sout[sout.len().saturating_sub(5)..]
        );
        if let Some(i) = (0..kout.len().max(sout.len())).find(|&i| kout.get(i) != sout.get(i)) {
            let from = i.saturating_sub(8);
            panic!(
                "seed {seed}: the preload library differs from the kernel at line {i}:\n\
                 kernel: {:?}\nshmsem: {:?}\ncontext (kernel):\n  {}\n\
                 Replay: HOSTILE_CALLS_SEED={seed} HOSTILE_C_SEEDS=1 cargo test --test hostile_calls c_random",
                kout.get(i),
                sout.get(i),
                kout[from..i.min(kout.len())].join("\n  ")
            );
        }
        eprintln!(
            "c_random_bad_arguments: seed {seed}: {} calls agree",
            kout.len()
        );
    }
}
