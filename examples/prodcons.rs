//! Producers and consumers in separate processes, synchronised by one shmsem
//! semaphore set: the bounded buffer of the classic System V notes.
//!
//! ```text
//! cargo run --release --example prodcons
//! ```
//!
//! Three producer and three consumer processes (fork) share a ring buffer in
//! an anonymous `MAP_SHARED` mapping. One set holds three semaphores:
//!
//! * `empty` (starts at the buffer size): free slots;
//! * `full` (starts at 0): filled slots;
//! * `mutex` (starts at 1): the ring's lock, always taken and released with
//!   SEM_UNDO.
//!
//! A producer does `P(empty) P(mutex) put V(mutex) V(full)`; a consumer
//! `P(full) P(mutex) take V(mutex) V(empty)` and then records the item.
//!
//! One consumer is killed with SIGKILL while it holds the mutex, with an item
//! it has taken out of the ring but not yet recorded. SEM_UNDO gives the
//! mutex back (in the kernel at exit; in shmsem the first process that
//! notices the death applies the dead process's adjustments), and the others
//! run to the end. With `--before-take` (`cargo run --release --example
//! prodcons -- --before-take`) it is killed after P(full) and P(mutex) but
//! before it takes an item, which leaves one item in the ring that no 'full'
//! unit counts; the parent drains it.
//!
//! The parent then accounts for every item exactly: produced = consumed +
//! lost (in the dead consumer's hand) + left in the buffer, with no
//! duplicates, and exits non-zero if that does not balance.
//!
//! Taking an item is crash-consistent, so the parent can tell exactly where
//! an item was whatever instruction a consumer died at: under the mutex the
//! consumer first copies the item, the ring position and its own count of
//! recorded items into its `Hand` record, then advances the shared `head`
//! (the commit: from then on the item is no longer in the ring). Recording
//! writes the item into the consumer's log and then advances its count (the
//! commit: from then on the item is consumed). An item is in a dead
//! consumer's hand exactly when `hand.ring_pos < head` and
//! `hand.seq == consumed`.
// The ban on std atomics, fences and raw futex calls (clippy.toml) keeps them
// inside the library's shim; this program is not the library: its atomics
// are its own (process-local counters, or words of a mapping it made), and
// its raw futex and semtimedop calls are the competitors it measures.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use shmsem::{Namespace, Op, SemaphoreSet};

const PRODUCERS: usize = 3;
const CONSUMERS: usize = 3;
const ITEMS_PER_PRODUCER: u64 = 20_000;
const TOTAL: usize = PRODUCERS * ITEMS_PER_PRODUCER as usize;
/// Slots in the ring (the initial value of `empty`).
const BUF: usize = 8;
/// The consumer that is killed inside the critical section...
const VICTIM: usize = 1;
/// ...on its first take after it has recorded this many items.
const KILL_AFTER: u64 = 5_000;

const SEM_EMPTY: u16 = 0;
const SEM_FULL: u16 = 1;
const SEM_MUTEX: u16 = 2;

/// A ring slot that holds nothing (items are p * 1_000_000 + i).
const NO_ITEM: u64 = u64::MAX;
/// Tells a consumer to stop; the parent puts one per surviving consumer.
const PILL: u64 = u64::MAX - 1;
/// `Hand::ring_pos` before the first take.
const NO_POS: u64 = u64::MAX;

/// How long any one phase may take before the run is declared hung.
const PHASE_DEADLINE: Duration = Duration::from_secs(40);

// The victim's phases (`Shared::victim_phase`); 0 while it runs normally.

/// Decided to stop in the critical section; about to P(full).
const PHASE_FATAL_ROUND: u32 = 1;
/// Did P(full) and holds the mutex; has not taken an item yet.
const PHASE_HOLDS_MUTEX: u32 = 2;
/// Holds the mutex with the item moved into its hand.
const PHASE_TOOK_ITEM: u32 = 3;

