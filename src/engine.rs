//! The pure core: what a list of operations does to a set of values.
//!
//! This is the kernel's `perform_atomic_semop` without the memory: the ops
//! are tried in array order as if one after another (duplicate semaphore
//! numbers see each other's effect), and the first op that would block or
//! overflow decides the outcome. Nothing here reads shared memory or makes
//! a system call; the caller supplies the current values and adjustments and
//! applies the result, as absolute values, only if it is [`Eval::Done`].

use crate::sysv::Sembuf;
use crate::Error;
use shm_layout::{IPC_NOWAIT, SEMAEM, SEMVMX, SEM_UNDO};

/// The outcome of evaluating a call's operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eval {
    /// Every op can proceed; the new values are in the scratch.
    Done,
    /// Op number `.0` must wait (a decrement below zero, or a wait-for-zero
    /// on a non-zero value) and does not have IPC_NOWAIT.
    Block(usize),
    /// The call fails; nothing may change.
    Fail(Error),
}

/// One semaphore touched by a call: its number and its value and undo
/// adjustment after the ops evaluated so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Touched {
    /// Semaphore number.
    pub num: u16,
    /// Value after the ops.
    pub value: i32,
    /// The caller's undo adjustment after the ops.
    pub adj: i32,
    /// Value before the ops.
    pub old_value: i32,
    /// Adjustment before the ops.
    pub old_adj: i32,
}

/// Reusable storage for [`evaluate`].
#[derive(Default, Debug)]
pub struct Scratch {
    /// The semaphores the call names, in first-mention order.
    pub touched: Vec<Touched>,
}

impl Scratch {
    #[inline]
    fn slot(
        &mut self,
        num: u16,
        value: &mut impl FnMut(u16) -> i32,
        adj: &mut impl FnMut(u16) -> i32,
    ) -> usize {
        // Calls are short (SEMOPM ops at most); a linear search beats hashing
        // for the common one to eight.
        if let Some(i) = self.touched.iter().position(|t| t.num == num) {
            return i;
        }
        let v = value(num);
        let a = adj(num);
        self.touched.push(Touched {
            num,
            value: v,
            adj: a,
            old_value: v,
            old_adj: a,
        });
        self.touched.len() - 1
    }
}

/// What one op does to a value `cur`: the kernel's perform_atomic_semop
/// inner step, the one rule both the fast path ([`crate::set`]'s
/// `fast_op`) and [`evaluate`] follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The op proceeds; `.0` is the new value.
    Apply(i32),
    /// The op must wait: a decrement below zero, or a wait-for-zero on a
    /// non-zero value (IPC_NOWAIT turns it into EAGAIN).
    Block,
    /// The new value would exceed SEMVMX (ERANGE).
    OutOfRange,
}

/// Applies the rule of [`Step`] to value `cur` and op `delta`.
#[inline(always)]
pub fn step(cur: i32, delta: i32) -> Step {
    let new = cur + delta;
    if (delta == 0 && cur != 0) || new < 0 {
        Step::Block
    } else if new > SEMVMX {
        Step::OutOfRange
    } else {
        Step::Apply(new)
    }
}

/// Evaluates `sops` (already checked: every `sem_num` is in range).
/// `value(n)` and `adj(n)` give the current value and the caller's current
/// undo adjustment of semaphore `n` (0 when the caller has none).
#[inline]
pub fn evaluate(
    sops: &[Sembuf],
    scratch: &mut Scratch,
    mut value: impl FnMut(u16) -> i32,
    mut adj: impl FnMut(u16) -> i32,
) -> Eval {
    scratch.touched.clear();
    for (i, op) in sops.iter().enumerate() {
        let t = scratch.slot(op.sem_num, &mut value, &mut adj);
        let t = &mut scratch.touched[t];
        let delta = op.sem_op as i32;
        let result = match step(t.value, delta) {
            Step::Apply(new) => new,
            Step::Block if op.sem_flg as i32 & IPC_NOWAIT != 0 => {
                return Eval::Fail(Error::WouldBlock)
            }
            Step::Block => return Eval::Block(i),
            Step::OutOfRange => return Eval::Fail(Error::OutOfRange),
        };
        if op.sem_flg as i32 & SEM_UNDO != 0 {
            let undo = t.adj - delta;
            if !(-SEMAEM - 1..=SEMAEM).contains(&undo) {
                return Eval::Fail(Error::OutOfRange);
            }
            t.adj = undo;
        }
        t.value = result;
    }
    Eval::Done
}

