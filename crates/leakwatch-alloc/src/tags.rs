//! Tags: key-value labels (`model=2`, `route=/v1/generate`) a thread carries while it
//! allocates, so reports can say which model, route or tenant a site's memory belongs
//! to.
//!
//! A tag set is interned once, as a small id ([`TagSet`]); a thread's current set is one
//! `Cell<u32>` in its state (`state::ThreadState::tags`), which [`TagSet::enter`] swaps
//! and its guard restores. Only the sampled path reads it: a sampled block's stack gets
//! the marker frame `TAG_FRAME | id` as its outermost frame (as a scope's stacks get
//! theirs), so a stack under two tag sets is two sites with counters of their own, and
//! the block's entry (its site) keeps the set it was allocated under wherever it is
//! freed. The unsampled fast path does not change.
//!
//! The interned sets are leaked on purpose: at most [`MAX_TAG_SETS`] of them (each a few
//! hundred bytes at most: [`MAX_TAGS`] pairs of [`MAX_TAG_BYTES`] each), so a marker can
//! name its set for the life of the process, read without a lock. Their bytes count in
//! the tracker's memory. A set beyond the bound, or one tag too many, gives the overflow
//! set (`leakwatch.overflow=tag sets full`), counted in
//! `OverflowStats::tag_sets_full`: the allocations are still counted, under that set.
//!
//! The intern table's lock guards a fixed index and never allocates (sets are built
//! before it is taken, dropped after it is released when a copy existed), so the fork
//! handler can hold it like the other tables' locks.

use crate::spin::SpinLock;
use crate::state::{THREAD, untracked};
use leakwatch_types::{MAX_TAG_BYTES, MAX_TAG_SETS, MAX_TAGS, OVERFLOW_TAGS, Tags};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering::*};

/// Stack frames in `[TAG_FRAME, stack::SCOPE_FRAME)` are tag-set markers, not return addresses
/// (kernel-half addresses, as scope markers are).
pub(crate) const TAG_FRAME: u64 = 0xFFFE_0000_0000_0000;

/// The id of the overflow set.
const OVERFLOW_ID: u32 = 1;

/// Slots of the intern index: twice the sets, so probes stay short.
const INDEX_SLOTS: usize = 2 * MAX_TAG_SETS;

/// The interned sets by id (0: no tags, never stored); each pointer, once set, stays.
static SETS: [AtomicPtr<Tags>; MAX_TAG_SETS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_TAG_SETS];

/// The id the next ordinary set gets (ids from 2: 1 is the overflow set's). Written
/// with the index locked.
static NEXT: AtomicU32 = AtomicU32::new(OVERFLOW_ID + 1);

/// Bytes of the interned sets (their maps' nodes and strings, estimated).
static BYTES: AtomicU64 = AtomicU64::new(0);

/// Sets and tags refused (see the module docs).
pub(crate) static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Hash index from a set's hash to its id (0: empty slot), open addressing.
static INDEX: SpinLock<[u32; INDEX_SLOTS]> = SpinLock::new([0; INDEX_SLOTS]);

/// An interned tag set: which tags allocations made under it carry. `Copy` and a word
/// wide: building one interns it (once per distinct set), entering it is a swap of the
/// thread's current id.
///
/// ```
/// use leakwatch_alloc::TagSet;
/// let set = TagSet::none().with("model", "2").with("route", "/v1/generate");
/// assert_eq!(set.tags()["model"], "2");
/// {
///     let _guard = set.enter();
///     assert_eq!(TagSet::current(), set);
///     // allocations here are sampled under model=2, route=/v1/generate
/// }
/// assert_eq!(TagSet::current(), TagSet::none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TagSet(u32);

impl TagSet {
    /// No tags.
    pub const fn none() -> TagSet {
        TagSet(0)
    }

    /// The calling thread's current set.
    pub fn current() -> TagSet {
        TagSet(THREAD.with(|t| t.tags.get()))
    }

    /// This set with `key` set to `value` (replacing its value if present). Keys and
    /// values longer than [`MAX_TAG_BYTES`] are cut. Gives the overflow set when the
    /// result would hold more than [`MAX_TAGS`] tags or no more sets can be interned.
    pub fn with(self, key: &str, value: &str) -> TagSet {
        untracked(|| {
            let mut tags = self.tags();
            if tags.contains_key(OVERFLOW_TAGS) {
                return self;
            }
            let key = cut(key);
            if tags.len() >= MAX_TAGS && !tags.contains_key(key) {
                REFUSED.fetch_add(1, Relaxed);
                return overflow();
            }
            tags.insert(key.to_string(), cut(value).to_string());
            intern(tags)
        })
    }

    /// The set of all `pairs` (later pairs win for a repeated key), on top of this one.
    pub fn with_all<'a>(self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> TagSet {
        pairs
            .into_iter()
            .fold(self, |set, (key, value)| set.with(key, value))
    }

    /// Its tags (empty for [`TagSet::none`]).
    pub fn tags(self) -> Tags {
        untracked(|| tags_of(self.0).cloned().unwrap_or_default())
    }

    /// Makes this the calling thread's current set until the guard is dropped (which
    /// restores the set before it).
    pub fn enter(self) -> TagGuard {
        let previous = THREAD.with(|t| t.tags.replace(self.0));
        TagGuard {
            previous,
            _not_send: PhantomData,
        }
    }
}

