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

/// What one `addr2line` context over the whole file gives for `probe` (the resolver
/// this crate used before `dwarf.rs`): `(raw name, file, line)`, innermost first.
fn addr2line_frames(
    context: &addr2line::Context<dwarf::Reader<'_>>,
    probe: u64,
) -> Vec<(Option<String>, Option<String>, Option<u32>)> {
    let mut out = Vec::new();
    if let Ok(mut frames) = context.find_frames(probe).skip_all_loads() {
        while let Ok(Some(frame)) = frames.next() {
            let name = frame
                .function
                .as_ref()
                .and_then(|f| f.raw_name().ok().map(|n| n.into_owned()));
            let (file, line) = frame
                .location
                .map_or((None, None), |l| (l.file.map(str::to_owned), l.line));
            out.push((name, file, line));
        }
    }
    out
}

fn dwarf_of<'a>(file: &object::File<'a>) -> gimli::Dwarf<dwarf::Reader<'a>> {
    use object::ObjectSection;
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    gimli::Dwarf::load(|id| -> Result<_, gimli::Error> {
        let data = file
            .section_by_name(id.name())
            .and_then(|s| s.data().ok())
            .unwrap_or(&[]);
        Ok(gimli::EndianSlice::new(data, endian))
    })
    .expect("load")
}

/// File addresses spread over `file`'s functions: the start, the middle and the last
/// byte of every k-th function symbol, about `n` functions.
fn spread_addresses(file: &object::File<'_>, n: usize) -> Vec<u64> {
    use object::ObjectSymbol;
    let mut funcs: Vec<(u64, u64)> = file
        .symbols()
        .filter(|s| s.kind() == object::SymbolKind::Text && s.size() > 0)
        .map(|s| (s.address(), s.size()))
        .collect();
    funcs.sort_unstable();
    funcs.dedup();
    let step = (funcs.len() / n).max(1);
    funcs
        .iter()
        .step_by(step)
        .flat_map(|&(a, size)| [a, a + size / 2, a + size - 1])
        .collect()
}

/// The per-unit resolver gives exactly what `addr2line`'s whole-file context gives, on
/// the test binary (debug info with inlined std frames) and on every file named in
/// `LEAKWATCH_COMPARE_FILES` (colon-separated; docs/BENCHMARKS.md lists the runs).
#[test]
fn the_per_unit_resolver_gives_what_addr2line_gives() {
    let mut files = vec![std::fs::canonicalize("/proc/self/exe").expect("exe")];
    if let Ok(more) = std::env::var("LEAKWATCH_COMPARE_FILES") {
        files.extend(more.split(':').filter(|p| !p.is_empty()).map(PathBuf::from));
    }
    for path in files {
        let bytes = std::fs::read(&path).expect("read");
        let file = object::File::parse(&*bytes).expect("parse");
        let probes = spread_addresses(&file, 1500);
        let context = addr2line::Context::from_dwarf(dwarf_of(&file)).expect("context");
        let ours = dwarf::find_frames(&dwarf_of(&file), &probes, &mut || {}).expect("ours");
        let (mut differ, mut inlined, mut named) = (0, 0, 0);
        for (probe, found) in probes.iter().zip(&ours) {
            let reference = addr2line_frames(&context, *probe);
            let ours: Vec<_> = match found {
                dwarf::Found::Frames(frames) => frames
                    .iter()
                    .map(|f| (f.name.clone(), f.file.clone(), f.line))
                    .collect(),
                dwarf::Found::Error => Vec::new(),
            };
            inlined += reference.len().saturating_sub(1);
            named += usize::from(reference.first().is_some_and(|f| f.1.is_some()));
            if ours != reference {
                differ += 1;
                if differ <= 3 {
                    eprintln!("{probe:#x}:\n  addr2line {reference:?}\n  ours      {ours:?}");
                }
            }
        }
        eprintln!(
            "{}: {} addresses, {named} with a file, {inlined} inlined frames, {differ} differ",
            path.display(),
            probes.len()
        );
        assert_eq!(differ, 0, "{}", path.display());
        assert!(named > probes.len() / 2, "{named} of {}", probes.len());
    }
}
