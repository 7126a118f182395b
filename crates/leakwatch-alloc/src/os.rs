//! The operating-system calls the tracker needs, each wrapped in a small safe function:
//! anonymous memory for the tracker's tables (never the global allocator, so the tables
//! can grow without recursing into it), thread stack bounds for the frame-pointer walk,
//! environment lookups that do not allocate, fork handlers, and the list of loaded
//! modules for offline symbolization.

use crate::spin::SpinLock;
use std::ffi::CStr;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Bytes the tracker currently holds in anonymous mappings.
static MAPPED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Bytes currently mapped by [`Mapping`]s (the tracker's own tables).
pub(crate) fn mapped_bytes() -> usize {
    MAPPED_BYTES.load(Ordering::Relaxed)
}

/// Fault injection: while set, [`Mapping::zeroed`] fails as if the system refused the
/// memory (`ulimit -v`, `vm.overcommit_memory=2`, `vm.max_map_count`).
static REFUSE_MAPPINGS: AtomicBool = AtomicBool::new(false);

/// Test support: makes every later [`Mapping::zeroed`] fail (`true`) or work again.
pub(crate) fn refuse_mappings(refuse: bool) {
    REFUSE_MAPPINGS.store(refuse, Ordering::Relaxed);
}

/// Types for which the all-zero bit pattern is a valid value.
///
/// # Safety
/// Implement only for types whose every field is valid when zeroed (integers, atomics,
/// arrays and structs of those).
pub(crate) unsafe trait Zeroable {}

// SAFETY: every bit pattern, including zero, is a valid integer.
unsafe impl Zeroable for u64 {}

/// A zero-filled array of `T` in its own anonymous memory mapping, returned to the
/// system on drop. Pages become resident only when touched.
pub(crate) struct Mapping<T: Zeroable> {
    ptr: NonNull<T>,
    len: usize,
    bytes: usize,
    _owns: PhantomData<T>,
}

// SAFETY: a `Mapping` owns its memory exclusively, like a `Box<[T]>`.
unsafe impl<T: Zeroable + Send> Send for Mapping<T> {}
// SAFETY: shared access only hands out `&[T]`, like a `Box<[T]>`.
unsafe impl<T: Zeroable + Sync> Sync for Mapping<T> {}

impl<T: Zeroable> Mapping<T> {
    /// Maps `len` zeroed elements, or `None` when the system refuses (or `len` is absurd).
    pub(crate) fn zeroed(len: usize) -> Option<Self> {
        if REFUSE_MAPPINGS.load(Ordering::Relaxed) {
            return None;
        }
        let bytes = len.checked_mul(size_of::<T>())?.max(1);
        let page = page_size();
        let bytes = bytes.checked_add(page - 1)? & !(page - 1);
        // SAFETY: an anonymous private mapping with no address hint has no preconditions;
        // failure is reported as MAP_FAILED and handled below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        MAPPED_BYTES.fetch_add(bytes, Ordering::Relaxed);
        Some(Self {
            ptr: NonNull::new(ptr.cast())?,
            len,
            bytes,
            _owns: PhantomData,
        })
    }

    /// The mapping's size in bytes, rounded up to whole pages.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes of the mapping that are resident in memory (pages touched so far).
    /// Does not allocate, so it may run under the tracker's locks.
    pub(crate) fn resident_bytes(&self) -> usize {
        const CHUNK_PAGES: usize = 1024;
        let page = page_size();
        let mut residency = [0u8; CHUNK_PAGES];
        let mut resident = 0;
        let mut offset = 0;
        while offset < self.bytes {
            let len = (self.bytes - offset).min(CHUNK_PAGES * page);
            // SAFETY: `ptr + offset` is page-aligned and `[ptr + offset, + len)` lies
            // inside our mapping; `residency` has room for `len / page` entries.
            let rc = unsafe {
                libc::mincore(
                    self.ptr.as_ptr().cast::<u8>().add(offset).cast(),
                    len,
                    residency.as_mut_ptr(),
                )
            };
            let pages = len.div_ceil(page);
            resident += if rc == 0 {
                residency[..pages].iter().filter(|&&r| r & 1 != 0).count() * page
            } else {
                len
            };
            offset += len;
        }
        resident
    }
}

impl<T: Zeroable> Mapping<T> {
    /// The whole pages that lie inside elements `range`, for [`Pages::discard`] to
    /// return to the system (perhaps later, with the lock that guards this mapping
    /// released), or `None` if there are none. An element that shares a page with
    /// elements outside `range` is never touched, but one inside `range` that straddles
    /// a page boundary has only its bytes in that page discarded.
    pub(crate) fn pages_within(&self, range: std::ops::Range<usize>) -> Option<Pages> {
        let page = page_size();
        let start = (range.start.min(self.len) * size_of::<T>()).next_multiple_of(page);
        let end = range.end.min(self.len) * size_of::<T>() / page * page;
        (start < end).then(|| Pages {
            addr: self.ptr.as_ptr() as usize + start,
            bytes: end - start,
        })
    }

    /// The pages of bytes `offset..offset + len` (`offset` a multiple of the page
    /// size), cut at the mapping's end, for [`Pages::populate`]; `None` past the end.
    pub(crate) fn pages_at(&self, offset: usize, len: usize) -> Option<Pages> {
        let end = offset.saturating_add(len).min(self.bytes);
        (offset < end && offset % page_size() == 0).then(|| Pages {
            addr: self.ptr.as_ptr() as usize + offset,
            bytes: end - offset,
        })
    }
}

/// Whole pages of a [`Mapping`] (from [`Mapping::pages_within`]).
#[derive(Debug)]
pub(crate) struct Pages {
    addr: usize,
    bytes: usize,
}

impl Pages {
    /// Returns the pages to the system (`MADV_DONTNEED`): they are no longer resident
    /// and read as zero.
    ///
    /// # Safety
    /// The mapping the pages came from must still be mapped, and every byte of the pages
    /// must be zero already and stay zero (other threads may read them meanwhile, but
    /// not write them): then discarding changes where the bytes live, not what they
    /// are.
    pub(crate) unsafe fn discard(self) {
        // SAFETY: `[addr, addr + bytes)` is page-aligned and, by the caller's contract,
        // still inside the mapping it was taken from. MADV_DONTNEED on a private
        // anonymous mapping makes those pages read as zero-filled afterwards; the caller
        // guarantees they are zero already, so no thread can observe a change (`Zeroable`
        // types are plain integers and atomics, valid when zero). A failure leaves the
        // pages as they were.
        unsafe {
            libc::madvise(
                self.addr as *mut libc::c_void,
                self.bytes,
                libc::MADV_DONTNEED,
            )
        };
    }

    /// Makes the pages resident and writable now (`MADV_POPULATE_WRITE`, Linux 5.14;
    /// best effort: where it is refused the pages fault in when first touched), without
    /// changing a byte of them.
    ///
    /// # Safety
    /// The mapping the pages came from must still be mapped (other threads may read and
    /// write it meanwhile: populating changes where the bytes live, not what they are).
    pub(crate) unsafe fn populate(self) {
        // SAFETY: `[addr, addr + bytes)` is page-aligned and, by the caller's contract,
        // inside a live private anonymous mapping. MADV_POPULATE_WRITE faults in the
        // pages as a write would, without writing: contents are unchanged, so a thread
        // accessing them meanwhile sees nothing change. A failure changes nothing.
        unsafe {
            libc::madvise(
                self.addr as *mut libc::c_void,
                self.bytes,
                libc::MADV_POPULATE_WRITE,
            )
        };
    }
}

impl<T: Zeroable> Deref for Mapping<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the mapping holds `len` elements, is page-aligned (so aligned for `T`),
        // was zero-filled by the kernel (valid for `T: Zeroable`), and lives as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable> DerefMut for Mapping<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable> Drop for Mapping<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`bytes` describe exactly the mapping created in `zeroed`, and no
        // reference into it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
        MAPPED_BYTES.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page > 0 && (page as usize).is_power_of_two() {
        page as usize
    } else {
        4096
    }
}

