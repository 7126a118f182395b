//! Attribution: a block allocated in function `foo` is reported at a site whose
//! symbolized stack names `foo`, with its file and the line of the allocation, whichever
//! unwinder captured the stack.

use leakwatch::{LeakWatch, Snapshot, Symbol, Symbolizer, Unwinder};
use leakwatch_tests::{is_runtime_frame, run};
use std::hint::black_box;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system().enabled().exact();

/// Allocates a distinctive block and returns it with the line that allocated it.
#[inline(never)]
fn foo() -> (Vec<u8>, u32) {
    let line = line!() + 1;
    let block = vec![7u8; 123_457];
    (black_box(block), line)
}

/// Calls `foo` through another function so the stack has depth to check.
#[inline(never)]
fn bar() -> (Vec<u8>, u32) {
    let kept = foo();
    black_box(kept)
}

/// The symbolized frames of the site holding exactly `bytes` live bytes.
fn stack_of_site_with(snapshot: &Snapshot, bytes: u64) -> Vec<Symbol> {
    let site = snapshot
        .sites
        .iter()
        .find(|s| s.live_bytes == bytes)
        .unwrap_or_else(|| panic!("no site holds {bytes} bytes"));
    Symbolizer::new().symbolize_stack(&site.frames)
}

fn check_attribution(unwinder: Unwinder) {
    leakwatch::set_unwinder(unwinder);
    let (block, line) = bar();
    let snapshot = leakwatch::snapshot();
    let frames = stack_of_site_with(&snapshot, block.len() as u64);
    let user: Vec<&Symbol> = frames.iter().filter(|s| !is_runtime_frame(s)).collect();
    let describe = || {
        frames
            .iter()
            .map(|s| format!("{:?} {:?}:{:?}", s.function, s.file, s.line))
            .collect::<Vec<_>>()
            .join("\n  ")
    };
    let first = user
        .first()
        .unwrap_or_else(|| panic!("no user frame in\n  {}", describe()));
    assert!(
        first
            .function
            .as_deref()
            .is_some_and(|f| f.ends_with("foo")),
        "first user frame {first:?}\n  {}",
        describe()
    );
    assert!(
        first
            .file
            .as_deref()
            .is_some_and(|f| f.ends_with("tests/attribution.rs")),
        "{first:?}"
    );
    assert_eq!(first.line, Some(line), "{first:?}");
    let second = user.get(1).expect("a caller frame");
    assert!(
        second
            .function
            .as_deref()
            .is_some_and(|f| f.ends_with("bar")),
        "{second:?}\n  {}",
        describe()
    );
    drop(block);
}

fn auto_picks_frame_pointers_in_this_build() {
    // The workspace builds with -C force-frame-pointers=yes (.cargo/config.toml), so the
    // probe must find a working frame-pointer chain.
    let kept = black_box(vec![0u8; 100]);
    assert_eq!(leakwatch::snapshot().unwinder, Unwinder::FramePointers);
    drop(kept);
}

fn foo_is_named_with_frame_pointers() {
    check_attribution(Unwinder::FramePointers);
}

fn foo_is_named_with_dwarf_unwinding() {
    check_attribution(Unwinder::Backtrace);
    let snapshot = leakwatch::snapshot();
    assert!(
        snapshot
            .warnings
            .iter()
            .any(|w| w.contains("force-frame-pointers")),
        "{:?}",
        snapshot.warnings
    );
    leakwatch::set_unwinder(Unwinder::FramePointers);
}

fn foo_is_named_with_cached_dwarf_unwinding() {
    check_attribution(Unwinder::CachedDwarf);
    let snapshot = leakwatch::snapshot();
    assert_eq!(snapshot.unwinder, Unwinder::CachedDwarf);
    assert_eq!(snapshot.tracker.slow_captures, 0, "{:?}", snapshot.warnings);
    leakwatch::set_unwinder(Unwinder::FramePointers);
}

fn main() {
    run(&[
        (
            "auto_picks_frame_pointers_in_this_build",
            auto_picks_frame_pointers_in_this_build,
        ),
        (
            "foo_is_named_with_frame_pointers",
            foo_is_named_with_frame_pointers,
        ),
        (
            "foo_is_named_with_dwarf_unwinding",
            foo_is_named_with_dwarf_unwinding,
        ),
        (
            "foo_is_named_with_cached_dwarf_unwinding",
            foo_is_named_with_cached_dwarf_unwinding,
        ),
    ]);
}
