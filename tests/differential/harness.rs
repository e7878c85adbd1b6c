//! The machinery of the differential tests: one trait over the two
//! implementations (the kernel and shmsem), a `Dual` that runs every call on
//! both and compares results and observable state, and forked children for
//! the checks that need another process (exit undo, another user). The
//! shared support (tests/support/) gives the fork lock, the generator,
//! errno names, forking and re-running this binary.

use std::fmt::Debug;
use std::fs::File;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use shmsem::sysv::{
    Sembuf, SemctlArg, SemidDs, Seminfo, Timespec, GETALL, GETNCNT, GETPID, GETVAL, GETZCNT,
    IPC_INFO, IPC_RMID, IPC_SET, IPC_STAT, SEM_INFO, SEM_STAT, SEM_STAT_ANY, SETALL, SETVAL,
};
use shmsem::Namespace;

pub use crate::support::{errno_name, exclusive, now_secs, shared};
use crate::support::{
    kill_and_reap, output_within, panic_message, pipe, readable_within, rerun_self, splitmix,
    try_wait_for, unique_ns_name, ChildNet, WaitError,
};

/// A call's outcome: the value, or the errno.
pub type R<T> = Result<T, i32>;

// Tests that fork hold `exclusive()`, all the others `shared()` (from the
// shared support): while a child is forked no other test is inside a
// library call.

// ---------------------------------------------------------------------------
// The two implementations
// ---------------------------------------------------------------------------

/// semctl's fourth argument, owned, so the same call can be made twice.
#[derive(Clone, Debug)]
pub enum Arg {
    /// No argument.
    None,
    /// SETVAL's value.
    Val(i32),
    /// IPC_STAT / SEM_STAT / SEM_STAT_ANY: a buffer to fill.
    Stat,
    /// IPC_SET: uid, gid, mode.
    Set { uid: u32, gid: u32, mode: u32 },
    /// GETALL: a buffer of this many values.
    GetAll(usize),
    /// SETALL's values.
    SetAll(Vec<u16>),
    /// IPC_INFO / SEM_INFO: a buffer to fill.
    Info,
}

/// What a successful semctl gave back.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Out {
    pub ret: i32,
    pub stat: Option<SemidDs>,
    pub all: Option<Vec<u16>>,
    pub info: Option<Seminfo>,
}

/// The System V semaphore calls, as both implementations offer them.
pub trait SemApi {
    fn semget(&self, key: i32, nsems: i32, semflg: i32) -> R<i32>;
    fn semop(&self, semid: i32, sops: &[Sembuf]) -> R<()>;
    fn semtimedop(&self, semid: i32, sops: &[Sembuf], timeout: Option<&Timespec>) -> R<()>;
    fn semctl(&self, semid: i32, semnum: i32, cmd: i32, arg: &Arg) -> R<Out>;
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .expect("an errno")
}

/// The kernel, through libc. `key_xor` maps keys (non-zero only in the
/// harness self-test, where the "shmsem" side is a second kernel user).
pub struct Kernel {
    pub key_xor: i32,
}

/// The kernel as the oracle.
pub const KERNEL: Kernel = Kernel { key_xor: 0 };

/// In the self-test the second side uses keys with this bit flipped.
const SELFTEST_KEY_XOR: i32 = 0x2000_0000;

/// Set DIFF_SELFTEST=1 to run every test kernel-against-kernel: checks the
/// harness and the expectations written in the tests, without shmsem.
pub fn selftest() -> bool {
    std::env::var_os("DIFF_SELFTEST").is_some()
}

impl SemApi for Kernel {
    fn semget(&self, key: i32, nsems: i32, semflg: i32) -> R<i32> {
        let key = if key == 0 { 0 } else { key ^ self.key_xor };
        // SAFETY: semget takes no pointers.
        let r = unsafe { libc::semget(key, nsems, semflg) };
        if r < 0 {
            Err(last_errno())
        } else {
            Ok(r)
        }
    }

    fn semop(&self, semid: i32, sops: &[Sembuf]) -> R<()> {
        let ptr = if sops.is_empty() {
            std::ptr::null_mut()
        } else {
            sops.as_ptr() as *mut libc::sembuf
        };
        // SAFETY: Sembuf is #[repr(C)] {u16, i16, i16}, the layout of
        // struct sembuf; the kernel only reads `sops.len()` of them (and
        // nothing when the length is 0 or above SEMOPM).
        let r = unsafe { libc::semop(semid, ptr, sops.len()) };
        if r < 0 {
            Err(last_errno())
        } else {
            Ok(())
        }
    }

