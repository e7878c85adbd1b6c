//! When may this process unmap a set it no longer caches? Safe memory
//! reclamation for the set cache ([`super::cache`]): hazard pointers whose
//! reader side costs a few plain stores, made safe by an asymmetric fence
//! pair (`membarrier(2)` on the rare reclaiming side).
//!
//! # The problem
//!
//! A call finds its set's handle with one load from `Namespace.cache[idx]`
//! and then uses it for the whole call: a semop may sleep on a futex in the
//! mapping for seconds, and a signal handler may make another call in the
//! middle of it. When a set is removed its handle leaves the cache, but
//! another thread of the process may still be inside a call on it; the
//! mapping (and with it the set's pages in /dev/shm, which tmpfs frees only
//! when the last mapping goes) may be released only once no call holds it.
//!
//! # The protocol
//!
//! Each thread owns a [`Slot`] of the process-wide [`Registry`] (claimed at
//! its first call, released by a thread-local destructor when it exits):
//! [`LEVELS`] hazard words, one per nesting level (a call, and calls made by
//! signal handlers that interrupt it). A call [`pin`]s a level for its
//! duration; each lookup names in that word the cache cell it reads.
//!
//! Hazard word states (each word is written only by the call that holds
//! its level; the reclaimer only reads them):
//!
//! | value | state | protects |
//! |---|---|---|
//! | 0 | FREE | nothing; the level is not in use |
//! | 1 | PINNED | nothing; a call holds the level |
//! | a cell's address (≥ 8) | ANNOUNCED | every object that cell holds or held while the word says so |
//!
//! Reader (a lookup, [`Pin::protect`]):
//!
//! 1. store ANNOUNCED(cell) in its level (Release);
//! 2. light fence (a compiler fence);
//! 3. load the cell (Acquire): the object `p`;
//! 4. … use `p` for the rest of the call …
//! 5. store FREE when the call ends (Release), dropping the [`Pin`].
//!
//! Reclaimer ([`Domain`], under its mutex, rare: when a removed set's
//! handle leaves the cache):
//!
//! 1. unpublish: store another pointer (or null) in the cell; the old
//!    object goes on the retired list with the cell's address;
//! 2. heavy fence: `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`;
//! 3. read every hazard word of every slot (Acquire); free each retired
//!    object whose cell no word ANNOUNCEs; keep the others for the next
//!    attempt (the next retire, sweep or slow lookup).
//!
//! **Why it is safe.** The fence pair orders as a SeqCst fence on each side
//! would (see `sync::light_fence`: membarrier makes every running thread of
//! the process execute a full barrier, and a thread not running passed one
//! when it was switched out). That is the store-buffering pattern: for a
//! reader's steps 1–3 and the reclaimer's steps 1–3, either the reader's
//! load sees the unpublishing or a later value (it never gets the retired
//! object), or the reclaimer's scan sees the reader's announcement or a
//! later store of the same word. A later store is the same call's next
//! announcement (the call no longer uses what it loaded before: a pin's
//! borrow ends at its next lookup), or the store that ends the call. Every
//! hazard store is Release and the scan Acquire, so everything the call did
//! with the object happens before the free. An object is installed in a
//! cell only while the installer announces that cell ([`Domain::install`]),
//! and every cell write happens under the domain's mutex, which orders that
//! announcement before any scan that follows the object's unpublishing.
//!
//! A word names a cell, not an object: a call announcing cell X keeps every
//! object retired from X, not only the one it loaded. Cells are set
//! indices, reused only after SEMMNI further creations in the namespace, so
//! this costs next to nothing, and it spares the reader a store.
//!
//! **Why it is cheap.** A call adds a thread-local load, one test and three
//! stores to a word in its own cache line; no read-modify-write and no
//! fence instruction. All the cost is on the reclaiming side, a system call
//! per reclamation attempt.
//!
//! **Pool levels.** A call on a thread that has no slot (its thread-local
//! storage is already destroyed: glibc's `exit()` runs the TLS destructors
//! before the `atexit` handlers, and C programs call `semctl(IPC_RMID)`
//! there), or whose levels are all in use, claims a level of a pool slot
//! instead, with a compare-and-swap from FREE (these calls are rare); it
//! then uses the level as any other, and frees it with the same store. The
//! fence pair covers every thread of the process, slot or no slot. Such a
//! call never crashes and never panics.
//!
//! **Without membarrier** (kernels before 4.14, a seccomp filter that
//! refuses it; decided once per process, before its first pin) each call
//! makes a SeqCst fence after it claims its level (PINNED), and the
//! reclaimer makes a SeqCst fence before its scan and frees only when
//! every hazard word is FREE. Correct by the C++ fence rules alone: the
//! claim before the reader's fence and the scan after the reclaimer's are
//! the store-buffering pattern, for every lookup of the call at once. A
//! handle is then unmapped only at a moment when no call of the process is
//! in progress (a thread asleep in a semop delays every unmapping until it
//! returns); an `mfence` per call.
//!
//! **Fork.** The child has only the forking thread: a `pthread_atfork`
//! child handler frees every other thread's slot (plain atomic stores,
//! async-signal-safe). Pool levels held by other threads at the fork stay
//! held in the child (what they protect is never freed there: a leak,
//! never a use after free).
//!
//! **What stays mapped.** A call left by `siglongjmp` from a signal handler
//! never clears its level: the object it held stays mapped for the life of
//! the thread. A thread whose first call ever is made in a signal handler
//! registers its slot there, which allocates (malloc is not
//! async-signal-safe).