/// The calling thread's stack as `(lowest, highest)` address, or `(0, 0)` when unknown.
/// Uses C `malloc` internally on the main thread (never the Rust global allocator).
#[cfg(target_os = "linux")]
pub(crate) fn thread_stack_bounds() -> (usize, usize) {
    let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: pthread_getattr_np initialises `attr` on success (return 0); we only read it
    // and destroy it after success.
    unsafe {
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return (0, 0);
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size);
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        if rc != 0 || addr.is_null() {
            return (0, 0);
        }
        let lo = addr as usize;
        (lo, lo.saturating_add(size))
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn thread_stack_bounds() -> (usize, usize) {
    (0, 0)
}

/// Calls `f` with the value of environment variable `name`, without allocating.
/// Returns `None` when the variable is unset.
pub(crate) fn with_env<R>(name: &CStr, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    // SAFETY: getenv reads the environment; the returned pointer stays valid until the
    // environment is modified. We copy out of it immediately. (Like every getenv caller we
    // rely on no thread calling setenv concurrently, which Rust already makes `unsafe`.)
    let value = unsafe { libc::getenv(name.as_ptr()) };
    if value.is_null() {
        return None;
    }
    // SAFETY: getenv returned a non-null pointer to a NUL-terminated string.
    let bytes = unsafe { CStr::from_ptr(value) }.to_bytes();
    Some(f(bytes))
}

/// Registers fork handlers that hold the tracker's locks across `fork`.
/// The calling process's id (a system call: no allocation).
pub(crate) fn pid() -> u32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    let pid = unsafe { libc::getpid() };
    pid as u32
}

