//! The encoded words of a set's header ([`SetHeader`](crate::SetHeader))
//! other than the lock: the global-mode countdown, the sequence counter and
//! the spinner stamp.

/// Global-lock sections a set stays in global mode after the last one that
/// needed it, like the kernel's `USE_GLOBAL_LOCK_HYSTERESIS`.
pub const USE_GLOBAL_LOCK_HYSTERESIS: u32 = 10;
/// [`SetHeader::global_mode`](crate::SetHeader::global_mode) of a removed
/// set: global mode for ever.
pub const GLOBAL_MODE_FOREVER: u32 = u32::MAX;

/// The global-mode countdown
/// ([`SetHeader::global_mode`](crate::SetHeader::global_mode)), written by
/// lock holders only (plain loads and stores under the lock), like the
/// kernel's `use_global_lock`.
///
/// # State table
///
/// | value      | Description                                | Left by                     |
/// |------------|--------------------------------------------|-----------------------------|
/// | 0          | Off: the fast path runs on unmarked words; | A complex section (multi-op |
/// |            | a section marks (sets GLOBAL on) only the  | call, semctl, undo) or one  |
/// |            | words it uses.                             | that would mark too many    |
/// |            |                                            | words: every word marked,   |
/// |            |                                            | then [`entered`](Self::entered). |
/// | 1..=MAX-1  | On, for that many more sections: every     | Each section's end:         |
/// |            | word keeps GLOBAL, so no fast path.        | [`ended`](Self::ended), n → |
/// |            |                                            | n - 1; from 1, → 0 and      |
/// |            |                                            | every word unmarked. A      |
/// |            |                                            | complex section restarts    |
/// |            |                                            | the countdown at            |
/// |            |                                            | [`HYSTERESIS`](Self::HYSTERESIS). |
/// | u32::MAX   | For ever: the set is removed (IPC_RMID);   | Nobody.                     |
/// |            | the fast path never runs again.            |                             |
///
/// Recovery after a dead holder marks every word and restarts the countdown
/// ([`repaired`](Self::repaired)), whatever the dead holder left.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct GlobalMode(u32);

impl GlobalMode {
    /// Not in global mode.
    pub const OFF: GlobalMode = GlobalMode(0);
    /// In global mode for ever (a removed set).
    pub const FOREVER: GlobalMode = GlobalMode(GLOBAL_MODE_FOREVER);
    /// Sections global mode lasts after a complex one
    /// ([`USE_GLOBAL_LOCK_HYSTERESIS`]). Loom models use 1, so that a
    /// model's own few sections reach the exit from global mode.
    #[cfg(not(shmsem_loom))]
    pub const HYSTERESIS: u32 = USE_GLOBAL_LOCK_HYSTERESIS;
    /// Sections global mode lasts after a complex one (1 under loom; see the
    /// production build's documentation).
    #[cfg(shmsem_loom)]
    pub const HYSTERESIS: u32 = 1;

    /// The word as stored.
    #[inline]
    pub const fn from_raw(raw: u32) -> GlobalMode {
        GlobalMode(raw)
    }
    /// The raw word, to store.
    #[inline]
    pub const fn raw(self) -> u32 {
        self.0
    }
    /// Off (0).
    #[inline]
    pub const fn is_off(self) -> bool {
        self.0 == 0
    }
    /// On (not 0): a section starts with every word owned.
    #[inline]
    pub const fn is_on(self) -> bool {
        self.0 != 0
    }
    /// For ever (a removed set).
    #[inline]
    pub const fn is_forever(self) -> bool {
        self.0 == GLOBAL_MODE_FOREVER
    }