use core::marker::PhantomData;

use crate::sync::{self, AtomicPtr, AtomicU8, AtomicUsize, Mutex, MutexGuard, Ordering};

/// Hazard levels per thread: a call, and up to three calls nested in it by
/// signal handlers. A deeper call takes a pool level.
pub const LEVELS: usize = 4;

/// Hazard word: the level is not in use.
const FREE: usize = 0;
/// Hazard word: a call holds the level and protects nothing yet (any
/// other value but FREE is a cell's address, at least 8).
const PINNED: usize = 1;

/// [`Registry::mode`]: no thread has pinned yet.
const UNDECIDED: u8 = 0;
/// [`Registry::mode`]: membarrier works; readers use a compiler fence.
const LIGHT: u8 = 1;
/// [`Registry::mode`]: no membarrier; a SeqCst fence in every pin.
const HEAVY: u8 = 2;

/// [`Slot::owned`]: free.
const SLOT_FREE: usize = 0;
/// [`Slot::owned`]: a thread's own slot.
const SLOT_THREAD: usize = 1;
/// [`Slot::owned`]: a pool slot, whose levels any call may claim by CAS.
const SLOT_POOL: usize = 2;

/// One thread's hazard words (or a pool slot's), alone in its cache line
/// (every call of the thread writes them).
#[repr(C, align(64))]
pub struct Slot {
    haz: [AtomicUsize; LEVELS],
    /// SLOT_FREE, SLOT_THREAD or SLOT_POOL.
    owned: AtomicUsize,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            haz: core::array::from_fn(|_| AtomicUsize::new(FREE)),
            owned: AtomicUsize::new(SLOT_FREE),
        }
    }
}

/// A block of slots; blocks are linked from [`Registry::head`] and never
/// freed while the registry lives.
struct Chunk {
    slots: Box<[Slot]>,
    /// The next (older) block; written before this one is published.
    next: *const Chunk,
}

/// Every thread's slot, the pool slots, and the process's fence mode.
/// Production has one, for the process (`REGISTRY`); the loom models and
/// unit tests make their own.
pub struct Registry {
    /// The newest block of slots (null: none yet).
    head: AtomicPtr<Chunk>,
    /// Slots per block.
    chunk_slots: usize,
    /// UNDECIDED, LIGHT or HEAVY; decided once, before the first pin.
    mode: AtomicU8,
}

// SAFETY: the raw block pointers are shared, immutable after publication,
// and only freed in Drop; all mutable state is atomic.
unsafe impl Send for Registry {}
// SAFETY: as above.
unsafe impl Sync for Registry {}

impl Drop for Registry {
    fn drop(&mut self) {
        // Relaxed: `&mut self`, no other thread.
        let mut c = self.head.load(Ordering::Relaxed);
        while !c.is_null() {
            // SAFETY: every block was leaked from a Box by `new_slot` and
            // is freed only here, once.
            let chunk = unsafe { Box::from_raw(c) };
            c = chunk.next as *mut Chunk;
        }
    }
}

impl Registry {
    /// An empty registry whose blocks hold `chunk_slots` slots; its fence
    /// mode is decided at the first pin (`heavy`: HEAVY at once, as without
    /// membarrier).
    #[cfg_attr(not(any(test, shmsem_loom)), allow(dead_code))]
    pub fn new(chunk_slots: usize, heavy: bool) -> Registry {
        Registry {
            head: AtomicPtr::new(core::ptr::null_mut()),
            chunk_slots: chunk_slots.max(1),
            mode: AtomicU8::new(if heavy { HEAVY } else { UNDECIDED }),
        }
    }

    /// Whether pins make a real fence (no membarrier), deciding it on the
    /// first call: every thread that finds it undecided registers
    /// (idempotent) and the first decision stands.
    fn heavy(&self) -> bool {
        // SYNC: Acquire pairs with the AcqRel CAS below: a thread that
        // reads LIGHT comes after the registration that preceded it.
        match self.mode.load(Ordering::Acquire) {
            LIGHT => false,
            HEAVY => true,
            _ => {
                let want = if sync::register_heavy_fence() {
                    LIGHT
                } else {
                    HEAVY
                };
                // SYNC: as above (AcqRel: publishes the registration,
                // Acquire on failure as the load).
                match self.mode.compare_exchange(
                    UNDECIDED,
                    want,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => want == HEAVY,
                    Err(m) => m == HEAVY,
                }
            }
        }
    }

