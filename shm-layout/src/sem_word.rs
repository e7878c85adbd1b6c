//! The semaphore word ([`SemEntry::word`](crate::SemEntry::word)).

/// Mask of the value bits of a semaphore word.
pub const SEM_VALUE_MASK: u64 = 0xffff;
/// A queued operation names this semaphore.
pub const SEM_WAITERS: u64 = 1 << 16;
/// The set is in global mode; only the lock holder writes this word.
pub const SEM_GLOBAL: u64 = 1 << 17;
/// Some process holds a non-zero SEM_UNDO adjustment for this semaphore.
pub const SEM_UNDO_HELD: u64 = 1 << 18;
/// Any bit that sends an operation to the slow path.
pub const SEM_SLOW_BITS: u64 = SEM_WAITERS | SEM_GLOBAL | SEM_UNDO_HELD;
/// Shift of the version counter.
pub const SEM_VERSION_SHIFT: u32 = 19;
/// Mask of the version counter (after shifting).
pub const SEM_VERSION_MASK: u64 = (1 << 13) - 1;
/// Shift of sempid.
pub const SEM_PID_SHIFT: u32 = 32;

/// One semaphore as one 64-bit word, so that the fast path changes the
/// value and sempid with one compare-and-swap.
///
/// | bits   | field       | meaning                                              |
/// |--------|-------------|------------------------------------------------------|
/// | 0..16  | value       | the semaphore's value, 0..=SEMVMX                    |
/// | 16     | WAITERS     | a queued operation names this semaphore              |
/// | 17     | GLOBAL      | a lock holder owns the word: only it writes          |
/// | 18     | UNDO_HELD   | some process holds a non-zero SEM_UNDO adjustment    |
/// | 19..32 | version     | bumped by every change of value or sempid (wraps at  |
/// |        |             | 13 bits): the ABA guard of lock-free snapshots       |
/// | 32..64 | sempid      | pid of the last process to operate on it             |
///
/// # State table (the slow bits)
///
/// | GLOBAL | WAITERS | UNDO_HELD | Description                                        |
/// |--------|---------|-----------|----------------------------------------------------|
/// | 0      | 0       | 0         | Free for the fast path: one CAS of value + sempid. |
/// | 0      | 1       | *         | A queued operation names it: every op on it takes  |
/// |        |         |           | the slow path, under the lock, so that the queue   |
/// |        |         |           | is retried after the change.                       |
/// | 0      | 0       | 1         | An adjustment is held (its holder may be dead, its |
/// |        |         |           | undo pending): ops and lock-free GETVAL/GETALL go  |
/// |        |         |           | to the lock, which sweeps first.                   |
/// | 1      | *       | *         | Owned by the lock holder (marked by it, or the set |
/// |        |         |           | is in global mode): every fast-path CAS fails;     |
/// |        |         |           | WAITERS/UNDO_HELD are stale until the section ends |
/// |        |         |           | and [`unmarked`](Self::unmarked) recomputes them   |
/// |        |         |           | from the counters.                                 |
///
/// A lock holder sets GLOBAL (an atomic OR of [`SEM_GLOBAL`]) before it
/// reads or writes a word; a section's end stores
/// [`unmarked`](Self::unmarked) with a release store, or leaves GLOBAL set
/// while the set stays in global mode ([`GlobalMode`](crate::GlobalMode)).
///
/// The type is the plain value; the atomic stays in the layout struct. Every
/// method is a `const fn` on a `u64` and compiles to the shifts and masks it
/// replaces.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SemWord(u64);

impl SemWord {
    /// The word of a fresh set: value 0, no bits, version 0, sempid 0.
    pub const ZERO: SemWord = SemWord(0);

    /// The word as stored.
    #[inline]
    pub const fn from_raw(raw: u64) -> SemWord {
        SemWord(raw)
    }
    /// The raw word, to store.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The value (0..=SEMVMX unless scribbled on: up to 65535).
    #[inline]
    pub const fn value(self) -> u16 {
        (self.0 & SEM_VALUE_MASK) as u16
    }
    /// WAITERS: a queued operation names this semaphore.
    #[inline]
    pub const fn waiters(self) -> bool {
        self.0 & SEM_WAITERS != 0
    }
    /// GLOBAL: a lock holder owns the word.
    #[inline]
    pub const fn global(self) -> bool {
        self.0 & SEM_GLOBAL != 0
    }
    /// UNDO_HELD: some process holds an adjustment for it.
    #[inline]
    pub const fn undo_held(self) -> bool {
        self.0 & SEM_UNDO_HELD != 0
    }
    /// Any slow bit: the fast path must not CAS this word.
    #[inline]
    pub const fn is_slow(self) -> bool {
        self.0 & SEM_SLOW_BITS != 0
    }
    /// The version counter (13 bits).
    #[inline]
    pub const fn version(self) -> u16 {
        ((self.0 >> SEM_VERSION_SHIFT) & SEM_VERSION_MASK) as u16
    }
    /// sempid: the last process to operate on the semaphore.
    #[inline]
    pub const fn pid(self) -> i32 {
        (self.0 >> SEM_PID_SHIFT) as u32 as i32
    }

