//! The test environment: one forking test at a time, namespace names,
//! namespaces and directories removed at the end, environment knobs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use shmsem::{Limits, Namespace, SemaphoreSet};

use super::watchdog::Watchdog;

// ---------------------------------------------------------------------------
// One forking test at a time
// ---------------------------------------------------------------------------

/// Tests run on threads of one process. A fork copies only the forking
/// thread, so a lock held by another thread at that moment (inside the
/// library, or std's) stays locked in the child for ever. A test that forks
/// holds this lock exclusively; a test that does not fork may hold it
/// shared: while a child is forked no other test is inside a library call.
static FORK_LOCK: RwLock<()> = RwLock::new(());

/// For a test that does not fork: runs alongside other such tests.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    FORK_LOCK.read().unwrap_or_else(|e| e.into_inner())
}

/// For a test that forks (or that must run alone): no other test that
/// holds [`shared`] or [`exclusive`] runs meanwhile.
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    FORK_LOCK.write().unwrap_or_else(|e| e.into_inner())
}

/// The tests of a binary whose every test holds this run one at a time.
pub fn serial() -> RwLockWriteGuard<'static, ()> {
    exclusive()
}

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

/// `PREFIX-TEST-PID`: a namespace name of this test process (a name is at
/// most 64 bytes).
pub fn ns_name(prefix: &str, test: &str) -> String {
    format!("{prefix}-{test}-{}", std::process::id())
}

static NS_COUNTER: AtomicU32 = AtomicU32::new(0);

/// `PREFIX-TEST-PID-N`: a namespace name no other test (or run) uses, even
/// when one test makes several.
pub fn unique_ns_name(prefix: &str, test: &str) -> String {
    format!(
        "{}-{}",
        ns_name(prefix, test),
        NS_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------
// The environment of one test
// ---------------------------------------------------------------------------

/// Everything a test that forks needs: the serialisation guard, a watchdog
/// and a namespace that is destroyed when the test ends, pass or fail.
pub struct TestEnv {
    /// The test's own namespace.
    pub ns: Arc<Namespace>,
    // Field order is drop order: destroy the namespace, stop the watchdog,
    // then let the next test run.
    _watchdog: Watchdog,
    _serial: RwLockWriteGuard<'static, ()>,
}

impl TestEnv {
    /// A test called `name` with default limits and a watchdog of `secs`
    /// seconds.
    pub fn new(name: &str, secs: u64) -> TestEnv {
        TestEnv::with_limits(name, secs, Limits::default())
    }

    /// A test called `name` whose namespace has `limits`.
    pub fn with_limits(name: &str, secs: u64, limits: Limits) -> TestEnv {
        let serial = serial();
        let watchdog = Watchdog::start(name, secs);
        let ns_name = ns_name("t", name);
        let ns = Namespace::open_with_limits(&ns_name, limits)
            .unwrap_or_else(|e| panic!("{name}: Namespace::open_with_limits({ns_name}): {e}"));
        TestEnv {
            ns,
            _watchdog: watchdog,
            _serial: serial,
        }
    }

    /// A new private set of `values.len()` semaphores with these values.
    pub fn set_with(&self, values: &[u16]) -> SemaphoreSet {
        let set = SemaphoreSet::create_private(&self.ns, values.len() as u16, 0o600)
            .expect("create a private set");
        set.set_values(values).expect("SETALL the initial values");
        set
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        destroy_or_warn(&self.ns);
    }
}

/// Destroys `ns`; a failure is a warning on stderr.
pub fn destroy_or_warn(ns: &Namespace) {
    if let Err(e) = ns.destroy() {
        eprintln!("warning: destroying namespace {}: {e}", ns.name());
    }
}

/// A namespace made outside a [`TestEnv`], destroyed on drop (a failure is
/// a warning).
pub struct NsGuard(pub Arc<Namespace>);

impl Drop for NsGuard {
    fn drop(&mut self) {
        destroy_or_warn(&self.0);
    }
}

/// The namespace called `.0` (which other processes use), opened and
/// destroyed on drop, quietly.
pub struct NsNameGuard(pub String);

impl Drop for NsNameGuard {
    fn drop(&mut self) {
        if let Ok(ns) = Namespace::open(&self.0) {
            let _ = ns.destroy();
        }
    }
}

/// A fresh directory under the system's temporary directory, removed with
/// everything in it on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// `$TMPDIR/NAME`, emptied first.
    pub fn new(name: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch directory");
        ScratchDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// Knobs and facts
// ---------------------------------------------------------------------------

/// The number in environment variable `name`, or `default` if unset.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// The comma-separated words of environment variable `name` (none if unset).
pub fn env_list(name: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Reports that a test cannot run here (`why`: the test and what is
/// missing: gcc, root, SCHED_FIFO, a second processor…) and lets it pass
/// without checking anything. Where `SHMSEM_REQUIRE_ALL` is set (`.ci/run`
/// sets it: CI installs every tool and runs as root on two processors), a
/// skip is a failure instead, so that no case is counted as passed there
/// without having run.
pub fn skipped(why: &str) {
    if std::env::var_os("SHMSEM_REQUIRE_ALL").is_some() {
        panic!("SKIPPED {why}, but SHMSEM_REQUIRE_ALL is set: every test must run");
    }
    eprintln!("SKIPPED {why}");
}