    /// A free slot for a new thread (`kind` SLOT_THREAD) or the pool
    /// (SLOT_POOL), from an existing block or a new one.
    fn new_slot(&self, kind: usize) -> &Slot {
        let mut found = None;
        self.for_each_slot(|s| {
            // SYNC: Acquire pairs with the Release store of `owned` in
            // `release`, after the leaving thread cleared its words.
            if found.is_none()
                && s.owned.load(Ordering::Relaxed) == SLOT_FREE
                && s.owned
                    .compare_exchange(SLOT_FREE, kind, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                found = Some(s as *const Slot);
            }
        });
        if let Some(s) = found {
            // SAFETY: published slots live as long as the registry.
            return unsafe { &*s };
        }
        let slots: Box<[Slot]> = (0..self.chunk_slots).map(|_| Slot::new()).collect();
        slots[0].owned.store(kind, Ordering::Relaxed);
        let chunk = Box::into_raw(Box::new(Chunk {
            slots,
            next: core::ptr::null(),
        }));
        // Relaxed: the CAS below re-checks it.
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: `chunk` is ours alone until the CAS publishes it.
            unsafe { (*chunk).next = head };
            // SYNC: Release publishes the block and its `next` to the
            // Acquire load of `head` in `for_each_slot`.
            match self
                .head
                .compare_exchange(head, chunk, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
        // SAFETY: just published; blocks live as long as the registry.
        unsafe { &(&(*chunk).slots)[0] }
    }

    /// A slot for a new thread.
    pub fn claim(&self) -> &Slot {
        self.new_slot(SLOT_THREAD)
    }

    /// Gives a thread's `slot` back (its thread is gone): its words are
    /// cleared first.
    pub fn release(&self, slot: &Slot) {
        for h in slot.haz.iter() {
            // SYNC: Release, as every hazard store (see `Pin::protect`).
            h.store(FREE, Ordering::Release);
        }
        // SYNC: Release pairs with the Acquire CAS in `new_slot`.
        slot.owned.store(SLOT_FREE, Ordering::Release);
    }

    /// Every slot, in `f`.
    fn for_each_slot(&self, mut f: impl FnMut(&Slot)) {
        // SYNC: Acquire pairs with the Release CAS that published a block
        // (`new_slot`).
        let mut c = self.head.load(Ordering::Acquire) as *const Chunk;
        // SAFETY: published blocks are valid while the registry lives.
        while let Some(chunk) = unsafe { c.as_ref() } {
            chunk.slots.iter().for_each(&mut f);
            c = chunk.next;
        }
    }

    /// Every hazard word's value, sorted.
    fn hazards(&self) -> Vec<usize> {
        let mut v = Vec::new();
        self.for_each_slot(|s| {
            for h in s.haz.iter() {
                // SYNC: Acquire pairs with the Release stores of the words
                // (`Pin::announce`, `release`, Drop): a call whose store we
                // read has done everything before it.
                v.push(h.load(Ordering::Acquire));
            }
        });
        v.sort_unstable();
        v
    }

    /// A pin on the first free level of `slot` (this thread's own), else
    /// on a pool level; in HEAVY mode followed by the fence.
    pub fn pin_on<'r>(&'r self, slot: &'r Slot) -> Pin<'r> {
        for h in slot.haz.iter() {
            if h.load(Ordering::Relaxed) == FREE {
                h.store(PINNED, Ordering::Relaxed);
                return self.entered(Pin::new(h));
            }
        }
        self.pool_pin()
    }

    /// A pin on a pool level (claimed by CAS: any thread may), for a call
    /// that has no level of its own; in HEAVY mode followed by the fence.
    pub fn pool_pin(&self) -> Pin<'_> {
        loop {
            let mut got = None;
            self.for_each_slot(|s| {
                if got.is_some() || s.owned.load(Ordering::Relaxed) != SLOT_POOL {
                    return;
                }
                for h in s.haz.iter() {
                    // Relaxed: as the store of PINNED in `pin_on`.
                    if h.load(Ordering::Relaxed) == FREE
                        && h.compare_exchange(FREE, PINNED, Ordering::Relaxed, Ordering::Relaxed)
                            .is_ok()
                    {
                        got = Some(h as *const AtomicUsize);
                        return;
                    }
                }
            });
            if let Some(h) = got {
                // SAFETY: published slots live as long as the registry.
                return self.entered(Pin::new(unsafe { &*h }));
            }
            // Every pool level is in use: one more pool slot.
            self.new_slot(SLOT_POOL);
        }
    }