    fn semtimedop(&self, semid: i32, sops: &[Sembuf], timeout: Option<&Timespec>) -> R<()> {
        let ptr = if sops.is_empty() {
            std::ptr::null_mut()
        } else {
            sops.as_ptr() as *mut libc::sembuf
        };
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.tv_sec,
            tv_nsec: t.tv_nsec,
        });
        let tsp = match &ts {
            Some(t) => t as *const libc::timespec,
            None => std::ptr::null(),
        };
        // SAFETY: as in semop; the timespec lives on this frame until the
        // call returns and the kernel only reads it.
        let r = unsafe { libc::syscall(libc::SYS_semtimedop, semid, ptr, sops.len(), tsp) };
        if r < 0 {
            Err(last_errno())
        } else {
            Ok(())
        }
    }

    fn semctl(&self, semid: i32, semnum: i32, cmd: i32, arg: &Arg) -> R<Out> {
        let mut out = Out::default();
        let r = match arg {
            // SAFETY: no pointer is passed; the variadic argument is a plain
            // integer that glibc reads as the union and ignores for these commands.
            Arg::None => unsafe { libc::semctl(semid, semnum, cmd, 0 as libc::c_ulong) },
            // SAFETY: SETVAL's union member is an int, passed by value.
            Arg::Val(v) => unsafe { libc::semctl(semid, semnum, cmd, *v as libc::c_int) },
            Arg::Stat => {
                // SAFETY: semid_ds is plain old data; all zeroes is a valid value.
                let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
                // SAFETY: the pointer is to a live, writable semid_ds of the
                // layout glibc expects for these commands.
                let r = unsafe { libc::semctl(semid, semnum, cmd, &mut ds as *mut libc::semid_ds) };
                if r >= 0 {
                    let mut d = from_kernel_ds(&ds);
                    if d.perm.key != 0 {
                        d.perm.key ^= self.key_xor;
                    }
                    out.stat = Some(d);
                }
                r
            }
            Arg::Set { uid, gid, mode } => {
                // SAFETY: semid_ds is plain old data; all zeroes is a valid value.
                let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
                ds.sem_perm.uid = *uid;
                ds.sem_perm.gid = *gid;
                ds.sem_perm.mode = *mode as libc::c_ushort;
                // SAFETY: the pointer is to a live semid_ds that the kernel reads.
                unsafe { libc::semctl(semid, semnum, cmd, &mut ds as *mut libc::semid_ds) }
            }
            Arg::GetAll(n) => {
                let mut buf = vec![0u16; *n];
                // SAFETY: the kernel writes nsems unsigned shorts; callers give
                // a buffer of at least the set's size (the kernel reports
                // EFAULT, not memory corruption, past a mapping, and the
                // buffer is never shorter than nsems in these tests).
                let r = unsafe { libc::semctl(semid, semnum, cmd, buf.as_mut_ptr()) };
                if r >= 0 {
                    out.all = Some(buf);
                }
                r
            }
            Arg::SetAll(vals) => {
                // SAFETY: the kernel reads nsems unsigned shorts from the
                // buffer, which holds at least that many in these tests.
                unsafe { libc::semctl(semid, semnum, cmd, vals.as_ptr()) }
            }
            Arg::Info => {
                // SAFETY: seminfo is ten ints; all zeroes is a valid value.
                let mut si: libc::seminfo = unsafe { std::mem::zeroed() };
                // SAFETY: the pointer is to a live, writable struct seminfo.
                let r = unsafe { libc::semctl(semid, semnum, cmd, &mut si as *mut libc::seminfo) };
                if r >= 0 {
                    out.info = Some(Seminfo {
                        semmap: si.semmap,
                        semmni: si.semmni,
                        semmns: si.semmns,
                        semmnu: si.semmnu,
                        semmsl: si.semmsl,
                        semopm: si.semopm,
                        semume: si.semume,
                        semusz: si.semusz,
                        semvmx: si.semvmx,
                        semaem: si.semaem,
                    });
                }
                r
            }
        };
        if r < 0 {
            return Err(last_errno());
        }
        out.ret = r;
        Ok(out)
    }
}

fn from_kernel_ds(ds: &libc::semid_ds) -> SemidDs {
    let mut d = SemidDs::default();
    d.perm.key = ds.sem_perm.__key;
    d.perm.uid = ds.sem_perm.uid;
    d.perm.gid = ds.sem_perm.gid;
    d.perm.cuid = ds.sem_perm.cuid;
    d.perm.cgid = ds.sem_perm.cgid;
    d.perm.mode = ds.sem_perm.mode as u32;
    d.perm.seq = ds.sem_perm.__seq as u32;
    d.otime = ds.sem_otime;
    d.ctime = ds.sem_ctime;
    d.nsems = ds.sem_nsems;
    d
}

/// shmsem, in one namespace.
pub struct Shm {
    pub ns: Arc<Namespace>,
}

impl SemApi for Shm {
    fn semget(&self, key: i32, nsems: i32, semflg: i32) -> R<i32> {
        self.ns.semget(key, nsems, semflg).map_err(|e| e.errno())
    }

    fn semop(&self, semid: i32, sops: &[Sembuf]) -> R<()> {
        self.ns.semop(semid, sops).map_err(|e| e.errno())
    }

    fn semtimedop(&self, semid: i32, sops: &[Sembuf], timeout: Option<&Timespec>) -> R<()> {
        self.ns
            .semtimedop(semid, sops, timeout)
            .map_err(|e| e.errno())
    }