    /// What a section that enters global mode stores, `None` for "store
    /// nothing" (for ever stays so): a complex section restarts the
    /// countdown at [`HYSTERESIS`](Self::HYSTERESIS); another keeps a
    /// running countdown, or makes it last this section (1).
    #[inline]
    pub const fn entered(self, complex: bool) -> Option<GlobalMode> {
        if self.is_forever() {
            None
        } else if complex {
            Some(GlobalMode(Self::HYSTERESIS))
        } else if self.0 == 0 {
            Some(GlobalMode(1))
        } else {
            Some(self)
        }
    }
    /// What the end of a section in global mode stores, `None` for "store
    /// nothing" (for ever): one section fewer; [`OFF`](Self::OFF) after the
    /// last (the caller then unmarks every word).
    #[inline]
    pub const fn ended(self) -> Option<GlobalMode> {
        if self.is_forever() {
            None
        } else if self.0 <= 1 {
            Some(GlobalMode::OFF)
        } else {
            Some(GlobalMode(self.0 - 1))
        }
    }
    /// What recovery after a dead holder stores (having marked every word),
    /// `None` for "store nothing" (for ever).
    #[inline]
    pub const fn repaired(self) -> Option<GlobalMode> {
        if self.is_forever() {
            None
        } else {
            Some(GlobalMode(Self::HYSTERESIS))
        }
    }
}

impl From<u32> for GlobalMode {
    #[inline]
    fn from(raw: u32) -> GlobalMode {
        GlobalMode(raw)
    }
}
impl From<GlobalMode> for u32 {
    #[inline]
    fn from(m: GlobalMode) -> u32 {
        m.0
    }
}

/// The set's sequence counter ([`SetHeader::seq`](crate::SetHeader::seq)):
/// a seqlock over the words a lock holder writes in one section.
///
/// | value | Description                                                       |
/// |-------|-------------------------------------------------------------------|
/// | even  | No section is writing: a lock-free reader that reads the same     |
/// |       | even value before and after its reads (with an acquire fence      |
/// |       | between) saw no multi-word update in progress.                    |
/// | odd   | A section is writing several words ([`begin_write`](Self::begin_write)); |
/// |       | readers retry, then take the lock. Its end (or the repair of a    |
/// |       | dead writer's set) makes it even ([`end_write`](Self::end_write), |
/// |       | release).                                                         |
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct SeqCount(u32);

impl SeqCount {
    /// The word as stored.
    #[inline]
    pub const fn from_raw(raw: u32) -> SeqCount {
        SeqCount(raw)
    }
    /// The raw word, to store.
    #[inline]
    pub const fn raw(self) -> u32 {
        self.0
    }
    /// Odd: a section is writing.
    #[inline]
    pub const fn is_writing(self) -> bool {
        self.0 & 1 != 0
    }
    /// The (odd) value a writing section stores before its first write.
    #[inline]
    pub const fn begin_write(self) -> SeqCount {
        SeqCount(self.0.wrapping_add(1) | 1)
    }
    /// The value a writing section (or the repair of a dead writer's odd
    /// counter) stores after its last write: even if `self` is odd.
    #[inline]
    pub const fn end_write(self) -> SeqCount {
        SeqCount(self.0.wrapping_add(1))
    }
}

/// The set's one spinner place
/// ([`SetHeader::spinners`](crate::SetHeader::spinners)): a sleeper about to
/// sleep at the head of a FIFO may spin first, one per set at a time.
///
/// The stamp is the spin's start on CLOCK_MONOTONIC in units of 1024 ns,
/// modulo 2^32, never 0.
///
/// # State table
///
/// | value               | Description                                 | Left by                 |
/// |---------------------|---------------------------------------------|-------------------------|
/// | 0                   | Free: a sleeper may claim it.               | A claimer: CAS 0 →      |
/// |                     |                                             | [`at`](Self::at)(now).  |
/// | stamp, fresh        | A sleeper spins (started at the stamp);     | The spinner: CAS its    |
/// |                     | others sleep at once.                       | stamp → 0 (only if      |
/// |                     |                                             | still its own).         |
/// | stamp, stale        | Older than the longest spin                 | A claimer: CAS the      |
/// | ([`is_stale`](Self::is_stale)) | (the spinner died or was stopped mid-spin): free to take. | stale stamp → its own.  |
///
/// Relaxed throughout: the place only limits spinning; nothing is published
/// through it.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct SpinStamp(u32);