    /// `pin` with, in HEAVY mode, the reader's fence after its claim.
    #[inline]
    fn entered<'r>(&self, pin: Pin<'r>) -> Pin<'r> {
        if self.heavy() {
            // SYNC: pairs with the reclaimer's SeqCst fence before its scan
            // (`Domain::reclaim_locked`): either the scan sees the claim
            // (PINNED, or a later store of the word), or the call's
            // lookups see the unpublishing (module comment, "Without
            // membarrier").
            #[cfg(not(shmsem_mutant = "heavy_no_fence"))]
            sync::fence(Ordering::SeqCst);
        }
        pin
    }

    /// A pin on `slot`, this thread's own.
    #[cfg_attr(not(any(test, shmsem_loom)), allow(dead_code))]
    pub fn pin<'r>(&'r self, slot: &'r Slot) -> Pin<'r> {
        self.pin_on(slot)
    }

    /// In a child after fork: every thread slot but `keep` (the forking
    /// thread's) is free, its words cleared. Atomic stores only:
    /// async-signal-safe.
    #[cfg_attr(shmsem_loom, allow(dead_code))]
    fn after_fork(&self, keep: *const Slot) {
        self.for_each_slot(|s| {
            if !core::ptr::eq(s, keep) && s.owned.load(Ordering::Relaxed) == SLOT_THREAD {
                self.release(s);
            }
        });
    }
}

/// A call's claim on one hazard level: what its lookups use stays mapped
/// until it protects something else or drops. Not `Send`: the level is its
/// thread's (or its call's, for a pool level). One reference, passed by
/// value (into [`Held`]): it costs a call one register.
pub struct Pin<'r> {
    haz: &'r AtomicUsize,
    _thread: PhantomData<*const ()>,
}

impl<'r> Pin<'r> {
    #[inline]
    fn new(haz: &'r AtomicUsize) -> Pin<'r> {
        Pin {
            haz,
            _thread: PhantomData,
        }
    }

    /// Loads `cell` and protects what it holds (and whatever it held
    /// meanwhile) until the next `protect`, `announce` or `release` of
    /// this pin, or its drop (reader steps 1–3).
    #[inline]
    pub fn protect<T>(&self, cell: &AtomicPtr<T>) -> *mut T {
        #[cfg(shmsem_mutant = "protect_after_load")]
        {
            // Mutant: the cell is announced after the load.
            // SYNC: (mutant) as below.
            let p = cell.load(Ordering::Acquire);
            self.announce(cell);
            return p;
        }
        #[allow(unreachable_code)]
        {
            self.announce(cell);
            // SYNC: the fence pairs with the reclaimer's fence
            // (`Domain::reclaim_locked`) between its unpublishing and its
            // scan: either the load below sees the unpublishing, or the
            // scan sees the announcement (module comment, "Why it is
            // safe").
            sync::light_fence();
            // SYNC: Acquire pairs with the Release CAS that installed the
            // object (`Domain::install`): its contents are visible.
            cell.load(Ordering::Acquire)
        }
    }

    /// Announces `cell` without loading it (before this thread installs
    /// an object there).
    #[inline]
    pub fn announce<T>(&self, cell: &AtomicPtr<T>) {
        // SYNC: Release (here and in every hazard store) pairs with the
        // Acquire loads of the reclaimer's scan (`Registry::hazards`).
        self.haz
            .store(cell as *const AtomicPtr<T> as usize, Ordering::Release);
    }

    /// Protects nothing any more (the level stays this call's).
    #[inline]
    pub fn release(&self) {
        // SYNC: Release, as in `protect`: what the call did with the object
        // it held happens before a scan that reads this.
        self.haz.store(PINNED, Ordering::Release);
    }
}

impl Drop for Pin<'_> {
    #[inline]
    fn drop(&mut self) {
        // SYNC: Release, as in `release`.
        #[cfg(not(shmsem_mutant = "unpin_keeps_hazard"))]
        self.haz.store(FREE, Ordering::Release);
    }
}

/// An object and the pin that protects it, in one guard: it derefs to
/// the object, and dropping it ends the protection, so the object cannot
/// outlive its pin. Passed by value, it stays in registers.
pub struct Held<'a, T> {
    obj: &'a T,
    pin: Pin<'a>,
}

impl<'a, T> Held<'a, T> {
    /// `obj` under `pin`.
    ///
    /// # Safety
    /// `pin` protects `obj` (it announces the cell `obj` was loaded from
    /// or installed in, and will until dropped), and `obj` is valid.
    #[inline]
    pub unsafe fn new(pin: Pin<'a>, obj: *const T) -> Held<'a, T> {
        Held {
            // SAFETY: valid and protected (the contract).
            obj: unsafe { &*obj },
            pin,
        }
    }
}

impl<T> core::ops::Deref for Held<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        self.obj
    }
}

