//! Leak checks in a crate built without frame pointers, under libtest's threads (what
//! `cargo test` is in a user's crate): every leak is labelled with the user's function
//! and line, never with the thread's start, and in release builds closures and async
//! bodies carry their enclosing function.

use leakwatch::LeakWatch;
use leakwatch::check::CheckResult;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::rc::Rc;
use std::sync::Mutex;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system();

/// The leaking line of each function: (function, line). A fixed array: noting a line
/// must not allocate inside a check.
static LINES: Mutex<[(&str, u32); 16]> = Mutex::new([("", 0); 16]);

fn note_line(function: &'static str, line: u32) {
    let mut lines = LINES.lock().unwrap();
    if !lines.iter().any(|&(f, _)| f == function) {
        let free = lines
            .iter_mut()
            .find(|(f, _)| f.is_empty())
            .expect("room for lines");
        *free = (function, line);
    }
}

fn line_of(function: &str) -> u32 {
    let lines = LINES.lock().unwrap();
    let found = lines.iter().find(|(f, _)| *f == function);
    found
        .map(|&(_, l)| l)
        .unwrap_or_else(|| panic!("no line noted for {function}"))
}

/// A label's function, file name and line: `function (path/file.rs:line)`.
fn parts(label: &str) -> (&str, &str, u32) {
    let (function, place) = label
        .rsplit_once(" (")
        .unwrap_or_else(|| panic!("{label:?}"));
    let place = place.strip_suffix(')').unwrap();
    let (path, line) = place
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{label:?}"));
    let file = path.rsplit('/').next().unwrap();
    (
        function,
        file,
        line.parse().unwrap_or_else(|_| panic!("{label:?}")),
    )
}

/// Whether `name` (a label's function) is `function`, with or without this crate's
/// module path and shortened generic arguments (`<…>`); a closure of `f` is
/// `f::{closure#0}` in DWARF names and `f::{{closure}}` in symbol names.
fn names(name: &str, function: &str) -> bool {
    let bare = name
        .strip_prefix("labels::")
        .unwrap_or(name)
        .replace("<…>", "");
    let body = function.rsplit("::").next().unwrap_or(function);
    bare == function || bare.replace("{{closure}}", body) == function
}

/// Asserts that the check found a leak labelled `function (labels.rs:LINE)` with the
/// line `function` noted, and that every leak is labelled with this file's code.
fn assert_labelled(result: &CheckResult, function: &str) -> String {
    let leaks: Vec<&str> = result.leaks().map(|s| s.label.as_str()).collect();
    let line = line_of(function);
    let label = leaks
        .iter()
        .find(|l| parts(l) == (parts(l).0, "labels.rs", line))
        .unwrap_or_else(|| panic!("no leak at {function} line {line}: {result:#?}"));
    assert!(
        names(parts(label).0, function),
        "{label:?} names the wrong function"
    );
    for l in &leaks {
        assert_eq!(
            parts(l).1,
            "labels.rs",
            "a leak outside the test's code: {leaks:#?}"
        );
    }
    label.to_string()
}

/// The unwinder leakwatch uses: without frame pointers, its cached DWARF unwinder.
#[test]
fn built_without_frame_pointers() {
    let result = leakwatch::check(|| black_box(vec![0u8; 10])).run();
    assert_eq!(result.leaks().count(), 0);
    assert_eq!(
        leakwatch::unwinder(),
        leakwatch::Unwinder::CachedDwarf,
        "this crate must be built without frame pointers (RUSTFLAGS= cargo test ...)"
    );
}

static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn log_requests(n: u32) {
    let mut log = LOG.lock().unwrap();
    for i in 0..3 {
        note_line("log_requests", line!() + 1);
        log.push(format!("request {n}.{i}"));
    }
}

#[test]
fn a_vec_pushed_in_a_loop() {
    let mut n = 0;
    let result = leakwatch::check(|| {
        n += 1;
        log_requests(n)
    })
    .run();
    assert_labelled(&result, "log_requests");
}

fn leak_a_box() -> &'static mut [u8; 48] {
    note_line("leak_a_box", line!() + 1);
    Box::leak(Box::new([7u8; 48]))
}

#[test]
fn box_leak() {
    let result = leakwatch::check(|| black_box(leak_a_box()).len()).run();
    assert_labelled(&result, "leak_a_box");
}

fn remember_answer(cache: &mut HashMap<u64, String>, key: u64) -> usize {
    note_line("remember_answer", line!() + 1);
    let answer = format!("answer {key}");
    cache.insert(key, answer);
    cache.len()
}

#[test]
fn a_hashmap_that_only_grows() {
    let mut cache = HashMap::new();
    let mut key = 0;
    let result = leakwatch::check(|| {
        key += 1;
        remember_answer(&mut cache, key)
    })
    .run();
    assert_labelled(&result, "remember_answer");
}

