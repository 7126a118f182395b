use super::*;
use leakwatch_types::{SiteStats, Symbol};

const MIB: u64 = 1 << 20;

fn symbol(function: &str, file: &str, line: u32, inlined: bool) -> Symbol {
    let mut s = Symbol::default();
    s.function = Some(function.into());
    s.file = Some(file.into());
    s.line = Some(line);
    s.inlined = inlined;
    s
}

/// 0xa01 leakwatch's allocator, 0xa02 the `__rust_alloc` shim, 0x901 `alloc::raw_vec`,
/// 0x101 `app::fill_buffer` inlined into `app::leaky_store`, 0x201 `app::cache_put`
/// (with a `;` in its name), 0x777 `app::main`. 0x555 has no symbols.
fn symbols() -> SymbolTable {
    let mut table = SymbolTable::new();
    let mut add = |address: u64, symbols: Vec<Symbol>| {
        let symbols = symbols
            .into_iter()
            .map(|mut s| {
                s.address = address;
                s
            })
            .collect();
        table.insert(address, symbols);
    };
    add(
        0xa01,
        vec![symbol(
            "<leakwatch_alloc::global_alloc::LeakWatch as core::alloc::global::GlobalAlloc>::alloc",
            "/w/leakwatch/crates/leakwatch-alloc/src/global_alloc.rs",
            40,
            false,
        )],
    );
    add(0xa02, vec![symbol("__rustc::__rust_alloc", "", 0, false)]);
    add(
        0x901,
        vec![symbol(
            "alloc::raw_vec::RawVec<T>::allocate_in",
            "/rustc/x/library/alloc/src/raw_vec.rs",
            7,
            false,
        )],
    );
    add(
        0x101,
        vec![
            symbol("app::fill_buffer", "/w/app/src/store.rs", 50, true),
            symbol("app::leaky_store", "/w/app/src/store.rs", 10, false),
        ],
    );
    add(
        0x201,
        vec![symbol(
            "<[u8; 4] as app::Cache>::put",
            "/w/app/src/cache.rs",
            20,
            false,
        )],
    );
    add(
        0x777,
        vec![symbol("app::main", "/w/app/src/main.rs", 1, false)],
    );
    table
}

fn site(id: u32, frames: Vec<u64>, live: u64) -> SiteStats {
    let mut s = SiteStats::default();
    s.id = id;
    s.frames = frames;
    s.live_bytes = live;
    s.alloc_bytes = live.max(1);
    s
}

fn snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    s.mode = Mode::Exact;
    s.sample_rate = 1;
    s.sites = vec![
        site(1, vec![0xa01, 0xa02, 0x901, 0x101, 0x777], 3 * MIB),
        // The same stack through another allocator entry: merged.
        site(2, vec![0xa02, 0x901, 0x101, 0x777], MIB),
        site(3, vec![0x201, 0x777], 2 * MIB),
        site(4, vec![0x555, 0x777], 1000),
        site(5, vec![0x901, 0x777], 0), // freed: not drawn
        site(6, vec![], 10),
        site(7, vec![0xa01, 0xa02], 20), // nothing but the allocator
    ];
    s
}