    fn semctl(&self, semid: i32, semnum: i32, cmd: i32, arg: &Arg) -> R<Out> {
        let mut out = Out::default();
        let r = match arg {
            Arg::None => self.ns.semctl(semid, semnum, cmd, SemctlArg::None),
            Arg::Val(v) => self.ns.semctl(semid, semnum, cmd, SemctlArg::Val(*v)),
            Arg::Stat => {
                let mut ds = SemidDs::default();
                let r = self
                    .ns
                    .semctl(semid, semnum, cmd, SemctlArg::StatOut(&mut ds));
                if r.is_ok() {
                    out.stat = Some(ds);
                }
                r
            }
            Arg::Set { uid, gid, mode } => {
                let mut ds = SemidDs::default();
                ds.perm.uid = *uid;
                ds.perm.gid = *gid;
                ds.perm.mode = *mode;
                self.ns.semctl(semid, semnum, cmd, SemctlArg::Set(&ds))
            }
            Arg::GetAll(n) => {
                let mut buf = vec![0u16; *n];
                let r = self
                    .ns
                    .semctl(semid, semnum, cmd, SemctlArg::GetAll(&mut buf));
                if r.is_ok() {
                    out.all = Some(buf);
                }
                r
            }
            Arg::SetAll(vals) => self.ns.semctl(semid, semnum, cmd, SemctlArg::SetAll(vals)),
            Arg::Info => {
                let mut si = Seminfo::default();
                let r = self.ns.semctl(semid, semnum, cmd, SemctlArg::Info(&mut si));
                if r.is_ok() {
                    out.info = Some(si);
                }
                r
            }
        };
        out.ret = r.map_err(|e| e.errno())?;
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// Names, keys, the generator
// ---------------------------------------------------------------------------

/// The differential tests' generator: seed s replays the sequences it
/// always did.
pub type Rng = crate::support::SaltedRng<0x5eed>;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A namespace name no other test (or run) uses.
pub fn unique_ns(test: &str) -> String {
    unique_ns_name("dt", test)
}

/// A key that no kernel set on this machine has right now (checked), so
/// the kernel side can use real keys. The same key is used in shmsem's
/// (fresh) namespace.
pub fn unused_kernel_key() -> i32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut seed = nanos ^ ((std::process::id() as u64) << 32);
    loop {
        seed = splitmix(seed ^ COUNTER.fetch_add(1, Ordering::Relaxed) as u64);
        // Positive, non-zero, away from small numbers people pick by hand.
        let key = ((seed as u32) & 0x3fff_ffff | 0x4000_0000) as i32;
        if KERNEL.semget(key, 0, 0) == Err(libc::ENOENT)
            && KERNEL.semget(key ^ SELFTEST_KEY_XOR, 0, 0) == Err(libc::ENOENT)
        {
            return key;
        }
    }
}

// ---------------------------------------------------------------------------
// Observable state
// ---------------------------------------------------------------------------

/// GETVAL, GETPID, GETNCNT, GETZCNT of one semaphore.
pub type PerSem = (R<i32>, R<i32>, R<i32>, R<i32>);

/// Everything one side shows about one set, apart from ids, seq and times.
#[derive(Clone, Debug, PartialEq)]
pub struct Snap {
    /// IPC_STAT: key, uid, gid, cuid, cgid, mode, nsems — or the errno.
    pub stat: R<(i32, u32, u32, u32, u32, u32, u64)>,
    /// GETALL.
    pub all: R<Vec<u16>>,
    /// Per semaphore: GETVAL, GETPID, GETNCNT, GETZCNT.
    pub per: Vec<PerSem>,
    /// otime and ctime (compared only as described in `compare_times`).
    #[allow(dead_code)]
    pub otime: i64,
    pub ctime: i64,
}

fn snap(api: &dyn SemApi, id: i32, nsems: usize) -> Snap {
    let st = api.semctl(id, 0, IPC_STAT, &Arg::Stat);
    let (stat, otime, ctime) = match st {
        Ok(o) => {
            let d = o.stat.expect("IPC_STAT filled");
            (
                Ok((
                    d.perm.key,
                    d.perm.uid,
                    d.perm.gid,
                    d.perm.cuid,
                    d.perm.cgid,
                    d.perm.mode,
                    d.nsems,
                )),
                d.otime,
                d.ctime,
            )
        }
        Err(e) => (Err(e), 0, 0),
    };
    let all = api
        .semctl(id, 0, GETALL, &Arg::GetAll(nsems))
        .map(|o| o.all.expect("GETALL filled"));
    let one = |n: usize, cmd: i32| api.semctl(id, n as i32, cmd, &Arg::None).map(|o| o.ret);
    let per = (0..nsems)
        .map(|n| {
            (
                one(n, GETVAL),
                one(n, GETPID),
                one(n, GETNCNT),
                one(n, GETZCNT),
            )
        })
        .collect();
    Snap {
        stat,
        all,
        per,
        otime,
        ctime,
    }
}

/// One set that exists (or existed) on both sides.
#[derive(Clone, Debug)]
pub struct Pair {
    pub k: i32,
    pub s: i32,
    pub nsems: usize,
    /// Last snapshots (kernel, shmsem) and the second they were taken in.
    prev: Option<(Snap, Snap, i64)>,
    /// A process that may only read the set has waited for zero on it:
    /// the kernel then sets sempid and otime, a shmsem reader (read-only
    /// mapping) writes nothing (README, Differences): GETPID and otime are
    /// not compared for this set any more.
    pub reader_waited: bool,
}

// ---------------------------------------------------------------------------
// The dual runner
// ---------------------------------------------------------------------------

/// Runs every call on the kernel and on shmsem, compares the results, then
/// compares the observable state of every set created so far.
pub struct Dual {
    pub k: Kernel,
    /// shmsem (or, in the self-test, a second kernel side).
    pub s: Box<dyn SemApi>,
    /// shmsem's namespace (None in the self-test).
    pub ns: Option<Arc<Namespace>>,
    pub ns_name: String,
    pub pairs: Vec<Pair>,
    /// What to print first on a mismatch (test name, seed, step).
    pub ctx: String,
    /// The calls made so far (the last ones are printed on a mismatch).
    pub log: Vec<String>,
    /// Kernel ids to remove at the end.
    kernel_ids: Vec<i32>,
    owner_pid: u32,
    /// Compare the state after every call (off only inside children that
    /// cannot read the sets).
    pub check_after_each: bool,
}

impl Dual {
    /// A fresh namespace named after the test.
    pub fn new(test: &str) -> Dual {
        let ns_name = unique_ns(test);
        let (s, ns): (Box<dyn SemApi>, _) = if selftest() {
            let k2 = Kernel {
                key_xor: SELFTEST_KEY_XOR,
            };
            (Box::new(k2), None)
        } else {
            let ns = Namespace::open(&ns_name)
                .unwrap_or_else(|e| panic!("Namespace::open({ns_name}) failed: {e}"));
            (Box::new(Shm { ns: ns.clone() }), Some(ns))
        };
        Dual {
            k: KERNEL,
            s,
            ns,
            ns_name,
            pairs: Vec::new(),
            ctx: test.to_string(),
            log: Vec::new(),
            kernel_ids: Vec::new(),
            owner_pid: std::process::id(),
            check_after_each: true,
        }
    }

