//! The words of a registry entry ([`RegistryEntry`](crate::RegistryEntry)):
//! its state and sequence, and the tagged time mirrors.

/// Registry entry: free.
pub const ENTRY_FREE: u32 = 0;
/// Registry entry: a set is being created (under the registry lock).
pub const ENTRY_CREATING: u32 = 1;
/// Registry entry: a live set.
pub const ENTRY_LIVE: u32 = 2;
/// Mask of the state part.
pub const ENTRY_STATE_MASK: u32 = 0x3;
/// Shift of the sequence part.
pub const ENTRY_SEQ_SHIFT: u32 = 16;

/// A tagged time word is `seconds << TIME_TAG_BITS | seq`.
pub const TIME_TAG_BITS: u32 = 16;
/// Mask of the sequence tag of a tagged time word.
pub const TIME_TAG_MASK: u64 = (1 << TIME_TAG_BITS) - 1;

/// A registry entry's state and sequence
/// ([`RegistryEntry::state_seq`](crate::RegistryEntry::state_seq)).
///
/// | bits   | field | meaning                                                 |
/// |--------|-------|---------------------------------------------------------|
/// | 0..2   | state | FREE, CREATING, LIVE                                    |
/// | 2..16  | zero  |                                                         |
/// | 16..32 | seq   | the sequence number of the set that occupies (or last   |
/// |        |       | occupied) the index: the id is `seq << IPCMNI_SHIFT \| index` |
///
/// # State table
///
/// All writes are release stores, under the registry lock.
///
/// | state    | Description                           | Left by                        |
/// |----------|---------------------------------------|--------------------------------|
/// | FREE     | No set; seq is the last one's.        | A creator: → CREATING with the |
/// |          |                                       | new set's seq.                 |
/// | CREATING | A creator builds the set's segment.   | The creator: → LIVE (after the |
/// |          |                                       | key, nsems and mirrors), or →  |
/// |          |                                       | FREE (seq kept) on failure. A  |
/// |          |                                       | creator that died: the next    |
/// |          |                                       | registry locker frees it and   |
/// |          |                                       | unlinks the segment.           |
/// | LIVE     | The set `seq` exists; lookups by id   | IPC_RMID after the set is      |
/// |          | check seq; semget finds its key.      | marked removed, or gc / semget |
/// |          |                                       | finding it removed or missing: |
/// |          |                                       | [`freed`](Self::freed) (seq    |
/// |          |                                       | kept).                         |
/// | 3        | Scribbled on.                         | Nobody: neither allocated nor  |
/// |          |                                       | looked up.                     |
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EntryState(u32);

impl EntryState {
    /// A never-used entry: sequence 0, FREE.
    pub const FREE: EntryState = EntryState(0);

    /// Sequence `seq` (at most [`IPC_SEQ_MAX`](crate::IPC_SEQ_MAX)) in
    /// `state` (one of the `ENTRY_*` states).
    #[inline]
    pub const fn new(seq: u32, state: u32) -> EntryState {
        EntryState((seq << ENTRY_SEQ_SHIFT) | state)
    }
    /// The word as stored.
    #[inline]
    pub const fn from_raw(raw: u32) -> EntryState {
        EntryState(raw)
    }
    /// The raw word, to store.
    #[inline]
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// The state part: [`ENTRY_FREE`], [`ENTRY_CREATING`], [`ENTRY_LIVE`],
    /// or 3 if scribbled on.
    #[inline]
    pub const fn state(self) -> u32 {
        self.0 & ENTRY_STATE_MASK
    }
    /// The sequence number (16 bits).
    #[inline]
    pub const fn seq(self) -> u32 {
        self.0 >> ENTRY_SEQ_SHIFT
    }
    /// State FREE.
    #[inline]
    pub const fn is_free(self) -> bool {
        self.state() == ENTRY_FREE
    }
    /// State CREATING.
    #[inline]
    pub const fn is_creating(self) -> bool {
        self.state() == ENTRY_CREATING
    }
    /// State LIVE.
    #[inline]
    pub const fn is_live(self) -> bool {
        self.state() == ENTRY_LIVE
    }
    /// The entry freed: every bit but the state kept (so the sequence).
    #[inline]
    pub const fn freed(self) -> EntryState {
        EntryState(self.0 & !ENTRY_STATE_MASK)
    }
}

