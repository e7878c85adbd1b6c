//! A time word tagged with the sequence number of the set it belongs to.

/// A tagged time word is `seconds << TIME_TAG_BITS | seq`.
pub const TIME_TAG_BITS: u32 = 16;
/// Mask of the sequence tag of a tagged time word.
pub const TIME_TAG_MASK: u64 = (1 << TIME_TAG_BITS) - 1;

/// A time mirrored outside a set (a word a set view may be given to copy
/// its otime into, `SetView::set_otime_mirror`), tagged with the sequence
/// of the set it belongs to, so that a late writer of a removed set cannot
/// touch the index's next set.
///
/// | bits   | field | meaning                                             |
/// |--------|-------|-----------------------------------------------------|
/// | 0..16  | tag   | the set's sequence number, modulo 2^16              |
/// | 16..64 | secs  | seconds since the epoch (0: never)                  |
///
/// A writer CASes only a word whose tag is its set's; a reader trusts the
/// seconds only if the tag is that of the entry's current sequence.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct TaggedTime(u64);

impl TaggedTime {
    /// `secs` (at most 2^47 - 1) tagged for the set of sequence `seq`.
    #[inline]
    pub const fn new(secs: i64, seq: u32) -> TaggedTime {
        TaggedTime(((secs as u64) << TIME_TAG_BITS) | (seq as u64 & TIME_TAG_MASK))
    }
    /// "Never" for the set of sequence `seq` (what a creator stores).
    #[inline]
    pub const fn never(seq: u32) -> TaggedTime {
        TaggedTime::new(0, seq)
    }
    /// The word as stored.
    #[inline]
    pub const fn from_raw(raw: u64) -> TaggedTime {
        TaggedTime(raw)
    }
    /// The raw word, to store.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }
    /// The tag (16 bits of a sequence number).
    #[inline]
    pub const fn tag(self) -> u32 {
        (self.0 & TIME_TAG_MASK) as u32
    }
    /// Whether the word belongs to the set of sequence `seq`.
    #[inline]
    pub const fn has_tag(self, seq: u32) -> bool {
        self.0 & TIME_TAG_MASK == seq as u64 & TIME_TAG_MASK
    }
    /// The seconds.
    #[inline]
    pub const fn secs(self) -> i64 {
        (self.0 >> TIME_TAG_BITS) as i64
    }
}

impl From<u64> for TaggedTime {
    #[inline]
    fn from(raw: u64) -> TaggedTime {
        TaggedTime(raw)
    }
}
impl From<TaggedTime> for u64 {
    #[inline]
    fn from(t: TaggedTime) -> u64 {
        t.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    #[test]
    fn tagged_time() {
        let mut r = Rng::new(12);
        for _ in 0..200_000 {
            let secs = (r.next() >> 17) as i64;
            let seq = r.next() as u32;
            let t = TaggedTime::new(secs, seq);
            // src/set/mod.rs `store_tagged_time`.
            let tag = seq as u64 & TIME_TAG_MASK;
            assert_eq!(t.raw(), ((secs as u64) << TIME_TAG_BITS) | tag);
            assert_eq!((t.secs(), t.tag()), (secs, tag as u32));
            assert!(t.has_tag(seq));
            assert!(!t.has_tag(seq.wrapping_add(1)));
            assert_eq!(TaggedTime::never(seq).raw(), tag);
            let w = r.next();
            assert_eq!(TaggedTime::from_raw(w).secs(), (w >> TIME_TAG_BITS) as i64);
        }
    }
}