    /// The word with another value; nothing else changes (not even the
    /// version: see [`updated`](Self::updated) for what writers store).
    #[inline]
    pub const fn with_value(self, value: u16) -> SemWord {
        SemWord((self.0 & !SEM_VALUE_MASK) | value as u64)
    }
    /// The word with another version (taken modulo 2^13).
    #[inline]
    pub const fn with_version(self, version: u16) -> SemWord {
        SemWord(
            (self.0 & !(SEM_VERSION_MASK << SEM_VERSION_SHIFT))
                | ((version as u64 & SEM_VERSION_MASK) << SEM_VERSION_SHIFT),
        )
    }
    /// The word with another sempid.
    #[inline]
    pub const fn with_pid(self, pid: i32) -> SemWord {
        SemWord((self.0 as u32 as u64) | ((pid as u32 as u64) << SEM_PID_SHIFT))
    }
    /// The word with WAITERS set or cleared.
    #[inline]
    pub const fn with_waiters(self, on: bool) -> SemWord {
        self.with_bit(SEM_WAITERS, on)
    }
    /// The word with GLOBAL set or cleared.
    #[inline]
    pub const fn with_global(self, on: bool) -> SemWord {
        self.with_bit(SEM_GLOBAL, on)
    }
    /// The word with UNDO_HELD set or cleared.
    #[inline]
    pub const fn with_undo_held(self, on: bool) -> SemWord {
        self.with_bit(SEM_UNDO_HELD, on)
    }
    #[inline]
    const fn with_bit(self, bit: u64, on: bool) -> SemWord {
        SemWord((self.0 & !bit) | if on { bit } else { 0 })
    }

    /// What every writer of a value stores (the fast path's CAS, a lock
    /// holder's write): new value and sempid, the version bumped, the slow
    /// bits kept.
    #[inline]
    pub const fn updated(self, value: u16, pid: i32) -> SemWord {
        let ver = ((self.0 >> SEM_VERSION_SHIFT) + 1) & SEM_VERSION_MASK;
        SemWord(
            (self.0 & SEM_SLOW_BITS)
                | value as u64
                | (ver << SEM_VERSION_SHIFT)
                | ((pid as u32 as u64) << SEM_PID_SHIFT),
        )
    }
    /// What a section's end stores for a word it owned: GLOBAL cleared,
    /// WAITERS and UNDO_HELD recomputed (from the semaphore's waiter and
    /// undo counts), value, version and sempid kept.
    #[inline]
    pub const fn unmarked(self, waiters: bool, undo_held: bool) -> SemWord {
        SemWord(
            (self.0 & !SEM_SLOW_BITS)
                | if waiters { SEM_WAITERS } else { 0 }
                | if undo_held { SEM_UNDO_HELD } else { 0 },
        )
    }
}

impl From<u64> for SemWord {
    #[inline]
    fn from(raw: u64) -> SemWord {
        SemWord(raw)
    }
}
impl From<SemWord> for u64 {
    #[inline]
    fn from(w: SemWord) -> u64 {
        w.0
    }
}

