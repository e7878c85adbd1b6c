//! The one place where bytes of a mapping become layout types.
//!
//! Every region of a segment is a `#[repr(C)]` type of shm-layout made of
//! atomics only, so any bit pattern is a valid value and every access is
//! atomic: a reference to one over mapped memory is sound as long as the
//! memory stays mapped, the offset is aligned for the type and the region
//! lies inside the mapping. Those are the callers' obligations; the types
//! a mapping may be read as are the ones that implement [`Mapped`].

use crate::sync::{AtomicI16, AtomicU64};
use shm_layout::{IntentHeader, ProcEntry, QueueSlot, SemEntry, SetHeader};

/// A layout type made of atomics only: valid for every bit pattern, and
/// only ever accessed atomically (by every process).
///
/// # Safety
///
/// Implement only for `#[repr(C)]` types whose fields are all atomics (or
/// arrays of them), with no padding that is read.
pub(crate) unsafe trait Mapped {}

// SAFETY: each of these is a #[repr(C)] struct of atomics (shm-layout's
// size and offset assertions fix their layout), or an atomic.
unsafe impl Mapped for SetHeader {}
// SAFETY: as above.
unsafe impl Mapped for SemEntry {}
// SAFETY: as above.
unsafe impl Mapped for ProcEntry {}
// SAFETY: as above.
unsafe impl Mapped for QueueSlot {}
// SAFETY: as above.
unsafe impl Mapped for IntentHeader {}
// SAFETY: an atomic.
unsafe impl Mapped for AtomicI16 {}
// SAFETY: an atomic.
unsafe impl Mapped for AtomicU64 {}

/// The `T` at byte `off` of the memory at `base`.
///
/// # Safety
///
/// * `base + off .. base + off + size_of::<T>()` is mapped for `'a`;
/// * `base + off` is aligned for `T`.
#[inline]
pub(crate) unsafe fn at<'a, T: Mapped>(base: *const u8, off: usize) -> &'a T {
    // SAFETY: the caller's obligations; any bit pattern is a valid T.
    unsafe {
        let p = base.add(off);
        debug_assert!(p as usize % core::mem::align_of::<T>() == 0);
        &*(p as *const T)
    }
}

/// The `n` consecutive `T`s at byte `off` of the memory at `base`.
///
/// # Safety
///
/// * `base + off .. base + off + n * size_of::<T>()` is mapped for `'a`;
/// * `base + off` is aligned for `T`.
#[inline]
pub(crate) unsafe fn slice_at<'a, T: Mapped>(base: *const u8, off: usize, n: usize) -> &'a [T] {
    // SAFETY: the caller's obligations; any bit pattern is a valid T.
    unsafe {
        let p = base.add(off);
        debug_assert!(p as usize % core::mem::align_of::<T>() == 0);
        core::slice::from_raw_parts(p as *const T, n)
    }
}
