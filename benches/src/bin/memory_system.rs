//! Peak memory of the retained-growth workload on the bare system allocator.
#[global_allocator]
static ALLOC: std::alloc::System = std::alloc::System;

fn main() {
    let row = leakwatch_benches::memory::measure("system", || None);
    println!("{row}");
}
