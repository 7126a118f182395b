//! `leakwatch::check` under plain `cargo test` (libtest's threads run these tests at the
//! same time): each kind of leak is caught and pointed at its line, each kind of
//! harmless growth passes, and checks running at once do not see each other.

use leakwatch::LeakWatch;
use leakwatch::check::CheckResult;
use leakwatch_tests::panic_message;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hint::black_box;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system();

/// Where the leaking allocation of each true positive is: (function, line).
static LINES: Mutex<Vec<(&'static str, u32)>> = Mutex::new(Vec::new());

fn note_line(function: &'static str, line: u32) {
    let mut lines = LINES.lock().unwrap();
    if !lines.contains(&(function, line)) {
        lines.push((function, line));
    }
}

fn line_of(function: &str) -> u32 {
    LINES
        .lock()
        .unwrap()
        .iter()
        .find(|(f, _)| *f == function)
        .map(|&(_, l)| l)
        .unwrap_or_else(|| panic!("no line noted for {function}"))
}

/// Asserts that a leak is reported at the line `function` noted, and that every
/// leaking site is in `function` (a container that the leaked values are pushed into
/// grows too, at its own line).
///
/// Sites are matched by file and line: release builds (line-tables-only debug info) name
/// inlined frames without their module path, and closures only `{closure#0}`.
fn assert_caught(result: &CheckResult, function: &str) {
    let leaks: Vec<_> = result.leaks().collect();
    let line = line_of(function);
    let at_line = format!("check.rs:{line})");
    let site = leaks
        .iter()
        .find(|s| s.label.contains(&at_line))
        .unwrap_or_else(|| panic!("no leak at {function} line {line}: {result:#?}"));
    assert!(
        site.bytes_per_run > 0.0 && site.growing_runs >= 2,
        "{site:#?}"
    );
    let near = |label: &str| {
        label
            .rsplit_once("check.rs:")
            .and_then(|(_, l)| l.trim_end_matches(')').parse::<u32>().ok())
            .is_some_and(|l| l.abs_diff(line) <= 2)
    };
    assert!(
        leaks.iter().all(|s| near(&s.label)),
        "only {function} leaks: {:#?}",
        leaks.iter().map(|s| &s.label).collect::<Vec<_>>()
    );
}

fn assert_clean(result: &CheckResult) {
    let leaks: Vec<_> = result.leaks().map(|s| &s.label).collect();
    assert!(leaks.is_empty(), "false leaks: {leaks:#?}\n{result:#?}");
    assert_eq!(result.untracked, 0);
}

// ---------------------------------------------------------------------------------------
// True positives.

static REQUEST_LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[inline(never)]
fn log_request(n: u32) {
    note_line("log_request", line!() + 1);
    let entry = format!("request number {n}");
    REQUEST_LOG.lock().unwrap().push(entry);
}

#[test]
fn a_vec_pushed_into_a_static() {
    let mut n = 0;
    let result = leakwatch::check(|| {
        n += 1;
        log_request(n)
    })
    .run();
    assert_caught(&result, "log_request");
}

#[inline(never)]
fn cache_answer(cache: &mut HashMap<u32, Vec<u8>>, key: u32) -> usize {
    note_line("cache_answer", line!() + 1);
    let answer = cache.entry(key).or_insert_with(|| vec![key as u8; 256]);
    answer.len()
}

#[test]
fn an_unbounded_hashmap_cache() {
    let mut cache = HashMap::new();
    let mut key = 0;
    let result = leakwatch::check(|| {
        key += 1; // every request a new key: nothing is ever evicted
        cache_answer(&mut cache, key)
    })
    .run();
    // The entries and the table's own growth leak, both at that line.
    assert_caught(&result, "cache_answer");
}

struct Node {
    payload: Vec<u8>,
    next: RefCell<Option<Rc<Node>>>,
}

#[inline(never)]
fn make_cycle() {
    note_line("make_cycle", line!() + 1);
    let a = Rc::new(Node {
        payload: vec![1; 100],
        next: RefCell::new(None),
    });
    let b = Rc::new(Node {
        payload: vec![2; 100],
        next: RefCell::new(Some(Rc::clone(&a))),
    });
    *a.next.borrow_mut() = Some(Rc::clone(&b));
    black_box(&a.payload);
}

#[test]
fn an_rc_cycle() {
    let result = leakwatch::check(make_cycle).run();
    let leaks: Vec<_> = result.leaks().collect();
    let lines = line_of("make_cycle")..line_of("make_cycle") + 10;
    let in_make_cycle = |label: &str| {
        label
            .rsplit_once("check.rs:")
            .and_then(|(_, l)| l.trim_end_matches(')').parse::<u32>().ok())
            .is_some_and(|l| lines.contains(&l))
    };
    assert!(!leaks.is_empty(), "{result:#?}");
    assert!(leaks.iter().all(|s| in_make_cycle(&s.label)), "{result:#?}");
    // Two nodes and two payloads per run: 2 Rc boxes + 2 x 100 bytes.
    let blocks: f64 = leaks.iter().map(|s| s.blocks_per_run).sum();
    assert_eq!(blocks, 4.0, "{result:#?}");
}

#[inline(never)]
fn forget_buffer() {
    note_line("forget_buffer", line!() + 1);
    let buffer = vec![0u8; 333];
    std::mem::forget(buffer);
}

#[test]
fn mem_forget() {
    let result = leakwatch::check(forget_buffer).run();
    assert_caught(&result, "forget_buffer");
    assert_eq!(result.leaks().next().unwrap().bytes_per_run, 333.0);
}

#[inline(never)]
fn leak_box() -> &'static mut [u8; 48] {
    note_line("leak_box", line!() + 1);
    Box::leak(Box::new([7u8; 48]))
}