    /// A Dual over sets another process made: opens the namespace `ns_name`
    /// by name (as an unrelated process does) and knows the sets `pairs`
    /// (kernel id, shmsem id, nsems), in that order. Removes nothing when
    /// dropped.
    pub fn attach(ctx: &str, ns_name: &str, pairs: &[(i32, i32, usize)]) -> Dual {
        let (s, ns): (Box<dyn SemApi>, _) = if selftest() {
            let k2 = Kernel {
                key_xor: SELFTEST_KEY_XOR,
            };
            (Box::new(k2), None)
        } else {
            let ns = Namespace::open(ns_name).unwrap_or_else(|e| {
                panic!(
                    "Namespace::open({ns_name}) as uid {} failed: {e}",
                    // SAFETY: geteuid has no preconditions.
                    unsafe { libc::geteuid() }
                )
            });
            (Box::new(Shm { ns: ns.clone() }), Some(ns))
        };
        Dual {
            k: KERNEL,
            s,
            ns,
            ns_name: ns_name.to_string(),
            pairs: pairs
                .iter()
                .map(|&(k, s, nsems)| Pair {
                    k,
                    s,
                    nsems,
                    prev: None,
                    reader_waited: false,
                })
                .collect(),
            ctx: ctx.to_string(),
            log: Vec::new(),
            kernel_ids: Vec::new(),
            owner_pid: 0, // never the current process: nothing is removed
            check_after_each: true,
        }
    }

    /// The known sets as "k:s:nsems,..." (see `parse_pairs`).
    pub fn pairs_string(&self) -> String {
        let v: Vec<String> = self
            .pairs
            .iter()
            .map(|p| format!("{}:{}:{}", p.k, p.s, p.nsems))
            .collect();
        v.join(",")
    }

    /// True when the second side is shmsem (not the self-test).
    pub fn is_shm(&self) -> bool {
        self.ns.is_some()
    }

    /// Opens the namespace again by name, as an unrelated process would
    /// (used by children that changed their user).
    pub fn reopen_shm(&mut self) {
        if self.ns.is_none() {
            return;
        }
        let ns = Namespace::open(&self.ns_name).unwrap_or_else(|e| {
            panic!(
                "Namespace::open({}) as uid {} failed: {e} (errno {})",
                self.ns_name,
                // SAFETY: geteuid has no preconditions.
                unsafe { libc::geteuid() },
                e.errno()
            )
        });
        self.s = Box::new(Shm { ns: ns.clone() });
        self.ns = Some(ns);
    }

    fn note(&mut self, call: String) {
        self.log.push(call);
    }

    /// Appends the results to the last logged call.
    fn note_result<T: Debug>(&mut self, k: &R<T>, s: &R<T>) {
        if let Some(last) = self.log.last_mut() {
            let (k, s) = (show(k), show(s));
            if k == s {
                last.push_str(&format!(" -> {k}"));
            } else {
                last.push_str(&format!(" -> kernel {k}, shmsem {s}"));
            }
        }
    }

    /// Panics with everything needed to reproduce and understand a mismatch.
    pub fn fail(&self, what: &str, detail: String) -> ! {
        let mut msg = format!("\n=== MISMATCH in {} ===\n{}\n{}\n", self.ctx, what, detail);
        msg.push_str("--- last calls (most recent last) ---\n");
        let start = self.log.len().saturating_sub(12);
        for (i, c) in self.log.iter().enumerate().skip(start) {
            msg.push_str(&format!("  #{i}: {c}\n"));
        }
        msg.push_str("--- state now ---\n");
        for p in &self.pairs {
            msg.push_str(&format!(
                "  set k={} s={} nsems={}\n    kernel: {:?}\n    shmsem: {:?}\n",
                p.k,
                p.s,
                p.nsems,
                snap(&self.k, p.k, p.nsems),
                snap(&*self.s, p.s, p.nsems)
            ));
        }
        panic!("{msg}");
    }

    /// Both results must be the same errno, or both succeed with values
    /// that `same` accepts.
    pub fn agree<T: Debug>(&self, call: &str, k: &R<T>, s: &R<T>, same: impl Fn(&T, &T) -> bool) {
        let ok = match (k, s) {
            (Ok(a), Ok(b)) => same(a, b),
            (Err(a), Err(b)) => a == b,
            _ => false,
        };
        if !ok {
            self.fail(call, format!("kernel: {}\nshmsem: {}", show(k), show(s)));
        }
    }

    fn find_pair(&self, k: i32, s: i32) -> Option<usize> {
        self.pairs.iter().position(|p| p.k == k && p.s == s)
    }

