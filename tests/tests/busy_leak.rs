//! The leak of a busy site, in a real process at the default sampling rate: a handler
//! allocates a 4 KiB buffer per request at 1,500 requests a second and forgets one in
//! ten (an error path that leaks: 0.6 MB/s kept, 5.4 MB/s allocated and freed at once).
//! Beside it, a bounded cache fills and then turns over. The recorder (one snapshot a
//! second, as in a service) must call the error path a `leak` within 30 s, and never call
//! the cache one.

use leakwatch::report::Verdict;
use leakwatch::{LeakWatch, Recorder};
use leakwatch_tests::run;
use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system().enabled();

/// Handles one request: a 4 KiB buffer, kept forever when the request fails.
#[inline(never)]
fn handle_request(i: u64, failed: &mut Vec<Vec<u8>>) -> usize {
    let buffer = vec![(i % 251) as u8; 4096];
    let n = black_box(&buffer).len();
    if i % 10 == 0 {
        failed.push(buffer); // the error path keeps it
    }
    n
}

/// A bounded cache: 4,000 entries of 2 KiB (8 MB), oldest evicted first.
#[inline(never)]
fn cache_response(cache: &mut VecDeque<Vec<u8>>, i: u64) {
    if cache.len() >= 4_000 {
        cache.pop_front();
    }
    cache.push_back(vec![(i % 13) as u8; 2048]);
}

fn busy_leak_is_found_within_30_seconds() {
    let recorder = Recorder::builder().memory_limit(None).start().unwrap();
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let mut found = None;
    let mut cache_called_leak = Vec::new();
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let (mut failed, mut cache) = (Vec::new(), VecDeque::new());
            let mut i = 0u64;
            let begun = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                // 1,500 requests a second, in 10 ms batches.
                let due = (begun.elapsed().as_secs_f64() * 1_500.0) as u64;
                while i < due {
                    black_box(handle_request(i, &mut failed));
                    cache_response(&mut cache, i);
                    i += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            black_box((failed.len(), cache.len()))
        });
        while started.elapsed() < Duration::from_secs(40) {
            std::thread::sleep(Duration::from_secs(1));
            let report = recorder.report();
            for site in &report.sites {
                if site.verdict == Verdict::Leak && site.label.contains("cache_response") {
                    cache_called_leak
                        .push(format!("{:.0} s: {}", report.window_seconds, site.label));
                }
            }
            let leak = report
                .sites
                .iter()
                .find(|s| s.label.contains("handle_request") && s.verdict == Verdict::Leak);
            if let Some(site) = leak {
                found = Some((started.elapsed(), site.label.clone()));
                println!("{}", recorder.text(6));
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap();
    });
    if found.is_none() {
        println!("{}", recorder.text(6));
    }
    recorder.stop();
    let (after, label) = found.expect("the busy site's leak was never called a leak in 40 s");
    println!("leak found after {:.1} s: {label}", after.as_secs_f64());
    assert!(
        after <= Duration::from_secs(30),
        "found only after {after:?}"
    );
    assert!(
        cache_called_leak.is_empty(),
        "the cache was called a leak: {cache_called_leak:?}"
    );
}

fn main() {
    run(&[(
        "busy_leak_is_found_within_30_seconds",
        busy_leak_is_found_within_30_seconds,
    )]);
}
