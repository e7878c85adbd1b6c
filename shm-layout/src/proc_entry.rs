//! The words of a process-table entry ([`ProcEntry`](crate::ProcEntry)):
//! its state and generation, who claimed it, and the processor tag.

/// Process entry state: free.
pub const PROC_FREE: u32 = 0;
/// Process entry state: being claimed (fields not yet valid).
pub const PROC_CLAIMING: u32 = 1;
/// Process entry state: in use by a live (or not yet swept) process.
pub const PROC_ACTIVE: u32 = 2;
/// Mask of the state part of `state_gen`.
pub const PROC_STATE_MASK: u32 = 0xf;
/// Shift of the generation part of `state_gen`.
pub const PROC_GEN_SHIFT: u32 = 4;

/// A process-table entry's state and generation
/// ([`ProcEntry::state_gen`](crate::ProcEntry::state_gen)).
///
/// | bits  | field | meaning                                                |
/// |-------|-------|--------------------------------------------------------|
/// | 0..4  | state | FREE, CLAIMING, ACTIVE                                 |
/// | 4..32 | gen   | bumped (modulo 2^28) at every claim; its low 16 bits   |
/// |       |       | are in the holder's lock token ([`LockWord::token`])   |
///
/// [`LockWord::token`]: crate::LockWord::token
///
/// # State table
///
/// | state    | Description                            | Left by                      |
/// |----------|----------------------------------------|------------------------------|
/// | FREE     | Unused; gen is the last claim's.       | A registering process: CAS   |
/// |          | An [`owner`](crate::ProcEntry::owner)  | of `owner` to its            |
/// |          | naming gen + 1 is a claim under way    | [`ProcOwner`] for gen + 1,   |
/// |          | (or abandoned, if its claim byte is    | then CAS →                   |
/// |          | free).                                 | [`claiming`](Self::claiming).|
/// | CLAIMING | The claimer holds the entry's claim    | The claimer: ACTIVE with the |
/// |          | byte ([`claim_byte`](crate::claim_byte)) | same gen (release: publishes |
/// |          | in its uid's presence file (`owner`    | pid and start time), then    |
/// |          | names the uid) from before its CAS of  | frees the byte; or a sweeper |
/// |          | `owner`, and resets the fields; they   | that finds the byte free, or |
/// |          | are not valid yet.                     | `owner` of another gen: FREE.|
/// | ACTIVE   | A registered process (alive, or dead   | A reaper (under the set's    |
/// |          | and not yet swept): pid, start time,   | lock, from an intent record) |
/// |          | owner and counters are valid; a lock   | or a registering process     |
/// |          | word with its gen names it.            | that finds it dead holding   |
/// |          |                                        | nothing: CAS → [`freed`](Self::freed) (gen kept). |
/// | 3..15    | Scribbled on.                          | Nobody: not ACTIVE (names no |
/// |          |                                        | lock holder, never swept),   |
/// |          |                                        | not FREE (never claimed).    |
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ProcState(u32);

impl ProcState {
    /// A never-used entry: generation 0, FREE.
    pub const FREE: ProcState = ProcState(0);

    /// Generation `gen` (below 2^28) in `state` (one of the `PROC_*` states).
    #[inline]
    pub const fn new(gen: u32, state: u32) -> ProcState {
        ProcState((gen << PROC_GEN_SHIFT) | state)
    }
    /// The word as stored.
    #[inline]
    pub const fn from_raw(raw: u32) -> ProcState {
        ProcState(raw)
    }
    /// The raw word, to store.
    #[inline]
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// The state part: [`PROC_FREE`], [`PROC_CLAIMING`], [`PROC_ACTIVE`],
    /// or anything up to 15 if scribbled on.
    #[inline]
    pub const fn state(self) -> u32 {
        self.0 & PROC_STATE_MASK
    }
    /// The generation (28 bits).
    #[inline]
    pub const fn gen(self) -> u32 {
        self.0 >> PROC_GEN_SHIFT
    }
    /// State FREE.
    #[inline]
    pub const fn is_free(self) -> bool {
        self.state() == PROC_FREE
    }
    /// State CLAIMING.
    #[inline]
    pub const fn is_claiming(self) -> bool {
        self.state() == PROC_CLAIMING
    }
    /// State ACTIVE.
    #[inline]
    pub const fn is_active(self) -> bool {
        self.state() == PROC_ACTIVE
    }
    /// The generation the next claim gives the entry (modulo 2^28).
    #[inline]
    pub const fn next_gen(self) -> u32 {
        self.gen().wrapping_add(1) & (u32::MAX >> PROC_GEN_SHIFT)
    }

