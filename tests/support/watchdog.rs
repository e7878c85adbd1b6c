//! Turns a hang into a failure with a message.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// If the test is still running after its time, the whole test binary
/// aborts with a message naming the test (children die by their own alarm,
/// or with their parent; see [`crate::support::ChildNet`]). Dropping it
/// disarms it.
pub struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Arms a watchdog of `secs` seconds for the test called `name`.
    pub fn start(name: &str, secs: u64) -> Watchdog {
        let name = name.to_string();
        let (tx, rx) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(secs))
            {
                eprintln!("WATCHDOG: test `{name}` still running after {secs}s: hang; aborting");
                std::process::abort();
            }
        });
        Watchdog {
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
