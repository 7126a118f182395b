//! Fork while another thread initialises the tracker (issue 9, item 6): the thread
//! running the one-time configuration at first use, or creating the tables, does not
//! exist in the child, so a child that waited for it would spin forever. The child
//! takes the configuration over, and gives up tables it found half made (tracking stays
//! off in it); neither hangs.
//!
//! Tracking is off in this binary and no scope opens before the tests, so the tables do
//! not exist until the second test creates them.

use leakwatch::{LeakWatch, Mode, Scope, ScopeError};
use leakwatch_tests::{in_forked_child, run};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread;
use std::time::Duration;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system();

/// Starts a thread that waits (without allocating) for the go, then runs `init`;
/// returns the go flag and the thread.
fn initialiser(init: fn() -> bool) -> (Arc<AtomicBool>, thread::JoinHandle<bool>) {
    let go = Arc::new(AtomicBool::new(false));
    let worker = {
        let go = Arc::clone(&go);
        thread::spawn(move || {
            while !go.load(SeqCst) {
                thread::yield_now();
            }
            init()
        })
    };
    (go, worker)
}

/// Waits, without allocating, until a thread runs an initialisation step (held there).
fn wait_until_initialising() {
    for _ in 0..10_000 {
        if leakwatch::__init_running_for_test() {
            return;
        }
        thread::sleep(Duration::from_millis(1));
    }
    panic!("no thread started the initialisation");
}

fn a_child_forked_during_first_use_configures_itself() {
    assert!(leakwatch::is_installed());
    let (go, worker) = initialiser(|| {
        // The first allocation since the restart: configures the tracker, held.
        black_box(Box::new(1u64));
        leakwatch::mode() == Mode::Off
    });
    // From here until the fork this thread must not allocate: it would wait for the
    // held configuration itself.
    leakwatch::__restart_first_use_for_test();
    go.store(true, SeqCst);
    wait_until_initialising();
    in_forked_child(Duration::from_secs(5), || {
        // The configuration was in progress on a thread this process does not have.
        let caught = leakwatch::__init_running_for_test();
        // The first allocation here takes the configuration over.
        let kept = black_box(vec![0u8; 100]);
        caught && kept.len() == 100 && leakwatch::is_installed() && leakwatch::mode() == Mode::Off
    });
    leakwatch::__release_init_for_test();
    assert!(worker.join().unwrap(), "the held configuration finished");
    assert!(leakwatch::is_installed());
}

fn a_child_forked_while_the_tables_are_made_keeps_tracking_off() {
    let (go, worker) = initialiser(|| {
        // The first scope creates the tables, held.
        let scope = Scope::open().expect("the parent's tables");
        let kept = {
            let _inside = scope.handle().enter();
            black_box(vec![0u8; 1000])
        };
        let counted = scope.stats().live_bytes == 1000;
        drop(kept);
        counted
    });
    leakwatch::__hold_init_for_test();
    go.store(true, SeqCst);
    wait_until_initialising();
    in_forked_child(Duration::from_secs(5), || {
        let caught = leakwatch::__init_running_for_test();
        // The tables were half made by a thread this process does not have: no scope,
        // and the snapshot says why; nothing waits.
        let refused = matches!(Scope::open(), Err(ScopeError::NoTables));
        let snapshot = leakwatch::snapshot();
        let said = snapshot
            .warnings
            .iter()
            .any(|w| w.contains("forked while another thread was creating"));
        caught && refused && said
    });
    leakwatch::__release_init_for_test();
    assert!(
        worker.join().unwrap(),
        "the parent's scope counted its allocation"
    );
}

fn main() {
    run(&[
        (
            "a_child_forked_during_first_use_configures_itself",
            a_child_forked_during_first_use_configures_itself,
        ),
        (
            "a_child_forked_while_the_tables_are_made_keeps_tracking_off",
            a_child_forked_while_the_tables_are_made_keeps_tracking_off,
        ),
    ]);
}
