//! The machinery of the hostile-segment tests: their seeded generator, a
//! shared control page between the test and its worker processes, and
//! worker processes (this test binary run again) with a per-operation
//! watchdog. Segment files, their raw mappings and the rest come from the
//! shared support (tests/support/).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{is_root, rerun_self, SharedMap};

/// The hostile-segment tests' generator: seed s replays the sequences it
/// always did.
pub type Rng = crate::support::SaltedRng<0x6057_11e5>;

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
    // Field order is drop order: unmap, then close.
    page: SharedMap,
    fd: OwnedFd,
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
        let page = SharedMap::of_fd(&fd, PAGE, true).expect("mmap control page");
        Control { page, fd }
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        self.page.at(i * 8)
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
    spawn_worker_as(slot, env, (nobody && is_root()).then_some((65534, 65534)))
}

/// Starts a worker with these environment variables, as `(uid, gid)` if
/// given (root only).
pub fn spawn_worker_as(slot: usize, env: &[(&str, String)], user: Option<(u32, u32)>) -> Worker {
    let mut cmd = rerun_self(WORKER_TEST);
    cmd.env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
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

/// Counts of "what happened" by name, for the report.
pub type Tally = BTreeMap<String, u64>;

pub fn add_tally(into: &mut Tally, from: &Tally) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}
