//! The memory limit a process runs under, for "time to limit" estimates.
//!
//! In order: the `LEAKWATCH_MEMORY_LIMIT` environment variable (`2g`, `512MiB`, bytes);
//! the cgroup v2 `memory.max` of the process's cgroup and its ancestors (the smallest
//! one set); the cgroup v1 `memory.limit_in_bytes`. Containers (Kubernetes, Docker,
//! systemd units with `MemoryMax=`) set these.

use std::path::{Path, PathBuf};

/// The memory limit of this process in bytes, if one is set (see the module docs).
pub fn memory_limit() -> Option<u64> {
    if let Ok(text) = std::env::var("LEAKWATCH_MEMORY_LIMIT") {
        if let Some(bytes) = leakwatch_alloc::parse_size(&text) {
            return Some(bytes).filter(|&b| b > 0);
        }
    }
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroup_limit(Path::new("/sys/fs/cgroup"), &cgroup)
}

/// The limit for a process whose `/proc/self/cgroup` reads `proc_cgroup`, with the
/// cgroup file system mounted at `root`.
pub(crate) fn cgroup_limit(root: &Path, proc_cgroup: &str) -> Option<u64> {
    let mut best: Option<u64> = None;
    let mut consider = |limit: Option<u64>| {
        if let Some(l) = limit {
            best = Some(best.map_or(l, |b| b.min(l)));
        }
    };
    for line in proc_cgroup.lines() {
        // `hierarchy-id:controllers:path`; v2 is `0::/path`.
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let relative = path.trim_start_matches('/');
        if controllers.is_empty() {
            // cgroup v2: this cgroup and every ancestor up to the root.
            for dir in ancestors(&root.join(relative), root) {
                consider(read_limit(&dir.join("memory.max")));
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            let base = root.join("memory");
            for dir in ancestors(&base.join(relative), &base) {
                consider(read_limit(&dir.join("memory.limit_in_bytes")));
            }
        }
    }
    best
}

/// `dir` and its parents down to `root` (inclusive).
fn ancestors(dir: &Path, root: &Path) -> Vec<PathBuf> {
    dir.ancestors()
        .take_while(|d| d.starts_with(root))
        .map(Path::to_path_buf)
        .collect()
}

/// A limit file's value: `max` and cgroup v1's "unlimited" (close to `i64::MAX`) are
/// no limit.
fn read_limit(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let bytes: u64 = text.trim().parse().ok()?;
    (bytes > 0 && bytes < (1u64 << 60)).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use leakwatch_testsupport::temp_dir;

    fn write(path: PathBuf, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn cgroup_v2_takes_the_smallest_limit_up_the_tree() {
        let root = temp_dir("cgroup-v2");
        write(root.join("memory.max"), "max\n");
        write(root.join("kubepods/memory.max"), "8589934592\n");
        write(root.join("kubepods/pod1/memory.max"), "2147483648\n");
        write(root.join("kubepods/pod1/app/memory.max"), "max\n");
        assert_eq!(
            cgroup_limit(&root, "0::/kubepods/pod1/app\n"),
            Some(2 << 30)
        );
        assert_eq!(cgroup_limit(&root, "0::/\n"), None);
        assert_eq!(cgroup_limit(&root, "garbage\n"), None);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn cgroup_v1_reads_the_memory_controller() {
        let root = temp_dir("cgroup-v1");
        write(
            root.join("memory/docker/abc/memory.limit_in_bytes"),
            "536870912\n",
        );
        write(
            root.join("memory/memory.limit_in_bytes"),
            "9223372036854771712\n",
        );
        let proc_cgroup = "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n";
        assert_eq!(cgroup_limit(&root, proc_cgroup), Some(512 << 20));
        let _ = std::fs::remove_dir_all(&root);
    }
}
