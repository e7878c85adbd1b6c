//! The semctl commands that change a set, under its lock: SETVAL, SETALL,
//! IPC_SET and IPC_RMID. Each is one intent record (see [`super::intent`]);
//! a record that cannot be applied is reported (`Err`), not dropped.

use super::Guard;
use crate::sync;
use crate::Result;
use shm_layout::*;

impl Guard<'_, '_> {
    /// SETVAL: the value, sempid, every process's adjustment for it cleared,
    /// ctime, then the waiters.
    pub fn setval(&mut self, n: usize, val: i32, pid: i32) -> Result<()> {
        self.enter_global(true);
        let it = self.intent(INTENT_SETVAL);
        it.pid = pid;
        it.time = sync::realtime_secs();
        it.entries.push(pack_intent(n as u16, val as u16, None));
        self.commit()?;
        self.update_queue();
        Ok(())
    }

    /// SETALL.
    pub fn setall(&mut self, vals: &[u16], pid: i32) -> Result<()> {
        self.enter_global(true);
        let nsems = self.v.nsems();
        let it = self.intent(INTENT_SETALL);
        it.pid = pid;
        it.time = sync::realtime_secs();
        for (n, &x) in vals.iter().enumerate().take(nsems) {
            it.entries.push(pack_intent(n as u16, x, None));
        }
        self.commit()?;
        self.update_queue();
        Ok(())
    }

    /// IPC_SET: owner and mode.
    pub fn set_perm(&mut self, uid: u32, gid: u32, mode: u32) -> Result<()> {
        let it = self.intent(INTENT_SETPERM);
        it.perm = (uid, gid, mode & 0o777);
        it.time = sync::realtime_secs();
        self.commit()
    }

    /// IPC_RMID: the set is marked removed (in global mode for ever, so the
    /// fast path never runs again) and every sleeper gets EIDRM.
    pub fn remove(&mut self) -> Result<()> {
        self.enter_global(true);
        self.intent(INTENT_RMID);
        self.commit()?;
        let v = self.v;
        for alter in [true, false] {
            // `finish` takes each slot out of the list: the walk re-reads
            // the head.
            for (i, _) in v.drain(alter) {
                self.finish(i);
            }
        }
        Ok(())
    }
}