    /// What a claimer CASes a FREE entry to: the next generation, CLAIMING.
    #[inline]
    pub const fn claiming(self) -> ProcState {
        ProcState::new(self.next_gen(), PROC_CLAIMING)
    }
    /// The entry ACTIVE at this word's generation (the end of a claim).
    #[inline]
    pub const fn activated(self) -> ProcState {
        ProcState::new(self.gen(), PROC_ACTIVE)
    }
    /// The entry freed: generation kept, FREE.
    #[inline]
    pub const fn freed(self) -> ProcState {
        ProcState((self.0 & !PROC_STATE_MASK) | PROC_FREE)
    }
}

impl From<u32> for ProcState {
    #[inline]
    fn from(raw: u32) -> ProcState {
        ProcState(raw)
    }
}
impl From<ProcState> for u32 {
    #[inline]
    fn from(s: ProcState) -> u32 {
        s.0
    }
}

impl core::fmt::Debug for ProcState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let state = match self.state() {
            PROC_FREE => "FREE",
            PROC_CLAIMING => "CLAIMING",
            PROC_ACTIVE => "ACTIVE",
            _ => "?",
        };
        f.debug_struct("ProcState")
            .field("state", &format_args!("{state}({})", self.state()))
            .field("gen", &self.gen())
            .finish()
    }
}

/// Who claimed a process-table entry
/// ([`ProcEntry::owner`](crate::ProcEntry::owner)).
///
/// | bits   | field | meaning                                              |
/// |--------|-------|------------------------------------------------------|
/// | 0..32  | uid   | the claimer's uid: its presence file holds the       |
/// |        |       | claimer's claim byte and, once ACTIVE, its presence  |
/// |        |       | byte                                                 |
/// | 32..60 | gen   | the generation claimed ([`ProcState::gen`] once      |
/// |        |       | CLAIMING)                                            |
/// | 60..63 | 0     |                                                      |
/// | 63     | bare  | claimed without a claim byte (the claimer's presence |
/// |        |       | file was unusable, or another user held read locks   |
/// |        |       | on it): while the claim is under way nobody can tell |
/// |        |       | whether the claimer lives                            |
///
/// A claimer CASes it to its own value for the next generation before it
/// CASes the state to CLAIMING: the first CAS decides which claimer gets
/// the generation, and a checker that sees CLAIMING (acquire) sees the
/// owner of that generation. Every value is possible (a writer of the
/// set may forge it): it only says in which file to look.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ProcOwner(u64);

impl ProcOwner {
    const BARE: u64 = 1 << 63;
    const GEN_MASK: u64 = (u32::MAX >> PROC_GEN_SHIFT) as u64;

    /// The claim of generation `gen` (modulo 2^28) by a process of `uid`,
    /// holding its claim byte unless `bare`.
    #[inline]
    pub const fn new(gen: u32, uid: u32, bare: bool) -> ProcOwner {
        let b = if bare { Self::BARE } else { 0 };
        ProcOwner(b | ((gen as u64 & Self::GEN_MASK) << 32) | uid as u64)
    }
    /// The word as stored.
    #[inline]
    pub const fn from_raw(raw: u64) -> ProcOwner {
        ProcOwner(raw)
    }
    /// The raw word, to store.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }
    /// The claimer's uid.
    #[inline]
    pub const fn uid(self) -> u32 {
        self.0 as u32
    }
    /// The generation claimed.
    #[inline]
    pub const fn gen(self) -> u32 {
        ((self.0 >> 32) & Self::GEN_MASK) as u32
    }
    /// Claimed without a claim byte.
    #[inline]
    pub const fn is_bare(self) -> bool {
        self.0 & Self::BARE != 0
    }
}

impl core::fmt::Debug for ProcOwner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ProcOwner")
            .field("uid", &self.uid())
            .field("gen", &self.gen())
            .field("bare", &self.is_bare())
            .finish()
    }
}

/// The processor a process last slept from
/// ([`ProcEntry::cpu`](crate::ProcEntry::cpu)), for the spin heuristic.
///
/// | value  | meaning                                            |
/// |--------|----------------------------------------------------|
/// | 0      | unknown: the process never slept on the set        |
/// | 1..=255| `cpu % 255 + 1`: two processes with equal tags may |
/// |        | share a processor (or be 255 apart)                |
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct CpuTag(u8);

impl CpuTag {
    /// Unknown (also a fresh entry's).
    pub const UNKNOWN: CpuTag = CpuTag(0);

