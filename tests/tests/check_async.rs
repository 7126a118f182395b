//! `leakwatch::check_async` on tokio's multi-thread runtime (two workers each), under
//! plain `cargo test` (libtest's threads run these tests at the same time): a handler's
//! leaks are caught and pointed at their lines, including one made in a task spawned
//! through `leakwatch::check::inherit` and polled on a worker; a clean handler whose
//! task runs on a worker passes, with the task's memory counted; a task that outlives
//! its run's future is waited for; a task that never ends is a leak; and a task spawned
//! without `inherit` is not tracked.
//!
//! Each leak is at a line the leaking function stores in its own static (no allocation:
//! storing it must not be an allocation of the checked code).

use leakwatch::LeakWatch;
use leakwatch::check::{CheckResult, CheckSite, inherit};
use leakwatch_tests::panic_message;
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::thread::ThreadId;
use std::time::Duration;
use tokio::sync::oneshot;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system();

/// A multi-thread runtime of two workers (built outside the check: not counted).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("build a tokio runtime")
}

const WARMUP: usize = 10;
const ITERATIONS: usize = 40;

/// The site whose label points at `line` of this file, among the leaks.
fn leak_at<'r>(result: &'r CheckResult, line: &AtomicU32) -> &'r CheckSite {
    let at_line = format!("check_async.rs:{})", line.load(Relaxed));
    result
        .leaks()
        .find(|s| s.label.contains(&at_line))
        .unwrap_or_else(|| panic!("no leak at {at_line}: {result:#?}"))
}

fn assert_clean(result: &CheckResult) {
    let leaks: Vec<_> = result.leaks().map(|s| &s.label).collect();
    assert!(leaks.is_empty(), "false leaks: {leaks:#?}\n{result:#?}");
    assert_eq!(result.untracked, 0);
}

// ---------------------------------------------------------------------------------------
// A handler that leaks, on its own thread and in a task on a worker.

static HANDLER_LINE: AtomicU32 = AtomicU32::new(0);
static TASK_LINE: AtomicU32 = AtomicU32::new(0);
async fn leaky_task(n: u32, handler: ThreadId, on_a_worker: &'static AtomicU32) {
    if std::thread::current().id() != handler {
        on_a_worker.fetch_add(1, Relaxed);
    }
    TASK_LINE.store(line!() + 1, Relaxed);
    black_box(Box::leak(Box::new([n as u8; 96])));
}

/// Counts in `on_a_worker` the runs whose task ran on another thread than the handler.
async fn leaky_handler(n: u32, on_a_worker: &'static AtomicU32) -> usize {
    HANDLER_LINE.store(line!() + 1, Relaxed);
    let kept = black_box(Box::leak(Box::new([n as u8; 64])));
    tokio::task::yield_now().await;
    let handler = std::thread::current().id();
    tokio::spawn(inherit(leaky_task(n, handler, on_a_worker)))
        .await
        .expect("the task ran");
    kept.len()
}

#[test]
fn leaks_of_a_handler_and_of_its_task_on_a_worker_are_caught() {
    static ON_A_WORKER: AtomicU32 = AtomicU32::new(0);
    let runtime = runtime();
    let mut n = 0;
    let result = leakwatch::check_async(
        || {
            n += 1;
            leaky_handler(n, &ON_A_WORKER)
        },
        |future| runtime.block_on(future),
    )
    .warmup(WARMUP)
    .iterations(ITERATIONS)
    .run();
    // Every task ran on a worker, not on the thread that polled its handler.
    assert_eq!(ON_A_WORKER.load(Relaxed), (WARMUP + ITERATIONS) as u32);
    let handler = leak_at(&result, &HANDLER_LINE);
    assert!(handler.label.contains("leaky_handler"), "{handler:#?}");
    assert_eq!(handler.bytes_per_run, 64.0, "{handler:#?}");
    assert_eq!(handler.blocks_per_run, 1.0, "{handler:#?}");
    let task = leak_at(&result, &TASK_LINE);
    assert!(task.label.contains("leaky_task"), "{task:#?}");
    assert_eq!(task.bytes_per_run, 96.0, "{task:#?}");
    assert_eq!(task.blocks_per_run, 1.0, "{task:#?}");
    // Nothing else leaks: the runtime's record of each task is freed when it ends.
    assert_eq!(result.leaks().count(), 2, "{result:#?}");
    // Stacks end where the scope's poll begins: none of the runtime's frames.
    for site in [handler, task] {
        assert!(
            site.stack.iter().all(|f| !f.label().contains("tokio")),
            "{site:#?}"
        );
    }
}

