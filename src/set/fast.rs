//! The fast path: one op without SEM_UNDO on a word with no slow bits is
//! one compare-and-swap, decided by the engine's per-op rule
//! ([`engine::step`]) on one word read. Any slow bit (GLOBAL: a lock holder
//! owns the word; WAITERS; UNDO_HELD) sends the call to the lock.

use super::SetView;
use crate::engine::{self, Step};
use crate::sync::Ordering;
use crate::sysv::Sembuf;
use crate::{Error, Result};
use shm_layout::*;

impl SetView<'_> {
    /// The fast path: one op without SEM_UNDO on a word with no slow bits
    /// is one CAS. `None` means "take the slow path".
    #[inline]
    pub fn fast_op(&self, op: Sembuf, pid: i32) -> Option<Result<()>> {
        let e = self.sems.get(op.sem_num as usize)?;
        // SYNC: Acquire as the CAS's failure ordering below.
        let mut w = e.word.load(Ordering::Acquire);
        loop {
            let word = SemWord::from_raw(w);
            if word.is_slow() {
                return None;
            }
            let new = match engine::step(word.value() as i32, op.sem_op as i32) {
                Step::Apply(new) => new,
                // Would block: a decision on one word read, linearizable
                // at that read.
                Step::Block if op.sem_flg as i32 & IPC_NOWAIT != 0 => {
                    return Some(Err(Error::WouldBlock))
                }
                Step::Block => return None,
                Step::OutOfRange => return Some(Err(Error::OutOfRange)),
            };
            // SYNC: AcqRel pairs with the lock holder's release store when
            // it clears GLOBAL (Guard::unmark) and with other fast-path
            // CASes; Acquire on failure, as the load above, sees the word a
            // holder released.
            match e.word.compare_exchange_weak(
                w,
                word.updated(new as u16, pid).raw(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.set_otime(e);
                    return Some(Ok(()));
                }
                Err(x) => w = x,
            }
        }
    }
}