pub(crate) fn register_fork_handlers(
    prepare: unsafe extern "C" fn(),
    parent: unsafe extern "C" fn(),
    child: unsafe extern "C" fn(),
) -> bool {
    // SAFETY: the handlers are plain functions that live for the whole program.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) == 0 }
}

pub use leakwatch_types::Module;

/// Held by the tracker's own `dl_iterate_phdr` calls, and by the fork handlers across
/// `fork`. `dl_iterate_phdr` holds the dynamic loader's lock while it runs; a child forked
/// then would inherit that lock held by a thread it does not have, and its first module
/// listing (every snapshot makes one) would wait forever. With this lock, `fork` waits
/// for a listing in progress to end, and none starts until the child and parent are
/// apart. (Other code's calls, such as a symbolizer's, are not covered: forking a
/// multi-threaded process while another thread is in the loader is unsafe anyway.)
static LOADER: SpinLock<()> = SpinLock::new(());

/// Fork support: takes the loader lock (see [`LOADER`]) before `fork`.
pub(crate) fn lock_loader_for_fork() {
    LOADER.lock_for_fork();
}

/// Fork support: releases the loader lock in the parent or the child.
///
/// # Safety
/// Only after [`lock_loader_for_fork`] on this thread (or, in the child, on the thread
/// that forked).
pub(crate) unsafe fn unlock_loader_after_fork() {
    // SAFETY: the caller guarantees the lock was taken by lock_loader_for_fork.
    unsafe { LOADER.force_unlock() };
}

/// Lists loaded modules (allocates: call it only with tracking suspended).
#[cfg(target_os = "linux")]
pub(crate) fn loaded_modules() -> Vec<Module> {
    let mut modules: Vec<Module> = Vec::new();
    {
        let _loader = LOADER.lock();
        // SAFETY: dl_iterate_phdr calls `collect` synchronously with valid `info` pointers
        // and passes our `data` pointer through unchanged; `modules` outlives the call.
        unsafe {
            libc::dl_iterate_phdr(Some(collect), (&mut modules as *mut Vec<Module>).cast());
        }
    }
    if let Some(main) = modules.first_mut() {
        if main.path.is_empty() {
            if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
                main.path = exe.to_string_lossy().into_owned();
            }
        }
    }
    modules
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn loaded_modules() -> Vec<Module> {
    Vec::new()
}

#[cfg(target_os = "linux")]
unsafe extern "C" fn collect(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: `data` is the `&mut Vec<Module>` passed by `loaded_modules`, and `info` is a
    // valid pointer for the duration of this callback (dl_iterate_phdr's contract).
    let (modules, info) = unsafe { (&mut *data.cast::<Vec<Module>>(), &*info) };
    let base = info.dlpi_addr;
    let path = if info.dlpi_name.is_null() {
        String::new()
    } else {
        // SAFETY: dlpi_name is a NUL-terminated string owned by the loader.
        unsafe { CStr::from_ptr(info.dlpi_name) }
            .to_string_lossy()
            .into_owned()
    };
    let headers: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
        &[]
    } else {
        // SAFETY: the loader guarantees `dlpi_phnum` program headers at `dlpi_phdr`.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
    };
    let (mut start, mut end, mut build_id) = (u64::MAX, 0u64, None);
    // The executable segment: where it starts in memory and in the file, and its end.
    let mut text: Option<(u64, u64, u64)> = None;
    for header in headers {
        if header.p_type == libc::PT_LOAD {
            if header.p_flags & libc::PF_X != 0 && text.is_none() {
                let first = base.wrapping_add(header.p_vaddr);
                text = Some((first, first.wrapping_add(header.p_memsz), header.p_offset));
            }
            start = start.min(base.wrapping_add(header.p_vaddr));
            end = end.max(
                base.wrapping_add(header.p_vaddr)
                    .wrapping_add(header.p_memsz),
            );
        } else if header.p_type == libc::PT_NOTE && build_id.is_none() {
            let at = base.wrapping_add(header.p_vaddr) as usize;
            // SAFETY: PT_NOTE segments are part of a loaded PT_LOAD segment, mapped
            // readable for the module's lifetime, and `p_filesz` bytes long.
            let notes =
                unsafe { std::slice::from_raw_parts(at as *const u8, header.p_filesz as usize) };
            build_id = find_build_id(notes);
        }
    }
    if start == u64::MAX {
        start = base;
        end = base;
    }
    modules.push({
        let mut module = Module::default();
        module.path = path;
        module.base = base;
        module.start = start;
        module.end = end;
        module.build_id = build_id;
        if let Some((text_start, text_end, text_offset)) = text {
            module.text_start = text_start;
            module.text_end = text_end;
            module.text_offset = text_offset;
        }
        module
    });
    0
}