impl<T> Held<'_, T> {
    /// Ends the protection (as dropping it does).
    #[inline]
    pub fn end(self) {
        drop(self.pin);
    }
}

/// An object a [`Domain`] owns, and the cell that holds (or held) it.
struct Entry<T> {
    p: *mut T,
    cell: *const AtomicPtr<T>,
}

impl<T> Clone for Entry<T> {
    fn clone(&self) -> Entry<T> {
        *self
    }
}
impl<T> Copy for Entry<T> {}

struct Lists<T> {
    /// The objects some cell holds: exactly the cells' non-null contents.
    live: Vec<Entry<T>>,
    /// Unpublished, not yet freed.
    retired: Vec<Entry<T>>,
}

/// The objects published in a family of cells (the cache of one
/// namespace), each a `Box<T>`: installed, unpublished and freed here, and
/// only here, under one mutex.
///
/// The contract of the cells: every cell passed to a domain's methods is
/// written only by that domain's methods (readers only load it, through
/// [`Pin::protect`]), and outlives the domain's use of it.
pub struct Domain<T> {
    reg: &'static Registry,
    lists: Mutex<Lists<T>>,
}

// SAFETY: the domain owns its objects (boxes, shared with readers only as
// `&T` under a pin); T's own Send/Sync carry over.
unsafe impl<T: Send + Sync> Send for Domain<T> {}
// SAFETY: as above; all mutable state is behind the mutex.
unsafe impl<T: Send + Sync> Sync for Domain<T> {}

