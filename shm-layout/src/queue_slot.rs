//! The words of a pending-queue slot ([`QueueSlot`](crate::QueueSlot)):
//! its status (the sleeper's futex word), its flags, the `blocked` word and
//! the packed operations.

/// Mask of the errno part of a slot status.
pub const SLOT_ERRNO_MASK: u32 = 0xfff;
/// Shift of the state part of a slot status.
pub const SLOT_STATE_SHIFT: u32 = 12;
/// Mask of the state part (after shifting).
pub const SLOT_STATE_MASK: u32 = 0xf;
/// Shift of the generation part of a slot status.
pub const SLOT_GEN_SHIFT: u32 = 16;
/// Slot state: unused.
pub const SLOT_FREE: u32 = 0;
/// Slot state: a sleeper's operation is queued and waits.
pub const SLOT_QUEUED: u32 = 1;
/// Slot state: the operation was completed (or failed) by someone else; the
/// result is in the errno bits. The sleeper frees the slot.
pub const SLOT_DONE: u32 = 2;
/// Slot state: holds further operations of the slot that links to it.
pub const SLOT_CONT: u32 = 3;
/// Slot state: the sleeper gave up (timeout or signal) without the lock;
/// the operation can no longer complete. A lock holder unlinks and frees
/// the slot.
pub const SLOT_WITHDRAWN: u32 = 4;

/// Slot flag: the operation has SEM_UNDO ops.
pub const SLOT_F_UNDO: u32 = 1;
/// Slot flag: the operation alters a value (some op is non-zero).
pub const SLOT_F_ALTER: u32 = 2;
/// `blocked` field flag: the op the sleeper blocks on is a wait-for-zero.
pub const BLOCKED_ZERO: u32 = 1 << 31;

/// Operations stored in one queue slot; longer calls chain continuation slots.
pub const SLOT_OPS: usize = 9;

/// A queue slot's status ([`QueueSlot::status`](crate::QueueSlot::status)):
/// the slot's state, the result a waker hands over, and a generation. It is
/// also the futex word the sleeper sleeps on.
///
/// | bits   | field | meaning                                                   |
/// |--------|-------|-----------------------------------------------------------|
/// | 0..12  | errno | result handed over by the waker (0 = success)             |
/// | 12..16 | state | FREE, QUEUED, DONE, CONT                                  |
/// | 16..32 | gen   | bumped at every allocation: a stale index never matches   |
///
/// # State table
///
/// | state  | Description                          | Left by                        |
/// |--------|--------------------------------------|--------------------------------|
/// | FREE   | Unused (a zeroed segment's slots).   | [`reserved`](Self::reserved):  |
/// |        |                                      | the enqueuer, under the lock,  |
/// |        |                                      | gen + 1, state CONT.           |
/// | CONT   | Reserved by an enqueuer, being       | The head: [`queued`](Self::queued) |
/// |        | filled; or a continuation holding    | (release, the last write of    |
/// |        | operations `SLOT_OPS..` of the slot  | the enqueue). A continuation:  |
/// |        | that links to it (`cont`).           | [`freed`](Self::freed) with its|
/// |        |                                      | head, or by recovery when no   |
/// |        |                                      | queued slot reaches it.        |
/// | QUEUED | A sleeper's operation waits; the     | A waker: [`done`](Self::done)  |
/// |        | sleeper sleeps while the status      | by CAS from the QUEUED word    |
/// |        | equals this word.                    | (release; errno 0, an error,   |
/// |        |                                      | or EIDRM at removal), before   |
/// |        |                                      | it writes the operation's      |
/// |        |                                      | values. The sleeper itself on  |
/// |        |                                      | timeout or signal, with or     |
/// |        |                                      | without the lock:              |
/// |        |                                      | [`withdrawn`](Self::withdrawn) |
/// |        |                                      | by CAS from the QUEUED word.   |
/// |        |                                      | Of the two CASes exactly one   |
/// |        |                                      | wins. A dead sleeper's reaper: |
/// |        |                                      | freed.                         |
/// | DONE   | Completed or failed by a waker; the  | The sleeper, collecting the    |
/// |        | result is in errno.                  | result: freed (release). A     |
/// |        |                                      | dead sleeper's reaper: freed.  |
/// | WITHDRAWN | The sleeper gave up; nobody waits | A lock holder (the sleeper     |
/// |        | and the operation never completes:   | itself if it gets the lock at  |
/// |        | a waker whose completion CAS finds   | once; else the next walk of    |
/// |        | this applies nothing of it. Still    | the FIFO, search of the arena, |
/// |        | linked and counted in `nwait`.       | sweep or recovery): unlinked,  |
/// |        |                                      | freed (release).               |
/// | 5..15  | Scribbled on.                        | Counted as CONT by reports;    |
/// |        |                                      | never completed nor collected. |
///
/// Every transition keeps the generation but the reservation, which bumps
/// it (modulo 2^16), so a status word seen before the slot was freed and
/// reused never equals the new one.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SlotStatus(u32);

