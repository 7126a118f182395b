//! The worst stall block-table growth causes other threads (issue 9, item 3).
//!
//! Exact mode. One thread keeps `BLOCKS` small blocks (so every shard of the block table
//! grows, the last growths rehashing large tables) while `WORKERS` threads do alloc+free
//! pairs and time each single operation with `Instant`, keeping the worst, and counting
//! operations slower than 100 µs and 1 ms. `control` runs the same workers while the
//! first thread only sleeps: what preemption on this machine costs by itself. `churn`
//! keeps the blocks before the workers start, then replaces each once (as many frees
//! as allocations, so no shard grows): the stalls of the same locks without growth.
//!
//! ```sh
//! cargo build --release -p leakwatch-benches --bin grow_stall
//! target/release/grow_stall grow 16000000 2
//! target/release/grow_stall control 16000000 2
//! ```
//!
//! `GROW_STALL_ATTRIBUTE=1`: every operation over 256 µs, of the workers and of the
//! thread that keeps the blocks, is also attributed: what the thread's own block-table
//! operations did meanwhile (`leakwatch::__block_probes_for_bench`: tables mapped and
//! unmapped, entries migrated, chunks discarded and slices populated, waits for a
//! shard's lock) and what the kernel did to it
//! (`getrusage(RUSAGE_THREAD)`: page faults, voluntary and involuntary context
//! switches). The worker's operations over 1 ms are listed one a line, each with the
//! keeping thread's slow operations that overlap it. Reading those per operation slows
//! both threads down, so the latency figures of such a run are not comparable.
use leakwatch::{BlockProbes, LeakWatch};
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

/// Operations over this long are attributed (`GROW_STALL_ATTRIBUTE`).
const SLOW: Duration = Duration::from_micros(256);

/// At most this many slow operations are kept per thread (the vector never grows, so
/// keeping one does not allocate).
const KEPT_SLOW: usize = 100_000;

/// A thread's counters at one instant: its block-table probes and its resource usage.
#[derive(Clone, Copy)]
struct Counters {
    at: Instant,
    probes: BlockProbes,
    minflt: i64,
    majflt: i64,
    nvcsw: i64,
    nivcsw: i64,
    /// The thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`): with the hypervisor's steal
    /// time accounted (as on KVM), it does not advance while the virtual CPU is not run.
    cpu: Duration,
}

impl Counters {
    #[expect(unsafe_code, reason = "getrusage")]
    fn now() -> Counters {
        // SAFETY: an all-zero `rusage` is a valid value of that plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is a valid, writable `rusage`; RUSAGE_THREAD (Linux) asks for
        // the calling thread's figures. A failure leaves the zeros.
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
        // SAFETY: an all-zero `timespec` is valid.
        let mut cpu: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: `cpu` is a valid, writable `timespec`. A failure leaves the zeros.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut cpu) };
        Counters {
            cpu: Duration::new(cpu.tv_sec as u64, cpu.tv_nsec as u32),
            probes: leakwatch::__block_probes_for_bench(),
            minflt: usage.ru_minflt,
            majflt: usage.ru_majflt,
            nvcsw: usage.ru_nvcsw,
            nivcsw: usage.ru_nivcsw,
            at: Instant::now(),
        }
    }
}

/// One slow operation and what happened during it.
#[derive(Clone, Copy)]
struct Slow {
    /// Since the run's start.
    start: Duration,
    took: Duration,
    alloc: bool,
    probes: BlockProbes,
    minflt: i64,
    majflt: i64,
    nvcsw: i64,
    nivcsw: i64,
    cpu: Duration,
}

impl Slow {
    fn between(epoch: Instant, before: &Counters, after: &Counters, alloc: bool) -> Slow {
        let probes = after.probes.since(&before.probes);
        Slow {
            start: before.at - epoch,
            took: after.at - before.at,
            alloc,
            probes,
            minflt: after.minflt - before.minflt,
            majflt: after.majflt - before.majflt,
            nvcsw: after.nvcsw - before.nvcsw,
            nivcsw: after.nivcsw - before.nivcsw,
            cpu: after.cpu.saturating_sub(before.cpu),
        }
    }

