use leakwatch::{LeakWatch, Symbolizer};
#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system().enabled().exact();
#[inline(never)]
fn site_small(kept: &mut Vec<usize>) {
    for i in 0..10 {
        let layout = std::alloc::Layout::from_size_align(1 + i, 8).unwrap();
        #[allow(unsafe_code)]
        let ptr = unsafe { std::alloc::alloc(layout) };
        kept.push(ptr as usize);
    }
}
fn main() {
    let mut k = Vec::with_capacity(100);
    site_small(&mut k);
    let s = leakwatch::snapshot();
    let mut sym = Symbolizer::new();
    println!("unwinder {:?}", s.unwinder);
    for site in s.sites.iter().filter(|s| s.live_bytes > 0).take(8) {
        println!("site {} live {}", site.id, site.live_bytes);
        for f in sym.symbolize_stack(&site.frames).iter().take(14) {
            println!("   {:x} {:?} {:?}:{:?}", f.address, f.function, f.file, f.line);
        }
    }
}