    /// semget on both. On success returns the pair's index (a new pair, or
    /// the one that already had these ids on both sides).
    pub fn semget(&mut self, key: i32, nsems: i32, flg: i32) -> R<usize> {
        let call = format!("semget(key={key:#x}, nsems={nsems}, flg={flg:#o})");
        self.note(call.clone());
        let k = self.k.semget(key, nsems, flg);
        let s = self.s.semget(key, nsems, flg);
        self.note_result(&k, &s);
        let mut made = vec![k];
        if self.ns.is_none() {
            made.push(s); // self-test: the second side's sets are kernel sets too
        }
        for kid in made.into_iter().flatten() {
            if !self.kernel_ids.contains(&kid) {
                self.kernel_ids.push(kid);
            }
        }
        self.agree(&call, &k, &s, |_, _| true);
        let r = match (k, s) {
            (Ok(kid), Ok(sid)) => {
                let known_k = self.pairs.iter().position(|p| p.k == kid);
                let known_s = self.pairs.iter().position(|p| p.s == sid);
                if known_k != known_s {
                    self.fail(
                        &call,
                        format!(
                            "kernel returned {kid} (known set: {known_k:?}), shmsem returned {sid} \
                             (known set: {known_s:?}): they disagree on whether this is an existing set"
                        ),
                    );
                }
                match self.find_pair(kid, sid) {
                    Some(i) => Ok(i),
                    None => {
                        let nsems = match self.k.semctl(kid, 0, IPC_STAT, &Arg::Stat) {
                            Ok(o) => o.stat.unwrap().nsems as usize,
                            Err(_) => nsems.max(0) as usize,
                        };
                        self.pairs.push(Pair {
                            k: kid,
                            s: sid,
                            nsems,
                            prev: None,
                            reader_waited: false,
                        });
                        Ok(self.pairs.len() - 1)
                    }
                }
            }
            (Err(e), _) => Err(e),
            _ => unreachable!(),
        };
        self.after();
        r
    }

    /// semop on the set of pair `p`.
    pub fn semop(&mut self, p: usize, sops: &[Sembuf]) -> R<()> {
        let (k, s) = (self.pairs[p].k, self.pairs[p].s);
        self.semop_ids(k, s, sops)
    }

    /// [`Dual::semop`] of wait-for-zero operations by a process whose class
    /// may only read set `p` (see [`Pair::reader_waited`]); the parent of
    /// a child that does so calls [`Dual::excuse_reader_waits`].
    pub fn semop_reader(&mut self, p: usize, sops: &[Sembuf]) -> R<()> {
        self.excuse_reader_waits(p);
        self.semop(p, sops)
    }

    /// Stops comparing GETPID and otime of set `p` (see
    /// [`Pair::reader_waited`]).
    pub fn excuse_reader_waits(&mut self, p: usize) {
        self.pairs[p].reader_waited = true;
    }

    /// semop with explicit ids (stale, negative, unknown...).
    pub fn semop_ids(&mut self, kid: i32, sid: i32, sops: &[Sembuf]) -> R<()> {
        let call = format!("semop(k={kid}, s={sid}, {})", show_sops(sops));
        self.note(call.clone());
        let k = self.k.semop(kid, sops);
        let s = self.s.semop(sid, sops);
        self.note_result(&k, &s);
        self.agree(&call, &k, &s, |_, _| true);
        self.after();
        k
    }

    /// semtimedop on the set of pair `p`.
    pub fn semtimedop(&mut self, p: usize, sops: &[Sembuf], t: Option<Timespec>) -> R<()> {
        let (k, s) = (self.pairs[p].k, self.pairs[p].s);
        self.semtimedop_ids(k, s, sops, t)
    }

    pub fn semtimedop_ids(
        &mut self,
        kid: i32,
        sid: i32,
        sops: &[Sembuf],
        t: Option<Timespec>,
    ) -> R<()> {
        let call = format!(
            "semtimedop(k={kid}, s={sid}, {}, {:?})",
            show_sops(sops),
            t.map(|t| (t.tv_sec, t.tv_nsec))
        );
        self.note(call.clone());
        let k = self.k.semtimedop(kid, sops, t.as_ref());
        let s = self.s.semtimedop(sid, sops, t.as_ref());
        self.note_result(&k, &s);
        self.agree(&call, &k, &s, |_, _| true);
        self.after();
        k
    }

    /// semctl on the set of pair `p`; returns (kernel, shmsem) outputs.
    pub fn ctl(&mut self, p: usize, semnum: i32, cmd: i32, arg: Arg) -> R<(Out, Out)> {
        let (k, s) = (self.pairs[p].k, self.pairs[p].s);
        self.ctl_ids(k, s, semnum, cmd, arg)
    }

    /// semctl with explicit ids. What is compared depends on the command:
    /// ids and indices (SEM_STAT*, IPC_INFO, SEM_INFO return values) and
    /// times are left to the caller; everything else must be equal.
    pub fn ctl_ids(
        &mut self,
        kid: i32,
        sid: i32,
        semnum: i32,
        cmd: i32,
        arg: Arg,
    ) -> R<(Out, Out)> {
        let call = format!(
            "semctl(k={kid}, s={sid}, semnum={semnum}, cmd={}, {arg:?})",
            cmd_name(cmd)
        );
        self.note(call.clone());
        let k = self.k.semctl(kid, semnum, cmd, &arg);
        let s = self.s.semctl(sid, semnum, cmd, &arg);
        let ret = |r: &R<Out>| r.as_ref().map(|o| o.ret).map_err(|e| *e);
        self.note_result(&ret(&k), &ret(&s));
        self.agree(&call, &k, &s, |a, b| same_out(cmd, a, b));
        self.after();
        match (k, s) {
            (Ok(a), Ok(b)) => Ok((a, b)),
            (Err(e), _) => Err(e),
            _ => unreachable!(),
        }
    }

    fn after(&mut self) {
        if self.check_after_each {
            self.check_state();
        }
    }