/// Tags the calling thread with `key = value`, on top of its current tags, until the
/// guard is dropped. See [`TagSet`].
pub fn tag(key: &str, value: &str) -> TagGuard {
    TagSet::current().with(key, value).enter()
}

/// Keeps a thread's tag set in force; dropping it restores the set before. Not `Send`:
/// it restores the thread it was made on.
#[derive(Debug)]
#[must_use = "the tags are in force only while the guard lives"]
pub struct TagGuard {
    previous: u32,
    _not_send: PhantomData<*const ()>,
}

impl Drop for TagGuard {
    fn drop(&mut self) {
        THREAD.with(|t| t.tags.set(self.previous));
    }
}

/// The set of id `id`, if interned.
pub(crate) fn tags_of(id: u32) -> Option<&'static Tags> {
    let index = (id as usize).checked_sub(1)?;
    let pointer = SETS.get(index)?.load(Acquire);
    // SAFETY: a non-null pointer in SETS came from `Box::into_raw` of a set that is
    // never freed or written again (published with Release after it was built).
    unsafe { pointer.as_ref() }
}

/// Bytes the interned sets hold.
pub(crate) fn memory_bytes() -> u64 {
    BYTES.load(Relaxed)
}

/// Interned sets, the overflow set included.
pub(crate) fn count() -> usize {
    let ordinary = NEXT.load(Relaxed) - OVERFLOW_ID - 1;
    ordinary as usize + usize::from(tags_of(OVERFLOW_ID).is_some())
}

/// The id of `tags`, interning it if new (the overflow set when the table is full).
fn intern(tags: Tags) -> TagSet {
    if tags.is_empty() {
        return TagSet::none();
    }
    let hash = hash(&tags);
    // Built before the lock (allocation), dropped after it when not needed.
    let candidate = Box::new(tags);
    let mut spare = None;
    let id = {
        let mut index = INDEX.lock();
        let mut slot = hash as usize % INDEX_SLOTS;
        // Bounded: the index has twice as many slots as there can be sets.
        let mut found = None;
        for _ in 0..INDEX_SLOTS {
            match index[slot] {
                0 => break,
                id if tags_of(id) == Some(&*candidate) => {
                    found = Some(id);
                    break;
                }
                _ => slot = (slot + 1) % INDEX_SLOTS,
            }
        }
        match found {
            Some(id) => {
                spare = Some(candidate);
                Some(id)
            }
            None if index[slot] == 0 && NEXT.load(Relaxed) as usize <= MAX_TAG_SETS => {
                let id = NEXT.load(Relaxed);
                NEXT.store(id + 1, Relaxed);
                store(candidate, id);
                index[slot] = id;
                Some(id)
            }
            None => {
                spare = Some(candidate);
                None
            }
        }
    };
    drop(spare);
    match id {
        Some(id) => TagSet(id),
        None => {
            REFUSED.fetch_add(1, Relaxed);
            overflow()
        }
    }
}

/// The overflow set, interned on first use (it has a slot of its own, id 1, so a full
/// table can always name it).
fn overflow() -> TagSet {
    if tags_of(OVERFLOW_ID).is_none() {
        let mut tags = Tags::new();
        tags.insert(OVERFLOW_TAGS.to_string(), "tag sets full".to_string());
        let candidate = Box::new(tags);
        let index = INDEX.lock();
        if tags_of(OVERFLOW_ID).is_none() {
            store(candidate, OVERFLOW_ID);
        } else {
            drop(index);
            drop(candidate);
        }
    }
    TagSet(OVERFLOW_ID)
}

/// Publishes `tags` as set `id`. Called with the index locked; does not allocate.
fn store(tags: Box<Tags>, id: u32) {
    let bytes = size_of::<Tags>()
        + tags
            .iter()
            .map(|(k, v)| k.capacity() + v.capacity() + 2 * size_of::<String>() + 16)
            .sum::<usize>();
    BYTES.fetch_add(bytes as u64, Relaxed);
    SETS[id as usize - 1].store(Box::into_raw(tags), Release);
}

/// `text` cut to at most [`MAX_TAG_BYTES`] bytes at a character boundary.
fn cut(text: &str) -> &str {
    if text.len() <= MAX_TAG_BYTES {
        return text;
    }
    let mut end = MAX_TAG_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// FNV-1a over the set's keys and values.
fn hash(tags: &Tags) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (key, value) in tags {
        for byte in key.bytes().chain([0]).chain(value.bytes()).chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// Fork support: holds the index lock (its holders never allocate or wait).
pub(crate) fn lock_for_fork() {
    INDEX.lock_for_fork();
}

/// # Safety
/// Only after [`lock_for_fork`], on the thread that ran it (or its child).
pub(crate) unsafe fn unlock_after_fork() {
    // SAFETY: guaranteed by the caller.
    unsafe { INDEX.force_unlock() };
}