impl SlotStatus {
    /// The status of a never-used slot: generation 0, FREE.
    pub const FREE: SlotStatus = SlotStatus(0);

    /// A status of generation `gen` (below 2^16), `state` (one of the
    /// `SLOT_*` states) and result `errno` (masked to 12 bits).
    #[inline]
    pub const fn new(gen: u32, state: u32, errno: u32) -> SlotStatus {
        SlotStatus(
            (gen << SLOT_GEN_SHIFT) | (state << SLOT_STATE_SHIFT) | (errno & SLOT_ERRNO_MASK),
        )
    }
    /// The word as stored.
    #[inline]
    pub const fn from_raw(raw: u32) -> SlotStatus {
        SlotStatus(raw)
    }
    /// The raw word, to store (or to pass to a futex call).
    #[inline]
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// The state part: [`SLOT_FREE`], [`SLOT_QUEUED`], [`SLOT_DONE`],
    /// [`SLOT_CONT`], or anything up to 15 if scribbled on.
    #[inline]
    pub const fn state(self) -> u32 {
        (self.0 >> SLOT_STATE_SHIFT) & SLOT_STATE_MASK
    }
    /// The generation (16 bits).
    #[inline]
    pub const fn gen(self) -> u32 {
        self.0 >> SLOT_GEN_SHIFT
    }
    /// The result handed over (0: success), 12 bits.
    #[inline]
    pub const fn errno(self) -> u32 {
        self.0 & SLOT_ERRNO_MASK
    }
    /// State FREE.
    #[inline]
    pub const fn is_free(self) -> bool {
        self.state() == SLOT_FREE
    }
    /// State QUEUED.
    #[inline]
    pub const fn is_queued(self) -> bool {
        self.state() == SLOT_QUEUED
    }
    /// State DONE.
    #[inline]
    pub const fn is_done(self) -> bool {
        self.state() == SLOT_DONE
    }
    /// State CONT.
    #[inline]
    pub const fn is_cont(self) -> bool {
        self.state() == SLOT_CONT
    }
    /// State WITHDRAWN.
    #[inline]
    pub const fn is_withdrawn(self) -> bool {
        self.state() == SLOT_WITHDRAWN
    }
    /// The generation the next reservation gives the slot.
    #[inline]
    pub const fn next_gen(self) -> u32 {
        self.gen().wrapping_add(1) & 0xffff
    }

    /// The slot freed: same generation, FREE, no errno.
    #[inline]
    pub const fn freed(self) -> SlotStatus {
        SlotStatus::new(self.gen(), SLOT_FREE, 0)
    }
    /// The slot reserved by an enqueuer: the next generation, CONT.
    #[inline]
    pub const fn reserved(self) -> SlotStatus {
        SlotStatus::new(self.next_gen(), SLOT_CONT, 0)
    }
    /// The head slot made QUEUED: same generation.
    #[inline]
    pub const fn queued(self) -> SlotStatus {
        SlotStatus::new(self.gen(), SLOT_QUEUED, 0)
    }
    /// The operation completed with `errno` (0: success): same generation.
    #[inline]
    pub const fn done(self, errno: u32) -> SlotStatus {
        SlotStatus::new(self.gen(), SLOT_DONE, errno)
    }
    /// The sleeper gave up waiting: same generation.
    #[inline]
    pub const fn withdrawn(self) -> SlotStatus {
        SlotStatus::new(self.gen(), SLOT_WITHDRAWN, 0)
    }
}

impl From<u32> for SlotStatus {
    #[inline]
    fn from(raw: u32) -> SlotStatus {
        SlotStatus(raw)
    }
}
impl From<SlotStatus> for u32 {
    #[inline]
    fn from(s: SlotStatus) -> u32 {
        s.0
    }
}

impl core::fmt::Debug for SlotStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let state = match self.state() {
            SLOT_FREE => "FREE",
            SLOT_QUEUED => "QUEUED",
            SLOT_DONE => "DONE",
            SLOT_CONT => "CONT",
            SLOT_WITHDRAWN => "WITHDRAWN",
            _ => "?",
        };
        f.debug_struct("SlotStatus")
            .field("gen", &self.gen())
            .field("state", &format_args!("{state}({})", self.state()))
            .field("errno", &self.errno())
            .finish()
    }
}