impl From<u32> for EntryState {
    #[inline]
    fn from(raw: u32) -> EntryState {
        EntryState(raw)
    }
}
impl From<EntryState> for u32 {
    #[inline]
    fn from(s: EntryState) -> u32 {
        s.0
    }
}

impl core::fmt::Debug for EntryState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let state = match self.state() {
            ENTRY_FREE => "FREE",
            ENTRY_CREATING => "CREATING",
            ENTRY_LIVE => "LIVE",
            _ => "?",
        };
        f.debug_struct("EntryState")
            .field("state", &format_args!("{state}({})", self.state()))
            .field("seq", &self.seq())
            .finish()
    }
}

/// A time mirrored in the registry
/// ([`RegistryEntry::otime_tagged`](crate::RegistryEntry::otime_tagged),
/// `ctime_tagged`), tagged with the sequence of the set it belongs to, so
/// that a late writer of a removed set cannot touch the index's next set.
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
    use crate::IPC_SEQ_MAX;

    #[test]
    fn round_trips() {
        for seq in [0, 1, 2, 0x7fff, IPC_SEQ_MAX] {
            for state in 0..4 {
                let s = EntryState::new(seq, state);
                assert_eq!((s.seq(), s.state()), (seq, state));
                assert_eq!(s.raw(), (seq << ENTRY_SEQ_SHIFT) | state);
                assert_eq!(EntryState::from(u32::from(s)), s);
            }
        }
        let mut r = Rng::new(11);
        for _ in 0..200_000 {
            let ss = r.next() as u32;
            let s = EntryState::from_raw(ss);
            assert_eq!(s.state(), ss & ENTRY_STATE_MASK);
            assert_eq!(s.seq(), ss >> ENTRY_SEQ_SHIFT);
            assert_eq!(s.freed().raw(), ss & !ENTRY_STATE_MASK);
            assert_eq!(s.is_live(), ss & ENTRY_STATE_MASK == ENTRY_LIVE);
        }
    }

    #[test]
    fn state_table() {
        let free = EntryState::FREE;
        assert!(free.is_free());
        let creating = EntryState::new(7, ENTRY_CREATING);
        assert!(creating.is_creating());
        // Failure: FREE with the sequence kept (src/registry.rs `create`
        // stores `seq << ENTRY_SEQ_SHIFT`).
        assert_eq!(creating.freed(), EntryState::new(7, ENTRY_FREE));
        assert_eq!(creating.freed().raw(), 7 << ENTRY_SEQ_SHIFT);
        let live = EntryState::new(7, ENTRY_LIVE);
        assert!(live.is_live() && !live.is_free() && !live.is_creating());
        assert_eq!(live.freed().seq(), 7);
        let odd = EntryState::new(7, 3);
        assert!(!(odd.is_free() || odd.is_creating() || odd.is_live()));
    }

    #[test]
    fn tagged_time() {
        let mut r = Rng::new(12);
        for _ in 0..200_000 {
            let secs = (r.next() >> 17) as i64;
            let seq = r.next() as u32;
            let t = TaggedTime::new(secs, seq);
            // src/registry.rs `create` and src/set.rs `store_tagged_time`.
            let tag = seq as u64 & TIME_TAG_MASK;
            assert_eq!(t.raw(), ((secs as u64) << TIME_TAG_BITS) | tag);
            assert_eq!((t.secs(), t.tag()), (secs, tag as u32));
            assert!(t.has_tag(seq));
            assert!(!t.has_tag(seq.wrapping_add(1)));
            assert_eq!(TaggedTime::never(seq).raw(), tag);
            // `tagged_time_secs` today.
            let w = r.next();
            assert_eq!(TaggedTime::from_raw(w).secs(), (w >> TIME_TAG_BITS) as i64);
        }
    }
}
