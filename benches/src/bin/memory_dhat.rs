//! Peak memory of the retained-growth workload under dhat-rs's heap profiler.
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() {
    let profile = std::env::temp_dir().join("leakwatch-memory-dhat-heap.json");
    let _profiler = dhat::Profiler::builder().file_name(&profile).build();
    let row = leakwatch_benches::memory::measure("dhat", || None);
    println!("{row}");
}
