//! The global lock word ([`SetHeader::lock`](crate::SetHeader::lock)), a
//! futex word, and the token a process writes into it.

use crate::{ProcState, NIL};

/// Set in the lock word when a waiter may be sleeping on it.
pub const LOCK_CONTENDED: u32 = 1 << 31;
/// Mask of the owner-slot part (slot index + 1) of the lock word.
pub const LOCK_SLOT_MASK: u32 = 0x7fff;
/// Shift of the owner-generation part of the lock word.
pub const LOCK_GEN_SHIFT: u32 = 15;
/// Mask of the owner-generation part (after shifting).
pub const LOCK_GEN_MASK: u32 = 0xffff;

/// The set's global lock: 0, or the holder's token, with CONTENDED when a
/// waiter may sleep on it.
///
/// | bits   | field     | meaning                                                |
/// |--------|-----------|--------------------------------------------------------|
/// | 0..15  | slot + 1  | the holder's process-table entry, plus one (0: none)   |
/// | 15..31 | gen       | the low 16 bits of that entry's generation when the    |
/// |        |           | holder claimed it ([`ProcState::gen`])                 |
/// | 31     | CONTENDED | a waiter sleeps on the word, or is about to            |
///
/// A holder's *token* ([`LockWord::token`]) is the word without CONTENDED:
/// `(slot + 1) | (gen & LOCK_GEN_MASK) << LOCK_GEN_SHIFT`.
///
/// # State table
///
/// | word               | Description                                             |
/// |--------------------|---------------------------------------------------------|
/// | 0                  | Free. A locker CASes 0 → its token; a locker that has   |
/// |                    | slept CASes 0 → token \| CONTENDED (others may sleep).  |
/// | token              | Held; nobody announced sleeping. Unlock swaps in 0.     |
/// | token \| CONTENDED | Held; a waiter set CONTENDED before sleeping on the     |
/// |                    | word. Unlock swaps in 0 and wakes one sleeper.          |
/// | names nobody       | The slot part is 0 or out of range, or the entry it     |
/// |                    | names is not ACTIVE or has another generation           |
/// |                    | ([`names_entry`](Self::names_entry) is false): the      |
/// |                    | holder is gone. A waiter CASes it → its token \|        |
/// |                    | CONTENDED and repairs the set before its section.       |
///
/// A word that names a live, ACTIVE entry of the right generation whose
/// process is neither taking nor holding the lock (its `holding` and
/// `locking` are 0) is garbage; a waiter takes it over once it has seen the
/// same word so at two checks a slice apart.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LockWord(u32);

impl LockWord {
    /// The free lock.
    pub const FREE: LockWord = LockWord(0);

    /// The token of the holder in process-table entry `slot` (below
    /// [`PROC_SLOTS_MAX`](crate::PROC_SLOTS_MAX)) claimed at generation
    /// `gen` ([`ProcState::gen`]; only its low 16 bits are kept).
    #[inline]
    pub const fn token(slot: u32, gen: u32) -> LockWord {
        LockWord((slot + 1) | ((gen & LOCK_GEN_MASK) << LOCK_GEN_SHIFT))
    }

    /// The word as stored.
    #[inline]
    pub const fn from_raw(raw: u32) -> LockWord {
        LockWord(raw)
    }
    /// The raw word, to store (or to pass to a futex call).
    #[inline]
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// Whether the lock is free (the word is 0).
    #[inline]
    pub const fn is_free(self) -> bool {
        self.0 == 0
    }
    /// CONTENDED: unlocking must wake a sleeper.
    #[inline]
    pub const fn is_contended(self) -> bool {
        self.0 & LOCK_CONTENDED != 0
    }
    /// The word with CONTENDED set or cleared.
    #[inline]
    pub const fn with_contended(self, on: bool) -> LockWord {
        LockWord((self.0 & !LOCK_CONTENDED) | if on { LOCK_CONTENDED } else { 0 })
    }
    /// The holder's token: the word without CONTENDED.
    #[inline]
    pub const fn owner(self) -> LockWord {
        self.with_contended(false)
    }
    /// The process-table entry the word names, unchecked: [`NIL`] when the
    /// slot part is 0 (bounds-check it before use).
    #[inline]
    pub const fn slot(self) -> u32 {
        (self.0 & LOCK_SLOT_MASK).wrapping_sub(1)
    }
    /// The entry the word names, or `None` when the slot part is 0.
    #[inline]
    pub const fn owner_slot(self) -> Option<u32> {
        match self.slot() {
            NIL => None,
            s => Some(s),
        }
    }
    /// The generation part (16 bits).
    #[inline]
    pub const fn gen(self) -> u32 {
        (self.0 >> LOCK_GEN_SHIFT) & LOCK_GEN_MASK
    }
    /// Whether the generation part matches generation `gen` (compared on
    /// its low 16 bits, as the token keeps them).
    #[inline]
    pub const fn names_gen(self, gen: u32) -> bool {
        self.gen() == gen & LOCK_GEN_MASK
    }
    /// Whether the word can name the process whose entry (the one at
    /// [`slot`](Self::slot)) has state word `entry`: it is ACTIVE and of
    /// the generation in the word. False means the holder is gone.
    #[inline]
    pub const fn names_entry(self, entry: ProcState) -> bool {
        entry.is_active() && self.names_gen(entry.gen())
    }
}

