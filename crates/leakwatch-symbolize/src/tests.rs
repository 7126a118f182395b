use super::*;
use object::{Object, ObjectSegment};
use std::path::{Path, PathBuf};

/// The running test binary as a module: its path, and its load bias from
/// `/proc/self/maps` (the lowest mapping of the file at offset 0, less the lowest
/// loadable segment's address).
fn this_binary() -> (PathBuf, u64, u64, u64) {
    let exe = std::fs::canonicalize("/proc/self/exe").expect("exe");
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let (mut start, mut end) = (u64::MAX, 0);
    let mut first = None;
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || exe != Path::new(fields[5]) {
            continue;
        }
        let (s, e) = fields[0].split_once('-').expect("range");
        let (s, e) = (
            u64::from_str_radix(s, 16).expect("start"),
            u64::from_str_radix(e, 16).expect("end"),
        );
        if fields[2].trim_start_matches('0').is_empty() && first.is_none() {
            first = Some(s);
        }
        start = start.min(s);
        end = end.max(e);
    }
    let bytes = std::fs::read(&exe).expect("read exe");
    let file = object::File::parse(&*bytes).expect("parse exe");
    let lowest = file.segments().map(|s| s.address()).min().unwrap_or(0);
    let base = first.expect("mapping at offset 0") - (lowest & !0xfff);
    (exe, base, start, end)
}

#[inline(never)]
fn a_known_function() -> Vec<u64> {
    let mut ips = Vec::new();
    backtrace::trace(|f| {
        ips.push(f.ip() as u64);
        true
    });
    std::hint::black_box(ips)
}

fn module(path: &str, base: u64, start: u64, end: u64) -> ModuleRef<'_> {
    ModuleRef {
        path,
        base,
        start,
        end,
        build_id: None,
    }
}

#[test]
fn resolves_return_addresses_to_functions_files_lines_and_symbols() {
    let ips = a_known_function();
    let (exe, base, start, end) = this_binary();
    let path = exe.display().to_string();
    let mut symbolizer = Symbolizer::new();
    let frames = symbolizer.symbolize(&[module(&path, base, start, end)], &ips, &mut LoadedFiles);
    assert_eq!(frames.len(), ips.len());
    let ours = frames
        .iter()
        .flatten()
        .find(|s| {
            s.function
                .as_deref()
                .is_some_and(|f| f.ends_with("a_known_function"))
        })
        .unwrap_or_else(|| panic!("{frames:#?}"));
    assert!(
        ours.file
            .as_deref()
            .is_some_and(|f| f.ends_with("tests.rs")),
        "{ours:?}"
    );
    assert!(ours.line.is_some_and(|l| l > 0), "{ours:?}");
    let outer = frames
        .iter()
        .flatten()
        .find(|s| s.address == ours.address && !s.inlined)
        .expect("outermost frame");
    assert_eq!(
        outer.symbol.as_deref(),
        Some("leakwatch_symbolize::tests::a_known_function"),
        "{frames:#?}"
    );
    // Every address has at least one frame, and exactly one outermost frame.
    for (address, f) in ips.iter().zip(&frames) {
        assert_eq!(f.iter().filter(|s| !s.inlined).count(), 1, "{f:?}");
        assert!(f.iter().all(|s| s.address == *address));
    }
    let stats = symbolizer.stats();
    assert_eq!(stats.files_mapped, 1, "{stats:?}");
    assert_eq!(stats.batches, 1);
    assert!(stats.peak_mapped_bytes > 0);
    assert!(
        symbolizer.warnings().is_empty(),
        "{:?}",
        symbolizer.warnings()
    );
}

#[test]
fn the_result_cache_is_bounded_and_counts_what_it_drops() {
    let (exe, base, start, end) = this_binary();
    let path = exe.display().to_string();
    let modules = [module(&path, base, start, end)];
    // Five distinct addresses inside the binary.
    let f = a_known_function as *const () as usize as u64 + 1;
    let addresses: Vec<u64> = (0..5).map(|i| f + i).collect();
    let mut symbolizer = Symbolizer::with_capacity(2);
    let first = symbolizer.symbolize(&modules, &addresses, &mut LoadedFiles);
    let stats = symbolizer.stats();
    assert_eq!(stats.cached, 2, "{stats:?}");
    assert_eq!(stats.evictions, 3, "{stats:?}");
    assert_eq!(stats.cache_hits, 0);
    assert!(stats.cache_bytes > 0);
    // The last two are cached: asked again, they come from the cache, with the same
    // frames, and no file is mapped for them.
    let again = symbolizer.symbolize(&modules, &addresses[3..], &mut LoadedFiles);
    assert_eq!(again, first[3..]);
    let stats = symbolizer.stats();
    assert_eq!(stats.cache_hits, 2, "{stats:?}");
    assert_eq!(stats.files_mapped, 1, "{stats:?}");
    // An evicted one is resolved again (and evicts another).
    let evicted = symbolizer.symbolize(&modules, &addresses[..1], &mut LoadedFiles);
    assert_eq!(evicted, first[..1]);
    let stats = symbolizer.stats();
    assert_eq!(
        (stats.files_mapped, stats.evictions, stats.cached),
        (2, 4, 2)
    );
    // No cache at all.
    let mut none = Symbolizer::with_capacity(0);
    none.symbolize(&modules, &addresses, &mut LoadedFiles);
    assert_eq!(none.stats().cached, 0);
    assert_eq!(none.stats().cache_bytes, 0);
}

#[test]
fn addresses_outside_modules_or_without_a_file_stay_unnamed_with_a_warning() {
    let modules = [module("/nonexistent/libgone.so", 0x1000, 0x1000, 0x2000)];
    let mut symbolizer = Symbolizer::new();
    let frames = symbolizer.symbolize(&modules, &[0x1800, 0x9000], &mut LoadedFiles);
    assert_eq!(frames, vec![vec![unknown(0x1800)], vec![unknown(0x9000)]]);
    assert_eq!(symbolizer.stats().unresolved, 2);
    assert_eq!(
        symbolizer.warnings().len(),
        1,
        "{:?}",
        symbolizer.warnings()
    );
    assert!(symbolizer.warnings()[0].contains("libgone.so"));
}

#[test]
fn symbol_files_are_matched_by_build_id_and_refuse_what_is_not_elf() {
    let exe = std::fs::canonicalize("/proc/self/exe").expect("exe");
    let id = build_id(&exe)
        .expect("elf")
        .expect("the test binary has a build id");
    let mut files = SymbolFiles::new();
    files.add(&exe).expect("add");
    let path = "/somewhere/else/binary";
    let mut m = module(path, 0, 0, 1);
    m.build_id = Some(&id);
    assert_eq!(files.locate(&m), Ok(exe.clone()));
    let wrong = "0".repeat(id.len());
    m.build_id = Some(&wrong);
    assert!(files.locate(&m).is_err_and(|e| e.contains(&wrong)));

    let dir = leakwatch_testsupport::temp_dir("symbolize");
    let text = dir.join("notes.txt");
    std::fs::write(&text, "not an elf file").expect("write");
    assert!(
        files
            .add(&text)
            .is_err_and(|e| e.contains("not an ELF file"))
    );
    assert!(files.add(&dir.join("missing")).is_err());
}