/// Finds the GNU build id (note type 3, owner "GNU") in an ELF note segment.
fn find_build_id(mut notes: &[u8]) -> Option<String> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let align4 = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let name_size = word(notes, 0)? as usize;
        let desc_size = word(notes, 4)? as usize;
        let kind = word(notes, 8)?;
        let name_end = 12 + align4(name_size);
        let desc_end = name_end.checked_add(align4(desc_size))?;
        let name = notes.get(12..12 + name_size)?;
        let desc = notes.get(name_end..name_end + desc_size)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" {
            use std::fmt::Write;
            let mut hex = String::with_capacity(desc.len() * 2);
            for byte in desc {
                let _ = write!(hex, "{byte:02x}");
            }
            return Some(hex);
        }
        notes = notes.get(desc_end..)?;
    }
    None
}

/// The process's resident set size in bytes, from `/proc/self/statm`; 0 where unknown.
/// Allocates: call it only with tracking suspended.
pub(crate) fn resident_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages.saturating_mul(u64::try_from(page_size).unwrap_or(4096))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_zeroed_and_accounted() {
        let before = mapped_bytes();
        let mut map = Mapping::<u64>::zeroed(1 << 16).expect("mmap");
        assert_eq!(map.resident_bytes(), 0, "nothing touched yet");
        map[999] = 7;
        assert_eq!(map[999], 7);
        assert_eq!(
            map.resident_bytes(),
            page_size(),
            "only the touched page is resident"
        );
        assert!(map.iter().all(|&x| x == 0 || x == 7));
        assert!(map.bytes() >= 8 << 16);
        assert!(mapped_bytes() >= before + (8 << 16));
        drop(map);
    }

    #[test]
    fn populated_pages_are_resident_and_unchanged() {
        let mut map = Mapping::<u64>::zeroed(1 << 16).expect("mmap");
        map[0] = 5;
        let page = page_size();
        let pages = map.pages_at(0, 3 * page).expect("pages");
        // SAFETY: `map` is alive for the call.
        unsafe { pages.populate() };
        assert_eq!(map.resident_bytes(), 3 * page, "the three pages, no more");
        let tail = map
            .pages_at(map.bytes() - page, 4 * page)
            .expect("cut at the end");
        // SAFETY: as above.
        unsafe { tail.populate() };
        assert_eq!(map.resident_bytes(), 4 * page);
        assert!(map.pages_at(map.bytes(), page).is_none(), "past the end");
        assert!(map.pages_at(1, page).is_none(), "not page-aligned");
        // Last: reading untouched pages maps the zero page, which counts as resident.
        assert_eq!(map[0], 5);
        assert!(map[1..].iter().all(|&x| x == 0));
    }

    #[test]
    fn discarded_pages_are_whole_and_inside_the_range() {
        let mut map = Mapping::<u64>::zeroed(1 << 16).expect("mmap");
        let per_page = page_size() / 8;
        for i in 0..map.len() {
            map[i] = u64::from(i < per_page || i >= 4 * per_page);
        }
        let pages = map
            .pages_within(per_page - 1..4 * per_page + 1)
            .expect("pages");
        let before = map.resident_bytes();
        // SAFETY: `map` is alive and not written until after the call; the pages (the
        // second to fourth: elements per_page..4 * per_page) hold zeros only.
        unsafe { pages.discard() };
        assert_eq!(map.resident_bytes(), before - 3 * page_size());
        assert!((0..map.len()).all(|i| map[i] == u64::from(i < per_page || i >= 4 * per_page)));
        assert!(map.pages_within(1..per_page).is_none(), "no whole page");
    }

    #[test]
    fn build_id_is_parsed_from_a_note() {
        let mut note = Vec::new();
        note.extend_from_slice(&4u32.to_ne_bytes());
        note.extend_from_slice(&3u32.to_ne_bytes());
        note.extend_from_slice(&3u32.to_ne_bytes());
        note.extend_from_slice(b"GNU\0");
        note.extend_from_slice(&[0xab, 0xcd, 0xef, 0]);
        assert_eq!(find_build_id(&note).as_deref(), Some("abcdef"));
        assert_eq!(find_build_id(&note[..10]), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_main_module_and_stack_are_found() {
        let modules = loaded_modules();
        assert!(!modules.is_empty());
        assert!(modules[0].end > modules[0].start);
        let (lo, hi) = thread_stack_bounds();
        let local = 0u8;
        let here = &local as *const u8 as usize;
        assert!(lo < here && here < hi, "{lo:#x} < {here:#x} < {hi:#x}");
    }
}