    /// Compares the observable state of every known set.
    pub fn check_state(&mut self) {
        let now = now_secs();
        for i in 0..self.pairs.len() {
            let p = self.pairs[i].clone();
            let ks = snap(&self.k, p.k, p.nsems);
            let ss = snap(&*self.s, p.s, p.nsems);
            let what = format!("state of set k={} s={} after the last call", p.k, p.s);
            let pid_blind = |s: &Snap| -> Vec<PerSem> {
                s.per
                    .iter()
                    .map(|x| (x.0, if p.reader_waited { Ok(0) } else { x.1 }, x.2, x.3))
                    .collect()
            };
            let same_core =
                ks.stat == ss.stat && ks.all == ss.all && pid_blind(&ks) == pid_blind(&ss);
            if !same_core {
                self.fail(&what, format!("kernel: {ks:?}\nshmsem: {ss:?}"));
            }
            // Internal consistency on each side: GETALL agrees with GETVAL.
            for (side, sn) in [("kernel", &ks), ("shmsem", &ss)] {
                if let Ok(all) = &sn.all {
                    for (n, v) in all.iter().enumerate() {
                        if sn.per[n].0 != Ok(*v as i32) {
                            self.fail(
                                &what,
                                format!(
                                    "{side}: GETALL says {all:?} but GETVAL({n}) = {:?}",
                                    sn.per[n].0
                                ),
                            );
                        }
                    }
                }
            }
            if ks.stat.is_ok() {
                let prev = p
                    .prev
                    .as_ref()
                    .map(|(a, b, t)| (a.otime, b.otime, a.ctime, b.ctime, *t));
                if !p.reader_waited {
                    compare_times(
                        self,
                        &what,
                        "otime",
                        prev.map(|x| (x.0, x.1, x.4)),
                        ks.otime,
                        ss.otime,
                        now,
                    );
                }
                compare_times(
                    self,
                    &what,
                    "ctime",
                    prev.map(|x| (x.2, x.3, x.4)),
                    ks.ctime,
                    ss.ctime,
                    now,
                );
                self.pairs[i].prev = Some((ks, ss, now));
            } else {
                self.pairs[i].prev = None;
            }
        }
    }

    /// Tracks a set whose ids were obtained outside `semget` (a child made it).
    #[allow(dead_code)]
    pub fn forget_kernel_id(&mut self, kid: i32) {
        self.kernel_ids.retain(|&k| k != kid);
    }
}

/// otime/ctime: never compared exactly. Zero must be zero on both sides.
/// "Changed since the last snapshot" must agree, except that an update in
/// the same second as the previous value is invisible: a side that did not
/// change is excused only if its previous value is at least the second in
/// which the previous snapshot was taken (minus one for the kernel's coarse
/// clock). A value that changed must be a plausible "now".
fn compare_times(
    d: &Dual,
    what: &str,
    name: &str,
    prev: Option<(i64, i64, i64)>,
    k: i64,
    s: i64,
    now: i64,
) {
    if (k == 0) != (s == 0) {
        d.fail(
            what,
            format!("{name}: kernel {k}, shmsem {s} (zero on one side only)"),
        );
    }
    for (side, v) in [("kernel", k), ("shmsem", s)] {
        if v != 0 && (v > now + 1 || v < 1_000_000_000) {
            d.fail(what, format!("{name} of {side} is {v}, now is {now}"));
        }
    }
    let Some((pk, ps, t0)) = prev else { return };
    let kc = k != pk;
    let sc = s != ps;
    if kc == sc {
        return;
    }
    let (unchanged_prev, unchanged_side) = if kc { (ps, "shmsem") } else { (pk, "kernel") };
    if unchanged_prev >= t0 - 1 {
        return; // could have been rewritten with the same second
    }
    d.fail(
        what,
        format!(
            "{name} changed on one side only: kernel {pk} -> {k}, shmsem {ps} -> {s} \
             ({unchanged_side} did not change; previous snapshot at {t0})"
        ),
    );
}

fn same_out(cmd: i32, a: &Out, b: &Out) -> bool {
    match cmd {
        IPC_STAT => same_stat(a.stat.as_ref(), b.stat.as_ref()) && a.ret == b.ret,
        SEM_STAT | SEM_STAT_ANY => same_stat(a.stat.as_ref(), b.stat.as_ref()),
        IPC_INFO => {
            let (x, y) = (a.info.unwrap(), b.info.unwrap());
            same_limits(&x, &y) && x.semusz == y.semusz && x.semaem == y.semaem
        }
        SEM_INFO => same_limits(&a.info.unwrap(), &b.info.unwrap()),
        _ => a == b,
    }
}

/// Everything of IPC_STAT but seq and times.
fn same_stat(a: Option<&SemidDs>, b: Option<&SemidDs>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            let mut a = *a;
            let mut b = *b;
            a.perm.seq = 0;
            b.perm.seq = 0;
            (a.otime == 0) == (b.otime == 0) && (a.ctime == 0) == (b.ctime == 0) && {
                a.otime = 0;
                b.otime = 0;
                a.ctime = 0;
                b.ctime = 0;
                a == b
            }
        }
        _ => false,
    }
}

/// The seminfo fields that are limits, identical for IPC_INFO and SEM_INFO.
pub fn same_limits(a: &Seminfo, b: &Seminfo) -> bool {
    a.semmap == b.semmap
        && a.semmni == b.semmni
        && a.semmns == b.semmns
        && a.semmnu == b.semmnu
        && a.semmsl == b.semmsl
        && a.semopm == b.semopm
        && a.semume == b.semume
        && a.semvmx == b.semvmx
}