/// A queue slot's flags ([`QueueSlot::flags`](crate::QueueSlot::flags)),
/// written by the enqueuer before the slot is QUEUED.
///
/// | bit | flag         | meaning                                              |
/// |-----|--------------|------------------------------------------------------|
/// | 0   | SLOT_F_UNDO  | some op has SEM_UNDO                                 |
/// | 1   | SLOT_F_ALTER | some op is non-zero: the slot is in the altering     |
/// |     |              | FIFO (else in the wait-for-zero FIFO)                |
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct SlotFlags(u32);

impl SlotFlags {
    /// The flags of a call with SEM_UNDO ops (`undo`) and non-zero ops
    /// (`alter`).
    #[inline]
    pub const fn new(undo: bool, alter: bool) -> SlotFlags {
        SlotFlags(if undo { SLOT_F_UNDO } else { 0 } | if alter { SLOT_F_ALTER } else { 0 })
    }
    /// The word as stored.
    #[inline]
    pub const fn from_raw(raw: u32) -> SlotFlags {
        SlotFlags(raw)
    }
    /// The raw word, to store.
    #[inline]
    pub const fn raw(self) -> u32 {
        self.0
    }
    /// SLOT_F_UNDO.
    #[inline]
    pub const fn undo(self) -> bool {
        self.0 & SLOT_F_UNDO != 0
    }
    /// SLOT_F_ALTER: the altering FIFO.
    #[inline]
    pub const fn alter(self) -> bool {
        self.0 & SLOT_F_ALTER != 0
    }
}

/// What a sleeper blocks on ([`QueueSlot::blocked`](crate::QueueSlot::blocked)),
/// counted by GETNCNT (an op that waits to decrease) and GETZCNT (a
/// wait-for-zero).
///
/// | bits  | field        | meaning                                     |
/// |-------|--------------|---------------------------------------------|
/// | 0..31 | sem          | the semaphore number of the blocking op     |
/// | 31    | BLOCKED_ZERO | that op is a wait-for-zero                  |
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct Blocked(u32);

impl Blocked {
    /// Blocked on semaphore `sem` (below 2^31), waiting for zero if `zero`.
    #[inline]
    pub const fn new(sem: u32, zero: bool) -> Blocked {
        Blocked(sem | if zero { BLOCKED_ZERO } else { 0 })
    }
    /// The word as stored.
    #[inline]
    pub const fn from_raw(raw: u32) -> Blocked {
        Blocked(raw)
    }
    /// The raw word, to store or compare.
    #[inline]
    pub const fn raw(self) -> u32 {
        self.0
    }
    /// The semaphore number.
    #[inline]
    pub const fn sem(self) -> u32 {
        self.0 & !BLOCKED_ZERO
    }
    /// Waiting for zero (GETZCNT) rather than to decrease (GETNCNT).
    #[inline]
    pub const fn is_zero(self) -> bool {
        self.0 & BLOCKED_ZERO != 0
    }
}