impl SpinStamp {
    /// The free place.
    pub const FREE: SpinStamp = SpinStamp(0);

    /// CLOCK_MONOTONIC nanoseconds `ns` in stamp units (1024 ns), modulo
    /// 2^32 (0 possible: see [`at`](Self::at)).
    #[inline]
    pub const fn units(ns: u64) -> u32 {
        (ns >> 10) as u32
    }
    /// The stamp of a spin that starts at `now_ns`: its units, or 1 for 0.
    #[inline]
    pub const fn at(now_ns: u64) -> SpinStamp {
        let u = Self::units(now_ns);
        SpinStamp(if u == 0 { 1 } else { u })
    }
    /// The word as stored.
    #[inline]
    pub const fn from_raw(raw: u32) -> SpinStamp {
        SpinStamp(raw)
    }
    /// The raw word, to store.
    #[inline]
    pub const fn raw(self) -> u32 {
        self.0
    }
    /// Free (0).
    #[inline]
    pub const fn is_free(self) -> bool {
        self.0 == 0
    }
    /// Whether a claim with this stamp is older, at `now_ns`, than
    /// `max_age_ns` (compared in units, signed: a stamp taken just after
    /// `now_ns` was read is fresh). Meaningless for the free place.
    #[inline]
    pub const fn is_stale(self, now_ns: u64, max_age_ns: u64) -> bool {
        Self::units(now_ns).wrapping_sub(self.0) as i32 > (max_age_ns >> 10) as i32
    }
    /// Whether another sleeper spins: the place holds a stamp that is not
    /// stale.
    #[inline]
    pub const fn is_busy(self, now_ns: u64, max_age_ns: u64) -> bool {
        !self.is_free() && !self.is_stale(now_ns, max_age_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    /// src/set.rs's enter_global / Drop / repair, as written today, with
    /// `None` for "no store".
    fn enter_today(m: u32, complex: bool, hyst: u32) -> Option<u32> {
        (m != GLOBAL_MODE_FOREVER).then(|| if complex { hyst } else { m.max(1) })
    }
    fn end_today(m: u32) -> Option<u32> {
        // Today: `if m <= 1 { 0 } else { m - 1 }`.
        (m != GLOBAL_MODE_FOREVER).then(|| m.saturating_sub(1))
    }

    #[test]
    fn global_mode_is_todays() {
        let mut r = Rng::new(13);
        let mut ms: std::vec::Vec<u32> = (0..=20).collect();
        ms.extend([u32::MAX, u32::MAX - 1, u32::MAX - 2]);
        ms.extend((0..10_000).map(|_| r.next() as u32));
        for m in ms {
            let g = GlobalMode::from_raw(m);
            for complex in [false, true] {
                assert_eq!(
                    g.entered(complex).map(GlobalMode::raw),
                    enter_today(m, complex, GlobalMode::HYSTERESIS)
                );
            }
            assert_eq!(g.ended().map(GlobalMode::raw), end_today(m));
            assert_eq!(
                g.repaired().map(GlobalMode::raw),
                (m != u32::MAX).then_some(GlobalMode::HYSTERESIS)
            );
            assert_eq!(g.is_on(), m > 0);
        }
    }

    #[test]
    fn global_mode_state_table() {
        assert!(GlobalMode::OFF.is_off());
        // Off → a simple section that marks too much: one section.
        let one = GlobalMode::OFF.entered(false).unwrap();
        assert_eq!(one.raw(), 1);
        assert_eq!(one.ended(), Some(GlobalMode::OFF));
        // A complex section: HYSTERESIS sections, counted down to off.
        let mut m = GlobalMode::OFF.entered(true).unwrap();
        assert!(m.is_on());
        let mut sections = 0;
        while m.is_on() {
            m = m.ended().unwrap();
            sections += 1;
        }
        assert_eq!(sections, GlobalMode::HYSTERESIS);
        // A simple section keeps a running countdown as it is.
        let three = GlobalMode::from_raw(3);
        assert_eq!(three.entered(false), Some(three));
        // For ever: nothing is stored, ever.
        let f = GlobalMode::FOREVER;
        assert!(f.is_forever() && f.is_on());
        assert_eq!(
            (f.entered(true), f.entered(false), f.ended(), f.repaired()),
            (None, None, None, None)
        );
        // Recovery restarts the countdown.
        assert_eq!(
            one.repaired(),
            Some(GlobalMode::from_raw(GlobalMode::HYSTERESIS))
        );
    }

    #[test]
    fn seq_count() {
        for s in [0u32, 1, 2, 3, u32::MAX - 1, u32::MAX] {
            let c = SeqCount::from_raw(s);
            // Guard::begin_write, Guard::drop and repair today.
            assert_eq!(c.begin_write().raw(), s.wrapping_add(1) | 1);
            assert_eq!(c.end_write().raw(), s.wrapping_add(1));
            assert_eq!(c.is_writing(), s & 1 != 0);
            assert!(c.begin_write().is_writing());
            if c.is_writing() {
                assert!(!c.end_write().is_writing());
            }
        }
        // A whole section from an even value: odd while writing, then even,
        // and never the value a reader saw before.
        let s0 = SeqCount::from_raw(40);
        let w = s0.begin_write();
        assert!(w.is_writing());
        let e = w.end_write();
        assert!(!e.is_writing());
        assert_ne!(e, s0);
    }

    /// src/set.rs's claim_spin test as written today.
    fn busy_today(now: u64, cur: u32, spin_ns: u64) -> bool {
        let units = (now >> 10) as u32;
        let stale = units.wrapping_sub(cur) as i32 > ((2 * spin_ns) >> 10) as i32;
        cur != 0 && !stale
    }

    #[test]
    fn spin_stamp_is_todays() {
        let mut r = Rng::new(14);
        const SPIN_NS: u64 = 30_000;
        for _ in 0..300_000 {
            let now = r.next();
            let cur = match r.next() % 4 {
                0 => 0,
                1 => (now >> 10) as u32,
                2 => ((now >> 10) as u32).wrapping_sub((r.next() % 200) as u32),
                _ => r.next() as u32,
            };
            let stamp = SpinStamp::at(now);
            assert_eq!(stamp.raw(), ((now >> 10) as u32).max(1));
            assert!(!stamp.is_free());
            assert_eq!(
                SpinStamp::from_raw(cur).is_busy(now, 2 * SPIN_NS),
                busy_today(now, cur, SPIN_NS)
            );
        }
    }

    #[test]
    fn spin_stamp_state_table() {
        let max_age = 60_000;
        assert!(!SpinStamp::FREE.is_busy(0, max_age));
        // A stamp of 0 units is stored as 1.
        assert_eq!(SpinStamp::at(500).raw(), 1);
        let t0 = 1u64 << 40;
        let s = SpinStamp::at(t0);
        // Fresh during the spin, also for a clock read just before it.
        assert!(s.is_busy(t0, max_age));
        assert!(s.is_busy(t0 + max_age, max_age));
        assert!(s.is_busy(t0 - 4096, max_age));
        // Stale once older than the longest spin.
        assert!(s.is_stale(t0 + max_age + 2048, max_age));
        assert!(!s.is_busy(t0 + max_age + 2048, max_age));
        // Units wrap at 2^32 without breaking staleness.
        let wrap = (u32::MAX as u64) << 10;
        let w = SpinStamp::at(wrap);
        assert!(w.is_busy(wrap + 4096, max_age));
        assert!(w.is_stale(wrap + 1_000_000, max_age));
    }
}
