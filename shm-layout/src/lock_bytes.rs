//! The byte-range locks that carry what the kernel must release when a
//! process dies: open-file-description locks (F_OFD_SETLK), on bytes past
//! the end of the data (a lock needs no data behind it):
//!
//! | offset                          | file                  | held by                                 |
//! |---------------------------------|-----------------------|-----------------------------------------|
//! | [`CREATION_LOCK_BYTE`] (0)      | a set's own file      | its creator while it makes the set (so  |
//! |                                 |                       | a cleaner can tell a live creator)      |
//! | [`claim_byte`]`(set, entry)`    | the claimer's uid's   | a process claiming that entry of that   |
//! | (2^32 ..< 2^32 + 2^31)          | presence file         | set's process table, until it is ACTIVE |
//! | [`presence_byte`]`(pid, start)` | the process's uid's   | the process (pid, start time) while its |
//! | (2^40 ..< 2^63)                 | presence file         | descriptor of that file is open         |
//!
//! A presence file, `/dev/shm/shmsem.NS.p.UID`, is a regular file of
//! size 0, mode 0644, owned by UID, created exclusively by the first
//! process of UID in namespace NS. Only UID's processes (and root) can open
//! it for writing, so only they can take write locks in it; everyone may
//! open it to read, and so take read locks, which is why a checker asks
//! only about write locks (`F_OFD_GETLK` with `F_RDLCK`), and why a read
//! lock that keeps a process from taking its own byte must cost no more
//! than speed (see [`ProcOwner`](crate::ProcOwner)'s bare claims).
//!
//! A presence byte names a process, not an entry: one lock per process per
//! namespace, whatever the number of sets it uses, and a reused pid (another
//! start time) has another byte. A free presence byte is a hint, not a
//! verdict: a process that closed its descriptors (a daemon), or that
//! exec'd (the descriptor is close-on-exec), holds none and is still alive.

/// The byte of a set's file its creator holds while it creates the set
/// (an OFD write lock, released when the set is published, or by the
/// kernel when the creator dies).
pub const CREATION_LOCK_BYTE: i64 = 0;

/// First claim byte.
const CLAIM_BASE: i64 = 1 << 32;
/// Claim bytes per set index (one per possible process-table entry).
const CLAIMS_PER_SET: i64 = 1 << 16;
/// First presence byte.
const PRESENCE_BASE: i64 = 1 << 40;
/// Start-time bits kept in a presence byte (in clock ticks since boot:
/// 2^40 ticks are centuries).
const START_BITS: u32 = 40;
/// Largest pid a presence byte can name (the kernel's PID_MAX_LIMIT is
/// 2^22).
const PID_LIMIT: i32 = 1 << 22;

/// The byte a process claiming entry `entry` of set index `set` holds.
/// `None` for indexes out of range (untrusted input).
#[inline]
pub const fn claim_byte(set: u32, entry: u32) -> Option<i64> {
    if set >= crate::SEMMNI_MAX || entry as i64 >= CLAIMS_PER_SET {
        return None;
    }
    Some(CLAIM_BASE + set as i64 * CLAIMS_PER_SET + entry as i64)
}

/// The presence byte of process `pid` started at `start` (field 22 of
/// /proc/PID/stat). `None` for a pid no process can have (untrusted
/// input: 0, negative, beyond the kernel's limit).
#[inline]
pub const fn presence_byte(pid: i32, start: u64) -> Option<i64> {
    if pid <= 0 || pid > PID_LIMIT {
        return None;
    }
    let low = (start & ((1u64 << START_BITS) - 1)) as i64;
    Some(PRESENCE_BASE + ((pid as i64 - 1) << START_BITS) + low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_disjoint() {
        let last_claim = claim_byte(crate::SEMMNI_MAX - 1, (CLAIMS_PER_SET - 1) as u32).unwrap();
        assert!(claim_byte(0, 0).unwrap() > CREATION_LOCK_BYTE);
        assert!(last_claim < presence_byte(1, 0).unwrap());
        let top = presence_byte(PID_LIMIT, u64::MAX).unwrap();
        assert!(top > 0, "no overflow");
        assert_eq!(presence_byte(0, 5), None);
        assert_eq!(presence_byte(-3, 5), None);
        assert_eq!(presence_byte(PID_LIMIT + 1, 5), None);
        assert_ne!(presence_byte(7, 100), presence_byte(7, 101));
        assert_ne!(presence_byte(7, 100), presence_byte(8, 100));
        assert_eq!(claim_byte(crate::SEMMNI_MAX, 0), None);
        assert_eq!(claim_byte(0, 1 << 16), None);
    }
}