#[test]
fn box_leak() {
    let result = leakwatch::check(|| black_box(leak_box()).len()).run();
    assert_caught(&result, "leak_box");
    assert_eq!(result.leaks().next().unwrap().blocks_per_run, 1.0);
}

thread_local! {
    static SEEN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

#[inline(never)]
fn remember_in_thread_local(n: u32) {
    note_line("remember_in_thread_local", line!() + 1);
    let seen = format!("session {n}");
    SEEN.with(|s| s.borrow_mut().push(seen));
}

#[test]
fn a_thread_local_that_grows() {
    let mut n = 0;
    let result = leakwatch::check(|| {
        n += 1;
        remember_in_thread_local(n)
    })
    .run();
    assert_caught(&result, "remember_in_thread_local");
}

static FROM_WORKERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

#[inline(never)]
fn worker_keeps_a_copy() {
    note_line("worker_keeps_a_copy", line!() + 1);
    let copy = vec![9u8; 512];
    FROM_WORKERS.lock().unwrap().push(copy);
}

#[test]
fn a_leak_in_a_thread_the_checked_code_spawns() {
    let result =
        leakwatch::check(|| leakwatch::check::spawn(worker_keeps_a_copy).join().unwrap()).run();
    assert_caught(&result, "worker_keeps_a_copy");
    let at_line = format!("check.rs:{})", line_of("worker_keeps_a_copy"));
    let copy = result.leaks().find(|s| s.label.contains(&at_line)).unwrap();
    assert_eq!(copy.bytes_per_run, 512.0);
}

// ---------------------------------------------------------------------------------------
// True negatives.

static CONFIG: OnceLock<Vec<String>> = OnceLock::new();

#[test]
fn one_time_lazy_initialisation() {
    let result = leakwatch::check(|| {
        let config = CONFIG.get_or_init(|| (0..100).map(|i| format!("setting {i}")).collect());
        config.len()
    })
    .run();
    assert_clean(&result);
}

/// An LRU of at most four entries.
struct Lru {
    entries: VecDeque<(u32, Vec<u8>)>,
}

impl Lru {
    fn get_or_insert(&mut self, key: u32) -> usize {
        if let Some(i) = self.entries.iter().position(|(k, _)| *k == key) {
            let hit = self.entries.remove(i).unwrap();
            self.entries.push_front(hit);
        } else {
            if self.entries.len() == 4 {
                self.entries.pop_back();
            }
            self.entries.push_front((key, vec![key as u8; 1000]));
        }
        self.entries[0].1.len()
    }
}

#[test]
fn a_bounded_lru_that_fills_during_warmup() {
    let mut lru = Lru {
        entries: VecDeque::with_capacity(5),
    };
    let mut key = 0;
    let result = leakwatch::check(|| {
        key += 1;
        lru.get_or_insert(key)
    })
    .warmup(5)
    .iterations(100)
    .run();
    assert_clean(&result);
}

/// A pool that hands out buffers and takes them back.
struct Pool {
    free: Vec<Vec<u8>>,
}

impl Pool {
    fn with_buffer<R>(&mut self, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        let mut buffer = self.free.pop().unwrap_or_else(|| Vec::with_capacity(4096));
        buffer.clear();
        let r = f(&mut buffer);
        self.free.push(buffer);
        r
    }
}

#[test]
fn a_pool_that_reuses_its_buffers() {
    let mut pool = Pool { free: Vec::new() };
    let mut n = 0u8;
    let result = leakwatch::check(|| {
        n = n.wrapping_add(1);
        pool.with_buffer(|b| {
            b.extend(std::iter::repeat_n(n, 4000));
            b.len()
        })
    })
    .run();
    assert_clean(&result);
}

#[test]
fn code_that_frees_everything() {
    let result = leakwatch::check(|| {
        let words: Vec<String> = (0..50).map(|i| format!("word {i}")).collect();
        let map: HashMap<&str, usize> = words.iter().map(|w| (w.as_str(), w.len())).collect();
        map.len()
    })
    .run();
    assert_clean(&result);
    assert!(
        result.sites.iter().all(|s| s.leaked_bytes() == 0),
        "{result:#?}"
    );
    assert!(result.allocations > 0);
}

// ---------------------------------------------------------------------------------------
// Checks at the same time, budgets, messages.

/// Boxes on purpose: each is its own 100-byte heap block.
#[allow(clippy::vec_box)]
#[inline(never)]
fn parallel_leak(kept: &mut Vec<Box<[u8; 100]>>) {
    kept.push(Box::new([3; 100]));
}

#[test]
fn two_leaky_and_two_clean_checks_at_once() {
    let barrier = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let leaky = i % 2 == 0;
                // Room reserved up front: the Box is the only allocation per run.
                let mut kept = Vec::with_capacity(1_000);
                let result = leakwatch::check(|| {
                    if leaky {
                        parallel_leak(&mut kept);
                    } else {
                        // The same function, everything freed.
                        let mut scratch = Vec::new();
                        parallel_leak(&mut scratch);
                    }
                })
                .iterations(200)
                .run();
                (leaky, result)
            })
        })
        .collect();
    for t in threads {
        let (leaky, result) = t.join().unwrap();
        if leaky {
            let leaks: Vec<_> = result.leaks().collect();
            assert_eq!(leaks.len(), 1, "{result:#?}");
            assert!(leaks[0].label.contains("parallel_leak"), "{result:#?}");
            assert_eq!(
                leaks[0].bytes_per_run, 100.0,
                "only its own leak: {result:#?}"
            );
        } else {
            assert_clean(&result);
        }
    }
}

