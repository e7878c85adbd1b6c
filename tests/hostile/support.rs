//! Support for the hostile-segment tests: a seeded generator, a shared
//! control page between the test and its worker processes, a raw mapping of
//! a segment file to write garbage into, and worker processes (this test
//! binary run again) with a per-operation watchdog.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A small deterministic generator: the same seed gives the same sequence.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(splitmix(seed ^ 0x6057_11e5))
    }
    pub fn next(&mut self) -> u64 {
        self.0 = splitmix(self.0);
        self.0
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform in lo..=hi.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    /// True with probability p/100.
    pub fn pct(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}

pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// Nanoseconds on CLOCK_MONOTONIC (the same clock in every process).
pub fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for clock_gettime to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

// ---------------------------------------------------------------------------
// The control page
// ---------------------------------------------------------------------------

/// Most worker processes one test runs at once.
pub const MAX_WORKERS: usize = 16;
const PAGE: usize = 4096;
/// u64 words per worker record.
const REC: usize = 8;

/// A page of shared memory (a memfd inherited by the workers) through which
/// the test tells workers to stop and workers say what they are doing.
///
/// Word 0: stop flag; word 1: phase. Worker `i`'s record at words `8 + 8*i`: operations
/// done, the operation in progress (code + 1, 0 = none), when it started
/// (CLOCK_MONOTONIC ns), its timeout (ns, 0 = none), pid.
pub struct Control {
    fd: OwnedFd,
    base: *mut u8,
}

// SAFETY: the page is only accessed through atomics.
unsafe impl Send for Control {}
// SAFETY: as above.
unsafe impl Sync for Control {}

/// What one worker is doing, as the control page shows it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Heartbeat {
    pub ops: u64,
    pub op: Option<u32>,
    pub since_ns: u64,
    pub timeout_ns: u64,
}

impl Control {
    /// A fresh page, inheritable by children (no close-on-exec).
    pub fn new() -> Control {
        // SAFETY: memfd_create with a NUL-terminated name and no flags (so
        // the descriptor survives exec).
        let fd = unsafe { libc::memfd_create(c"shmsem-hostile-ctl".as_ptr(), 0) };
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        // SAFETY: fd was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: plain system call on our own descriptor.
        let r = unsafe { libc::ftruncate(fd.as_raw_fd(), PAGE as libc::off_t) };
        assert_eq!(r, 0, "ftruncate: {}", std::io::Error::last_os_error());
        Control::map(fd)
    }

