use super::*;
use flate2::read::GzDecoder;
use leakwatch_types::{Symbol, Unwinder};
use std::io::Read;
use std::process::Command;
use std::time::Duration;

const MIB: u64 = 1 << 20;
const CACHE_PUT: &str = "<app::Cache<[u8; 4]> as app::Store>::put";
const APP: (u64, u64) = (0x1000, 0x5000);
const LIBC: (u64, u64) = (0x9999_0000, 0x9999_f000);

fn symbol(address: u64, function: &str, file: &str, line: u32, inlined: bool) -> Symbol {
    let mut s = Symbol::default();
    s.address = address;
    s.function = Some(function.into());
    s.file = Some(file.into());
    s.line = Some(line);
    s.inlined = inlined;
    s
}

/// 0x1a00 and 0x1a10: leakwatch's allocator and the `__rust_alloc` shim; 0x1010:
/// `app::fill_buffer` inlined into `app::leaky_store`; 0x2020 a trait method
/// ([`CACHE_PUT`]); 0x1777 and 0x1778 two lines of `app::main`. 0x9999_0100 (in libc) and
/// 0x7000 (in no module) have no symbols.
fn symbols() -> SymbolTable {
    let mut table = SymbolTable::new();
    table.insert(
        0x1a00,
        vec![
            symbol(
                0x1a00,
                "leakwatch_alloc::hot::on_alloc",
                "/w/leakwatch/crates/leakwatch-alloc/src/hot.rs",
                9,
                true,
            ),
            symbol(
                0x1a00,
                "<leakwatch_alloc::global_alloc::LeakWatch as core::alloc::global::GlobalAlloc>::alloc",
                "/w/leakwatch/crates/leakwatch-alloc/src/global_alloc.rs",
                40,
                false,
            ),
        ],
    );
    table.insert(
        0x1a10,
        vec![symbol(0x1a10, "__rustc::__rust_alloc", "", 0, false)],
    );
    table.insert(
        0x1010,
        vec![
            symbol(0x1010, "app::fill_buffer", "/w/app/src/store.rs", 50, true),
            symbol(0x1010, "app::leaky_store", "/w/app/src/store.rs", 10, false),
        ],
    );
    table.insert(
        0x2020,
        vec![symbol(0x2020, CACHE_PUT, "/w/app/src/cache.rs", 20, false)],
    );
    for (address, line) in [(0x1777, 5), (0x1778, 6)] {
        table.insert(
            address,
            vec![symbol(
                address,
                "app::main",
                "/w/app/src/main.rs",
                line,
                false,
            )],
        );
    }
    table
}

fn module(path: &str, (start, end): (u64, u64), build_id: Option<&str>) -> Module {
    // `Module` is `#[non_exhaustive]`: start from a deserialized value.
    let mut m: Module = serde_json::from_value(serde_json::json!({
        "path": "", "base": 0, "start": 0, "end": 0, "build_id": null
    }))
    .expect("a Module from JSON");
    m.path = path.into();
    m.start = start;
    m.end = end;
    m.base = start;
    m.build_id = build_id.map(String::from);
    m
}

fn site(id: u32, frames: Vec<u64>, live: u64, live_blocks: f64, alloc: u64) -> SiteStats {
    let mut s = SiteStats::default();
    s.id = id;
    s.frames = frames;
    s.live_bytes = live;
    s.live_blocks = live_blocks;
    s.alloc_bytes = alloc;
    s.alloc_blocks = live_blocks * 2.0;
    s
}