struct Node {
    payload: Vec<u8>,
    next: RefCell<Option<Rc<Node>>>,
}

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
    // Both nodes and both payloads leak, on make_cycle's lines.
    assert_labelled(&result, "make_cycle");
    let first = line_of("make_cycle");
    for site in result.leaks() {
        let (name, _, line) = parts(&site.label);
        assert!(names(name, "make_cycle"), "{:?}", site.label);
        assert!((first..first + 10).contains(&line), "{:?}", site.label);
    }
    let blocks: f64 = result.leaks().map(|s| s.blocks_per_run).sum();
    assert_eq!(blocks, 4.0, "{result:#?}");
}

static FROM_WORKERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn worker_keeps_a_copy() {
    note_line("worker_keeps_a_copy", line!() + 1);
    let copy = vec![9u8; 512];
    FROM_WORKERS.lock().unwrap().push(copy);
}

#[test]
fn a_leak_in_a_spawned_thread() {
    let result =
        leakwatch::check(|| leakwatch::check::spawn(worker_keeps_a_copy).join().unwrap()).run();
    assert_labelled(&result, "worker_keeps_a_copy");
}

static KEPT: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

fn run_with_closure(n: usize) {
    let keep = |len: usize| {
        note_line("run_with_closure::{closure#0}", line!() + 1);
        let buffer = vec![3u8; len].into_boxed_slice();
        KEPT.lock().unwrap().push(buffer);
    };
    (0..2).for_each(|i| keep(n % 7 + i + 16));
}

#[test]
fn a_leak_in_a_closure() {
    let mut n = 0;
    let result = leakwatch::check(|| {
        n += 1;
        run_with_closure(n)
    })
    .run();
    assert_labelled(&result, "run_with_closure::{closure#0}");
}

struct Registry<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Registry<K, V> {
    fn register(&mut self, key: K, value: V) {
        self.entries.push((key, value));
    }
}

fn keep_clone<T: Clone>(into: &mut Vec<T>, value: &T) {
    note_line("keep_clone", line!() + 1);
    into.push(value.clone());
}

#[test]
fn a_leak_through_a_generic_function() {
    let mut kept: Vec<Vec<u64>> = Vec::new();
    let value = vec![1u64; 40];
    let result = leakwatch::check(|| keep_clone(&mut kept, &value)).run();
    assert_labelled(&result, "keep_clone");
    // A generic type's method: the label names it (parameters shortened).
    let mut registry: Registry<String, HashMap<String, Vec<u8>>> = Registry {
        entries: Vec::new(),
    };
    let mut n = 0;
    let result = leakwatch::check(|| {
        n += 1;
        registry.register(format!("key {n}"), HashMap::new())
    })
    .run();
    let label = &result
        .leaks()
        .next()
        .unwrap_or_else(|| panic!("{result:#?}"))
        .label;
    let (name, file, _) = parts(label);
    assert!(
        name.ends_with("register<…>") || name.ends_with("register"),
        "{label:?}"
    );
    assert!(
        !name.contains("String"),
        "generic arguments not shortened: {label:?}"
    );
    assert_eq!(file, "labels.rs", "{label:?}");
    // The stacks keep them: the method's frame or its caller's names the key type.
    let site = result.leaks().next().unwrap();
    let stack = format!("{:?}", site.stack);
    assert!(stack.contains("register"), "{stack}");
}

static PAGES: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

async fn fetch_page(n: usize) -> usize {
    ready().await;
    note_line("fetch_page::{async_fn#0}", line!() + 1);
    let page = vec![n as u8; 64];
    PAGES.lock().unwrap().push(page);
    n
}

async fn ready() {}

/// Polls `future` to completion (it must never wait).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

#[test]
fn a_leak_in_an_async_fn() {
    let mut n = 0;
    let result = leakwatch::check(|| {
        n += 1;
        block_on(fetch_page(n))
    })
    .run();
    assert_labelled(&result, "fetch_page::{async_fn#0}");
}

/// Without debug info (`--profile nodebug`) labels have no file and line, and the
/// result says what to set; with it (debug, release) there is no such warning.
#[test]
fn frames_without_file_and_line_warns() {
    let result = leakwatch::check(|| black_box(leak_a_box()).len()).run();
    let leak = result
        .leaks()
        .next()
        .unwrap_or_else(|| panic!("{result:#?}"));
    let has_line = leak.label.ends_with(')') && leak.label.contains(".rs:");
    if has_line {
        assert!(result.warnings.is_empty(), "{:?}", result.warnings);
    } else {
        assert_eq!(result.warnings.len(), 1, "{result:#?}");
        let warning = &result.warnings[0];
        assert!(
            warning.contains("debug = \"line-tables-only\""),
            "{warning}"
        );
        let message = std::panic::catch_unwind(|| {
            leakwatch::check(|| black_box(leak_a_box()).len()).assert_no_leaks()
        })
        .expect_err("a leak");
        let message = message.downcast_ref::<String>().unwrap();
        assert!(message.contains("warning: "), "{message}");
    }
}
