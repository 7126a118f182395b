//! The worst stall block-table growth causes other threads (issue 9, item 3).
//!
//! Exact mode. One thread keeps `BLOCKS` small blocks (so every shard of the block table
//! grows, the last growths rehashing large tables) while `WORKERS` threads do alloc+free
//! pairs and time each single operation with `Instant`, keeping the worst, and counting
//! operations slower than 100 µs and 1 ms. `control` runs the same workers while the
//! first thread only sleeps: what preemption on this machine costs by itself.
//!
//! ```sh
//! cargo build --release -p leakwatch-benches --bin grow_stall
//! target/release/grow_stall grow 16000000 2
//! target/release/grow_stall control 16000000 2
//! ```
use leakwatch::LeakWatch;
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system();

/// One worker's latencies.
#[derive(Debug, Default, Clone, Copy)]
struct Latency {
    ops: u64,
    worst_alloc: Duration,
    worst_free: Duration,
    over_100us: u64,
    over_1ms: u64,
    /// Operations by latency: `[2^i, 2^(i+1))` µs in slot `i` (below 1 µs not counted).
    histogram: [u64; 20],
}

impl Latency {
    fn note(&mut self, took: Duration, alloc: bool) {
        self.ops += 1;
        if alloc {
            self.worst_alloc = self.worst_alloc.max(took);
        } else {
            self.worst_free = self.worst_free.max(took);
        }
        self.over_100us += u64::from(took > Duration::from_micros(100));
        self.over_1ms += u64::from(took > Duration::from_millis(1));
        let micros = took.as_micros() as u64;
        if micros > 0 {
            self.histogram[(micros.ilog2() as usize).min(19)] += 1;
        }
    }

    fn merge(self, other: Latency) -> Latency {
        Latency {
            ops: self.ops + other.ops,
            worst_alloc: self.worst_alloc.max(other.worst_alloc),
            worst_free: self.worst_free.max(other.worst_free),
            over_100us: self.over_100us + other.over_100us,
            over_1ms: self.over_1ms + other.over_1ms,
            histogram: std::array::from_fn(|i| self.histogram[i] + other.histogram[i]),
        }
    }
}

#[inline(never)]
fn worker(stop: &AtomicBool) -> Latency {
    let mut latency = Latency::default();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i = i.wrapping_add(1);
        let start = Instant::now();
        let block = black_box(vec![i as u8; 24 + i % 40]);
        let allocated = Instant::now();
        drop(block);
        let freed = Instant::now();
        latency.note(allocated - start, true);
        latency.note(freed - allocated, false);
    }
    latency
}

#[inline(never)]
#[expect(clippy::vec_box, reason = "one heap block per element is the workload")]
fn keep(blocks: usize) -> Vec<Box<[u64; 2]>> {
    let mut kept = Vec::with_capacity(blocks);
    for i in 0..blocks {
        kept.push(Box::new([i as u64; 2]));
    }
    kept
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let grow = match args.first().map(String::as_str) {
        Some("grow") => true,
        Some("control") => false,
        _ => {
            eprintln!("usage: grow_stall grow|control [BLOCKS] [WORKERS]");
            return ExitCode::from(2);
        }
    };
    let number = |i: usize, default: usize| match args.get(i).map(|a| a.parse()) {
        None => Some(default),
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => None,
    };
    let (Some(blocks), Some(workers)) = (number(1, 16_000_000), number(2, 2)) else {
        eprintln!("usage: grow_stall grow|control [BLOCKS] [WORKERS]");
        return ExitCode::from(2);
    };
    leakwatch::set_sample_rate(1);
    leakwatch::enable();
    let stop = AtomicBool::new(false);
    let (latency, took, memory) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers).map(|_| s.spawn(|| worker(&stop))).collect();
        std::thread::sleep(Duration::from_millis(200));
        let start = Instant::now();
        let kept = if grow {
            keep(blocks)
        } else {
            std::thread::sleep(Duration::from_secs(5));
            Vec::new()
        };
        let took = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        let latency = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold(Latency::default(), Latency::merge);
        let memory = leakwatch::snapshot().tracker.memory_bytes;
        drop(kept);
        (latency, took, memory)
    });
    println!(
        "{}: {blocks} blocks kept in {:.2} s; {} workers, {} ops: worst alloc {:.1} µs, worst free {:.1} µs, {} ops > 100 µs, {} > 1 ms; tracker memory {:.1} MB",
        if grow { "grow" } else { "control" },
        took.as_secs_f64(),
        workers,
        latency.ops,
        latency.worst_alloc.as_secs_f64() * 1e6,
        latency.worst_free.as_secs_f64() * 1e6,
        latency.over_100us,
        latency.over_1ms,
        memory as f64 / 1e6,
    );
    if std::env::var_os("GROW_STALL_HISTOGRAM").is_some() {
        let last = latency.histogram.iter().rposition(|&n| n > 0).unwrap_or(0);
        for (i, n) in latency.histogram[..=last].iter().enumerate() {
            println!("  {:>7} µs and over: {n}", 1u64 << i);
        }
    }
    ExitCode::SUCCESS
}