#[test]
fn the_failure_names_the_task_and_its_line() {
    static ON_A_WORKER: AtomicU32 = AtomicU32::new(0);
    let runtime = runtime();
    let mut n = 0;
    let message = panic_message(|| {
        leakwatch::check_async(
            || {
                n += 1;
                leaky_handler(n, &ON_A_WORKER)
            },
            |future| runtime.block_on(future),
        )
        .warmup(WARMUP)
        .iterations(ITERATIONS)
        .assert_no_leaks()
    });
    assert!(
        message.starts_with("leakwatch: 2 call sites leak:"),
        "{message}"
    );
    for (function, line) in [("leaky_task", &TASK_LINE), ("leaky_handler", &HANDLER_LINE)] {
        let at = format!("check_async.rs:{})", line.load(Relaxed));
        assert!(
            message
                .lines()
                .any(|l| l.contains(function) && l.contains(&at)),
            "{function} at {at}: {message}"
        );
    }
    assert!(
        message.contains("+96 B and +1.0 blocks per run"),
        "{message}"
    );
    assert!(
        message.contains("+64 B and +1.0 blocks per run"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------
// A clean handler: allocates, awaits, sends to a task on a worker and gets its answer.

/// The answering task's scratch buffer: larger than anything else the handler holds, so
/// a peak this high shows the task's allocations were counted.
const SCRATCH: usize = 64 * 1024;

async fn answer(question: oneshot::Receiver<String>, reply: oneshot::Sender<Vec<u8>>) {
    let question = question.await.expect("the handler asks");
    // A worker's first deferred wake-up allocates its buffer: once per worker, a step.
    tokio::task::yield_now().await;
    let mut scratch = vec![0u8; SCRATCH];
    scratch[..question.len()].copy_from_slice(question.as_bytes());
    let _ = reply.send(scratch[..question.len()].to_vec());
}

async fn clean_handler(n: u32) -> usize {
    let question = format!("request number {n}");
    tokio::task::yield_now().await;
    let (ask, asked) = oneshot::channel();
    let (answered, answer_rx) = oneshot::channel();
    let task = tokio::spawn(inherit(answer(asked, answered)));
    ask.send(question).expect("the task listens");
    let reply = answer_rx.await.expect("the task answers");
    task.await.expect("the task ran");
    reply.len()
}

#[test]
fn a_clean_handler_with_a_task_on_a_worker_passes() {
    let runtime = runtime();
    let mut n = 0;
    let result = leakwatch::check_async(
        || {
            n += 1;
            clean_handler(n)
        },
        |future| runtime.block_on(future),
    )
    .warmup(WARMUP)
    .iterations(ITERATIONS)
    .run();
    assert_clean(&result);
    // What this file's code allocated was all freed by the end. (A worker that first
    // defers a wake-up during the measured runs keeps its buffer, a one-time step at
    // tokio's `Defer::defer`: not a leak, but not nothing either.)
    assert!(
        result
            .sites
            .iter()
            .filter(|s| s.label.contains("check_async.rs"))
            .all(|s| s.leaked_bytes() == 0),
        "{result:#?}"
    );
    // The task's scratch buffer, allocated on a worker, counted in the check.
    assert!(result.peak_bytes >= SCRATCH as i64, "{result:#?}");
    assert!(result.allocations > 0);
    // The same through the asserting form.
    leakwatch::check_async(
        || {
            n += 1;
            clean_handler(n)
        },
        |future| runtime.block_on(future),
    )
    .warmup(WARMUP)
    .iterations(ITERATIONS)
    .assert_no_leaks();
}

// ---------------------------------------------------------------------------------------
// Tasks that outlive their run's future.

static STRAGGLER_LINE: AtomicU32 = AtomicU32::new(0);

async fn straggler(n: u32, handler_done: oneshot::Receiver<()>) {
    STRAGGLER_LINE.store(line!() + 1, Relaxed);
    let held = vec![n as u8; 10_000];
    // Resolves (with an error) when the handler has completed and dropped its sender.
    let _ = handler_done.await;
    // Still busy for a while after the handler completed.
    std::thread::sleep(Duration::from_millis(5));
    black_box(&held);
}

async fn handler_with_a_straggler(n: u32) -> usize {
    let (_done, handler_done) = oneshot::channel::<()>();
    // Detached: nothing awaits it.
    drop(tokio::spawn(inherit(straggler(n, handler_done))));
    tokio::task::yield_now().await;
    n as usize
}

#[test]
fn a_task_still_running_when_its_run_ends_is_waited_for() {
    let runtime = runtime();
    let mut n = 0;
    let result = leakwatch::check_async(
        || {
            n += 1;
            handler_with_a_straggler(n)
        },
        |future| runtime.block_on(future),
    )
    .warmup(WARMUP)
    .iterations(ITERATIONS)
    .run();
    assert_clean(&result);
    assert!(
        result.warnings.iter().all(|w| !w.contains("still running")),
        "{result:#?}"
    );
    // Each run's straggler freed its 10,000 bytes before the run's reading.
    let at_line = format!("check_async.rs:{})", STRAGGLER_LINE.load(Relaxed));
    assert!(
        result
            .sites
            .iter()
            .filter(|s| s.label.contains(&at_line))
            .all(|s| s.live_at_end == 0),
        "{result:#?}"
    );
    assert!(result.peak_bytes >= 10_000, "{result:#?}");
}

static FOREVER_LINE: AtomicU32 = AtomicU32::new(0);

async fn handler_with_a_task_that_never_ends(n: u32) -> usize {
    FOREVER_LINE.store(line!() + 1, Relaxed);
    let held = vec![n as u8; 2048];
    drop(tokio::spawn(inherit(async move {
        std::future::pending::<()>().await;
        black_box(held);
    })));
    n as usize
}

#[test]
fn a_task_that_never_ends_is_a_leak_and_a_warning() {
    let runtime = runtime();
    let mut n = 0;
    let result = leakwatch::check_async(
        || {
            n += 1;
            handler_with_a_task_that_never_ends(n)
        },
        |future| runtime.block_on(future),
    )
    .warmup(WARMUP)
    .iterations(ITERATIONS)
    .task_timeout(Duration::from_millis(100))
    .run();
    let held = leak_at(&result, &FOREVER_LINE);
    assert_eq!(held.bytes_per_run, 2048.0, "{held:#?}");
    assert_eq!(held.blocks_per_run, 1.0, "{held:#?}");
    assert!(
        result
            .warnings
            .iter()
            .any(|w| w.contains("still running 100ms after a run's future completed")),
        "{result:#?}"
    );
    // The runtime's shutdown drops the tasks that never ended.
    drop(runtime);
}

// ---------------------------------------------------------------------------------------
// The scope follows the future's polls, and only them.

/// Polls `future` once on this thread.
fn poll_once<F: std::future::Future>(future: F) -> std::task::Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::pin!(future).poll(&mut cx)
}

#[test]
fn a_scoped_future_is_in_the_scope_only_while_it_is_polled() {
    use leakwatch::{Scope, ScopeHandle};
    let scope = Scope::open().expect("open a scope");
    let other = Scope::open().expect("open another scope");
    let future = {
        let _inside = scope.handle().enter();
        inherit(async {
            let vector = black_box(vec![1u8; 100]);
            (ScopeHandle::current(), vector)
        })
    };
    assert_eq!(ScopeHandle::current(), None);
    // Polled by a thread that is in another scope: in the future's for the poll, then
    // back in its own.
    let elsewhere = other.handle().enter();
    let std::task::Poll::Ready((during, vector)) = poll_once(future) else {
        panic!("the future is ready at once");
    };
    assert_eq!(during, Some(scope.handle()));
    assert_eq!(ScopeHandle::current(), Some(other.handle()));
    assert_eq!(scope.live_bytes(), 100);
    assert_eq!(other.live_bytes(), 0);
    drop(vector);
    assert_eq!(scope.live_bytes(), 0);
    // Outside any check, `inherit` changes nothing.
    drop(elsewhere);
    let std::task::Poll::Ready(outside) = poll_once(inherit(async { ScopeHandle::current() }))
    else {
        panic!("the future is ready at once");
    };
    assert_eq!(outside, None);
}

// ---------------------------------------------------------------------------------------
// A task spawned without `inherit` is not tracked.

static UNTRACKED_LEAKS: AtomicU32 = AtomicU32::new(0);

async fn untracked_task(n: u32) {
    black_box(Box::leak(Box::new([n as u8; 4096])));
    UNTRACKED_LEAKS.fetch_add(1, Relaxed);
}

async fn handler_spawning_plainly(n: u32) -> usize {
    tokio::spawn(untracked_task(n)).await.expect("the task ran");
    n as usize
}

#[test]
fn a_leak_in_a_task_spawned_without_inherit_is_not_seen() {
    let runtime = runtime();
    let mut n = 0;
    let result = leakwatch::check_async(
        || {
            n += 1;
            handler_spawning_plainly(n)
        },
        |future| runtime.block_on(future),
    )
    .warmup(WARMUP)
    .iterations(ITERATIONS)
    .run();
    // The task leaked 4 KiB in every run...
    assert_eq!(UNTRACKED_LEAKS.load(Relaxed), (WARMUP + ITERATIONS) as u32);
    // ... and the check saw none of it: the task's polls were outside its scope.
    assert_clean(&result);
    assert!(
        result
            .sites
            .iter()
            .all(|s| !s.label.contains("untracked_task")),
        "{result:#?}"
    );
    assert!(result.peak_bytes < 4096, "{result:#?}");
}