#[test]
fn folded_stacks_outermost_first_without_the_allocator() {
    let stacks = folded_stacks(&snapshot(), &symbols());
    let expect: BTreeMap<String, u64> = [
        (
            "app::main;app::leaky_store;app::fill_buffer;alloc::raw_vec::RawVec<T>::allocate_in",
            4 * MIB,
        ),
        ("app::main;<[u8, 4] as app::Cache>::put", 2 * MIB),
        ("app::main;0x555", 1000),
        ("(no stack)", 10),
        ("__rustc::__rust_alloc", 20),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(stacks, expect);
}

#[test]
fn allocator_inlined_into_its_caller_is_left_out() {
    // As an optimised build symbolizes: standard library code inlined into the
    // allocator, the allocator inlined into its caller, short inlined names.
    let hot = "/w/leakwatch/crates/leakwatch-alloc/src/hot.rs";
    let global = "/w/leakwatch/crates/leakwatch-alloc/src/global_alloc.rs";
    let local = "/rustc/x/library/std/src/thread/local.rs";
    let mut table = symbols();
    table.insert(
        0xb00,
        vec![
            symbol("{closure#0}", hot, 167, true),
            symbol(
                "try_with<leakwatch_alloc::hot::ThreadState>",
                local,
                513,
                true,
            ),
            symbol("on_alloc", hot, 162, true),
            symbol("alloc_tracked<std::alloc::System>", global, 166, false),
        ],
    );
    table.insert(
        0xb10,
        vec![
            symbol("alloc<std::alloc::System>", global, 121, true),
            symbol("__rust_alloc", "/w/app/src/main.rs", 4, true),
            symbol("alloc", "/rustc/x/library/alloc/src/alloc.rs", 95, true),
            symbol("leaky_function", "/w/app/src/main.rs", 7, false),
        ],
    );
    let mut s = Snapshot::default();
    s.sites = vec![site(1, vec![0xb00, 0xb10, 0x777], 100)];
    let stacks: Vec<(String, u64)> = folded_stacks(&s, &table).into_iter().collect();
    assert_eq!(
        stacks,
        [("app::main;leaky_function;alloc".to_string(), 100)]
    );
}

/// Every `http://` or `https://` in `svg` that is not the value of an `xmlns` attribute.
fn external_references(svg: &str) -> Vec<String> {
    let mut found = Vec::new();
    for scheme in ["http://", "https://"] {
        for (at, _) in svg.match_indices(scheme) {
            let before = &svg[..at];
            let Some(attr) = before.strip_suffix("=\"") else {
                found.push(svg[at.saturating_sub(40)..at + 40].to_string());
                continue;
            };
            let name = attr.rsplit(' ').next().unwrap_or("");
            if !(name == "xmlns" || name.starts_with("xmlns:")) {
                found.push(svg[at.saturating_sub(40)..at + 40].to_string());
            }
        }
    }
    found
}

fn assert_svg(svg: &str) {
    let start = svg.trim_start();
    assert!(
        start.starts_with("<?xml") || start.starts_with("<svg"),
        "{}",
        &svg[..svg.len().min(200)]
    );
    assert!(
        svg.trim_end().ends_with("</svg>"),
        "{}",
        &svg[svg.len().saturating_sub(200)..]
    );
    let after_prolog = start.strip_prefix("<?xml").map_or(start, |rest| {
        let end = rest.find("?>").expect("end of the XML declaration");
        rest[end + 2..].trim_start()
    });
    assert!(
        after_prolog.starts_with("<svg"),
        "{}",
        &svg[..svg.len().min(200)]
    );
    assert!(!svg.contains("<!DOCTYPE"));
    assert_eq!(external_references(svg), Vec::<String>::new());
}

#[test]
fn svg_names_the_heaviest_function_and_is_self_contained() {
    let svg = flamegraph(&snapshot(), &symbols(), "model-server <pid 42>");
    assert_svg(&svg);
    assert!(svg.contains("app::leaky_store"));
    assert!(svg.contains("app::fill_buffer"));
    assert!(
        !svg.contains("leakwatch_alloc::"),
        "allocator frames are dropped"
    );
    assert!(
        svg.contains("model-server &lt;pid 42&gt;"),
        "the title, escaped"
    );
    assert!(svg.contains("bytes"));
    // The heaviest frame's tooltip carries its bytes.
    let live = (4 * MIB).to_string();
    let tooltip = svg
        .split("<title>")
        .find(|t| t.starts_with("app::leaky_store"))
        .expect("a frame for app::leaky_store");
    let digits: String = tooltip.chars().filter(char::is_ascii_digit).collect();
    assert!(digits.starts_with(&live), "{tooltip}");
}

#[test]
fn no_live_bytes_gives_a_small_svg_that_says_so() {
    let mut freed = snapshot();
    for s in &mut freed.sites {
        s.live_bytes = 0;
    }
    for snapshot in [Snapshot::default(), freed] {
        let svg = flamegraph(&snapshot, &symbols(), "idle & <quiet>");
        assert_svg(&svg);
        assert!(svg.contains("no live bytes"), "{svg}");
        assert!(svg.contains("idle &amp; &lt;quiet&gt;"), "{svg}");
        assert!(svg.len() < 1000);
    }
}

#[test]
fn odd_names_and_unknown_addresses_render() {
    let mut table = SymbolTable::new();
    let mut s = Symbol::default();
    s.function = Some("weird;name\nwith\u{7}control \"quotes\" & <tags>".into());
    table.insert(0x1, vec![s]);
    table.insert(0x2, vec![Symbol::default()]); // no name at all
    table.insert(0x3, vec![]); // no symbols at all
    let mut snapshot = Snapshot::default();
    snapshot.sites = vec![site(1, vec![0x1, 0x2, 0x3], 100), site(2, vec![0x3], 50)];
    let svg = flamegraph(&snapshot, &table, "");
    assert_svg(&svg);
    assert!(svg.contains("weird,name with control"), "{svg}");
    assert!(svg.contains("0x2") && svg.contains("0x3"));
}

#[test]
fn self_contained_strips_doctype_and_comments_and_disarms_script_links() {
    let svg = "<?xml version=\"1.0\"?><!DOCTYPE svg PUBLIC \"x\" \"http://dtd\">\
               <svg xmlns=\"http://www.w3.org/2000/svg\"><!-- see https://x -->\
               <script><![CDATA[ // https://web.dev\n f(\"http://a\"); ]]></script></svg>";
    assert_eq!(
        self_contained(svg),
        "<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\">\
         <script><![CDATA[ // https:/\\/web.dev\n f(\"http:/\\/a\"); ]]></script></svg>"
    );
    // Unterminated constructs end the document rather than loop.
    assert_eq!(self_contained("<svg><!-- open"), "<svg>");
}