/// What a consumer has taken off the ring (see the module documentation).
#[repr(C)]
struct Hand {
    /// The item last taken.
    item: AtomicU64,
    /// The ring position it was taken from.
    ring_pos: AtomicU64,
    /// The consumer's `consumed` count when it took it.
    seq: AtomicU64,
    /// Items recorded in `log` (the commit of a consumption).
    consumed: AtomicU64,
}

/// Everything the processes share. Only atomics: zero bytes are a valid
/// value of every field, so the fresh mapping is a valid `Shared`.
#[repr(C)]
struct Shared {
    ring: [AtomicU64; BUF],
    /// Number of takes ever; the next take is at `head % BUF`.
    head: AtomicU64,
    /// Number of puts ever; the next put is at `tail % BUF`.
    tail: AtomicU64,
    /// Items put by each producer.
    produced: [AtomicU64; PRODUCERS],
    hands: [Hand; CONSUMERS],
    victim_phase: AtomicU32,
    /// Set by the victim once it sits in the critical section for good.
    victim_waiting: AtomicU32,
    /// 1: the victim stops before taking the item (`--before-take`).
    before_take: AtomicU32,
    /// Who took the mutex first after the victim held it: `Who::code`.
    first_after: AtomicU32,
    first_after_pid: AtomicI32,
    /// When, in nanoseconds since the start of the run.
    first_after_ns: AtomicU64,
    /// The items each consumer recorded, in order.
    logs: [[AtomicU64; TOTAL]; CONSUMERS],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Producer(usize),
    Consumer(usize),
    Parent,
}

impl Who {
    fn code(self) -> u32 {
        match self {
            Who::Producer(i) => 100 + i as u32,
            Who::Consumer(i) => 200 + i as u32,
            Who::Parent => 300,
        }
    }
    fn from_code(c: u32) -> Option<Who> {
        match c {
            100..=199 => Some(Who::Producer((c - 100) as usize)),
            200..=299 => Some(Who::Consumer((c - 200) as usize)),
            300 => Some(Who::Parent),
            _ => None,
        }
    }
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Producer(i) => write!(f, "producer {i}"),
            Who::Consumer(i) => write!(f, "consumer {i}"),
            Who::Parent => f.write_str("parent"),
        }
    }
}

