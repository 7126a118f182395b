//! A read-only memory map of a file, and the process's resident set size.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// A file mapped read-only and private. Pages are read from the page cache as they are
/// touched and leave the process's resident set when the map is dropped.
pub(crate) struct MappedFile {
    ptr: *mut libc::c_void,
    len: usize,
}

impl MappedFile {
    /// Maps `path` (an empty file maps to an empty slice without a system call).
    pub(crate) fn open(path: &Path) -> std::io::Result<MappedFile> {
        let file = File::open(path)?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| std::io::Error::other("file too large to map"))?;
        if len == 0 {
            return Ok(MappedFile {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        // SAFETY: a fresh read-only private mapping of an open file descriptor; the
        // kernel picks the address, and the result is checked for MAP_FAILED. The fd may
        // be closed once the mapping exists.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(MappedFile { ptr, len })
    }

    /// The file's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` is a live mapping of `len` readable bytes until `drop`, and the
        // slice borrows `self`. The mapping is private and read-only: another process
        // truncating the file could make a read fault (SIGBUS), the same hazard every
        // mmap-based ELF reader (addr2line's loader, backtrace) accepts; nothing writes
        // through it.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }

    /// Tells the kernel the map is read at random: a page fault maps that page alone,
    /// not its neighbours (fault-around), so only the pages read become resident.
    pub(crate) fn advise_random(&self) {
        self.advise(libc::MADV_RANDOM);
    }

    /// Drops the pages read so far from the resident set. The map stays valid: a page
    /// read again is faulted in again from the page cache, with the same bytes (the
    /// file is mapped private and read-only, so no page ever differs from the file).
    pub(crate) fn release(&self) {
        self.advise(libc::MADV_DONTNEED);
    }

    fn advise(&self, advice: libc::c_int) {
        if self.len > 0 {
            // SAFETY: `ptr` and `len` are exactly the live mapping `open` made. Neither
            // advice changes what the mapping reads: MADV_RANDOM only tunes read-ahead,
            // and MADV_DONTNEED on a private, never-written file mapping only unmaps its
            // pages, which read back as the file's bytes; slices of it stay valid. An
            // error (the advice unsupported) changes nothing and is ignored.
            unsafe {
                libc::madvise(self.ptr, self.len, advice);
            }
        }
    }

    /// Bytes mapped.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmaps exactly the mapping `open` made; no slice of it outlives
            // `self` (they borrow it).
            unsafe {
                libc::munmap(self.ptr, self.len);
            }
        }
    }
}

/// The process's resident set size in bytes (`/proc/self/statm`), if readable.
pub(crate) fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions; it only reads a system setting.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages.saturating_mul(u64::try_from(page).ok()?))
}

/// Hands the C allocator's free memory back to the system (glibc's `malloc_trim`): a
/// batch frees its parsed debug info in one go, and glibc would otherwise keep most of
/// it in the resident set (its heap top and arenas are trimmed only past thresholds
/// that large frees raise). Elsewhere a no-op.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only returns free pages of glibc's
    // heap to the system, under glibc's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