/// A packed `sembuf` in a queue slot ([`QueueSlot::ops`](crate::QueueSlot::ops)):
///
/// | bits   | field   |
/// |--------|---------|
/// | 0..16  | sem_num |
/// | 16..32 | sem_op  |
/// | 32..48 | sem_flg |
/// | 48..64 | zero    |
#[inline]
pub const fn pack_op(num: u16, op: i16, flg: i16) -> u64 {
    (num as u64) | ((op as u16 as u64) << 16) | ((flg as u16 as u64) << 32)
}
/// The inverse of [`pack_op`] (bits 48.. are ignored).
#[inline]
pub const fn unpack_op(w: u64) -> (u16, i16, i16) {
    (w as u16, (w >> 16) as u16 as i16, (w >> 32) as u16 as i16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    /// src/set.rs's `state`, `gen_of`, `make_status` as written today.
    fn state_today(status: u32) -> u32 {
        (status >> SLOT_STATE_SHIFT) & SLOT_STATE_MASK
    }
    fn gen_of_today(status: u32) -> u32 {
        status >> SLOT_GEN_SHIFT
    }
    fn make_status_today(gen: u32, st: u32, errno: u32) -> u32 {
        (gen << SLOT_GEN_SHIFT) | (st << SLOT_STATE_SHIFT) | (errno & SLOT_ERRNO_MASK)
    }

    #[test]
    fn status_round_trips() {
        for gen in [0, 1, 0x7fff, 0xfffe, 0xffff] {
            for state in 0..16 {
                for errno in [0, 1, 11, 43, 0xfff] {
                    let s = SlotStatus::new(gen, state, errno);
                    assert_eq!((s.gen(), s.state(), s.errno()), (gen, state, errno));
                    assert_eq!(s.raw(), make_status_today(gen, state, errno));
                    assert_eq!(SlotStatus::from(u32::from(s)), s);
                }
            }
        }
    }

    #[test]
    fn any_status_decodes_and_moves_as_today() {
        let mut r = Rng::new(6);
        for _ in 0..300_000 {
            let w = r.next() as u32;
            let s = SlotStatus::from_raw(w);
            assert_eq!(s.state(), state_today(w));
            assert_eq!(s.gen(), gen_of_today(w));
            assert_eq!(s.errno(), w & SLOT_ERRNO_MASK);
            let g = gen_of_today(w);
            assert_eq!(s.freed().raw(), make_status_today(g, SLOT_FREE, 0));
            assert_eq!(s.queued().raw(), make_status_today(g, SLOT_QUEUED, 0));
            let e = r.next() as u32;
            assert_eq!(s.done(e).raw(), make_status_today(g, SLOT_DONE, e));
            let next = g.wrapping_add(1) & 0xffff;
            assert_eq!(s.reserved().raw(), make_status_today(next, SLOT_CONT, 0));
        }
    }

    #[test]
    fn state_table() {
        let free = SlotStatus::FREE;
        assert!(free.is_free() && free.gen() == 0);
        // FREE → CONT: a new generation.
        let reserved = free.reserved();
        assert!(reserved.is_cont());
        assert_eq!(reserved.gen(), 1);
        assert_ne!(reserved, free);
        // CONT → QUEUED (the head): same generation.
        let queued = reserved.queued();
        assert!(queued.is_queued());
        assert_eq!((queued.gen(), queued.errno()), (1, 0));
        // QUEUED → DONE with a result: the sleeper's futex value changes.
        let done = queued.done(43);
        assert!(done.is_done());
        assert_eq!((done.gen(), done.errno()), (1, 43));
        assert_ne!(done, queued);
        // DONE / QUEUED / CONT → FREE keeps the generation.
        for s in [done, queued, reserved] {
            assert_eq!(s.freed(), SlotStatus::new(1, SLOT_FREE, 0));
        }
        // Reuse: the next reservation differs from every earlier word.
        let again = done.freed().reserved().queued();
        assert_eq!(again.gen(), 2);
        assert_ne!(again, queued);
        // The generation wraps at 16 bits.
        assert_eq!(SlotStatus::new(0xffff, SLOT_FREE, 0).reserved().gen(), 0);
        // QUEUED → WITHDRAWN (the sleeper gave up): same generation, a
        // word the waker's CAS from QUEUED no longer matches; freed later.
        let gone = queued.withdrawn();
        assert!(gone.is_withdrawn() && !gone.is_queued() && !gone.is_done());
        assert_eq!((gone.gen(), gone.errno()), (1, 0));
        assert_ne!(gone, queued);
        assert_ne!(gone, done);
        assert_eq!(gone.freed(), SlotStatus::new(1, SLOT_FREE, 0));
        // Scribbled states are none of the five.
        let odd = SlotStatus::new(3, 9, 0);
        assert!(
            !(odd.is_free()
                || odd.is_queued()
                || odd.is_done()
                || odd.is_cont()
                || odd.is_withdrawn())
        );
    }

    #[test]
    fn flags_and_blocked() {
        for (undo, alter) in [(false, false), (true, false), (false, true), (true, true)] {
            let f = SlotFlags::new(undo, alter);
            assert_eq!((f.undo(), f.alter()), (undo, alter));
            let today = if undo { SLOT_F_UNDO } else { 0 } | if alter { SLOT_F_ALTER } else { 0 };
            assert_eq!(f.raw(), today);
            assert_eq!(SlotFlags::from_raw(today), f);
        }
        for sem in [0u32, 1, 255, 65_534, 65_535] {
            for zero in [false, true] {
                let b = Blocked::new(sem, zero);
                assert_eq!(b.raw(), sem | if zero { BLOCKED_ZERO } else { 0 });
                assert_eq!((b.sem(), b.is_zero()), (sem, zero));
                assert_eq!(Blocked::from_raw(b.raw()), b);
            }
        }
        assert_ne!(Blocked::new(4, true), Blocked::new(4, false));
    }

    #[test]
    fn ops_round_trip() {
        let mut r = Rng::new(7);
        for _ in 0..100_000 {
            let (n, o, f) = (r.next() as u16, r.next() as i16, r.next() as i16);
            let w = pack_op(n, o, f);
            assert_eq!(w >> 48, 0);
            assert_eq!(unpack_op(w), (n, o, f));
            assert_eq!(unpack_op(w | (r.next() << 48)), (n, o, f));
        }
        assert_eq!(pack_op(1, -1, 0x1000), 1 | 0xffff << 16 | 0x1000 << 32);
    }
}
