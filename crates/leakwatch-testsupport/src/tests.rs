use super::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn temp_dirs_are_fresh_and_removed_on_drop() {
    let a = temp_dir("unit");
    let b = temp_dir("unit");
    assert_ne!(a.path(), b.path());
    assert!(a.is_dir() && std::fs::read_dir(&a).unwrap().next().is_none());
    assert!(
        a.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("leakwatch-unit-")
    );
    std::fs::write(a.join("f"), "x").unwrap();
    let path = a.to_path_buf();
    drop(a);
    assert!(!path.exists());
    let kept = b.keep();
    assert!(kept.is_dir());
    std::fs::remove_dir_all(kept).unwrap();
}

#[test]
fn tools_are_found_on_path_or_not() {
    assert!(tool::on_path("sh").is_some());
    assert!(tool::on_path("/bin/sh").is_some());
    assert!(tool::on_path("leakwatch-no-such-tool").is_none());
    assert!(tool::on_path("/nonexistent/sh").is_none());
    // A file that is not executable is not a tool.
    let dir = temp_dir("tool");
    std::fs::write(dir.join("plain"), "").unwrap();
    assert!(tool::on_path(dir.join("plain").to_str().unwrap()).is_none());
    assert!(tool::require("sh", "it is always there"));
}

#[test]
fn a_missing_tool_skips_outside_ci_and_fails_in_it() {
    // Run in a child (this test binary itself, one test) with CI set either way, so the
    // environment of this process is not changed under other tests' feet.
    let exe = std::env::current_exe().unwrap();
    for (ci, passes) in [("", true), ("false", true), ("true", false), ("1", false)] {
        let out = process::run(
            Command::new(&exe)
                .args(["--exact", "tests::require_a_missing_tool", "--nocapture"])
                .env("LEAKWATCH_TESTSUPPORT_CHILD", "1")
                .env("CI", ci),
            None,
            Duration::from_secs(60),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.success(),
            passes,
            "CI={ci:?}\n{stdout}\n{stderr}"
        );
        assert!(
            stdout.contains("1 passed") || stdout.contains("1 failed"),
            "{stdout}"
        );
        if passes {
            assert!(
                stderr.contains("SKIPPED: leakwatch-no-such-tool not found (try harder)"),
                "{stderr}"
            );
        } else {
            assert!(stderr.contains("CI is set"), "{stderr}");
        }
    }
}

/// Run only as the child of the test above.
#[test]
fn require_a_missing_tool() {
    if std::env::var_os("LEAKWATCH_TESTSUPPORT_CHILD").is_none() {
        return;
    }
    assert!(!tool::require("leakwatch-no-such-tool", "try harder"));
}

#[test]
fn run_feeds_stdin_and_captures_both_streams() {
    let out = process::run(
        Command::new("sh").args(["-c", "cat; echo oops >&2; exit 3"]),
        Some(b"fed"),
        Duration::from_secs(30),
    );
    assert_eq!(out.stdout, b"fed");
    assert_eq!(out.stderr, b"oops\n");
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn run_does_not_wait_for_what_the_child_left_running() {
    // The child exits at once, its background sleep holding the pipes open: the group is
    // killed when the child exits, so reading the pipes ends.
    let out = process::run(
        Command::new("sh").args(["-c", "sleep 600 & echo started"]),
        None,
        Duration::from_secs(30),
    );
    assert!(out.status.success());
    assert_eq!(out.stdout, b"started\n");
}

#[test]
#[should_panic(expected = "did not finish in")]
fn run_kills_a_child_past_its_limit() {
    process::run(
        Command::new("sleep").arg("600"),
        None,
        Duration::from_millis(200),
    );
}

#[test]
fn a_dropped_child_is_killed_with_its_group() {
    let dir = temp_dir("group");
    let pid_file = dir.join("grandchild");
    let mut spawned = process::Spawned::spawn(Command::new("sh").args([
        "-c",
        &format!("sleep 600 & echo $! > {}; wait", pid_file.display()),
    ]))
    .unwrap();
    // The grandchild's pid, once the shell wrote it (bounded).
    let mut grandchild = String::new();
    for _ in 0..3000 {
        grandchild = std::fs::read_to_string(&pid_file).unwrap_or_default();
        if grandchild.ends_with('\n') {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let grandchild = grandchild.trim().to_string();
    assert!(
        !grandchild.is_empty(),
        "the shell never wrote its child's pid"
    );
    assert_eq!(spawned.wait_for(Duration::from_millis(50)), None);
    drop(spawned);
    // /proc/PID goes once the grandchild is dead and reaped (by init, bounded).
    let proc_dir = std::path::Path::new("/proc").join(&grandchild);
    let mut gone = false;
    for _ in 0..3000 {
        let state = std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
        // A zombie (state Z) is dead too: its parent, the killed shell, is gone.
        if state.is_empty() || state.contains(") Z ") {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(gone, "the grandchild {grandchild} outlived its group");
}