fn snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    s.schema_version = 1;
    s.timestamp_ms = 1_700_000_000_123;
    s.pid = 42;
    s.mode = Mode::Sampled;
    s.sample_rate = 524_288;
    s.unwinder = Unwinder::FramePointers;
    s.modules = vec![
        module("/w/app/target/release/app", APP, Some("abcd1234")),
        module("/lib/x86_64-linux-gnu/libc.so.6", LIBC, None),
    ];
    s.sites = vec![
        site(
            1,
            vec![0x1a00, 0x1a10, 0x1010, 0x1777],
            3 * MIB,
            2.6,
            5 * MIB,
        ),
        site(2, vec![0x2020, 0x1778], MIB, 1.4, MIB),
        site(3, vec![0x3030], 0, 0.0, 0),
        site(4, vec![0x9999_0100, 0x7000, 0x1777], 0, 0.0, 100),
        site(5, vec![0x1a00, 0x1a10], 10, 1.0, 10), // nothing but the allocator
    ];
    s.warnings = vec!["stacks are slow".into()];
    s
}

// ---- a tiny protobuf reader, enough to check the structure ----

#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = buf[*at];
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return v;
        }
    }
    panic!("varint too long");
}

fn fields(buf: &[u8]) -> Vec<(u32, Value<'_>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let key = varint(buf, &mut at);
        let field = (key >> 3) as u32;
        match key & 7 {
            0 => out.push((field, Value::Varint(varint(buf, &mut at)))),
            2 => {
                let len = varint(buf, &mut at) as usize;
                out.push((field, Value::Bytes(&buf[at..at + len])));
                at += len;
            }
            wire => panic!("unexpected wire type {wire} for field {field}"),
        }
    }
    out
}

