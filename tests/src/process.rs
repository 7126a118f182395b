//! Running a check in a forked child.

use std::time::{Duration, Instant};

/// Forks. The child runs `child` and leaves with `_exit(0)` if it returns true, `_exit(3)`
/// otherwise (never running the parent's destructors). The parent waits for it, killing
/// it after `limit` (a child that hangs, say on a lock inherited in the held state,
/// fails the test instead of hanging it), and panics unless it exited with status 0.
pub fn in_forked_child(limit: Duration, child: impl FnOnce() -> bool) {
    // SAFETY: fork has no memory-safety preconditions. The child only runs `child` and
    // leaves through `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = child();
        // SAFETY: ends the child at once, without unwinding or running destructors.
        unsafe { libc::_exit(if ok { 0 } else { 3 }) };
    }
    let start = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid pointer to `status`.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            break;
        }
        if start.elapsed() > limit {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("child {pid} hung for {limit:?} (deadlocked after fork?)");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(libc::WIFEXITED(status), "child died: status {status:#x}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "the check failed in the child"
    );
}