    /// The tag of processor `cpu`.
    #[inline]
    pub const fn of(cpu: u32) -> CpuTag {
        CpuTag((cpu % 255) as u8 + 1)
    }
    /// The byte as stored.
    #[inline]
    pub const fn from_raw(raw: u8) -> CpuTag {
        CpuTag(raw)
    }
    /// The raw byte, to store.
    #[inline]
    pub const fn raw(self) -> u8 {
        self.0
    }
    /// Whether the processor is known (the tag is not 0).
    #[inline]
    pub const fn is_known(self) -> bool {
        self.0 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    /// src/set.rs's `cpu_tag` as written today.
    fn cpu_tag_today(cpu: u32) -> u8 {
        (cpu % 255) as u8 + 1
    }

    #[test]
    fn round_trips() {
        let mut r = Rng::new(8);
        for _ in 0..200_000 {
            let gen = r.next() as u32 >> PROC_GEN_SHIFT;
            for state in 0..16 {
                let s = ProcState::new(gen, state);
                assert_eq!((s.gen(), s.state()), (gen, state));
                assert_eq!(s.raw(), (gen << PROC_GEN_SHIFT) | state);
                assert_eq!(ProcState::from(u32::from(s)), s);
            }
        }
    }

    #[test]
    fn transitions_are_todays() {
        let mut r = Rng::new(9);
        for _ in 0..200_000 {
            let sg = r.next() as u32;
            let s = ProcState::from_raw(sg);
            // src/registry.rs `register` today.
            let gen = (sg >> PROC_GEN_SHIFT).wrapping_add(1) & (u32::MAX >> PROC_GEN_SHIFT);
            assert_eq!(s.next_gen(), gen);
            assert_eq!(s.claiming().raw(), (gen << PROC_GEN_SHIFT) | PROC_CLAIMING);
            assert_eq!(
                s.claiming().activated().raw(),
                (gen << PROC_GEN_SHIFT) | PROC_ACTIVE
            );
            // REAP's free, and register's free of a dead idle entry.
            assert_eq!(s.freed().raw(), (sg & !PROC_STATE_MASK) | PROC_FREE);
            assert_eq!(s.freed().raw(), sg & !PROC_STATE_MASK);
            assert_eq!(s.is_active(), sg & PROC_STATE_MASK == PROC_ACTIVE);
            assert_eq!(s.is_free(), sg & PROC_STATE_MASK == PROC_FREE);
        }
    }

    #[test]
    fn state_table() {
        let free = ProcState::FREE;
        assert!(free.is_free());
        let claiming = free.claiming();
        assert!(claiming.is_claiming());
        assert_eq!(claiming.gen(), 1);
        let active = claiming.activated();
        assert!(active.is_active());
        assert_eq!(active.gen(), 1);
        let freed = active.freed();
        assert!(freed.is_free());
        assert_eq!(freed.gen(), 1);
        assert_eq!(freed.claiming().gen(), 2);
        // The generation wraps at 28 bits.
        let top = ProcState::new(u32::MAX >> PROC_GEN_SHIFT, PROC_FREE);
        assert_eq!(top.claiming().gen(), 0);
        // Scribbled states.
        let odd = ProcState::new(5, 7);
        assert!(!(odd.is_free() || odd.is_claiming() || odd.is_active()));
    }

    #[test]
    fn owners() {
        let mut r = Rng::new(11);
        for _ in 0..100_000 {
            let gen = r.next() as u32 >> PROC_GEN_SHIFT;
            let uid = r.next() as u32;
            for bare in [false, true] {
                let o = ProcOwner::new(gen, uid, bare);
                assert_eq!((o.gen(), o.uid(), o.is_bare()), (gen, uid, bare));
                assert_eq!(ProcOwner::from_raw(o.raw()), o);
            }
            // The generation is the state's, modulo 2^28.
            let s = ProcState::new(gen, PROC_FREE).claiming();
            assert_eq!(ProcOwner::new(s.gen(), uid, false).gen(), s.gen());
            assert_eq!(
                ProcOwner::new(gen.wrapping_add(1 << 28), uid, false).gen(),
                gen
            );
        }
        // Garbage reads as something (a forged word only misdirects).
        let junk = ProcOwner::from_raw(u64::MAX);
        assert!(junk.is_bare());
        assert_eq!(junk.uid(), u32::MAX);
        assert_eq!(junk.gen(), u32::MAX >> PROC_GEN_SHIFT);
    }

    #[test]
    fn cpu_tags() {
        assert!(!CpuTag::UNKNOWN.is_known());
        let mut r = Rng::new(10);
        let mut cpus: std::vec::Vec<u32> = (0..1024).collect();
        cpus.extend([u32::MAX, u32::MAX - 1, 254, 255, 256, 509, 510]);
        cpus.extend((0..10_000).map(|_| r.next() as u32));
        for cpu in cpus {
            let t = CpuTag::of(cpu);
            assert_eq!(t.raw(), cpu_tag_today(cpu));
            assert!(t.is_known());
            assert_eq!(CpuTag::from_raw(t.raw()), t);
        }
        assert_eq!(CpuTag::of(0), CpuTag::of(255));
        assert_ne!(CpuTag::of(0), CpuTag::of(1));
    }
}
