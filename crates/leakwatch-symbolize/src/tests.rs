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

/// DWARF built from the given sections (by name; others empty), little-endian.
fn dwarf_from<'a>(sections: &'a [(&'a str, Vec<u8>)]) -> gimli::Dwarf<dwarf::Reader<'a>> {
    gimli::Dwarf::load(|id| -> Result<_, gimli::Error> {
        let data = sections
            .iter()
            .find(|(name, _)| *name == id.name())
            .map_or(&[][..], |(_, d)| d.as_slice());
        Ok(gimli::EndianSlice::new(data, gimli::RunTimeEndian::Little))
    })
    .expect("load")
}

fn uleb(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A DWARF 4 unit at 0x1000..0x1100: a subprogram there, `depth` inlined calls nested in
/// it (each over the same range), each call's `DW_AT_abstract_origin` pointing at
/// itself when `cyclic`.
fn nested_unit(depth: usize, cyclic: bool) -> Vec<(&'static str, Vec<u8>)> {
    // Abbreviations: 1 compile unit, 2 subprogram, 3 inlined call; each with children,
    // DW_AT_low_pc (addr) and DW_AT_high_pc (udata: a size); 3 with an origin (ref4).
    let mut abbrev = Vec::new();
    for (code, tag) in [(1u8, 0x11u8), (2, 0x2e), (3, 0x1d)] {
        abbrev.extend([code, tag, 1, 0x11, 0x01, 0x12, 0x0f]);
        if code == 3 && cyclic {
            abbrev.extend([0x31, 0x13]);
        }
        abbrev.extend([0, 0]);
    }
    abbrev.push(0);
    let mut dies = Vec::new();
    let header_len = 11usize;
    for code in [1u8, 2] {
        dies.push(code);
        dies.extend(0x1000u64.to_le_bytes());
        uleb(0x100, &mut dies);
    }
    for _ in 0..depth {
        let at = u32::try_from(header_len + dies.len()).expect("small");
        dies.push(3);
        dies.extend(0x1000u64.to_le_bytes());
        uleb(0x100, &mut dies);
        if cyclic {
            dies.extend(at.to_le_bytes());
        }
    }
    dies.extend(std::iter::repeat_n(0u8, depth + 2));
    let mut info = Vec::new();
    let length = u32::try_from(7 + dies.len()).expect("small");
    info.extend(length.to_le_bytes());
    info.extend(4u16.to_le_bytes());
    info.extend(0u32.to_le_bytes());
    info.push(8);
    info.extend(dies);
    vec![(".debug_info", info), (".debug_abbrev", abbrev)]
}

#[test]
fn inlining_nested_past_the_limit_is_an_error_not_a_stack_overflow() {
    // Within the limit: every call is a frame, then the subprogram.
    let sections = nested_unit(10, false);
    let found = dwarf::find_frames(&dwarf_from(&sections), &[0x1010, 0x2000], &mut || {})
        .expect("readable");
    match &found[0] {
        dwarf::Found::Frames(frames) => assert_eq!(frames.len(), 11, "{frames:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(found[1], dwarf::Found::Frames(Vec::new()));
    // 100,000 levels (a recursive walk would overflow the test thread's stack).
    let sections = nested_unit(100_000, false);
    let found =
        dwarf::find_frames(&dwarf_from(&sections), &[0x1010], &mut || {}).expect("readable");
    assert_eq!(found, vec![dwarf::Found::Error]);
}

#[test]
fn an_origin_that_refers_to_itself_gives_no_name_and_stops() {
    let sections = nested_unit(3, true);
    let found =
        dwarf::find_frames(&dwarf_from(&sections), &[0x1010], &mut || {}).expect("readable");
    let dwarf::Found::Frames(frames) = &found[0] else {
        panic!("{found:?}");
    };
    assert_eq!(frames.len(), 4, "{frames:?}");
    assert!(frames.iter().all(|f| f.name.is_none()), "{frames:?}");
}

/// The debug sections of the test binary, by name.
fn own_sections() -> Vec<(&'static str, Vec<u8>)> {
    use object::ObjectSection;
    let bytes = std::fs::read("/proc/self/exe").expect("exe");
    let file = object::File::parse(&*bytes).expect("parse");
    [
        ".debug_info",
        ".debug_abbrev",
        ".debug_line",
        ".debug_str",
        ".debug_line_str",
        ".debug_ranges",
        ".debug_rnglists",
        ".debug_aranges",
        ".debug_addr",
        ".debug_str_offsets",
    ]
    .into_iter()
    .filter_map(|name| {
        let data = file.section_by_name(name)?.data().ok()?.to_vec();
        Some((name, data))
    })
    .collect()
}

#[test]
fn corrupt_or_truncated_debug_sections_give_errors_or_frames_never_a_panic() {
    // The test binary's debug sections, `.debug_info` cut after its first units of
    // 256 KiB or more (a smaller file's worth: each check walks every unit), and the
    // addresses of a spread that those units know, with a few others.
    let mut clean = own_sections();
    let info = clean
        .iter_mut()
        .find(|(name, _)| *name == ".debug_info")
        .expect("debug info");
    let mut end = 0;
    while end < (256 << 10) && end + 4 <= info.1.len() {
        let length = u32::from_le_bytes(info.1[end..end + 4].try_into().expect("4 bytes"));
        assert!(length < 0xffff_fff0, "a 32-bit DWARF unit");
        end += 4 + usize::try_from(length).expect("fits");
    }
    info.1.truncate(end);
    let bytes = std::fs::read("/proc/self/exe").expect("exe");
    let file = object::File::parse(&*bytes).expect("parse");
    let spread = spread_addresses(&file, 3000);
    let known = dwarf::find_frames(&dwarf_from(&clean), &spread, &mut || {}).expect("clean");
    let mut probes: Vec<u64> = spread
        .iter()
        .zip(&known)
        .filter(|(_, f)| matches!(f, dwarf::Found::Frames(v) if !v.is_empty()))
        .map(|(p, _)| *p)
        .take(100)
        .collect();
    assert!(probes.len() >= 10, "{} known", probes.len());
    probes.extend(spread.iter().step_by(500));
    let check = |sections: &[(&str, Vec<u8>)], what: &str| match dwarf::find_frames(
        &dwarf_from(sections),
        &probes,
        &mut || {},
    ) {
        Ok(found) => {
            assert_eq!(found.len(), probes.len(), "{what}");
            for f in &found {
                if let dwarf::Found::Frames(frames) = f {
                    assert!(frames.len() <= 258, "{what}: {} frames", frames.len());
                }
            }
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "{what}: {e}"),
    };
    check(&clean, "clean");
    // Truncated: each section cut short at a few places.
    for i in 0..clean.len() {
        let len = clean[i].1.len();
        for cut in [0, 1, 11, len / 3, len.saturating_sub(1)] {
            let mut sections = clean.clone();
            sections[i].1.truncate(cut);
            check(&sections, &format!("{} cut at {cut}", clean[i].0));
        }
    }
    // Overwritten: runs of bytes set to 0xff or 0x00 at spread positions.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..clean.len() {
        for round in 0..4 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let mut sections = clean.clone();
            let data = &mut sections[i].1;
            if data.is_empty() {
                continue;
            }
            let at = usize::try_from(seed >> 33).expect("fits") % data.len().min(256 << 10);
            let end = (at + 64).min(data.len());
            let fill = if round % 2 == 0 { 0xff } else { 0x00 };
            data[at..end].fill(fill);
            check(
                &sections,
                &format!("{} at {at} filled with {fill:#x}", clean[i].0),
            );
        }
    }
}