    /// The page a worker inherited as descriptor `fd`.
    pub fn inherited(fd: i32) -> Control {
        // SAFETY: the test passed this descriptor to us and nothing else in
        // this process uses it.
        Control::map(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn map(fd: OwnedFd) -> Control {
        // SAFETY: maps one page of the memfd, which is one page long.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        assert!(p != libc::MAP_FAILED, "mmap control page");
        Control {
            fd,
            base: p as *mut u8,
        }
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < PAGE / 8);
        // SAFETY: in bounds of the mapped page, 8-aligned (page-aligned base).
        unsafe { &*(self.base.add(i * 8) as *const AtomicU64) }
    }

    fn rec(&self, w: usize, f: usize) -> &AtomicU64 {
        assert!(w < MAX_WORKERS);
        self.word(REC + REC * w + f)
    }

    pub fn stop(&self) {
        self.word(0).store(1, Ordering::SeqCst);
    }
    pub fn stopped(&self) -> bool {
        self.word(0).load(Ordering::SeqCst) != 0
    }

    /// The test's phase number (word 1), for workers that wait for it.
    pub fn set_phase(&self, p: u64) {
        self.word(1).store(p, Ordering::SeqCst);
    }
    pub fn phase(&self) -> u64 {
        self.word(1).load(Ordering::SeqCst)
    }

    /// Clears worker `w`'s record (before a new process takes it).
    pub fn reset(&self, w: usize) {
        for f in 0..REC {
            self.rec(w, f).store(0, Ordering::SeqCst);
        }
    }

    /// Worker side: operation `op` starts, with `timeout_ns` (0: none).
    pub fn begin(&self, w: usize, op: u32, timeout_ns: u64) {
        self.rec(w, 2).store(monotonic_ns(), Ordering::SeqCst);
        self.rec(w, 3).store(timeout_ns, Ordering::SeqCst);
        self.rec(w, 1).store(op as u64 + 1, Ordering::SeqCst);
    }
    /// Worker side: the operation returned.
    pub fn end(&self, w: usize) {
        self.rec(w, 1).store(0, Ordering::SeqCst);
        self.rec(w, 0).fetch_add(1, Ordering::SeqCst);
    }
    pub fn set_pid(&self, w: usize, pid: u32) {
        self.rec(w, 4).store(pid as u64, Ordering::SeqCst);
    }

    pub fn heartbeat(&self, w: usize) -> Heartbeat {
        let op = self.rec(w, 1).load(Ordering::SeqCst);
        Heartbeat {
            ops: self.rec(w, 0).load(Ordering::SeqCst),
            op: (op != 0).then(|| op as u32 - 1),
            since_ns: self.rec(w, 2).load(Ordering::SeqCst),
            timeout_ns: self.rec(w, 3).load(Ordering::SeqCst),
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        // SAFETY: unmaps the page mapped in `map`; nothing refers to it now.
        unsafe { libc::munmap(self.base as *mut libc::c_void, PAGE) };
    }
}

// ---------------------------------------------------------------------------
// A raw mapping of a segment file
// ---------------------------------------------------------------------------

/// A segment file mapped shared, read-write, for writing garbage into it
/// with atomic stores (the other processes access it with atomics too).
pub struct RawMap {
    base: *mut u8,
    len: usize,
    file: std::fs::File,
}

impl RawMap {
    pub fn open(path: &str) -> std::io::Result<RawMap> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let len = file.metadata()?.len() as usize;
        if len == 0 {
            return Err(std::io::Error::other("empty file"));
        }
        // SAFETY: maps the whole file shared; the mapping is only accessed
        // through atomics and unmapped in Drop.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(RawMap {
            base: p as *mut u8,
            len,
            file,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    fn at<T>(&self, off: usize) -> &T {
        let size = std::mem::size_of::<T>();
        assert!(
            off % size == 0 && off + size <= self.len,
            "offset {off} of {size} bytes outside {} or unaligned",
            self.len
        );
        // SAFETY: in bounds and aligned (checked above; the base is
        // page-aligned); the memory stays mapped while `self` lives.
        unsafe { &*(self.base.add(off) as *const T) }
    }

    pub fn load_u8(&self, off: usize) -> u8 {
        self.at::<AtomicU8>(off).load(Ordering::SeqCst)
    }
    pub fn store_u8(&self, off: usize, v: u8) {
        self.at::<AtomicU8>(off).store(v, Ordering::SeqCst)
    }
    pub fn load_u32(&self, off: usize) -> u32 {
        self.at::<AtomicU32>(off).load(Ordering::SeqCst)
    }
    pub fn store_u32(&self, off: usize, v: u32) {
        self.at::<AtomicU32>(off).store(v, Ordering::SeqCst)
    }
    pub fn load_u64(&self, off: usize) -> u64 {
        self.at::<AtomicU64>(off).load(Ordering::SeqCst)
    }
    pub fn store_u64(&self, off: usize, v: u64) {
        self.at::<AtomicU64>(off).store(v, Ordering::SeqCst)
    }

    /// Changes the file's size (the mapping keeps its length: never write
    /// past the new end afterwards).
    pub fn set_file_len(&self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)
    }
}

impl Drop for RawMap {
    fn drop(&mut self) {
        // SAFETY: unmaps what `open` mapped; no reference into it survives.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

// ---------------------------------------------------------------------------
// Worker processes
// ---------------------------------------------------------------------------

/// The name of the (ignored) test that is the worker processes' entry point.
pub const WORKER_TEST: &str = "hostile_worker";

/// One worker process: this test binary run again with `--exact
/// hostile_worker` and the role in its environment. Its output lines are
/// collected by two threads.
pub struct Worker {
    pub slot: usize,
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
    /// Set when the test killed it on purpose.
    pub killed: bool,
    pub exited: Option<std::process::ExitStatus>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// Starts a worker with these environment variables. `nobody`: run as
/// uid/gid 65534 (only when the test runs as root).
pub fn spawn_worker(slot: usize, env: &[(&str, String)], nobody: bool) -> Worker {
    // /proc/self/exe, not current_exe(): the running binary even if cargo
    // replaced the file meanwhile (long runs while rebuilding).
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args([
        WORKER_TEST,
        "--exact",
        "--nocapture",
        "--include-ignored",
        "--test-threads=1",
    ])
    .env("RUST_BACKTRACE", "0")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    if nobody && is_root() {
        cmd.uid(65534).gid(65534);
    }
    let mut child = cmd.spawn().expect("spawning a worker");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let mut readers = Vec::new();
    let outs: [Box<dyn Read + Send>; 2] = [
        Box::new(child.stdout.take().expect("stdout")),
        Box::new(child.stderr.take().expect("stderr")),
    ];
    for out in outs {
        let lines = lines.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let mut l = lines.lock().unwrap_or_else(|e| e.into_inner());
                if l.len() < 20_000 {
                    l.push(line);
                }
            }
        }));
    }
    Worker {
        slot,
        child,
        lines,
        killed: false,
        exited: None,
        readers,
    }
}