impl core::fmt::Debug for SemWord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SemWord")
            .field("value", &self.value())
            .field("waiters", &self.waiters())
            .field("global", &self.global())
            .field("undo_held", &self.undo_held())
            .field("version", &self.version())
            .field("pid", &self.pid())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{edge_u64, Rng};

    /// src/set.rs's `word_with` as it is written today.
    fn word_with_today(w: u64, value: i32, pid: i32) -> u64 {
        let ver = ((w >> SEM_VERSION_SHIFT) + 1) & SEM_VERSION_MASK;
        (w & (SEM_SLOW_BITS))
            | (value as u64 & SEM_VALUE_MASK)
            | (ver << SEM_VERSION_SHIFT)
            | ((pid as u32 as u64) << SEM_PID_SHIFT)
    }

    #[test]
    fn fields_cover_every_bit_once() {
        let fields = [
            SEM_VALUE_MASK,
            SEM_WAITERS,
            SEM_GLOBAL,
            SEM_UNDO_HELD,
            SEM_VERSION_MASK << SEM_VERSION_SHIFT,
            (u32::MAX as u64) << SEM_PID_SHIFT,
        ];
        let mut all = 0u64;
        for f in fields {
            assert_eq!(all & f, 0, "{f:#x} overlaps");
            all |= f;
        }
        assert_eq!(all, u64::MAX);
    }

    #[test]
    fn round_trips() {
        let mut r = Rng::new(1);
        for _ in 0..200_000 {
            let w = SemWord::from_raw(r.next());
            let (v, ver, pid) = (r.next() as u16, r.next() as u16, r.next() as i32);
            let x = w.with_value(v).with_version(ver).with_pid(pid);
            assert_eq!((x.value(), x.version(), x.pid()), (v, ver & 0x1fff, pid));
            assert_eq!(x.raw() & SEM_SLOW_BITS, w.raw() & SEM_SLOW_BITS);
            for (on_w, on_g, on_u) in [(false, true, false), (true, false, true)] {
                let y = x.with_waiters(on_w).with_global(on_g).with_undo_held(on_u);
                assert_eq!((y.waiters(), y.global(), y.undo_held()), (on_w, on_g, on_u));
                assert_eq!(y.is_slow(), on_w || on_g || on_u);
                assert_eq!((y.value(), y.version(), y.pid()), (v, ver & 0x1fff, pid));
            }
            assert_eq!(SemWord::from(u64::from(w)), w);
        }
    }

    #[test]
    fn updated_is_word_with() {
        let mut r = Rng::new(2);
        let mut words: std::vec::Vec<u64> = edge_u64();
        words.extend((0..100_000).map(|_| r.next()));
        for &w in &words {
            let value = (r.next() % 32_768) as i32;
            let pid = r.next() as i32;
            let u = SemWord::from_raw(w).updated(value as u16, pid);
            assert_eq!(u.raw(), word_with_today(w, value, pid));
            assert_eq!(u.version(), (SemWord::from_raw(w).version() + 1) & 0x1fff);
            assert_eq!((u.value(), u.pid()), (value as u16, pid));
            assert_eq!(u.raw() & SEM_SLOW_BITS, w & SEM_SLOW_BITS);
        }
    }

    #[test]
    fn unmarked_is_unmark() {
        let mut r = Rng::new(3);
        for _ in 0..100_000 {
            let w = r.next();
            for (nw, nu) in [(false, false), (true, false), (false, true), (true, true)] {
                let mut bits = 0;
                if nw {
                    bits |= SEM_WAITERS;
                }
                if nu {
                    bits |= SEM_UNDO_HELD;
                }
                let u = SemWord::from_raw(w).unmarked(nw, nu);
                assert_eq!(u.raw(), (w & !SEM_SLOW_BITS) | bits);
                assert!(!u.global());
                assert_eq!((u.waiters(), u.undo_held()), (nw, nu));
            }
        }
    }

    #[test]
    fn state_table() {
        let base = SemWord::ZERO.updated(5, 42);
        // Row 1: no slow bit, fast path.
        assert!(!base.is_slow());
        // Row 2, 3: WAITERS or UNDO_HELD alone send to the slow path.
        assert!(base.with_waiters(true).is_slow());
        assert!(base.with_undo_held(true).is_slow());
        // Row 4: GLOBAL owns the word whatever the others say; the end of
        // the section recomputes them and clears GLOBAL.
        let owned = base.with_global(true).with_waiters(true);
        assert!(owned.is_slow() && owned.global());
        assert_eq!(owned.unmarked(false, false), base);
        assert_eq!(owned.unmarked(false, true), base.with_undo_held(true));
        // A write under the lock keeps the marks.
        let w = owned.updated(6, 7);
        assert!(w.global() && w.waiters());
        assert_eq!((w.value(), w.pid(), w.version()), (6, 7, 2));
        // The version wraps at 13 bits, without touching sempid.
        let top = base.with_version(0x1fff).updated(1, -1);
        assert_eq!((top.version(), top.pid()), (0, -1));
    }

    #[test]
    fn negative_pid_and_full_value() {
        let w = SemWord::ZERO.with_pid(-2).with_value(u16::MAX);
        assert_eq!((w.pid(), w.value(), w.is_slow()), (-2, u16::MAX, false));
    }
}