impl Drop for Dual {
    fn drop(&mut self) {
        if std::process::id() != self.owner_pid {
            return; // a forked child: the sets are the parent's
        }
        for &kid in &self.kernel_ids {
            // Best effort: already removed sets give EINVAL.
            let _ = KERNEL.semctl(kid, 0, IPC_RMID, &Arg::None);
        }
        let Some(ns) = self.ns.clone() else { return };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ns.destroy()));
        if let Ok(Err(e)) = r {
            eprintln!("warning: destroying namespace {} failed: {e}", self.ns_name);
        }
    }
}

pub fn show<T: Debug>(r: &R<T>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({})", errno_name(*e)),
    }
}

/// Every semctl command number.
pub const ALL_CMDS: [i32; 14] = [
    IPC_RMID,
    IPC_SET,
    IPC_STAT,
    IPC_INFO,
    GETPID,
    GETVAL,
    GETALL,
    GETNCNT,
    GETZCNT,
    SETVAL,
    SETALL,
    SEM_STAT,
    SEM_INFO,
    SEM_STAT_ANY,
];

pub fn cmd_name(cmd: i32) -> String {
    let n = match cmd {
        IPC_RMID => "IPC_RMID",
        IPC_SET => "IPC_SET",
        IPC_STAT => "IPC_STAT",
        IPC_INFO => "IPC_INFO",
        GETPID => "GETPID",
        GETVAL => "GETVAL",
        GETALL => "GETALL",
        GETNCNT => "GETNCNT",
        GETZCNT => "GETZCNT",
        SETVAL => "SETVAL",
        SETALL => "SETALL",
        SEM_STAT => "SEM_STAT",
        SEM_INFO => "SEM_INFO",
        SEM_STAT_ANY => "SEM_STAT_ANY",
        _ => return format!("{cmd}"),
    };
    n.to_string()
}

