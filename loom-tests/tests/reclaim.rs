//! Loom models of the set cache's reclamation (src/namespace/reclaim.rs):
//! the real `Registry`, `Pin` and `Domain`, on cells and objects of the
//! model's own. Under loom the asymmetric fence pair is what it guarantees
//! in production, a SeqCst fence on each side (`sync::light_fence`,
//! `sync::heavy_fence`), and the HEAVY mode (no membarrier) is a registry
//! made HEAVY from the start.
//!
//! Each model asserts, inside the model, that an object a reader loaded
//! through its pin is not freed while the pin lasts (safety), and at the
//! end that every retired object has been freed once no reader is left
//! (the reclaimer does free). Objects are real boxes; a reader never
//! dereferences what it loaded, it compares the address with the ones the
//! model made, and each object's drop marks it freed.
//!
//! Mutants (`--cfg shmsem_mutant="..."`, see loom-tests/run-mutants.sh):
//! `protect_after_load`, `reclaim_no_fence`, `scan_ignored`,
//! `unpin_keeps_hazard` (reader_races_reclaim), `announce_after_install`
//! (install_races_reclaim), `heavy_no_fence` (heavy_reader_races_reclaim).
#![cfg(shmsem_loom)]

use loom::sync::atomic::AtomicBool;
use loom::sync::Arc;
use loom_tests::{actor, check, gate};
use shmsem::__private::{model_membarrier, Domain, Ordering, Registry};

type Cell = loom::sync::atomic::AtomicPtr<Obj>;

/// A model's object: its drop marks it freed.
struct Obj {
    freed: Arc<AtomicBool>,
}

impl Drop for Obj {
    fn drop(&mut self) {
        // SYNC: SeqCst as every access of the model's own flags: the model
        // checks the protocol, not these.
        self.freed.store(true, Ordering::SeqCst);
    }
}

/// What one model shares: a leaked registry (the domain's readers pin in a
/// `'static` one, as in production) and cell, the domain, one object's
/// flag.
struct World {
    reg: &'static Registry,
    cell: &'static Cell,
    domain: Domain<Obj>,
    freed: Arc<AtomicBool>,
}

impl World {
    fn new(heavy: bool) -> Arc<World> {
        let reg: &'static Registry = Box::leak(Box::new(Registry::new(1, heavy)));
        let cell: &'static Cell = Box::leak(Box::new(Cell::new(core::ptr::null_mut())));
        Arc::new(World {
            reg,
            cell,
            domain: Domain::new(reg),
            freed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Installs the object in the empty cell (as a first lookup does);
    /// returns its address.
    fn install(&self) -> usize {
        let slot = self.reg.claim();
        let pin = self.reg.pin(slot);
        let cur = pin.protect(self.cell);
        let obj = Box::new(Obj {
            freed: self.freed.clone(),
        });
        let p = match self.domain.install(&pin, self.cell, cur, obj) {
            Ok(p) => p as usize,
            Err(_) => panic!("the cell was empty"),
        };
        drop(pin);
        self.reg.release(slot);
        p
    }

    fn freed(&self) -> bool {
        self.freed.load(Ordering::SeqCst)
    }
}

/// A reader's call on its own thread: pin, look up, use, unpin (the thread
/// lives on, keeping its slot). Checks that what it loaded is not freed
/// while it holds the pin.
fn reader(w: &World, obj: usize) {
    let slot = w.reg.claim();
    let pin = w.reg.pin(slot);
    let p = pin.protect(w.cell) as usize;
    if p == obj {
        assert!(!w.freed(), "freed while a pinned reader uses it");
        loom::thread::yield_now();
        assert!(!w.freed(), "freed while a pinned reader uses it");
    }
    drop(pin);
}

/// a. A reader's lookup racing the unpublishing and reclamation of what it
/// looks up: it never uses a freed object, and once it has unpinned the
/// object is freed.
/// Mutants: `protect_after_load` (the reader announces after its load),
/// `reclaim_no_fence` (no fence between unpublishing and scan),
/// `scan_ignored` (the scan's verdict is ignored): freed while used;
/// `unpin_keeps_hazard` (a pin's drop leaves its announcement): never
/// freed.
#[test]
fn reader_races_reclaim() {
    check("reader_races_reclaim", 3, || {
        model_membarrier(true);
        let w = World::new(false);
        let obj = w.install();
        let w2 = w.clone();
        let t = actor(move || reader(&w2, obj));
        gate();
        w.domain.retire_if(w.cell, |_| true);
        t.join().unwrap();
        // No reader left: the next attempt frees it.
        w.domain.sweep(|_| false);
        assert!(w.freed(), "retired, unused, and still not freed");
    });
}

/// b. A first lookup installing an object racing a reclaimer that
/// unpublishes whatever the cell holds: the installer never uses a freed
/// object.
/// Mutant `announce_after_install`: the installer announces the cell only
/// after the object is reachable and the domain's mutex free.
#[test]
fn install_races_reclaim() {
    check("install_races_reclaim", 3, || {
        model_membarrier(true);
        let w = World::new(false);
        let w2 = w.clone();
        let t = actor(move || {
            let slot = w2.reg.claim();
            let pin = w2.reg.pin(slot);
            let cur = pin.protect(w2.cell);
            let obj = Box::new(Obj {
                freed: w2.freed.clone(),
            });
            if w2.domain.install(&pin, w2.cell, cur, obj).is_ok() {
                assert!(!w2.freed(), "freed while its installer uses it");
            }
            drop(pin);
            w2.reg.release(slot);
        });
        gate();
        w.domain.retire_if(w.cell, |_| true);
        t.join().unwrap();
        w.domain.retire_if(w.cell, |_| true);
        assert!(w.freed(), "retired, unused, and still not freed");
    });
}

/// c. As (a) in a process without membarrier (HEAVY mode; the light fence
/// is nothing): a pin fences after its claim, the reclaimer frees only
/// when no call is in progress.
/// Mutant `heavy_no_fence`: the pin's fence is left out.
#[test]
fn heavy_reader_races_reclaim() {
    check("heavy_reader_races_reclaim", 3, || {
        model_membarrier(false);
        let w = World::new(true);
        let obj = w.install();
        let w2 = w.clone();
        let t = actor(move || reader(&w2, obj));
        gate();
        w.domain.retire_if(w.cell, |_| true);
        t.join().unwrap();
        w.domain.sweep(|_| false);
        assert!(w.freed(), "retired, unused, and still not freed");
    });
}
