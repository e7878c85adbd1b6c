//! The intent record's words ([`IntentHeader`](crate::IntentHeader) and its
//! entries).
//!
//! The protocol and the `commit` state table are in the
//! [`IntentHeader`](crate::IntentHeader) documentation.

/// `commit`: no record, or a record still being written.
pub const INTENT_NONE: u32 = 0;
/// `commit`: the record is complete and must be (re)applied.
pub const INTENT_COMMITTED: u32 = 1;

/// Kind: values (and a process's adjustments) of a semop, possibly
/// completing a queued operation (`q_slot`): entries are [`pack_intent`].
pub const INTENT_APPLY: u32 = 1;
/// Kind: SETVAL (one entry); every adjustment of that semaphore cleared.
pub const INTENT_SETVAL: u32 = 2;
/// Kind: SETALL (one entry per semaphore); every adjustment cleared.
pub const INTENT_SETALL: u32 = 3;
/// Kind: a dead process's exit: its undo applied (entries: new values),
/// its queue slots and process-table entry freed.
pub const INTENT_REAP: u32 = 4;
/// Kind: IPC_RMID: removed, every queued operation completed with EIDRM.
pub const INTENT_RMID: u32 = 5;
/// Kind: IPC_SET: owner, group, mode, ctime.
pub const INTENT_SETPERM: u32 = 6;

/// Entry flag: the entry carries an adjustment for `proc_slot`.
pub const INTENT_HAS_ADJ: u64 = 1 << 48;

/// An intent entry: semaphore `n` gets `value`, and (with `adj`) process
/// `proc_slot`'s adjustment for it becomes `adj`.
///
/// | bits   | field   | meaning                                         |
/// |--------|---------|-------------------------------------------------|
/// | 0..16  | n       | the semaphore                                   |
/// | 16..32 | value   | its new value                                   |
/// | 32..48 | adj     | the new adjustment (as `u16`), if HAS_ADJ       |
/// | 48     | HAS_ADJ | [`INTENT_HAS_ADJ`]: the entry carries `adj`     |
/// | 49..64 | zero    |                                                 |
#[inline]
pub const fn pack_intent(n: u16, value: u16, adj: Option<i16>) -> u64 {
    let a = match adj {
        Some(a) => ((a as u16 as u64) << 32) | INTENT_HAS_ADJ,
        None => 0,
    };
    (n as u64) | ((value as u64) << 16) | a
}
/// The inverse of [`pack_intent`] (bits 49.. are ignored, and so is `adj`
/// without HAS_ADJ).
#[inline]
pub const fn unpack_intent(w: u64) -> (u16, u16, Option<i16>) {
    let adj = if w & INTENT_HAS_ADJ != 0 {
        Some((w >> 32) as u16 as i16)
    } else {
        None
    };
    (w as u16, (w >> 16) as u16, adj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    #[test]
    fn entries_round_trip() {
        let mut r = Rng::new(15);
        for _ in 0..200_000 {
            let (n, v, a) = (r.next() as u16, r.next() as u16, r.next() as i16);
            for adj in [None, Some(a)] {
                let w = pack_intent(n, v, adj);
                assert_eq!(w >> 49, 0);
                assert_eq!(unpack_intent(w), (n, v, adj));
                assert_eq!(unpack_intent(w | (r.next() << 49)), (n, v, adj));
            }
            // Bits 32..48 without HAS_ADJ mean nothing.
            let w = pack_intent(n, v, None) | ((a as u16 as u64) << 32);
            assert_eq!(unpack_intent(w), (n, v, None));
        }
        assert_eq!(
            pack_intent(2, 7, Some(-1)),
            2 | 7 << 16 | 0xffff << 32 | 1 << 48
        );
        assert_eq!(pack_intent(2, 7, Some(0)), 2 | 7 << 16 | 1 << 48);
    }

    #[test]
    fn kinds_are_distinct_and_nonzero() {
        let kinds = [
            INTENT_APPLY,
            INTENT_SETVAL,
            INTENT_SETALL,
            INTENT_REAP,
            INTENT_RMID,
            INTENT_SETPERM,
        ];
        for (i, k) in kinds.iter().enumerate() {
            assert_ne!(*k, 0);
            assert!(!kinds[..i].contains(k));
        }
        assert_ne!(INTENT_NONE, INTENT_COMMITTED);
    }
}