/// Why the run failed (as opposed to "ran, but the books do not balance").
#[derive(Debug)]
struct Failure(String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<shmsem::Error> for Failure {
    fn from(e: shmsem::Error) -> Failure {
        Failure(format!("semaphore call failed: {e}"))
    }
}

fn fail<T>(msg: impl Into<String>) -> Result<T, Failure> {
    Err(Failure(msg.into()))
}

/// Everything the run has set up, torn down on drop whatever happened:
/// children still running are killed and reaped, the namespace is destroyed
/// (nothing left in /dev/shm), the mapping is unmapped.
struct Run {
    start: Instant,
    ns: Arc<Namespace>,
    map: *mut libc::c_void,
    map_len: usize,
    children: Vec<Child>,
}

struct Child {
    who: Who,
    pid: Pid,
    status: Option<WaitStatus>,
}

impl Run {
    fn shared(&self) -> &Shared {
        // SAFETY: `map` is a live read-write mapping of at least
        // size_of::<Shared>() bytes, page-aligned (so aligned for Shared),
        // created zero-filled and initialised before any child existed;
        // Shared holds only atomics, valid for every bit pattern written by
        // this program, so shared references to it across processes are
        // sound. The mapping lives until `self` drops.
        unsafe { &*(self.map as *const Shared) }
    }

    fn stamp(&self) -> String {
        stamp(self.start)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        for c in self.children.iter_mut().filter(|c| c.status.is_none()) {
            // These are our own children, by pid, not yet reaped (so the
            // pid cannot have been reused).
            let _ = kill(c.pid, Signal::SIGKILL);
            c.status = waitpid(c.pid, None).ok();
        }
        if let Err(e) = self.ns.destroy() {
            eprintln!(
                "warning: could not destroy namespace {}: {e}",
                self.ns.name()
            );
        }
        // SAFETY: `map`/`map_len` are exactly what mmap returned; every
        // reference into the mapping borrowed `self` and is gone.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

fn stamp(start: Instant) -> String {
    format!("[{:7.3}s]", start.elapsed().as_secs_f64())
}

fn item_id(producer: usize, i: u64) -> u64 {
    producer as u64 * 1_000_000 + i
}

/// The index of a valid item in 0..TOTAL, or None for anything else.
fn item_index(item: u64) -> Option<usize> {
    let (p, i) = (item / 1_000_000, item % 1_000_000);
    if (p as usize) < PRODUCERS && i < ITEMS_PER_PRODUCER {
        Some(p as usize * ITEMS_PER_PRODUCER as usize + i as usize)
    } else {
        None
    }
}

fn main() -> ExitCode {
    let mut before_take = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--before-take" => before_take = true,
            _ => {
                eprintln!(
                    "usage: prodcons [--before-take]\n  --before-take: kill the consumer \
                     after P(full) and P(mutex) but before it takes the item"
                );
                return ExitCode::from(2);
            }
        }
    }
    match run(before_take) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            println!("FAILED: the accounting does not balance");
            ExitCode::from(1)
        }
        Err(e) => {
            println!("FAILED: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs the demonstration; Ok(balanced?) or why it could not finish.
fn run(before_take: bool) -> Result<bool, Failure> {
    let start = Instant::now();
    let name = format!("prodcons-{}", std::process::id());
    let ns = Namespace::open(&name)?;

    let map_len = std::mem::size_of::<Shared>();
    // SAFETY: an anonymous shared mapping at an address of the kernel's
    // choosing; it touches no existing memory. MAP_SHARED makes the children
    // forked later see the same pages.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if map == libc::MAP_FAILED {
        let _ = ns.destroy();
        return fail(format!(
            "mmap of {map_len} bytes failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut run = Run {
        start,
        ns,
        map,
        map_len,
        children: Vec::new(),
    };

    let set = SemaphoreSet::create_private(&run.ns, 3, 0o600)?;
    set.set_values(&[BUF as u16, 0, 1])?;
    {
        let sh = run.shared();
        for slot in &sh.ring {
            slot.store(NO_ITEM, SeqCst);
        }
        for hand in &sh.hands {
            hand.ring_pos.store(NO_POS, SeqCst);
        }
        sh.before_take.store(u32::from(before_take), SeqCst);
    }
    println!(
        "{} namespace {name}, set id {}: empty={BUF} full=0 mutex=1; \
         {PRODUCERS} producers x {ITEMS_PER_PRODUCER} items, {CONSUMERS} consumers, \
         ring of {BUF}",
        run.stamp(),
        set.id()
    );

    // Start everybody.
    let roles = (0..CONSUMERS)
        .map(Who::Consumer)
        .chain((0..PRODUCERS).map(Who::Producer));
    for who in roles {
        let pid = spawn(&run, &name, set.id(), who)?;
        println!("{} started {who} (pid {pid})", run.stamp());
        run.children.push(Child {
            who,
            pid,
            status: None,
        });
    }

    // Wait until the victim sits in the critical section, then kill it.
    let victim = Who::Consumer(VICTIM);
    let deadline = Instant::now() + PHASE_DEADLINE;
    while run.shared().victim_waiting.load(SeqCst) == 0 {
        reap_finished(&mut run)?;
        if let Some(c) = run
            .children
            .iter()
            .find(|c| c.status.is_some() && c.who == victim)
        {
            return fail(format!(
                "{victim} ended before it could be killed: {:?}",
                c.status
            ));
        }
        if Instant::now() > deadline {
            return fail(format!("{victim} never reached the critical section"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mutex_value = set.value(SEM_MUTEX)?;
    if mutex_value != 0 {
        return fail(format!(
            "{victim} says it holds the mutex but its value is {mutex_value}"
        ));
    }
    // Give the others a moment to queue up behind the mutex, to show they
    // are blocked on it (information only: the run does not depend on it).
    let queue_deadline = Instant::now() + Duration::from_millis(500);
    while set.ncnt(SEM_MUTEX)? == 0 && Instant::now() < queue_deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let holding = if before_take {
        "a 'full' unit but no item".to_string()
    } else {
        format!("item {}", run.shared().hands[VICTIM].item.load(SeqCst))
    };
    let victim_pid = child(&run, victim).pid;
    println!(
        "{} {victim} (pid {victim_pid}) is inside the critical section holding {holding}: \
         mutex={mutex_value}; waiting: {} for the mutex, {} for 'full', {} for 'empty'",
        run.stamp(),
        set.ncnt(SEM_MUTEX)?,
        set.ncnt(SEM_FULL)?,
        set.ncnt(SEM_EMPTY)?,
    );
    println!(
        "{} sending SIGKILL to {victim} (pid {victim_pid})",
        run.stamp()
    );
    let killed_at = start.elapsed();
    kill(victim_pid, Signal::SIGKILL).map_err(|e| Failure(format!("kill: {e}")))?;
    let status = wait_child(&mut run, victim, Instant::now() + PHASE_DEADLINE)?;
    println!("{} reaped {victim}: {}", run.stamp(), describe(status));
    if !matches!(status, WaitStatus::Signaled(_, Signal::SIGKILL, _)) {
        return fail(format!("{victim} was not killed by SIGKILL: {status:?}"));
    }

    // Who takes the mutex next? Only possible if SEM_UNDO gave it back.
    let deadline = Instant::now() + PHASE_DEADLINE;
    let first = loop {
        let code = run.shared().first_after.load(SeqCst);
        if code != 0 {
            break code;
        }
        if Instant::now() > deadline {
            return fail(format!(
                "nobody got the mutex within {PHASE_DEADLINE:?} of killing its holder: \
                 SEM_UNDO did not release it (mutex={}, {} waiting)",
                set.value(SEM_MUTEX)?,
                set.ncnt(SEM_MUTEX)?
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let first_ns = run.shared().first_after_ns.load(SeqCst);
    let after_kill = Duration::from_nanos(first_ns).saturating_sub(killed_at);
    println!(
        "{} SEM_UNDO released the mutex: {} (pid {}) got it {:.3} ms after the SIGKILL",
        run.stamp(),
        Who::from_code(first).map_or_else(|| format!("code {first}"), |w| w.to_string()),
        run.shared().first_after_pid.load(SeqCst),
        after_kill.as_secs_f64() * 1e3
    );

    // The producers finish; then one pill per surviving consumer.
    for p in 0..PRODUCERS {
        let who = Who::Producer(p);
        let status = wait_child(&mut run, who, Instant::now() + PHASE_DEADLINE)?;
        if status != WaitStatus::Exited(child(&run, who).pid, 0) {
            return fail(format!("{who} failed: {}", describe(status)));
        }
    }
    println!("{} all producers done", run.stamp());

    // Let the consumers eat what they can: until every survivor waits on
    // 'full' and 'full' is 0. Whatever is still in the ring then has no
    // 'full' unit (one was taken by the dead consumer): drain it.
    let survivors = (CONSUMERS - 1) as u32;
    let deadline = Instant::now() + PHASE_DEADLINE;
    while set.value(SEM_FULL)? != 0 || set.ncnt(SEM_FULL)? != survivors {
        if Instant::now() > deadline {
            return fail(format!(
                "the consumers did not settle on an empty 'full' (full={}, {} waiting)",
                set.value(SEM_FULL)?,
                set.ncnt(SEM_FULL)?
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let drained = drain(&run, &set, Some(deadline))?;
    if drained.is_empty() {
        println!(
            "{} the consumers emptied the ring: nothing left to drain",
            run.stamp()
        );
    } else {
        println!(
            "{} drained {} item(s) left in the ring with no 'full' unit: {drained:?}",
            run.stamp(),
            drained.len()
        );
    }
    println!("{} sending {survivors} poison pills", run.stamp());
    for _ in 0..survivors {
        put(&run, &set, Who::Parent, PILL, Some(deadline))?;
    }
    for c in (0..CONSUMERS).filter(|&c| c != VICTIM) {
        let who = Who::Consumer(c);
        let status = match wait_child(&mut run, who, Instant::now() + PHASE_DEADLINE) {
            Ok(s) => s,
            Err(e) => {
                let v = set.values()?;
                return fail(format!(
                    "{e} (values empty={} full={} mutex={}; waiting on full: {})",
                    v[0],
                    v[1],
                    v[2],
                    set.ncnt(SEM_FULL)?
                ));
            }
        };
        if status != WaitStatus::Exited(child(&run, who).pid, 0) {
            return fail(format!("{who} failed: {}", describe(status)));
        }
    }
    println!("{} all surviving consumers done", run.stamp());

    let balanced = account(&run, &set, drained)?;
    drop(run); // kills nothing (all reaped), destroys the namespace
    Ok(balanced)
}

fn child(run: &Run, who: Who) -> &Child {
    run.children
        .iter()
        .find(|c| c.who == who)
        .expect("every role has a child")
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("killed by {sig:?}"),
        other => format!("{other:?}"),
    }
}

/// Collects the exit status of every child that has ended, without waiting.
fn reap_finished(run: &mut Run) -> Result<(), Failure> {
    for c in run.children.iter_mut().filter(|c| c.status.is_none()) {
        match waitpid(c.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(s) => c.status = Some(s),
            Err(e) => return fail(format!("waitpid({}): {e}", c.pid)),
        }
    }
    Ok(())
}

/// Waits for one child to end, at most until `deadline`.
fn wait_child(run: &mut Run, who: Who, deadline: Instant) -> Result<WaitStatus, Failure> {
    loop {
        reap_finished(run)?;
        if let Some(s) = child(run, who).status {
            return Ok(s);
        }
        if Instant::now() > deadline {
            return fail(format!("{who} did not finish in time (hung?)"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Forks a child that plays `who`, and returns its pid.
fn spawn(run: &Run, name: &str, set_id: i32, who: Who) -> Result<Pid, Failure> {
    let parent = std::process::id();
    let _ = std::io::stdout().flush();
    // SAFETY: this program is single-threaded when it forks, so the child
    // starts with consistent locks and allocator state. The child never
    // returns from `child_main`: it ends with _exit and runs no destructor
    // of the parent's objects (such as `Run`).
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => Ok(child),
        Ok(ForkResult::Child) => {
            // Die with the parent rather than block for ever if it is gone.
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            let code = if nix::unistd::getppid().as_raw() as u32 != parent {
                9
            } else {
                let body = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    child_main(run, name, set_id, who)
                }));
                match body {
                    Ok(Ok(())) => 0,
                    Ok(Err(e)) => {
                        println!("{} {who}: FAILED: {e}", run.stamp());
                        3
                    }
                    Err(_) => 4,
                }
            };
            let _ = std::io::stdout().flush();
            // SAFETY: ends this child at once, without running the exit
            // handlers or destructors that belong to the parent's state.
            unsafe { libc::_exit(code) }
        }
        Err(e) => fail(format!("fork: {e}")),
    }
}

/// The body of a child process.
fn child_main(run: &Run, name: &str, set_id: i32, who: Who) -> Result<(), Failure> {
    // Open the namespace afresh, as an unrelated process would.
    let ns = Namespace::open(name)?;
    let set = SemaphoreSet::from_id(&ns, set_id);
    match who {
        Who::Producer(p) => {
            for i in 0..ITEMS_PER_PRODUCER {
                put(run, &set, who, item_id(p, i), None)?;
                run.shared().produced[p].store(i + 1, SeqCst);
            }
            println!(
                "{} {who} finished: produced {ITEMS_PER_PRODUCER} items",
                run.stamp()
            );
            Ok(())
        }
        Who::Consumer(c) => consume(run, &set, c),
        Who::Parent => unreachable!("the parent is not forked"),
    }
}

/// P(mutex) with SEM_UNDO, noting who is first to get it after the victim.
fn lock(run: &Run, set: &SemaphoreSet, who: Who, deadline: Option<Instant>) -> Result<(), Failure> {
    let p = [Op::wait(SEM_MUTEX, 1).undo()];
    match deadline {
        None => set.op(&p)?,
        Some(d) => set.op_timeout(&p, d.saturating_duration_since(Instant::now()))?,
    }
    let sh = run.shared();
    if sh.victim_phase.load(SeqCst) >= PHASE_HOLDS_MUTEX
        && sh
            .first_after
            .compare_exchange(0, who.code(), SeqCst, SeqCst)
            .is_ok()
    {
        sh.first_after_ns
            .store(run.start.elapsed().as_nanos() as u64, SeqCst);
        sh.first_after_pid.store(std::process::id() as i32, SeqCst);
    }
    Ok(())
}

fn unlock(set: &SemaphoreSet) -> Result<(), Failure> {
    Ok(set.op(&[Op::post(SEM_MUTEX, 1).undo()])?)
}

/// A producer's round: P(empty) P(mutex) put V(mutex) V(full).
fn put(
    run: &Run,
    set: &SemaphoreSet,
    who: Who,
    item: u64,
    deadline: Option<Instant>,
) -> Result<(), Failure> {
    let p_empty = [Op::wait(SEM_EMPTY, 1)];
    match deadline {
        None => set.op(&p_empty)?,
        Some(d) => set.op_timeout(&p_empty, d.saturating_duration_since(Instant::now()))?,
    }
    lock(run, set, who, deadline)?;
    let sh = run.shared();
    let tail = sh.tail.load(SeqCst);
    let head = sh.head.load(SeqCst);
    if tail - head >= BUF as u64 {
        return fail(format!(
            "{who} passed P(empty) but the ring is full (head {head}, tail {tail})"
        ));
    }
    sh.ring[tail as usize % BUF].store(item, SeqCst);
    sh.tail.store(tail + 1, SeqCst);
    unlock(set)?;
    set.op(&[Op::post(SEM_FULL, 1)])?;
    Ok(())
}

/// A consumer: P(full) P(mutex) take V(mutex) V(empty), record; until a pill.
/// The victim stops inside the critical section on its fatal round.
fn consume(run: &Run, set: &SemaphoreSet, c: usize) -> Result<(), Failure> {
    let who = Who::Consumer(c);
    let sh = run.shared();
    let hand = &sh.hands[c];
    loop {
        let recorded = hand.consumed.load(SeqCst);
        let fatal = c == VICTIM && recorded >= KILL_AFTER;
        if fatal {
            sh.victim_phase.store(PHASE_FATAL_ROUND, SeqCst);
        }
        set.op(&[Op::wait(SEM_FULL, 1)])?; // no SEM_UNDO, as in the notes
        lock(run, set, who, None)?;
        if fatal {
            sh.victim_phase.store(PHASE_HOLDS_MUTEX, SeqCst);
            if sh.before_take.load(SeqCst) == 1 {
                wait_to_be_killed(run, who, "holding a 'full' unit but no item yet");
            }
        }
        let head = sh.head.load(SeqCst);
        let tail = sh.tail.load(SeqCst);
        if head >= tail {
            return fail(format!(
                "{who} passed P(full) but the ring is empty (head {head}, tail {tail})"
            ));
        }
        let slot = &sh.ring[head as usize % BUF];
        let item = slot.load(SeqCst);
        hand.item.store(item, SeqCst);
        hand.seq.store(recorded, SeqCst);
        hand.ring_pos.store(head, SeqCst);
        sh.head.store(head + 1, SeqCst); // commit: no longer in the ring
        slot.store(NO_ITEM, SeqCst);
        if fatal {
            sh.victim_phase.store(PHASE_TOOK_ITEM, SeqCst);
            wait_to_be_killed(run, who, &format!("with item {item} in hand"));
        }
        unlock(set)?;
        set.op(&[Op::post(SEM_EMPTY, 1)])?;
        if item == PILL {
            println!("{} {who} finished: consumed {recorded} items", run.stamp());
            return Ok(());
        }
        sh.logs[c][recorded as usize].store(item, SeqCst);
        hand.consumed.store(recorded + 1, SeqCst); // commit: consumed
    }
}

/// The parent takes whatever is in the ring, under the mutex and without
/// P(full) (there is no 'full' unit for it); returns the items.
fn drain(run: &Run, set: &SemaphoreSet, deadline: Option<Instant>) -> Result<Vec<u64>, Failure> {
    lock(run, set, Who::Parent, deadline)?;
    let sh = run.shared();
    let mut items = Vec::new();
    loop {
        let head = sh.head.load(SeqCst);
        if head >= sh.tail.load(SeqCst) {
            break;
        }
        let slot = &sh.ring[head as usize % BUF];
        items.push(slot.load(SeqCst));
        sh.head.store(head + 1, SeqCst);
        slot.store(NO_ITEM, SeqCst);
    }
    unlock(set)?;
    Ok(items)
}

/// The victim's end: announce, then sit in the critical section.
fn wait_to_be_killed(run: &Run, who: Who, what: &str) -> ! {
    println!(
        "{} {who}: inside the critical section {what}; waiting to be killed",
        run.stamp()
    );
    let _ = std::io::stdout().flush();
    run.shared().victim_waiting.store(1, SeqCst);
    loop {
        // SAFETY: pause() only suspends this thread until a signal.
        unsafe { libc::pause() };
    }
}

/// Checks the books after every child has ended; prints the summary.
/// `drained`: what the parent took out of the ring before the pills.
fn account(run: &Run, set: &SemaphoreSet, mut drained: Vec<u64>) -> Result<bool, Failure> {
    let sh = run.shared();
    let values = set.values()?;
    let head = sh.head.load(SeqCst);
    let tail = sh.tail.load(SeqCst);
    let mut ok = true;

    // Where every item ended up: consumed by whom, lost, or still in the ring.
    let mut seen = vec![0u32; TOTAL];
    let mut invalid = 0u64;
    let mut note = |item: u64, seen: &mut Vec<u32>| match item_index(item) {
        Some(i) => seen[i] += 1,
        None => invalid += 1,
    };

    let produced: u64 = sh.produced.iter().map(|p| p.load(SeqCst)).sum();
    let mut consumed = 0u64;
    let mut per_consumer = Vec::new();
    for (c, hand) in sh.hands.iter().enumerate() {
        let n = hand.consumed.load(SeqCst).min(TOTAL as u64);
        for entry in &sh.logs[c][..n as usize] {
            note(entry.load(SeqCst), &mut seen);
        }
        consumed += n;
        per_consumer.push(n);
    }

    // The dead consumer's hand: taken off the ring (ring_pos < head) but not
    // recorded (seq == consumed) means lost with it.
    let vh = &sh.hands[VICTIM];
    let v_pos = vh.ring_pos.load(SeqCst);
    let v_item = vh.item.load(SeqCst);
    let v_lost = v_pos != NO_POS && v_pos < head && vh.seq.load(SeqCst) == vh.consumed.load(SeqCst);
    let mut lost = Vec::new();
    if v_lost && v_item != PILL {
        note(v_item, &mut seen);
        lost.push(v_item);
    }

    // What the parent drained before the pills, and anything still in the
    // ring now (there should be nothing).
    for &item in &drained {
        note(item, &mut seen);
    }
    let mut pills_left = 0u64;
    for pos in head..tail {
        let item = sh.ring[pos as usize % BUF].swap(NO_ITEM, SeqCst);
        if item == PILL {
            pills_left += 1;
        } else {
            note(item, &mut seen);
            drained.push(item);
        }
    }

    let duplicates = seen.iter().filter(|&&n| n > 1).count();
    let missing = seen.iter().filter(|&&n| n == 0).count();

    // The semaphores at the end. Every slot of the buffer is, at rest, one
    // unit of `empty`, one unit of `full` (then an item is in the ring), or
    // held by the dead consumer, which did P(full) without SEM_UNDO and never
    // did V(empty). The parent drains without semaphore operations.
    let phase = sh.victim_phase.load(SeqCst);
    let victim_units = u16::from(phase >= PHASE_HOLDS_MUTEX);
    let want_full = (tail - head).min(BUF as u64) as u16;
    let want_empty = BUF as u16 - victim_units - want_full;

    println!();
    println!("Summary");
    println!("  {:<10} {:>8} {:>9}  fate", "process", "pid", "items");
    for c in &run.children {
        let items = match c.who {
            Who::Producer(p) => sh.produced[p].load(SeqCst),
            Who::Consumer(i) => per_consumer[i],
            Who::Parent => 0,
        };
        let fate = match c.status {
            Some(WaitStatus::Signaled(_, Signal::SIGKILL, _)) => {
                format!(
                    "SIGKILLed in the critical section, {} item(s) in hand",
                    lost.len()
                )
            }
            Some(s) => describe(s),
            None => "still running?".to_string(),
        };
        println!(
            "  {:<10} {:>8} {:>9}  {fate}",
            c.who.to_string(),
            c.pid.as_raw(),
            items
        );
    }
    println!();
    let row = |label: &str, v: u64| println!("  {label:<62} {v:>7}");
    row("produced", produced);
    row("consumed (recorded by the consumers)", consumed);
    row(
        "lost (taken off the ring by the killed consumer, unrecorded)",
        lost.len() as u64,
    );
    row(
        "left in the buffer (drained by the parent)",
        drained.len() as u64,
    );
    let sum = consumed + lost.len() as u64 + drained.len() as u64;
    let balance = sum == produced && produced == TOTAL as u64;
    row("consumed + lost + left", sum);
    println!(
        "  {:<62} {:>7}",
        "produced == consumed + lost + left",
        if balance { "yes" } else { "NO" }
    );
    ok &= balance;
    if !lost.is_empty() {
        println!("  lost item(s): {lost:?}");
    }
    if !drained.is_empty() {
        println!("  drained item(s): {drained:?}");
    }
    println!(
        "  duplicates (an item counted twice): {duplicates}; never seen: {missing}; \
         invalid values: {invalid}; pills left in the ring: {pills_left}"
    );
    ok &= duplicates == 0 && missing == 0 && invalid == 0 && pills_left == 0;

    println!(
        "  semaphores at the end: empty={} full={} mutex={} (expected {want_empty}, {want_full}, 1)",
        values[0], values[1], values[2]
    );
    let sems_ok = values == [want_empty, want_full, 1];
    ok &= sems_ok;
    println!();
    let why = if phase == PHASE_TOOK_ITEM {
        "  The killed consumer did P(full) without SEM_UNDO: nothing gives that unit back.\n  \
         It had taken the item out of the ring (lost, above), so 'full' still matched the\n  \
         ring's contents; but it never did V(empty), so from the kill on the buffer has\n  \
         one slot fewer. SEM_UNDO restored only the mutex. (With --before-take it dies\n  \
         before taking the item: that item then stays in the ring with no 'full' unit,\n  \
         and the parent drains it.)"
    } else {
        "  The killed consumer did P(full) without SEM_UNDO but died before taking an item:\n  \
         from then on the ring held one item more than 'full' counted, which no consumer\n  \
         could get. The parent drained it (left in the buffer, above). The dead consumer\n  \
         never did V(empty), so that slot's unit is gone: the buffer has one slot fewer.\n  \
         SEM_UNDO restored only the mutex."
    };
    println!("{why}");
    println!();
    println!(
        "  result: {}",
        if ok {
            "BALANCED: every item is accounted for exactly once"
        } else {
            "NOT BALANCED"
        }
    );
    Ok(ok)
}