    /// The main thing that happened, in the order that settles it: a wait for a lock
    /// another thread held, the thread's own mapping or unmapping, being preempted, a
    /// page fault that read from disk, migration work, none of those.
    fn cause(&self) -> &'static str {
        let p = &self.probes;
        let took = self.took.as_nanos() as u64;
        if p.wait_ns * 2 > took {
            "lock wait"
        } else if p.map_ns * 2 > took {
            "own mmap"
        } else if p.unmap_ns * 2 > took {
            "own munmap"
        } else if p.discard_ns * 2 > took {
            "own madvise"
        } else if p.populate_ns * 2 > took {
            "own populate"
        } else if self.nivcsw > 0 {
            "preempted"
        } else if self.majflt > 0 {
            "major fault"
        } else if self.cpu * 2 < self.took {
            "not run, not preempted"
        } else if p.moves > 0 || p.discards > 0 {
            "migration"
        } else if self.minflt > 0 {
            "minor fault"
        } else {
            "none of those"
        }
    }

    fn describe(&self) -> String {
        let p = &self.probes;
        format!(
            "{:>9.3} s {:>6} {:>8.0} µs [{}]: wait {} ({:.0} µs), mmap {} ({:.0} µs), munmap {} ({:.0} µs), moves {}, madvise {} ({:.0} µs), populate {} ({:.0} µs); minflt {}, majflt {}, nvcsw {}, nivcsw {}; CPU {:.0} µs",
            self.start.as_secs_f64(),
            if self.alloc { "alloc" } else { "free" },
            self.took.as_secs_f64() * 1e6,
            self.cause(),
            p.waits,
            p.wait_ns as f64 / 1e3,
            p.maps,
            p.map_ns as f64 / 1e3,
            p.unmaps,
            p.unmap_ns as f64 / 1e3,
            p.moves,
            p.discards,
            p.discard_ns as f64 / 1e3,
            p.populates,
            p.populate_ns as f64 / 1e3,
            self.minflt,
            self.majflt,
            self.nvcsw,
            self.nivcsw,
            self.cpu.as_secs_f64() * 1e6,
        )
    }
}

