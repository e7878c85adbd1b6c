//! Errno names, for messages and tallies.

/// The symbolic name of every errno a semaphore call (or the tests' own
/// calls) may give; None for others.
pub fn errno_symbol(e: i32) -> Option<&'static str> {
    Some(match e {
        libc::E2BIG => "E2BIG",
        libc::EACCES => "EACCES",
        libc::EAGAIN => "EAGAIN",
        libc::EEXIST => "EEXIST",
        libc::EFAULT => "EFAULT",
        libc::EFBIG => "EFBIG",
        libc::EIDRM => "EIDRM",
        libc::EINTR => "EINTR",
        libc::EINVAL => "EINVAL",
        libc::ENOENT => "ENOENT",
        libc::ENOMEM => "ENOMEM",
        libc::ENOSPC => "ENOSPC",
        libc::EPERM => "EPERM",
        libc::ERANGE => "ERANGE",
        // shmsem's `Error::Corrupt`.
        libc::EUCLEAN => "EUCLEAN",
        _ => return None,
    })
}

/// An errno's name, or `errno N`.
pub fn errno_name(e: i32) -> String {
    match errno_symbol(e) {
        Some(n) => n.to_string(),
        None => format!("errno {e}"),
    }
}