impl From<u32> for LockWord {
    #[inline]
    fn from(raw: u32) -> LockWord {
        LockWord(raw)
    }
}
impl From<LockWord> for u32 {
    #[inline]
    fn from(w: LockWord) -> u32 {
        w.0
    }
}

impl core::fmt::Debug for LockWord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.is_free() {
            return f.write_str("LockWord::FREE");
        }
        f.debug_struct("LockWord")
            .field("slot", &self.owner_slot())
            .field("gen", &self.gen())
            .field("contended", &self.is_contended())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;
    use crate::{PROC_ACTIVE, PROC_CLAIMING, PROC_FREE, PROC_GEN_SHIFT, PROC_SLOTS_MAX};

    /// `Me::token` in src/set.rs as written today.
    fn token_today(slot: u32, gen: u32) -> u32 {
        (slot + 1) | ((gen & LOCK_GEN_MASK) << LOCK_GEN_SHIFT)
    }
    /// `names_nobody` in src/set.rs today, once the slot is in range.
    fn names_nobody_today(word: u32, sg: u32) -> bool {
        let gen = (sg >> PROC_GEN_SHIFT) & LOCK_GEN_MASK;
        sg & crate::PROC_STATE_MASK != PROC_ACTIVE
            || gen != (word >> LOCK_GEN_SHIFT) & LOCK_GEN_MASK
    }

    #[test]
    fn fields_cover_every_bit_once() {
        let f = [
            LOCK_SLOT_MASK,
            LOCK_GEN_MASK << LOCK_GEN_SHIFT,
            LOCK_CONTENDED,
        ];
        assert_eq!(f[0] & f[1] | f[1] & f[2] | f[0] & f[2], 0);
        assert_eq!(f[0] | f[1] | f[2], u32::MAX);
    }

    #[test]
    fn token_round_trips() {
        let mut r = Rng::new(4);
        for _ in 0..200_000 {
            let slot = (r.next() % PROC_SLOTS_MAX as u64) as u32;
            let gen = r.next() as u32 >> PROC_GEN_SHIFT;
            let t = LockWord::token(slot, gen);
            assert_eq!(t.raw(), token_today(slot, gen));
            assert_eq!(
                (t.slot(), t.owner_slot(), t.gen()),
                (slot, Some(slot), gen & 0xffff)
            );
            assert!(!t.is_free() && !t.is_contended());
            assert!(t.names_gen(gen));
            let c = t.with_contended(true);
            assert_eq!(c.raw(), t.raw() | LOCK_CONTENDED);
            assert!(c.is_contended());
            assert_eq!((c.owner(), c.slot(), c.gen()), (t, slot, t.gen()));
            assert_eq!(LockWord::from(u32::from(c)), c);
        }
    }

    #[test]
    fn any_word_decodes_as_today() {
        let mut r = Rng::new(5);
        for _ in 0..200_000 {
            let w = r.next() as u32;
            let l = LockWord::from_raw(w);
            assert_eq!(l.slot(), (w & LOCK_SLOT_MASK).wrapping_sub(1));
            assert_eq!(l.owner().raw(), w & !LOCK_CONTENDED);
            assert_eq!(l.is_contended(), w & LOCK_CONTENDED != 0);
            assert_eq!(l.with_contended(true).raw(), w | LOCK_CONTENDED);
            let sg = r.next() as u32;
            assert_eq!(
                !l.names_entry(ProcState::from_raw(sg)),
                names_nobody_today(w, sg)
            );
        }
    }

    #[test]
    fn state_table() {
        // Free.
        assert!(LockWord::FREE.is_free());
        assert_eq!(LockWord::FREE.owner_slot(), None);
        assert_eq!(LockWord::FREE.slot(), NIL);
        // Held by entry 3 at generation 0x1_0005: the token keeps 16 bits.
        let gen = 0x1_0005;
        let t = LockWord::token(3, gen);
        assert_eq!(t.raw(), 4 | 5 << 15);
        let entry = ProcState::new(gen, PROC_ACTIVE);
        assert!(t.names_entry(entry));
        assert!(t.with_contended(true).names_entry(entry));
        // Names nobody: another generation, or an entry not ACTIVE.
        assert!(!t.names_entry(ProcState::new(gen + 1, PROC_ACTIVE)));
        assert!(!t.names_entry(ProcState::new(gen, PROC_FREE)));
        assert!(!t.names_entry(ProcState::new(gen, PROC_CLAIMING)));
        // CONTENDED alone names no slot.
        assert_eq!(LockWord::FREE.with_contended(true).owner_slot(), None);
    }
}