#[test]
fn the_failure_names_the_site_its_growth_and_how_to_allow_it() {
    let message = panic_message(|| leakwatch::check(forget_buffer).assert_no_leaks());
    let line = line_of("forget_buffer");
    assert!(
        message.starts_with("leakwatch: 1 call site leaks:"),
        "{message}"
    );
    assert!(message.contains("forget_buffer ("), "{message}");
    assert!(message.contains(&format!("check.rs:{line})")), "{message}");
    assert!(
        message.contains("+333 B and +1.0 blocks per run"),
        "{message}"
    );
    assert!(message.contains("stack, innermost first:"), "{message}");
    assert!(
        message.contains("forget_buffer\")   or   .allow(\"tests/check.rs\")"),
        "{message}"
    );
    // The stack ends where the check calls the checked code: no frames of leakwatch's,
    // of the test function, or of libtest's.
    let stack: Vec<&str> = message
        .lines()
        .skip_while(|l| !l.contains("stack, innermost first:"))
        .skip(1)
        .take_while(|l| l.starts_with("     "))
        .collect();
    assert_eq!(stack.len(), 1, "{message}");
    assert!(stack[0].contains("forget_buffer"), "{message}");
}

#[test]
fn an_allowed_site_passes() {
    leakwatch::check(forget_buffer)
        .allow("check::forget_buffer")
        .assert_no_leaks();
    leakwatch::check(forget_buffer)
        .allow("tests/check.rs")
        .assert_no_leaks();
    // Tolerated growth per run.
    leakwatch::check(forget_buffer)
        .max_growth_per_run(333)
        .assert_no_leaks();
}

#[test]
fn budgets_for_leaked_bytes_peak_and_allocations() {
    // 50 runs leaking 333 bytes each: 16,650 bytes kept.
    leakwatch::check(forget_buffer).assert_leaked_at_most(20_000);
    let message = panic_message(|| leakwatch::check(forget_buffer).assert_leaked_at_most(10_000));
    assert!(message.contains("kept more than 9.8 KiB"), "{message}");
    assert!(message.contains("forget_buffer"), "{message}");

    let spike = || black_box(vec![0u8; 1 << 20]).len();
    leakwatch::check(spike).assert_peak_at_most(2 << 20);
    let message = panic_message(|| leakwatch::check(spike).assert_peak_at_most(512 << 10));
    assert!(message.contains("held 1.0 MiB at its peak"), "{message}");

    let three = || {
        let a = black_box(vec![1u8; 10]);
        let b = black_box(vec![2u8; 10]);
        let c = black_box(vec![3u8; 10]);
        a.len() + b.len() + c.len()
    };
    leakwatch::check(three).assert_allocations_at_most(3);
    let message = panic_message(|| leakwatch::check(three).assert_allocations_at_most(2));
    assert!(message.contains("made 3 allocations"), "{message}");
}

/// Runs many checks concurrently with other tests of this binary: a stress on scope
/// slots and isolation.
#[test]
fn many_checks_in_a_row() {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    for _ in 0..20 {
        leakwatch::check(|| {
            RUNS.fetch_add(1, Ordering::Relaxed);
            black_box(vec![0u8; 64]).len()
        })
        .iterations(10)
        .assert_no_leaks();
    }
    assert!(RUNS.load(Ordering::Relaxed) >= 20 * 15);
}
