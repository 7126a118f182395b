//! Child processes that cannot outlive their test.
//!
//! [`Spawned`] starts a command in a process group of its own (so that the programs it
//! starts, such as `go tool pprof`'s pprof or Chromium's renderers, go with it), waits
//! for it at most a given time, and kills the whole group when it is late, when the test
//! is done with it, or when it is dropped (a test that panics leaves nothing running).
//! [`run`] is the common case: feed standard input, capture standard output and error,
//! bounded.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a bounded wait looks at the child.
const POLL: Duration = Duration::from_millis(10);

/// A child process in its own process group, killed with its group when dropped.
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    /// The program's name, for messages.
    name: String,
    /// Set once the child was reaped (its group may still hold its children).
    status: Option<ExitStatus>,
}

impl Spawned {
    /// Starts `command` as the leader of a new process group.
    ///
    /// # Errors
    ///
    /// When the program cannot be started (missing, not executable).
    pub fn spawn(command: &mut Command) -> std::io::Result<Spawned> {
        use std::os::unix::process::CommandExt;
        let name = command.get_program().to_string_lossy().into_owned();
        let child = command.process_group(0).spawn()?;
        Ok(Spawned {
            child,
            name,
            status: None,
        })
    }

    /// The child's process id (also its process group's id).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child's standard streams, as [`Child`] holds them (to take pipes from).
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Waits for the child to exit, at most `limit`; then kills what is left of its
    /// group (programs it started and left behind) and returns its status. `None` when
    /// it was still running after `limit`: it is killed, with its group, and reaped.
    ///
    /// # Panics
    ///
    /// When waiting fails (not for a child that exits with an error).
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.status {
            return Some(status);
        }
        let deadline = Instant::now() + limit;
        loop {
            let polled = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.name));
            if let Some(status) = polled {
                self.status = Some(status);
                self.kill_group();
                return Some(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Kills the child's whole process group and reaps the child.
    pub fn kill(&mut self) {
        self.kill_group();
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// Sends SIGKILL to the child's process group (nothing happens when it is empty).
    fn kill_group(&self) {
        let Ok(group) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill(2) has no memory-safety preconditions. A negative pid names the
        // process group whose id is the child's pid: the group `spawn` made the child
        // lead, so it holds only the child and what the child started. The group id
        // cannot have been reused by an unrelated group while the child is unreaped, and
        // after reaping only while some member is alive, which keeps the id its own.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `command` with `stdin` as its standard input (none: `/dev/null`), its standard
/// output and error captured, for at most `limit`.
///
/// # Panics
///
/// When the program cannot be started, or has not finished within `limit` (it is
/// killed, with its process group, first). A non-zero exit is not a panic: look at
/// [`Output::status`].
pub fn run(command: &mut Command, stdin: Option<&[u8]>, limit: Duration) -> Output {
    let name = command.get_program().to_string_lossy().into_owned();
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut spawned = Spawned::spawn(command).unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    // Feed and drain the pipes on threads, so that neither side blocks the other.
    let writer = match (stdin, spawned.child.stdin.take()) {
        (Some(input), Some(mut pipe)) => {
            let input = input.to_vec();
            Some(std::thread::spawn(move || {
                // A child that exits without reading all of it closes the pipe: not an error here.
                let _ = pipe.write_all(&input);
            }))
        }
        _ => None,
    };
    let stdout = drain(spawned.child.stdout.take());
    let stderr = drain(spawned.child.stderr.take());
    let status = spawned.wait_for(limit);
    // The group is dead by now, so the pipes' writers are gone and the threads end.
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    if let Some(writer) = writer {
        writer.join().expect("stdin writer");
    }
    let Some(status) = status else {
        panic!(
            "{name} did not finish in {limit:?}, killed\nstderr:\n{}",
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout,
        stderr,
    }
}

/// A thread reading `pipe` to its end.
fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut out);
        }
        out
    })
}