pub fn show_sops(sops: &[Sembuf]) -> String {
    if sops.len() > 8 {
        return format!("[{} ops]", sops.len());
    }
    let parts: Vec<String> = sops
        .iter()
        .map(|b| {
            let mut f = String::new();
            if b.sem_flg & shmsem::sysv::IPC_NOWAIT as i16 != 0 {
                f.push_str("|NOWAIT");
            }
            if b.sem_flg & shmsem::sysv::SEM_UNDO as i16 != 0 {
                f.push_str("|UNDO");
            }
            format!("{{{},{}{}}}", b.sem_num, b.sem_op, f)
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

// ---------------------------------------------------------------------------
// Forked children
// ---------------------------------------------------------------------------

/// The child's end of the pipes.
pub struct ChildIo {
    to_parent: File,
    from_parent: File,
}

impl ChildIo {
    /// Tells the parent "I reached a checkpoint".
    pub fn ready(&mut self) {
        write_frame(&mut self.to_parent, b'R', &[]);
    }
    /// Sends the calls the child made, for the parent's log.
    pub fn log(&mut self, lines: &[String]) {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let text: Vec<String> = lines.iter().map(|l| format!("[child {pid}] {l}")).collect();
        write_frame(&mut self.to_parent, b'L', text.join("\n").as_bytes());
    }

    /// Waits for the parent's go-ahead; returns the byte it sent.
    pub fn wait_go(&mut self) -> u8 {
        let mut b = [0u8; 1];
        if self.from_parent.read_exact(&mut b).is_err() {
            // The parent is gone: nothing sensible is left to do.
            // SAFETY: _exit has no preconditions.
            unsafe { libc::_exit(3) };
        }
        b[0]
    }
}

fn write_frame(f: &mut File, tag: u8, body: &[u8]) {
    let mut buf = vec![tag];
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(body);
    let _ = f.write_all(&buf);
}

/// The parent's handle on a forked child.
pub struct Child {
    pub pid: i32,
    /// Lines the child sent with `ChildIo::log`.
    logs: Vec<String>,
    from_child: File,
    to_child: File,
    done: bool,
}

const CHILD_DEADLINE: Duration = Duration::from_secs(20);

/// Forks a child that runs `body` and then `_exit`s (no exit code of any
/// kind runs, as after a crash). A panic in the child is sent to the parent,
/// whose next `expect_ready`/`finish` panics with it. The caller must hold
/// [`exclusive`]. The child has an alarm: a hung child dies of SIGALRM.
pub fn fork_child<F: FnOnce(&mut ChildIo)>(body: F) -> Child {
    use std::os::fd::AsRawFd;
    let (p_rd, c_wr) = pipe();
    let (c_rd, p_wr) = pipe();
    let parent_ends = [p_rd.as_raw_fd(), p_wr.as_raw_fd()];
    // The caller holds the fork lock, so no other test thread is inside a
    // library call; the child only makes system calls and shmsem calls,
    // then _exits.
    let pid = crate::support::fork_child(ChildNet::alarm(30), move || {
        for fd in parent_ends {
            // SAFETY: the parent's ends of the pipes, inherited: closing
            // this process's copies lets it see EOF when the parent goes.
            // The `File`s owning them in the parent's memory are never
            // dropped here (the child ends with _exit).
            unsafe { libc::close(fd) };
        }
        let mut io = ChildIo {
            to_parent: c_wr,
            from_parent: c_rd,
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut io))) {
            Ok(()) => 0,
            Err(payload) => {
                write_frame(&mut io.to_parent, b'P', panic_message(&*payload).as_bytes());
                1
            }
        }
    });
    // The closure, with the child's ends, was dropped in this process.
    Child {
        pid: pid.as_raw(),
        logs: Vec::new(),
        from_child: p_rd,
        to_child: p_wr,
        done: false,
    }
}

impl Child {
    /// The next frame that is not a log frame (those are collected).
    fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            let (tag, body) = self.read_any_frame()?;
            if tag != b'L' {
                return Some((tag, body));
            }
            let text = String::from_utf8_lossy(&body).to_string();
            self.logs.extend(text.lines().map(str::to_string));
        }
    }

    fn read_any_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let deadline = Instant::now() + CHILD_DEADLINE;
        let mut head = [0u8; 5];
        self.read_full(&mut head, deadline)?;
        let len = u32::from_le_bytes(head[1..5].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len];
        self.read_full(&mut body, deadline)?;
        Some((head[0], body))
    }

    fn read_full(&mut self, buf: &mut [u8], deadline: Instant) -> Option<()> {
        let mut got = 0;
        while got < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.kill();
                panic!(
                    "watchdog: child {} sent nothing for {CHILD_DEADLINE:?}",
                    self.pid
                );
            }
            let wait = left.min(Duration::from_secs(1)) + Duration::from_millis(1);
            if !readable_within(&self.from_child, wait) {
                continue;
            }
            match self.from_child.read(&mut buf[got..]) {
                Ok(0) => return None,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("reading from child: {e}"),
            }
        }
        Some(())
    }

    /// Reaps the child, which sent panic message `msg`, and panics with it.
    fn panicked(&mut self, msg: &[u8]) -> ! {
        let status = self.reap();
        panic!(
            "child {} panicked ({status}):\n{}",
            self.pid,
            String::from_utf8_lossy(msg)
        )
    }

    fn frame_or_die(&mut self, expect: u8) -> Vec<u8> {
        match self.read_frame() {
            Some((t, body)) if t == expect => body,
            Some((b'P', msg)) => self.panicked(&msg),
            Some((t, _)) => panic!(
                "child sent frame {:?}, expected {:?}",
                t as char, expect as char
            ),
            None => {
                let status = self.reap();
                panic!("child {} ended early ({status})", self.pid)
            }
        }
    }

    /// Waits for the child's next `ready()`.
    pub fn expect_ready(&mut self) {
        self.frame_or_die(b'R');
    }

    /// Lets the child go on past its `wait_go()`.
    pub fn go(&mut self) {
        self.go_with(0);
    }

    /// Lets the child go on, handing it one byte.
    pub fn go_with(&mut self, byte: u8) {
        self.to_child.write_all(&[byte]).expect("writing to child");
    }

    /// The lines the child logged so far.
    pub fn take_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.logs)
    }

    /// Waits for the child to exit; panics if it panicked or did not exit
    /// 0. Returns the lines it logged.
    pub fn finish(mut self) -> Vec<String> {
        match self.read_frame() {
            None => {}
            Some((b'P', msg)) => self.panicked(&msg),
            Some((t, _)) => panic!("child sent an unexpected frame {:?}", t as char),
        }
        let status = self.reap();
        assert_eq!(status, "exit 0", "child {} ended badly", self.pid);
        self.take_log()
    }

    /// Reaps the child (with a deadline), returns how it ended.
    fn reap(&mut self) -> String {
        self.done = true;
        match try_wait_for(Pid::from_raw(self.pid), CHILD_DEADLINE) {
            Ok(WaitStatus::Exited(_, code)) => format!("exit {code}"),
            Ok(WaitStatus::Signaled(_, sig, _)) => format!("signal {}", sig as i32),
            Ok(other) => format!("status {other:?}"),
            Err(WaitError::Failed(e)) => format!("waitpid: {e}"),
            Err(WaitError::TimedOut) => {
                self.kill();
                panic!("watchdog: child {} did not exit", self.pid);
            }
        }
    }

    fn kill(&mut self) {
        kill_and_reap(Pid::from_raw(self.pid));
        self.done = true;
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.done {
            self.kill();
        }
    }
}

/// Makes the calling (child) process an unprivileged user: no supplementary
/// groups, gid and uid 65534, no capabilities left.
pub fn become_nobody() {
    // SAFETY: plain system calls on this process's credentials.
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0, "setgroups");
        assert_eq!(libc::setgid(65534), 0, "setgid");
        assert_eq!(libc::setuid(65534), 0, "setuid");
    }
}

/// A sembuf.
pub fn sb(num: u16, op: i16, flg: i32) -> Sembuf {
    Sembuf::new(num, op, flg as i16)
}

// ---------------------------------------------------------------------------
// Children that are new processes (the test binary run again)
// ---------------------------------------------------------------------------

/// Environment variable naming the test an exec'd child must play.
pub const EXEC_CHILD_VAR: &str = "DIFF_EXEC_CHILD";

/// Parses `Dual::pairs_string`.
pub fn parse_pairs(s: &str) -> Vec<(i32, i32, usize)> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| {
            let f: Vec<&str> = x.split(':').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect()
}

/// Runs this test binary again as a new process that runs only `test`
/// with the given environment (plus `DIFF_EXEC_CHILD=test`), and panics
/// with its output if it fails. A child that runs longer than the deadline
/// is killed and reported.
pub fn exec_child(test: &str, env: &[(&str, String)]) {
    let mut cmd = rerun_self(test);
    cmd.env(EXEC_CHILD_VAR, test);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = output_within(&mut cmd, CHILD_DEADLINE, "the test binary").unwrap_or_else(|pid| {
        panic!("watchdog: exec'd child {pid} for {test} did not finish in {CHILD_DEADLINE:?}")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !text.contains("1 passed") {
        panic!("exec'd child for {test} failed ({}):\n{text}", out.status);
    }
}