impl<T> Domain<T> {
    /// An empty domain whose readers pin in `reg`.
    pub fn new(reg: &'static Registry) -> Domain<T> {
        Domain {
            reg,
            lists: Mutex::new(Lists {
                live: Vec::new(),
                retired: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lists<T>> {
        self.lists.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes `new` in `cell` in place of `cur` (which this thread
    /// loaded through `pin`; `cur`, if not null, is retired), and returns
    /// it, protected by `pin`. `Err(new)` if `cell` no longer holds `cur`.
    pub fn install(
        &self,
        pin: &Pin<'_>,
        cell: &AtomicPtr<T>,
        cur: *mut T,
        new: Box<T>,
    ) -> Result<*mut T, Box<T>> {
        let p = Box::into_raw(new);
        #[cfg(not(shmsem_mutant = "announce_after_install"))]
        pin.announce(cell);
        #[cfg(shmsem_mutant = "announce_after_install")]
        pin.release();
        let mut l = self.lock();
        // SYNC: Release publishes `*p` (and the announcement above) to the
        // Acquire load in `Pin::protect`; Acquire (on failure too) as that
        // load.
        if cell
            .compare_exchange(cur, p, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            drop(l);
            pin.release();
            // SAFETY: `p` was never published.
            return Err(unsafe { Box::from_raw(p) });
        }
        l.live.push(Entry { p, cell });
        if !cur.is_null() {
            Domain::retire_locked(&mut l, cur);
        }
        self.reclaim_locked(&mut l);
        drop(l);
        // Mutant: the cell is announced only after the object is reachable
        // and the mutex is free (a reclaimer may unpublish and free it
        // first).
        #[cfg(shmsem_mutant = "announce_after_install")]
        pin.announce(cell);
        Ok(p)
    }

    /// Moves `p` from the live list to the retired one (its cell no longer
    /// holds it).
    fn retire_locked(l: &mut Lists<T>, p: *mut T) {
        if let Some(i) = l.live.iter().position(|e| e.p == p) {
            let e = l.live.swap_remove(i);
            l.retired.push(e);
        }
    }

    /// If `cell` holds an object that is `dead`, unpublishes and retires
    /// it; then frees what no thread holds.
    pub fn retire_if(&self, cell: &AtomicPtr<T>, dead: impl Fn(&T) -> bool) {
        let mut l = self.lock();
        // Relaxed: only the domain writes cells, under the mutex we hold.
        let p = cell.load(Ordering::Relaxed);
        // SAFETY: a cell's object is live in this domain, and live objects
        // are freed only under the mutex we hold.
        if !p.is_null() && dead(unsafe { &*p }) {
            // SYNC: Release, as every unpublishing: readers that load the
            // null see nothing else of it (the scan's fence orders it
            // before the scan).
            cell.store(core::ptr::null_mut(), Ordering::Release);
            Domain::retire_locked(&mut l, p);
        }
        self.reclaim_locked(&mut l);
    }

    /// Unpublishes and retires every live object that is `dead`; then
    /// frees what no thread holds.
    pub fn sweep(&self, dead: impl Fn(&T) -> bool) {
        let mut l = self.lock();
        let mut i = 0;
        while i < l.live.len() {
            let e = l.live[i];
            // SAFETY: live objects are freed only under the mutex we hold.
            if dead(unsafe { &*e.p }) {
                // SAFETY: the cells outlive the domain's use (the contract).
                let cell = unsafe { &*e.cell };
                // SYNC: Release, as in `retire_if`.
                cell.store(core::ptr::null_mut(), Ordering::Release);
                l.live.swap_remove(i);
                l.retired.push(e);
            } else {
                i += 1;
            }
        }
        self.reclaim_locked(&mut l);
    }

    /// Frees what no thread holds of the retired objects (reclaimer steps
    /// 2–4); the rest stays retired.
    fn reclaim_locked(&self, l: &mut Lists<T>) {
        if l.retired.is_empty() {
            return;
        }
        let heavy = self.reg.heavy();
        // SYNC: the fence pairs with every reader's light fence
        // (`Pin::protect`), or in HEAVY mode with the SeqCst fence of every
        // pin (`Registry::entered`); it follows the unpublishing stores of
        // the cells and precedes the scan.
        #[cfg(not(shmsem_mutant = "reclaim_no_fence"))]
        if heavy {
            sync::fence(Ordering::SeqCst);
        } else if !sync::heavy_fence() {
            return;
        }
        let held = self.reg.hazards();
        // HEAVY: a call in progress (any word not FREE) may hold anything.
        if heavy && held.last().is_some_and(|&x| x != FREE) {
            return;
        }
        l.retired.retain(|e| {
            let keep = held.binary_search(&(e.cell as usize)).is_ok();
            // Mutant: the scan's verdict is ignored.
            #[cfg(shmsem_mutant = "scan_ignored")]
            let keep = keep && false;
            if !keep {
                // SAFETY: unpublished (no reader can load it any more) and
                // no hazard word protects it (no reader that loaded it is
                // still using it); boxed by `install`, freed once.
                drop(unsafe { Box::from_raw(e.p) });
            }
            keep
        });
    }

    /// How many objects wait to be freed.
    #[cfg_attr(not(any(test, shmsem_loom)), allow(dead_code))]
    pub fn retired(&self) -> usize {
        self.lock().retired.len()
    }

    /// Frees every object, live or retired. `&mut`: nobody else can reach
    /// the domain, so no reader holds one (readers reach objects only
    /// through the domain's owner). The cells are left dangling.
    pub fn clear(&mut self) {
        let l = self.lists.get_mut().unwrap_or_else(|e| e.into_inner());
        for e in l.live.drain(..).chain(l.retired.drain(..)) {
            // SAFETY: boxed by `install`; freed once, here.
            drop(unsafe { Box::from_raw(e.p) });
        }
    }
}

impl<T> Drop for Domain<T> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The process's registry, this thread's slot, the fork handler; and what
/// the set cache calls.
#[cfg(not(shmsem_loom))]
mod process {
    use core::cell::Cell;

    use super::*;
    use crate::namespace::cache::SetHandle;
    use crate::namespace::Namespace;

    /// Every thread's slot in this process.
    pub(in crate::namespace) static REGISTRY: Registry = Registry {
        head: AtomicPtr::new(core::ptr::null_mut()),
        chunk_slots: 64,
        mode: AtomicU8::new(UNDECIDED),
    };

    /// Stand-in slots that [`SLOT`] names when the thread has no slot of
    /// its own; their first level is never FREE, so [`pin`] always takes
    /// its slow path for them. Never in the registry, never written.
    static UNREGISTERED: Slot = Slot {
        haz: [const { AtomicUsize::new(PINNED) }; LEVELS],
        owned: AtomicUsize::new(SLOT_FREE),
    };
    /// As [`UNREGISTERED`]: the thread's slot is gone (its TLS is being
    /// destroyed), so its calls take pool levels.
    static POOL_ONLY: Slot = Slot {
        haz: [const { AtomicUsize::new(PINNED) }; LEVELS],
        owned: AtomicUsize::new(SLOT_FREE),
    };
    /// As [`UNREGISTERED`]: the process is in HEAVY mode; the thread's
    /// slot is in [`HEAVY_SLOT`], for [`pin_slow`].
    static HEAVY_MODE: Slot = Slot {
        haz: [const { AtomicUsize::new(PINNED) }; LEVELS],
        owned: AtomicUsize::new(SLOT_FREE),
    };

    std::thread_local! {
        /// This thread's slot, or one of the stand-ins. Const-initialised
        /// and without a destructor: usable for the whole life of the
        /// thread, TLS destruction and atexit handlers included.
        static SLOT: Cell<*const Slot> = const { Cell::new(&UNREGISTERED) };
        /// In HEAVY mode, this thread's slot (SLOT names HEAVY_MODE).
        static HEAVY_SLOT: Cell<*const Slot> = const { Cell::new(core::ptr::null()) };
        /// Its destructor gives the slot back when the thread exits.
        static OWNER: Owner = const { Owner };
    }

    /// This thread's own slot (not a stand-in), if it has one.
    fn own_slot() -> Option<&'static Slot> {
        let s = SLOT.try_with(Cell::get).unwrap_or(&POOL_ONLY);
        let s = if core::ptr::eq(s, &HEAVY_MODE) {
            HEAVY_SLOT.try_with(Cell::get).unwrap_or(core::ptr::null())
        } else {
            s
        };
        if s.is_null() || core::ptr::eq(s, &UNREGISTERED) || core::ptr::eq(s, &POOL_ONLY) {
            return None;
        }
        // SAFETY: a slot named by SLOT or HEAVY_SLOT is this thread's slot
        // of REGISTRY, which is never freed.
        Some(unsafe { &*s })
    }

    struct Owner;

    impl Drop for Owner {
        fn drop(&mut self) {
            let own = own_slot();
            let _ = SLOT.try_with(|c| c.set(&POOL_ONLY));
            if let Some(s) = own {
                REGISTRY.release(s);
            }
        }
    }

    /// A pin for one call of this thread: its first level, if free.
    #[inline]
    pub(in crate::namespace) fn pin() -> Pin<'static> {
        let s = SLOT.try_with(Cell::get).unwrap_or(&POOL_ONLY);
        // SAFETY: SLOT names this thread's slot of REGISTRY or a stand-in,
        // all of them static.
        let h = unsafe { &(*s).haz[0] };
        if h.load(Ordering::Relaxed) == FREE {
            h.store(PINNED, Ordering::Relaxed);
            return Pin::new(h);
        }
        pin_slow(s)
    }

    /// [`pin`] for a thread without a slot (yet), in HEAVY mode, or
    /// nested.
    #[cold]
    #[inline(never)]
    fn pin_slow(s: *const Slot) -> Pin<'static> {
        if core::ptr::eq(s, &UNREGISTERED) {
            register();
        }
        match own_slot() {
            Some(s) => REGISTRY.pin_on(s),
            None => REGISTRY.pool_pin(),
        }
    }

    /// Gives this thread a slot, deciding the process's fence mode first
    /// (SLOT stays a stand-in if the thread is exiting).
    fn register() {
        install_fork_handler();
        // The destructor first: a thread whose TLS is being destroyed
        // takes no slot (it could never give it back).
        if OWNER.try_with(|_| ()).is_err() {
            let _ = SLOT.try_with(|c| c.set(&POOL_ONLY));
            return;
        }
        let slot: *const Slot = REGISTRY.claim();
        let ok = if REGISTRY.heavy() {
            HEAVY_SLOT.try_with(|c| c.set(slot)).is_ok()
                && SLOT.try_with(|c| c.set(&HEAVY_MODE)).is_ok()
        } else {
            SLOT.try_with(|c| c.set(slot)).is_ok()
        };
        if !ok {
            // SAFETY: just claimed, never shared.
            REGISTRY.release(unsafe { &*slot });
            let _ = SLOT.try_with(|c| c.set(&POOL_ONLY));
        }
    }

    fn install_fork_handler() {
        static INSTALLED: AtomicU8 = AtomicU8::new(0);
        if INSTALLED.swap(1, Ordering::Relaxed) == 0 {
            // SAFETY: registers a handler that makes atomic stores only.
            unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        }
    }

    extern "C" fn after_fork_in_child() {
        let keep = own_slot().map_or(core::ptr::null(), |s| s as *const Slot);
        REGISTRY.after_fork(keep);
    }

    impl SetHandle {
        /// Whether the set was removed (IPC_RMID).
        fn is_removed(&self) -> bool {
            self.removed()
        }
    }

    impl Namespace {
        /// If set `idx` was removed, its handle leaves the cache, to be
        /// unmapped as soon as no call of this process uses it (after
        /// IPC_RMID, by the remover; after EIDRM or EINVAL, by the first
        /// call that learns it). The caller's own pin no longer protects
        /// it (dropped or released), or it would wait for the next
        /// attempt.
        #[cold]
        pub(in crate::namespace) fn forget_removed(&self, idx: u32) {
            if let Some(cell) = self.cache.get(idx as usize) {
                self.sets.retire_if(cell, SetHandle::is_removed);
            }
        }

        /// Every cached set that another process has removed leaves the
        /// cache (the slow path's way of noticing removals), and what no
        /// thread uses is unmapped.
        pub(in crate::namespace) fn notice_removed(&self) {
            self.sets.sweep(SetHandle::is_removed);
        }
    }
}

#[cfg(not(shmsem_loom))]
pub(in crate::namespace) use process::{pin, REGISTRY};

#[cfg(test)]
mod tests {
    use super::*;

    /// A leaked registry of 2-slot blocks, for one test.
    fn registry(heavy: bool) -> &'static Registry {
        Box::leak(Box::new(Registry::new(2, heavy)))
    }

    struct Obj<'a>(&'a AtomicUsize);
    impl Drop for Obj<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    type Cell<'a> = AtomicPtr<Obj<'a>>;

    fn installed<'a>(d: &Domain<Obj<'a>>, reg: &Registry, cell: &Cell<'a>, freed: &'a AtomicUsize) {
        let s = reg.claim();
        let p = reg.pin(s);
        assert!(p.protect(cell).is_null());
        d.install(&p, cell, core::ptr::null_mut(), Box::new(Obj(freed)))
            .unwrap_or_else(|_| panic!("install"));
        drop(p);
        reg.release(s);
    }