/// Whether any op alters a value (needs write permission; queued as an
/// altering operation).
pub fn alters(sops: &[Sembuf]) -> bool {
    sops.iter().any(|s| s.sem_op != 0)
}

/// Whether any op has SEM_UNDO.
pub fn has_undo(sops: &[Sembuf]) -> bool {
    sops.iter().any(|s| s.sem_flg as i32 & SEM_UNDO != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(vals: &[i32], sops: &[Sembuf]) -> (Eval, Vec<i32>) {
        let mut s = Scratch::default();
        let mut v = vals.to_vec();
        let r = evaluate(sops, &mut s, |n| vals[n as usize], |_| 0);
        if r == Eval::Done {
            for t in &s.touched {
                v[t.num as usize] = t.value;
            }
        }
        (r, v)
    }

    #[test]
    fn duplicates_see_each_other() {
        // SEMANTICS D1: value 1, [{0,+1},{0,-2}] succeeds with 0.
        assert_eq!(
            run(&[1], &[Sembuf::new(0, 1, 0), Sembuf::new(0, -2, 0)]),
            (Eval::Done, vec![0])
        );
        // [{0,+1},{0,0,NOWAIT}] on 0 -> EAGAIN.
        let nw = IPC_NOWAIT as i16;
        assert_eq!(
            run(&[0], &[Sembuf::new(0, 1, 0), Sembuf::new(0, 0, nw)]).0,
            Eval::Fail(Error::WouldBlock)
        );
    }

    #[test]
    fn first_blocking_op_decides() {
        let nw = IPC_NOWAIT as i16;
        // Op 0 blocks without NOWAIT: Block(0) even though op 1 has NOWAIT.
        assert_eq!(
            run(&[0, 0], &[Sembuf::new(0, -1, 0), Sembuf::new(1, -1, nw)]).0,
            Eval::Block(0)
        );
        // ERANGE before a later block.
        assert_eq!(
            run(&[32767, 0], &[Sembuf::new(0, 1, 0), Sembuf::new(1, -1, 0)]).0,
            Eval::Fail(Error::OutOfRange)
        );
        // A block before a later ERANGE.
        assert_eq!(
            run(&[0, 32767], &[Sembuf::new(0, -1, 0), Sembuf::new(1, 1, 0)]).0,
            Eval::Block(0)
        );
    }

    #[test]
    fn undo_range() {
        let u = SEM_UNDO as i16;
        let mut s = Scratch::default();
        // adj 32767 already; another -1 with undo would make it 32768.
        let r = evaluate(&[Sembuf::new(0, -1, u)], &mut s, |_| 5, |_| 32767);
        assert_eq!(r, Eval::Fail(Error::OutOfRange));
        let r = evaluate(&[Sembuf::new(0, 1, u)], &mut s, |_| 5, |_| -32768);
        assert_eq!(r, Eval::Fail(Error::OutOfRange));
        let r = evaluate(&[Sembuf::new(0, 1, u)], &mut s, |_| 5, |_| -32767);
        assert_eq!(r, Eval::Done);
        assert_eq!(s.touched[0].adj, -32768);
        // Wait-for-zero with SEM_UNDO leaves the adjustment alone.
        let r = evaluate(&[Sembuf::new(0, 0, u)], &mut s, |_| 0, |_| 7);
        assert_eq!(r, Eval::Done);
        assert_eq!(s.touched[0].adj, 7);
    }
}
