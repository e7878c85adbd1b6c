//! This process's presence in one namespace: one descriptor of the
//! namespace's presence file (for now its hints file,
//! `crate::namespace::hints_name`), close-on-exec, and through it the lock
//! on this process's presence byte (`shm_layout::presence_byte`). The one
//! descriptor this process holds for a namespace, whatever the number of
//! its sets it uses: the claim bytes of process-table entries are taken
//! through it too.
//!
//! The program may close the descriptor (a daemon closing every
//! descriptor) and reuse its number for a file of its own. So the number
//! is never trusted for anything that writes: [`Presence::checked`]
//! compares the device and inode behind it with the file's first, and
//! opens a new descriptor (re-taking the presence lock) when they differ.
//! Tests of others' locks ([`Presence::for_tests`]) may go through an
//! unchecked number: a wrong answer there is "not locked", which only sends
//! the liveness check to /proc (see [`super::OsHost`]).

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use super::identity;
use crate::shm::{self, FileId};
use crate::sync::{AtomicI32, Ordering};
use crate::Result;
use shm_layout::presence_byte;

/// The presence descriptors this process opened, so that a child forked
/// without exec closes its copies at once ([`close_inherited`]): a copy
/// would keep the parent's presence lock held after the parent died.
static OPENED: [AtomicI32; TRACKED] = [const { AtomicI32::new(-1) }; TRACKED];
const TRACKED: usize = 64;
/// In a child just forked (pthread_atfork's child handler; async-signal-
/// safe: loads and close): closes the copies of the parent's presence
/// descriptors. The child's [`Presence`] finds its copy closed and never
/// closes that number again.
pub(super) fn close_inherited() {
    for fd in &OPENED {
        let n = fd.swap(-1, Ordering::Relaxed);
        if n >= 0 {
            // SAFETY: close of a number the parent opened as a presence
            // descriptor; nothing else in the child uses it yet.
            unsafe { libc::close(n) };
        }
    }
}

fn track(fd: i32) {
    for slot in &OPENED {
        if slot
            .compare_exchange(-1, fd, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
    // More namespaces than tracked: a child forked without exec keeps this
    // one (README difference 4).
}

fn untrack(fd: i32) {
    for slot in &OPENED {
        let _ = slot.compare_exchange(fd, -1, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// The descriptor and the process it was opened by.
struct Held {
    pid: i32,
    /// The presence file, which the descriptor must still name.
    file: FileId,
    /// Never closed by dropping (see `Drop for Held`).
    fd: std::mem::ManuallyDrop<OwnedFd>,
}

impl Drop for Held {
    fn drop(&mut self) {
        // Closed only if it is still this process's own descriptor of the
        // registry: a forked child's copy was closed by
        // [`close_inherited`] already, and a number the program closed may
        // be one of its own files now.
        let raw = self.fd.as_raw_fd();
        if self.pid == identity::pid() && FileId::of_raw(raw) == Some(self.file) {
            untrack(raw);
            // SAFETY: dropped once, here; the number is this process's
            // open descriptor (checked just above).
            drop(unsafe { std::mem::ManuallyDrop::take(&mut self.fd) });
        }
    }
}

/// This process's presence in a namespace (see the module's comment).
pub struct Presence {
    /// The presence file's name, and the file it named when first opened.
    name: String,
    file: std::sync::OnceLock<FileId>,
    /// The descriptor's number (-1: none) and the pid that opened it (0:
    /// none), for lock tests without the mutex.
    pid: AtomicI32,
    fd: AtomicI32,
    held: Mutex<Option<Held>>,
}

impl Presence {
    /// The presence in namespace `ns`. Nothing is opened until first
    /// needed.
    pub fn new(ns: &str) -> Presence {
        Presence {
            name: crate::namespace::hints_name(ns),
            file: std::sync::OnceLock::new(),
            pid: AtomicI32::new(0),
            fd: AtomicI32::new(-1),
            held: Mutex::new(None),
        }
    }

    /// The descriptor, checked to be the presence file's and opened by this
    /// process (opened, or opened again, if not), with this process's
    /// presence byte locked through it. Runs `f` with it under the
    /// presence's mutex, so that no other thread replaces it meanwhile.
    pub fn checked<T>(&self, f: impl FnOnce(BorrowedFd<'_>) -> Result<T>) -> Result<T> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let pid = identity::pid();
        let ok = held
            .as_ref()
            .is_some_and(|h| h.pid == pid && FileId::of_raw(h.fd.as_raw_fd()) == Some(h.file));
        if !ok {
            if let Some(old) = held.take() {
                let raw = old.fd.as_raw_fd();
                untrack(raw);
                if old.pid != pid && FileId::of_raw(raw) == Some(old.file) {
                    // A forked child's copy of its parent's that
                    // `close_inherited` did not close (not tracked):
                    // closing it leaves the parent's lock alone.
                    // SAFETY: the child's own copy, used by nothing else.
                    unsafe { libc::close(raw) };
                }
                // Otherwise it was closed already, or the program closed it
                // (and perhaps reused the number for a file of its own):
                // never close it again. `Held`'s drop closes nothing for
                // another pid, nor for a number no longer the registry's.
                std::mem::forget(old);
            }
            let fd = shm::open_for_locks(&self.name)?;
            let id = FileId::of(&fd)?;
            let file = *self.file.get_or_init(|| id);
            if id != file {
                // The name now names another file (destroyed and created
                // again): this namespace is gone.
                return Err(crate::Error::Corrupt);
            }
            if let Some(byte) = presence_byte(pid, identity::start_time()) {
                // Held already only through a descriptor we closed and the
                // program duplicated beforehand: present either way.
                let _ = shm::ofd_try_lock(&fd, byte);
            }
            self.fd.store(fd.as_raw_fd(), Ordering::Relaxed);
            track(fd.as_raw_fd());
            // SYNC: Release publishes `fd` to the Acquire load of `pid` in
            // `Presence::for_tests`.
            self.pid.store(pid, Ordering::Release);
            *held = Some(Held {
                pid,
                file,
                fd: std::mem::ManuallyDrop::new(fd),
            });
        }
        let h = held.as_ref().expect("set above");
        f(std::os::fd::AsFd::as_fd(&*h.fd))
    }

    /// The descriptor through which to test other processes' locks, without
    /// the mutex and unchecked (see the module's comment); `None` before
    /// this process has opened one. The number stays valid as a number: it
    /// is never closed while this process uses it (a closed one is
    /// forgotten, not closed).
    pub fn for_tests(&self) -> Option<BorrowedFd<'_>> {
        // SYNC: Acquire pairs with the Release store of `pid` in
        // `Presence::checked`, after `fd`.
        if self.pid.load(Ordering::Acquire) != identity::pid() {
            return None;
        }
        let fd = self.fd.load(Ordering::Relaxed);
        // SAFETY: `fd` is a number this process opened; if the program
        // closed it since, the number may name another of its files, or
        // nothing: the lock tests made through it only read, and then fail
        // or answer about another file — at worst "not locked", which the
        // liveness check does not trust, or "locked", which keeps an entry
        // until its pid is gone.
        (fd >= 0).then(|| unsafe { BorrowedFd::borrow_raw(fd) })
    }
}