    #[test]
    fn held_objects_wait_and_the_rest_go() {
        let reg = registry(false);
        let freed = AtomicUsize::new(0);
        let d: Domain<Obj<'_>> = Domain::new(reg);
        let cell: Cell<'_> = AtomicPtr::new(core::ptr::null_mut());
        installed(&d, reg, &cell, &freed);
        let (a, b) = (reg.claim(), reg.claim());
        assert!(!core::ptr::eq(a, b));
        // Thread b holds it; a retires it.
        let p2 = reg.pin(b);
        let o = p2.protect(&cell);
        assert!(!o.is_null());
        d.retire_if(&cell, |_| true);
        assert!(cell.load(Ordering::Relaxed).is_null());
        assert_eq!((freed.load(Ordering::Relaxed), d.retired()), (0, 1));
        // Other levels and pool levels in use do not keep it.
        let inner = reg.pin(b);
        let pooled = reg.pool_pin();
        let other = reg.pin(a);
        d.sweep(|_| false);
        assert_eq!(d.retired(), 1);
        drop((other, pooled, inner));
        drop(p2);
        d.sweep(|_| false);
        assert_eq!((freed.load(Ordering::Relaxed), d.retired()), (1, 0));
    }

    #[test]
    fn an_announced_cell_keeps_what_it_held() {
        let reg = registry(false);
        let freed = AtomicUsize::new(0);
        let d: Domain<Obj<'_>> = Domain::new(reg);
        let cell: Cell<'_> = AtomicPtr::new(core::ptr::null_mut());
        installed(&d, reg, &cell, &freed);
        let p = reg.pin(reg.claim());
        // A reader between its announcement and its load.
        p.announce(&cell);
        d.retire_if(&cell, |_| true);
        assert_eq!(d.retired(), 1);
        drop(p);
        d.sweep(|_| false);
        assert_eq!((freed.load(Ordering::Relaxed), d.retired()), (1, 0));
    }

