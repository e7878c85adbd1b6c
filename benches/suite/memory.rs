//! Memory per set and per semaphore.
//!
//! - shmsem: measured. Two sets are created, of 1 and of 1025 semaphores;
//!   the allocated size of each one's segment in /dev/shm (`st_blocks` ×
//!   512; the pages are reserved with fallocate at creation) gives the
//!   per-semaphore cost (the difference / 1024) and the fixed per-set part
//!   (the 1-semaphore set less one semaphore). The namespace's registry is a
//!   separate fixed cost per namespace (reported in the notes).
//! - kernel: `sizeof(struct sem_array)` (per set) and `sizeof(struct sem)`
//!   (per semaphore), read from the running kernel's BTF with
//!   `pahole -C NAME /sys/kernel/btf/vmlinux` when pahole is installed (the
//!   `dwarves` package), else the values it gave on Linux 6.18 (256 and 64).
//!   The kernel allocates both in one kvzalloc, rounded up to a kmalloc size
//!   class (1 semaphore: 320 → 512 bytes). SEM_UNDO adds a `struct
//!   sem_undo` (64 B) + 2 B per semaphore per process and set, allocated on
//!   first use; shmsem preallocates 2 B per semaphore for every one of its
//!   512 process-table entries, which is in its per-semaphore figure.
//! - sem_t, pthread_mutex_t: `size_of` (no set); futex: the 4-byte word
//!   plus the 4-byte sleeper count of this benchmark's futex semaphore. (In
//!   the benchmark each sits on its own 64-byte line.)

use crate::impls::{Env, Sem, Shmsem};
use crate::report::{Better, Fig, Row, IMPLS, KERNEL, SHMSEM};

/// `/* size: N` of `pahole -C name`, if pahole can read the kernel's BTF.
fn pahole_size(name: &str) -> Option<u64> {
    let out = std::process::Command::new("pahole")
        .args(["-C", name, "/sys/kernel/btf/vmlinux"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.find("/* size: ")? + "/* size: ".len();
    let digits: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Rows "memory per set" and "memory per semaphore", and notes.
pub fn run(env: &Env) -> (Vec<Row>, Vec<String>) {
    let mut per_set = Row::new("memory per set (fixed part)", "bytes", Better::Info);
    let mut per_sem = Row::new("memory per semaphore", "bytes", Better::Info);
    let mut set8 = Row::new("memory of a set of 8", "bytes", Better::Info);
    let mut notes = Vec::new();

    let small = Shmsem::create(env, 1, 0);
    let big = Shmsem::create(env, 1025, 0);
    match (small.segment_bytes(), big.segment_bytes()) {
        (Ok((size1, alloc1)), Ok((_, alloc2))) => {
            let sem = (alloc2 as f64 - alloc1 as f64) / 1024.0;
            per_sem.set(SHMSEM, Fig::Val(sem));
            per_set.set(SHMSEM, Fig::Val(alloc1 as f64 - sem));
            set8.set(SHMSEM, Fig::Val(alloc1 as f64 + 7.0 * sem));
            notes.push(format!(
                "shmsem memory: a 1-semaphore set's segment is {size1} bytes ({alloc1} allocated), a 1025-semaphore set's {alloc2} allocated; measured from /dev/shm"
            ));
        }
        (a, b) => {
            let why = format!("stat of the segments: {a:?} / {b:?}");
            per_sem.set(SHMSEM, Fig::Failed(why.clone()));
            per_set.set(SHMSEM, Fig::Failed(why));
        }
    }
    drop((small, big));
    let reg = format!("/dev/shm/shmsem.{}", env.ns.name());
    if let Ok(m) = std::fs::metadata(&reg) {
        use std::os::unix::fs::MetadataExt;
        notes.push(format!(
            "shmsem also keeps one registry segment per namespace: {} bytes ({} allocated)",
            m.size(),
            m.blocks() * 512
        ));
    }

    let (arr, sem, how) = match (pahole_size("sem_array"), pahole_size("sem")) {
        (Some(a), Some(s)) => (a, s, "read now with pahole from /sys/kernel/btf/vmlinux"),
        _ => (
            256,
            64,
            "pahole not available: the values pahole gave on Linux 6.18",
        ),
    };
    per_set.set(KERNEL, Fig::Val(arr as f64));
    per_sem.set(KERNEL, Fig::Val(sem as f64));
    let total8 = arr + 8 * sem;
    set8.set(KERNEL, Fig::Val(total8 as f64));
    notes.push(format!(
        "kernel memory: sizeof(struct sem_array) = {arr}, sizeof(struct sem) = {sem} ({how}); one kvzalloc per set, rounded up to a kmalloc size class; SEM_UNDO adds 64 + 2×nsems bytes per process and set"
    ));

    let sizes = [
        std::mem::size_of::<libc::sem_t>(),
        std::mem::size_of::<libc::pthread_mutex_t>(),
        8,
    ];
    for (k, sz) in sizes.into_iter().enumerate() {
        per_sem.set(2 + k, Fig::Val(sz as f64));
        set8.set(2 + k, Fig::Val(8.0 * sz as f64));
    }
    notes.push(format!(
        "{}, {} and {}: size_of the object (sem_t, pthread_mutex_t; the futex word + its sleeper count), no set structure",
        IMPLS[2], IMPLS[3], IMPLS[4]
    ));
    (vec![per_set, per_sem, set8], notes)
}