/// The scalar `field` of a message (0 when absent, as proto3 says).
fn scalar(msg: &[(u32, Value<'_>)], field: u32) -> u64 {
    msg.iter()
        .rev()
        .find_map(|&(f, v)| match (f == field, v) {
            (true, Value::Varint(v)) => Some(v),
            _ => None,
        })
        .unwrap_or(0)
}

/// All values of a repeated varint `field`, packed or not.
fn repeated(msg: &[(u32, Value<'_>)], field: u32) -> Vec<u64> {
    let mut out = Vec::new();
    for &(f, v) in msg {
        if f != field {
            continue;
        }
        match v {
            Value::Varint(v) => out.push(v),
            Value::Bytes(b) => {
                let mut at = 0;
                while at < b.len() {
                    out.push(varint(b, &mut at));
                }
            }
        }
    }
    out
}

fn messages<'a>(msg: &[(u32, Value<'a>)], field: u32) -> Vec<Vec<(u32, Value<'a>)>> {
    msg.iter()
        .filter_map(|&(f, v)| match (f == field, v) {
            (true, Value::Bytes(b)) => Some(fields(b)),
            _ => None,
        })
        .collect()
}

/// A sample as decoded: its location ids, values and `site` label.
#[derive(Debug)]
struct DSample {
    locations: Vec<u64>,
    values: Vec<i64>,
    site: u64,
    /// String labels (the site's tags), in order.
    tags: Vec<(String, String)>,
    /// Numeric labels (live bytes by age): key, value, unit.
    ages: Vec<(String, i64, String)>,
}

#[derive(Debug)]
struct DMapping {
    id: u64,
    start: u64,
    limit: u64,
    offset: u64,
    file: String,
    build_id: String,
    /// has_functions, has_filenames, has_line_numbers, has_inline_frames
    flags: [bool; 4],
}

#[derive(Debug)]
struct DLocation {
    id: u64,
    mapping: u64,
    address: u64,
    /// (function id, line), as stored
    lines: Vec<(u64, i64)>,
}

#[derive(Debug)]
struct DFunction {
    id: u64,
    name: String,
    system_name: String,
    file: String,
}

#[derive(Debug)]
struct Decoded {
    strings: Vec<String>,
    sample_types: Vec<(String, String)>,
    samples: Vec<DSample>,
    mappings: Vec<DMapping>,
    locations: Vec<DLocation>,
    functions: Vec<DFunction>,
    time_nanos: u64,
    period_type: (String, String),
    period: u64,
    comments: Vec<String>,
    default_sample_type: String,
}

impl Decoded {
    fn function_name(&self, id: u64) -> &str {
        let f = self
            .functions
            .iter()
            .find(|f| f.id == id)
            .expect("function");
        &f.name
    }

    fn location(&self, id: u64) -> &DLocation {
        self.locations
            .iter()
            .find(|l| l.id == id)
            .expect("location")
    }

    /// The location of return address `address` (written as its call address, one
    /// byte earlier).
    fn location_at(&self, address: u64) -> &DLocation {
        let found = self.locations.iter().find(|l| l.address == address - 1);
        found.unwrap_or_else(|| panic!("no location at {address:#x}"))
    }

    /// The return addresses of a sample's locations (their addresses plus one).
    fn return_addresses(&self, location_ids: &[u64]) -> Vec<u64> {
        location_ids
            .iter()
            .map(|&id| self.location(id).address + 1)
            .collect()
    }

    /// The function names of a location, innermost inlined first.
    fn names_at(&self, location_id: u64) -> Vec<&str> {
        let lines = &self.location(location_id).lines;
        lines.iter().map(|&(f, _)| self.function_name(f)).collect()
    }
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    assert_eq!(&data[..2], &[0x1f, 0x8b], "not gzip");
    let mut raw = Vec::new();
    GzDecoder::new(data)
        .read_to_end(&mut raw)
        .expect("valid gzip");
    raw
}

fn decode(data: &[u8]) -> Decoded {
    let raw = gunzip(data);
    let p = fields(&raw);
    let strings: Vec<String> = p
        .iter()
        .filter_map(|&(f, v)| match (f, v) {
            (6, Value::Bytes(b)) => Some(String::from_utf8(b.to_vec()).expect("utf-8")),
            _ => None,
        })
        .collect();
    let s = |i: u64| strings[i as usize].clone();
    let pair = |m: &[(u32, Value<'_>)]| (s(scalar(m, 1)), s(scalar(m, 2)));
    let flag = |m: &[(u32, Value<'_>)], f: u32| scalar(m, f) != 0;
    Decoded {
        sample_types: messages(&p, 1).iter().map(|m| pair(m)).collect(),
        samples: messages(&p, 2)
            .iter()
            .map(|m| {
                let labels = messages(m, 3);
                assert!(!labels.is_empty());
                assert_eq!(s(scalar(&labels[0], 1)), "site");
                DSample {
                    locations: repeated(m, 1),
                    values: repeated(m, 2).into_iter().map(|v| v as i64).collect(),
                    site: scalar(&labels[0], 3),
                    tags: labels[1..]
                        .iter()
                        .filter(|l| scalar(l, 2) != 0)
                        .map(|l| pair(l))
                        .collect(),
                    ages: labels[1..]
                        .iter()
                        .filter(|l| scalar(l, 2) == 0)
                        .map(|l| (s(scalar(l, 1)), scalar(l, 3) as i64, s(scalar(l, 4))))
                        .collect(),
                }
            })
            .collect(),
        mappings: messages(&p, 3)
            .iter()
            .map(|m| DMapping {
                id: scalar(m, 1),
                start: scalar(m, 2),
                limit: scalar(m, 3),
                offset: scalar(m, 4),
                file: s(scalar(m, 5)),
                build_id: s(scalar(m, 6)),
                flags: [flag(m, 7), flag(m, 8), flag(m, 9), flag(m, 10)],
            })
            .collect(),
        locations: messages(&p, 4)
            .iter()
            .map(|m| DLocation {
                id: scalar(m, 1),
                mapping: scalar(m, 2),
                address: scalar(m, 3),
                lines: messages(m, 4)
                    .iter()
                    .map(|l| (scalar(l, 1), scalar(l, 2) as i64))
                    .collect(),
            })
            .collect(),
        functions: messages(&p, 5)
            .iter()
            .map(|m| DFunction {
                id: scalar(m, 1),
                name: s(scalar(m, 2)),
                system_name: s(scalar(m, 3)),
                file: s(scalar(m, 4)),
            })
            .collect(),
        time_nanos: scalar(&p, 9),
        period_type: pair(&messages(&p, 11)[0]),
        period: scalar(&p, 12),
        comments: repeated(&p, 13).into_iter().map(s).collect(),
        default_sample_type: s(scalar(&p, 14)),
        strings,
    }
}

// ---- structure ----

#[test]
fn header_sample_types_period_and_comment() {
    let d = decode(&pprof(&snapshot(), &symbols()));
    assert_eq!(d.strings[0], "");
    let types: Vec<(&str, &str)> = d
        .sample_types
        .iter()
        .map(|(t, u)| (t.as_str(), u.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("inuse_space", "bytes"),
            ("inuse_objects", "count"),
            ("alloc_space", "bytes"),
            ("alloc_objects", "count"),
        ]
    );
    assert_eq!(d.default_sample_type, "inuse_space");
    assert_eq!(d.period_type, ("space".to_string(), "bytes".to_string()));
    assert_eq!(d.period, 524_288);
    assert_eq!(d.time_nanos, 1_700_000_000_123_000_000);
    assert!(d.comments[0].contains("sampled"), "{:?}", d.comments);
    assert!(d.comments[0].contains("524288"), "{:?}", d.comments);
    assert!(d.comments.iter().any(|c| c.contains("stacks are slow")));
}

#[test]
fn the_allocs_profile_is_the_heap_profile_with_alloc_space_its_default() {
    let heap = decode(&pprof(&snapshot(), &symbols()));
    let allocs = decode(&pprof_allocs(&snapshot(), &symbols()));
    assert_eq!(allocs.default_sample_type, "alloc_space");
    assert_eq!(allocs.sample_types, heap.sample_types);
    let values = |d: &Decoded| -> Vec<(u64, Vec<i64>)> {
        d.samples
            .iter()
            .map(|s| (s.site, s.values.clone()))
            .collect()
    };
    assert_eq!(values(&allocs), values(&heap));
    assert_eq!(allocs.locations.len(), heap.locations.len());
    assert_eq!(allocs.functions.len(), heap.functions.len());
}

#[test]
fn one_sample_per_site_with_unscaled_values_and_zero_sites_skipped() {
    let d = decode(&pprof(&snapshot(), &symbols()));
    let by_site: Vec<(u64, &[i64])> = d.samples.iter().map(|s| (s.site, &s.values[..])).collect();
    // Sampled-mode numbers are estimates already: written as they are, blocks rounded.
    let expect: [(u64, &[i64]); 4] = [
        (1, &[3 << 20, 3, 5 << 20, 5]),
        (2, &[1 << 20, 1, 1 << 20, 3]),
        (4, &[0, 0, 100, 0]),
        (5, &[10, 1, 10, 2]),
    ];
    assert_eq!(by_site, expect);
    let addresses: Vec<u64> = d.locations.iter().map(|l| l.address + 1).collect();
    assert!(
        !addresses.contains(&0x3030),
        "a skipped site's frames: {addresses:x?}"
    );
}

#[test]
fn locations_innermost_first_with_inlined_lines_innermost_first() {
    let d = decode(&pprof(&snapshot(), &symbols()));
    let leak = &d.samples[0].locations;
    // The allocator's frames at the top (0x1a00, 0x1a10) are left out.
    assert_eq!(d.return_addresses(leak), [0x1010, 0x1777]);
    // Locations hold call addresses: the return address minus one.
    assert_eq!(d.location(leak[0]).address, 0x100f);
    // profile.proto: the last line is the caller the preceding ones were inlined into.
    assert_eq!(
        d.names_at(leak[0]),
        ["app::fill_buffer", "app::leaky_store"]
    );
    let lines: Vec<i64> = d.location(leak[0]).lines.iter().map(|l| l.1).collect();
    assert_eq!(lines, [50, 10]);
    assert_eq!(d.names_at(leak[1]), ["app::main"]);
}

#[test]
fn one_location_per_address_and_functions_deduplicated() {
    let d = decode(&pprof(&snapshot(), &symbols()));
    let ids: Vec<u64> = d.locations.iter().map(|l| l.id).collect();
    assert_eq!(ids, (1..=d.locations.len() as u64).collect::<Vec<_>>());
    let mut addresses: Vec<u64> = d.locations.iter().map(|l| l.address + 1).collect();
    addresses.sort_unstable();
    assert_eq!(
        addresses,
        [0x1010, 0x1777, 0x1778, 0x1a10, 0x2020, 0x7000, 0x9999_0100]
    );
    // Two lines of `app::main` are two locations but one function.
    let mains: Vec<&DFunction> = d
        .functions
        .iter()
        .filter(|f| f.name == "app::main")
        .collect();
    assert_eq!(mains.len(), 1, "{:?}", d.functions);
    assert_eq!(mains[0].file, "/w/app/src/main.rs");
    assert_eq!(d.functions.len(), 5, "{:?}", d.functions);
    // Names are demangled already: without a symbol-table name no system name, so
    // pprof keeps them as they are.
    assert!(d.functions.iter().all(|f| f.system_name.is_empty()));
    let main_lines: Vec<i64> = [0x1777, 0x1778]
        .map(|a| d.location_at(a).lines[0].1)
        .to_vec();
    assert_eq!(main_lines, [5, 6]);
}

#[test]
fn mappings_from_modules_and_unsymbolized_addresses_keep_their_address() {
    let d = decode(&pprof(&snapshot(), &symbols()));
    assert_eq!(d.mappings.len(), 2);
    let app = &d.mappings[0];
    assert_eq!((app.id, app.start, app.limit), (1, APP.0, APP.1));
    assert_eq!(
        (app.file.as_str(), app.build_id.as_str()),
        ("/w/app/target/release/app", "abcd1234")
    );
    assert_eq!(app.flags, [true; 4]);
    let libc = &d.mappings[1];
    assert_eq!((libc.id, libc.start, libc.limit), (2, LIBC.0, LIBC.1));
    assert_eq!(
        (libc.file.as_str(), libc.build_id.as_str()),
        ("/lib/x86_64-linux-gnu/libc.so.6", "")
    );
    // Nothing symbolized there: pprof may symbolize it from the file itself.
    assert_eq!(libc.flags, [false; 4]);

    let in_libc = d.location_at(0x9999_0100);
    assert_eq!((in_libc.mapping, in_libc.lines.len()), (2, 0));
    let nowhere = d.location_at(0x7000);
    assert_eq!((nowhere.mapping, nowhere.lines.len()), (0, 0));
    assert_eq!(d.location_at(0x2020).mapping, 1);
}

/// Symbols as an optimised build gives them: short inlined names, standard library code
/// inlined into the allocator (0x1b00), and the allocator inlined into its caller
/// (0x1b10, in `app::grow`).
fn inlined_allocator_symbols() -> SymbolTable {
    let hot = "/w/leakwatch/crates/leakwatch-alloc/src/hot.rs";
    let global = "/w/leakwatch/crates/leakwatch-alloc/src/global_alloc.rs";
    let local = "/rustc/x/library/std/src/thread/local.rs";
    let alloc = "/rustc/x/library/alloc/src/alloc.rs";
    let mut table = symbols();
    table.insert(
        0x1b00,
        vec![
            symbol(0x1b00, "{closure#0}", hot, 167, true),
            symbol(
                0x1b00,
                "try_with<leakwatch_alloc::hot::ThreadState>",
                local,
                513,
                true,
            ),
            symbol(0x1b00, "on_alloc", hot, 162, true),
            symbol(
                0x1b00,
                "alloc_tracked<std::alloc::System>",
                global,
                166,
                false,
            ),
        ],
    );
    table.insert(
        0x1b10,
        vec![
            symbol(0x1b10, "alloc<std::alloc::System>", global, 121, true),
            symbol(0x1b10, "__rust_alloc", "/w/app/src/main.rs", 4, true),
            symbol(0x1b10, "alloc", alloc, 95, true),
            symbol(0x1b10, "app::grow", "/w/app/src/grow.rs", 7, false),
        ],
    );
    table
}

#[test]
fn allocator_inlined_into_its_caller_is_left_out() {
    let mut s = snapshot();
    s.sites = vec![site(1, vec![0x1b00, 0x1b10, 0x1777], MIB, 1.0, MIB)];
    let d = decode(&pprof(&s, &inlined_allocator_symbols()));
    let stack = &d.samples[0].locations;
    assert_eq!(d.return_addresses(stack), [0x1b10, 0x1777]);
    // The standard library's allocation code inlined there (`alloc`) goes too: flat
    // bytes land on the function that labels the site.
    assert_eq!(d.names_at(stack[0]), ["app::grow"]);
    let names: Vec<&str> = d.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["app::grow", "app::main"]);
}

/// Symbols as a release build with line-tables-only debug info gives them for a leak in
/// `open_session`: the standard library's allocation code inlined into it, itself
/// inlined into a request handler; the machine functions' symbol-table names.
fn release_symbols() -> SymbolTable {
    let alloc = "/rustc/x/library/alloc/src/alloc.rs";
    let vec = "/rustc/x/library/alloc/src/vec/mod.rs";
    let sessions = "/w/model-server/src/sessions.rs";
    let mut table = inlined_allocator_symbols();
    let mut frames = vec![
        symbol(
            0x1c10,
            "__rust_alloc",
            "/w/model-server/src/main.rs",
            4,
            true,
        ),
        symbol(0x1c10, "alloc", alloc, 95, true),
        symbol(
            0x1c10,
            "with_capacity_in<u8, alloc::alloc::Global>",
            vec,
            965,
            true,
        ),
        symbol(0x1c10, "open_session", sessions, 120, true),
        symbol(
            0x1c10,
            "{async_fn#0}",
            "/w/model-server/src/server.rs",
            323,
            false,
        ),
    ];
    frames[4].symbol = Some("model_server::server::generate::{{closure}}".into());
    table.insert(0x1c10, frames);
    let mut caller = symbol(0x1c20, "poll", "/w/tokio/src/runtime/task.rs", 50, false);
    caller.symbol = Some("tokio::runtime::task::poll".into());
    table.insert(0x1c20, vec![caller]);
    table
}

#[test]
fn runtime_frames_are_left_out_and_machine_functions_carry_their_symbol() {
    let mut s = snapshot();
    s.sites = vec![
        site(1, vec![0x1b00, 0x1c10, 0x1c20], 8 * MIB, 8.0, 8 * MIB),
        site(2, vec![0x1b00, 0x1b10, 0x1777], MIB, 1.0, MIB),
    ];
    let d = decode(&pprof(&s, &release_symbols()));
    let stack = &d.samples[0].locations;
    assert_eq!(d.return_addresses(stack), [0x1c10, 0x1c20]);
    assert_eq!(
        d.names_at(stack[0]),
        [
            "open_session",
            "model_server::server::generate::{async_fn#0}"
        ]
    );
    let system = |name: &str| {
        let f = d.functions.iter().find(|f| f.name == name);
        f.unwrap_or_else(|| panic!("{:?}", d.functions))
            .system_name
            .clone()
    };
    assert_eq!(
        system("model_server::server::generate::{async_fn#0}"),
        "model_server::server::generate::{{closure}}"
    );
    // Inlined frames have none; nor has a name that is its symbol already.
    assert_eq!(system("open_session"), "");
    assert_eq!(system("tokio::runtime::task::poll"), "");
    let Some(top) = go_pprof(&pprof(&s, &release_symbols()), &["-top"]) else {
        return;
    };
    let first = top
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .nth(1)
        .unwrap_or_else(|| panic!("no rows in\n{top}"));
    assert!(first.ends_with("open_session (inline)"), "{top}");
    assert!(first.trim_start().starts_with("8MB"), "{top}");
    assert!(
        !top.contains("alloc (inline)") && !top.contains("__rust_alloc"),
        "{top}"
    );
    assert!(
        top.contains("model_server::server::generate::{async_fn#0}"),
        "{top}"
    );
}

#[test]
fn exact_mode_comment_and_period() {
    let mut s = snapshot();
    s.mode = Mode::Exact;
    s.sample_rate = 1;
    let d = decode(&pprof(&s, &symbols()));
    assert_eq!(d.period, 1);
    assert!(d.comments[0].contains("exact"), "{:?}", d.comments);
}

#[test]
fn empty_snapshot_is_a_valid_profile() {
    let d = decode(&pprof(&Snapshot::default(), &SymbolTable::new()));
    assert_eq!(d.strings[0], "");
    assert_eq!(d.sample_types.len(), 4);
    assert!(d.samples.is_empty() && d.locations.is_empty() && d.mappings.is_empty());
    assert_eq!(d.default_sample_type, "inuse_space");
}

#[test]
fn odd_values_do_not_panic() {
    let mut s = snapshot();
    s.sites
        .push(site(9, vec![u64::MAX, 0], u64::MAX, f64::NAN, u64::MAX));
    s.sites[0].alloc_blocks = f64::INFINITY;
    s.sites[1].live_blocks = -3.0;
    s.timestamp_ms = u64::MAX;
    s.modules.push(module("", (0x5000, 0x4000), None)); // end before start
    let d = decode(&pprof(&s, &symbols()));
    let odd = d.samples.iter().find(|x| x.site == 9).expect("site 9");
    assert_eq!(odd.values, [i64::MAX, 0, i64::MAX, 0]);
    assert_eq!(d.samples[0].values[3], i64::MAX);
}

#[test]
fn varints_round_trip() {
    for v in [0, 1, 127, 128, 300, 1 << 35, u64::MAX, -1i64 as u64] {
        let mut w = Writer::default();
        w.varint(v);
        let mut at = 0;
        assert_eq!(varint(&w.buf, &mut at), v);
        assert_eq!(at, w.buf.len());
    }
}

// ---- go tool pprof ----

/// Runs `go tool pprof ARGS FILE` on `profile` written to a temp file (offline: only a
/// file path, pprof's own temp dir in the same directory), killed with its process group
/// after 60 s, and returns its stdout; `None` when go is missing (see
/// [`leakwatch_testsupport::tool::require`]).
fn go_pprof(profile: &[u8], args: &[&str]) -> Option<String> {
    if !leakwatch_testsupport::tool::require("go", "apt-get install golang-go") {
        return None;
    }
    let dir = leakwatch_testsupport::temp_dir("pprof-unit");
    let file = dir.join("heap.pb.gz");
    std::fs::write(&file, profile).expect("write profile");
    let out = leakwatch_testsupport::process::run(
        Command::new("go")
            .arg("tool")
            .arg("pprof")
            .args(args)
            .arg(&file)
            .current_dir(&dir)
            .env("PPROF_TMPDIR", &*dir)
            .env("GOTOOLCHAIN", "local"),
        None,
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "go tool pprof failed: {}\n{}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout)
}

#[test]
fn go_tool_pprof_reads_the_profile_and_names_the_biggest_function() {
    let Some(top) = go_pprof(
        &pprof(&snapshot(), &symbols()),
        &["-top", "-sample_index=inuse_space"],
    ) else {
        return;
    };
    eprintln!("{top}");
    assert!(top.contains("Type: inuse_space"), "{top}");
    // The first row of the table is the function with the most flat bytes.
    let first = top
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .nth(1)
        .unwrap_or_else(|| panic!("no rows in\n{top}"));
    // pprof marks a function inlined into the next line of its location.
    assert!(first.ends_with("app::fill_buffer (inline)"), "{top}");
    assert!(first.trim_start().starts_with("3MB"), "{top}");
    let main = top
        .lines()
        .find(|l| l.ends_with("app::main"))
        .unwrap_or_else(|| panic!("{top}"));
    assert!(main.contains("4MB"), "cumulative bytes of main: {top}");
    // Rust names reach pprof's output whole, `<...>` and all.
    assert!(top.lines().any(|l| l.ends_with(CACHE_PUT)), "{top}");
    assert!(!top.contains("leakwatch_alloc"), "{top}");
}

#[test]
fn go_tool_pprof_reads_an_empty_profile() {
    let Some(top) = go_pprof(&pprof(&Snapshot::default(), &SymbolTable::new()), &["-top"]) else {
        return;
    };
    assert!(top.contains("Type: inuse_space"), "{top}");
}

#[test]
fn a_module_with_its_executable_segment_maps_that_segment_with_its_file_offset() {
    // A PIE whose executable segment starts 0x330 bytes into a page: address
    // 0x137330 in the file, offset 0x136330, loaded at 0x5555_0000_0000.
    let base = 0x5555_0000_0000u64;
    let mut app = module("/srv/app", (base, base + 0x50_0000), Some("ab"));
    app.text_start = base + 0x13_7330;
    app.text_end = base + 0x43_4080;
    app.text_offset = 0x13_6330;
    let mut s = Snapshot::default();
    s.modules = vec![app];
    s.sites = vec![site(
        1,
        vec![base + 0x20_0001, base + 0x20_1001],
        64,
        1.0,
        64,
    )];
    // Unsymbolized: no lines, no functions, every flag false.
    let d = decode(&pprof(&s, &SymbolTable::new()));
    let m = &d.mappings[0];
    assert_eq!(
        (m.start, m.limit, m.offset),
        (base + 0x13_7330, base + 0x43_4080, 0x13_6330)
    );
    assert_eq!(m.flags, [false; 4]);
    assert!(d.functions.is_empty());
    let location = d.location_at(base + 0x20_0001);
    assert_eq!((location.mapping, location.lines.len()), (1, 0));
    assert_eq!(
        d.samples[0].locations.len(),
        2,
        "no frame is dropped unnamed"
    );
}

#[test]
fn a_sites_tags_are_string_labels_of_its_sample() {
    let mut s = snapshot();
    s.sites[0].tags = [("model", "2"), ("route", "/v1/generate")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let d = decode(&pprof(&s, &symbols()));
    let tagged = d
        .samples
        .iter()
        .find(|x| x.site == u64::from(s.sites[0].id))
        .expect("the tagged sample");
    assert_eq!(
        tagged.tags,
        vec![
            ("model".to_string(), "2".to_string()),
            ("route".to_string(), "/v1/generate".to_string())
        ]
    );
    assert!(
        d.samples
            .iter()
            .filter(|x| x.site != u64::from(s.sites[0].id))
            .all(|x| x.tags.is_empty())
    );
}

#[test]
fn a_sites_live_bytes_by_age_are_numeric_labels_in_bytes() {
    let mut s = snapshot();
    s.sites[0].age_bytes = vec![100, 200, 0, 0, 5];
    let d = decode(&pprof(&s, &symbols()));
    let sample = d
        .samples
        .iter()
        .find(|x| x.site == u64::from(s.sites[0].id))
        .expect("the sample");
    let b = |k: &str, v: i64| (k.to_string(), v, "bytes".to_string());
    assert_eq!(
        sample.ages,
        vec![
            b("live_age_under_10s", 100),
            b("live_age_under_1m", 200),
            b("live_age_under_10m", 0),
            b("live_age_under_1h", 0),
            b("live_age_older", 5),
        ]
    );
    assert!(sample.tags.is_empty());
}