/// Keeps slow operations, up to [`KEPT_SLOW`].
fn keep_slow(kept: &mut Vec<Slow>, slow: Slow) {
    if slow.took > SLOW && kept.len() < kept.capacity() {
        kept.push(slow);
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

/// [`worker`], attributing every slow operation.
#[inline(never)]
fn attributing_worker(stop: &AtomicBool, epoch: Instant) -> (Latency, Vec<Slow>) {
    let first = leakwatch::__block_probes_for_bench();
    let mut worst_wait = 0;
    let mut latency = Latency::default();
    let mut slow = Vec::with_capacity(KEPT_SLOW);
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i = i.wrapping_add(1);
        let before = Counters::now();
        let block = black_box(vec![i as u8; 24 + i % 40]);
        let allocated = Counters::now();
        drop(block);
        let freeing = Counters::now();
        let freed = Counters::now();
        latency.note(allocated.at - before.at, true);
        latency.note(freed.at - freeing.at, false);
        let alloc = Slow::between(epoch, &before, &allocated, true);
        let free = Slow::between(epoch, &freeing, &freed, false);
        worst_wait = worst_wait
            .max(alloc.probes.wait_ns)
            .max(free.probes.wait_ns);
        keep_slow(&mut slow, alloc);
        keep_slow(&mut slow, free);
    }
    let total = leakwatch::__block_probes_for_bench().since(&first);
    println!(
        "worker: {} ops waited for a shard's lock, {:.1} µs in all, the longest {:.1} µs; {} tables mapped ({:.0} µs), {} unmapped ({:.0} µs), {} entries moved, {} chunks discarded ({:.0} µs), {} slices populated ({:.0} µs)",
        total.waits,
        total.wait_ns as f64 / 1e3,
        worst_wait as f64 / 1e3,
        total.maps,
        total.map_ns as f64 / 1e3,
        total.unmaps,
        total.unmap_ns as f64 / 1e3,
        total.moves,
        total.discards,
        total.discard_ns as f64 / 1e3,
        total.populates,
        total.populate_ns as f64 / 1e3,
    );
    (latency, slow)
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

/// [`keep`], attributing every slow allocation.
#[inline(never)]
#[expect(clippy::vec_box, reason = "one heap block per element is the workload")]
fn attributing_keep(blocks: usize, epoch: Instant, slow: &mut Vec<Slow>) -> Vec<Box<[u64; 2]>> {
    let mut kept = Vec::with_capacity(blocks);
    for i in 0..blocks {
        let before = Counters::now();
        let block = Box::new([i as u64; 2]);
        let after = Counters::now();
        kept.push(block);
        keep_slow(slow, Slow::between(epoch, &before, &after, true));
    }
    kept
}

/// Replaces every block of `kept` once, one at a time (an allocation and a free): the
/// block table keeps as many entries, so no shard grows. Attributes every slow
/// replacement into `slow` if given.
#[inline(never)]
fn churn(kept: &mut [Box<[u64; 2]>], epoch: Instant, mut slow: Option<&mut Vec<Slow>>) {
    for (i, block) in kept.iter_mut().enumerate() {
        let before = slow.as_ref().map(|_| Counters::now());
        drop(std::mem::replace(block, Box::new([i as u64; 2])));
        if let (Some(before), Some(slow)) = (before, slow.as_deref_mut()) {
            keep_slow(slow, Slow::between(epoch, &before, &Counters::now(), true));
        }
    }
}

/// Lists the workers' operations over 1 ms with the keeping thread's slow operations
/// that overlap them, and counts the slow operations of both by cause.
fn print_attribution(worker: &[Slow], keeper: &[Slow]) {
    for (name, slow) in [("worker", worker), ("keeper", keeper)] {
        let mut causes: Vec<(&str, u64, u64)> = Vec::new();
        for s in slow {
            let over_1ms = u64::from(s.took > Duration::from_millis(1));
            match causes.iter_mut().find(|(c, _, _)| *c == s.cause()) {
                Some(entry) => {
                    entry.1 += 1;
                    entry.2 += over_1ms;
                }
                None => causes.push((s.cause(), 1, over_1ms)),
            }
        }
        println!(
            "{name}: {} operations over 256 µs, by cause (of them over 1 ms):",
            slow.len()
        );
        for (cause, n, over_1ms) in causes {
            println!("  {cause}: {n} ({over_1ms})");
        }
    }
    println!("worker operations over 1 ms (and the keeper's slow operations overlapping them):");
    for w in worker.iter().filter(|s| s.took > Duration::from_millis(1)) {
        println!("  {}", w.describe());
        let end = w.start + w.took;
        for k in keeper
            .iter()
            .filter(|k| k.start < end && w.start < k.start + k.took)
        {
            println!("      keeper {}", k.describe());
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args.first().map(String::as_str) {
        Some(mode @ ("grow" | "control" | "churn")) => mode,
        _ => {
            eprintln!("usage: grow_stall grow|control|churn [BLOCKS] [WORKERS]");
            return ExitCode::from(2);
        }
    };
    let number = |i: usize, default: usize| match args.get(i).map(|a| a.parse()) {
        None => Some(default),
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => None,
    };
    let (Some(blocks), Some(workers)) = (number(1, 16_000_000), number(2, 2)) else {
        eprintln!("usage: grow_stall grow|control|churn [BLOCKS] [WORKERS]");
        return ExitCode::from(2);
    };
    let attribute = std::env::var_os("GROW_STALL_ATTRIBUTE").is_some();
    leakwatch::set_sample_rate(1);
    leakwatch::enable();
    let stop = AtomicBool::new(false);
    let epoch = Instant::now();
    let mut keeper_slow = Vec::with_capacity(if attribute { KEPT_SLOW } else { 0 });
    let mut worker_slow = Vec::new();
    // `churn`: the table grows to its size before the workers start.
    let mut churned = if mode == "churn" {
        keep(blocks)
    } else {
        Vec::new()
    };
    let (latency, took, memory) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    if attribute {
                        attributing_worker(&stop, epoch)
                    } else {
                        (worker(&stop), Vec::new())
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let start = Instant::now();
        let kept = if mode == "control" {
            std::thread::sleep(Duration::from_secs(5));
            Vec::new()
        } else if mode == "churn" {
            churn(&mut churned, epoch, attribute.then_some(&mut keeper_slow));
            Vec::new()
        } else if attribute {
            attributing_keep(blocks, epoch, &mut keeper_slow)
        } else {
            keep(blocks)
        };
        let took = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        let mut latency = Latency::default();
        for handle in handles {
            let (worker_latency, slow) = handle.join().unwrap();
            latency = latency.merge(worker_latency);
            worker_slow.extend(slow);
        }
        let memory = leakwatch::snapshot().tracker.memory_bytes;
        drop(kept);
        (latency, took, memory)
    });
    println!(
        "{mode}: {blocks} blocks kept (churn: replaced) in {:.2} s; {} workers, {} ops: worst alloc {:.1} µs, worst free {:.1} µs, {} ops > 100 µs, {} > 1 ms; tracker memory {:.1} MB",
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
    drop(churned);
    if attribute {
        worker_slow.sort_by_key(|s| s.start);
        print_attribution(&worker_slow, &keeper_slow);
    }
    ExitCode::SUCCESS
}