    #[test]
    fn heavy_mode_frees_only_when_no_call_runs() {
        let reg = registry(true);
        let freed = AtomicUsize::new(0);
        let d: Domain<Obj<'_>> = Domain::new(reg);
        let cell: Cell<'_> = AtomicPtr::new(core::ptr::null_mut());
        installed(&d, reg, &cell, &freed);
        // A call that holds nothing of it still keeps it.
        let p = reg.pool_pin();
        d.retire_if(&cell, |_| true);
        assert_eq!((freed.load(Ordering::Relaxed), d.retired()), (0, 1));
        drop(p);
        d.sweep(|_| false);
        assert_eq!((freed.load(Ordering::Relaxed), d.retired()), (1, 0));
    }

    #[test]
    fn levels_then_pool_levels() {
        let reg = registry(false);
        let s = reg.claim();
        let own = |p: &Pin<'_>| s.haz.iter().any(|h| core::ptr::eq(h, p.haz));
        let pins: Vec<Pin<'_>> = (0..LEVELS).map(|_| reg.pin(s)).collect();
        assert!(pins.iter().all(own));
        let extra = reg.pin(s);
        assert!(!own(&extra));
        let word = extra.haz as *const AtomicUsize;
        drop(extra);
        // The pool level is free again, and taken again.
        assert!(core::ptr::eq(reg.pool_pin().haz, word));
        let many: Vec<Pin<'_>> = (0..3 * LEVELS).map(|_| reg.pool_pin()).collect();
        let mut words: Vec<usize> = many.iter().map(|p| p.haz as *const _ as usize).collect();
        words.sort_unstable();
        words.dedup();
        assert_eq!(words.len(), many.len());
        drop(pins);
        reg.release(s);
        // Released slots are claimed again; blocks grow on demand.
        let again: Vec<&Slot> = (0..5).map(|_| reg.claim()).collect();
        assert!(again.iter().any(|x| core::ptr::eq(*x, s)));
    }

    #[test]
    fn thread_pins_nest() {
        let a = pin();
        let b = pin();
        assert!(!core::ptr::eq(a.haz, b.haz));
        drop(b);
        drop(a);
        let c = pin();
        assert_eq!(c.haz.load(Ordering::Relaxed), PINNED);
    }
}