impl Worker {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether it has exited (reaps it).
    pub fn poll(&mut self) -> Option<std::process::ExitStatus> {
        if self.exited.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exited = Some(st);
            }
        }
        self.exited
    }

    pub fn kill(&mut self) {
        if self.poll().is_none() {
            self.killed = true;
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// Waits for exit until `deadline`; kills it after that. Returns
    /// whether it exited by itself.
    pub fn wait_until(&mut self, deadline: Instant) -> bool {
        while Instant::now() < deadline {
            if self.poll().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.kill();
        false
    }

    /// All output so far (after the readers finished, once it exited).
    pub fn output(&mut self) -> Vec<String> {
        if self.exited.is_some() {
            for r in self.readers.drain(..) {
                let _ = r.join();
            }
        }
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How it ended, in words, or None if it ended well (exit 0, or killed
    /// by the test on purpose).
    pub fn bad_end(&self) -> Option<String> {
        let st = self.exited?;
        if let Some(sig) = st.signal() {
            if self.killed && sig == libc::SIGKILL {
                return None;
            }
            let name = match sig {
                libc::SIGSEGV => "SIGSEGV",
                libc::SIGBUS => "SIGBUS",
                libc::SIGABRT => "SIGABRT",
                libc::SIGALRM => "SIGALRM (its own watchdog: an operation hung)",
                libc::SIGKILL => "SIGKILL",
                libc::SIGILL => "SIGILL",
                libc::SIGFPE => "SIGFPE",
                _ => "",
            };
            return Some(format!("killed by signal {sig} {name}"));
        }
        match st.code() {
            Some(0) => None,
            Some(101) => Some("panicked (exit 101)".to_string()),
            Some(c) => Some(format!("exit {c}")),
            None => Some(format!("{st:?}")),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------
// Files in /dev/shm
// ---------------------------------------------------------------------------

/// Files of namespace `ns` in /dev/shm: the registry and every set.
pub fn ns_files(ns: &str) -> Vec<String> {
    let reg = format!("shmsem.{ns}");
    let sets = format!("shmsem.{ns}.");
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/dev/shm") {
        for e in rd.flatten() {
            if let Some(n) = e.file_name().to_str() {
                if n == reg || n.starts_with(&sets) {
                    out.push(format!("/dev/shm/{n}"));
                }
            }
        }
    }
    out.sort();
    out
}

/// The segment file of set `id` in namespace `ns` (see src/registry.rs:
/// `/shmsem.NS.INDEX.SEQ`).
pub fn set_path(ns: &str, id: i32) -> String {
    format!("/dev/shm/shmsem.{ns}.{}.{}", id & 0x7fff, id as u32 >> 15)
}

/// The registry file of namespace `ns`.
pub fn registry_path(ns: &str) -> String {
    format!("/dev/shm/shmsem.{ns}")
}

/// Counts of "what happened" by name, for the report.
pub type Tally = BTreeMap<String, u64>;

pub fn add_tally(into: &mut Tally, from: &Tally) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}
