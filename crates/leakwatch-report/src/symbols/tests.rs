use super::*;

fn frame(function: &str, file: &str, line: u32) -> Frame {
    Frame {
        address: 0x1000 + u64::from(line),
        function: Some(function.to_string()),
        file: Some(file.to_string()),
        line: Some(line),
        inlined: false,
    }
}

fn unknown(address: u64) -> Frame {
    Frame {
        address,
        function: None,
        file: None,
        line: None,
        inlined: false,
    }
}

#[test]
fn short_paths_start_at_the_package() {
    assert_eq!(
        short_path("/work/main/examples/leaky-sites/src/main.rs"),
        "leaky-sites/src/main.rs"
    );
    assert_eq!(
        short_path(
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/hashbrown-0.15.2/src/map.rs"
        ),
        "hashbrown-0.15.2/src/map.rs"
    );
    assert_eq!(
        short_path("/rustc/0123abcd/library/alloc/src/vec/mod.rs"),
        "library/alloc/src/vec/mod.rs"
    );
    assert_eq!(short_path("src/lib.rs"), "src/lib.rs");
    assert_eq!(short_path("main.rs"), "main.rs");
}

#[test]
fn the_label_is_the_first_frame_outside_the_runtime() {
    let stack = vec![
        frame(
            "leakwatch_alloc::hot::on_alloc",
            "/w/crates/leakwatch-alloc/src/hot.rs",
            10,
        ),
        frame("__rust_alloc", "", 0),
        frame(
            "alloc::raw_vec::RawVec<T>::grow",
            "/rustc/abc/library/alloc/src/raw_vec.rs",
            400,
        ),
        frame(
            "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
            "/rustc/abc/library/alloc/src/vec/spec_from_elem.rs",
            30,
        ),
        frame(
            "hashbrown::raw::RawTable<T>::reserve",
            "/r/hashbrown-0.15.2/src/raw/mod.rs",
            900,
        ),
        frame(
            "myapp::sessions::Store::insert",
            "/w/myapp/src/sessions.rs",
            88,
        ),
        frame("myapp::main", "/w/myapp/src/main.rs", 5),
    ];
    let rules = LabelRules::default();
    assert_eq!(rules.label_frame(&stack), Some(5));
    assert_eq!(
        rules.label(&stack),
        "myapp::sessions::Store::insert (myapp/src/sessions.rs:88)"
    );
    let user = rules.user_stack(&stack);
    assert_eq!(user.len(), 2);
    // A service's own allocation wrapper can be skipped too.
    let rules = LabelRules::with_extra(["myapp::sessions::"]);
    assert_eq!(rules.label(&stack), "myapp::main (myapp/src/main.rs:5)");
}

#[test]
fn trait_impls_of_std_types_are_runtime_but_of_user_types_are_not() {
    let rules = LabelRules::default();
    assert!(rules.is_ignored(&frame(
        "<alloc::vec::Vec<T> as core::clone::Clone>::clone",
        "x",
        1
    )));
    assert!(!rules.is_ignored(&frame(
        "<myapp::Foo as core::fmt::Display>::fmt",
        "/w/myapp/src/foo.rs",
        1
    )));
}

#[test]
fn stacks_without_user_frames_fall_back() {
    let rules = LabelRules::default();
    assert_eq!(rules.label(&[]), "(no stack)");
    let only_std = [frame(
        "std::rt::lang_start",
        "/rustc/abc/library/std/src/rt.rs",
        1,
    )];
    assert_eq!(rules.label_frame(&only_std), Some(0));
    // An unnamed frame is kept, but a named one further out is preferred.
    let stack = [
        unknown(0xdead),
        frame("myapp::run", "/w/myapp/src/run.rs", 3),
    ];
    assert_eq!(rules.label(&stack), "myapp::run (myapp/src/run.rs:3)");
    assert_eq!(rules.label(&[unknown(0xbeef)]), "0xbeef");
}

#[test]
fn recursion_of_any_depth_collapses_to_one_stack() {
    let leaf = frame("app::leaf", "/a/src/t.rs", 1);
    let walk = frame("app::walk", "/a/src/t.rs", 2);
    let other = frame("app::other", "/a/src/t.rs", 3);
    let main = frame("app::main", "/a/src/t.rs", 4);
    let once = vec![leaf.clone(), walk.clone(), main.clone()];
    let deep = vec![
        leaf.clone(),
        walk.clone(),
        walk.clone(),
        walk.clone(),
        main.clone(),
    ];
    let mutual = vec![
        leaf.clone(),
        walk.clone(),
        other.clone(),
        walk.clone(),
        other.clone(),
        walk.clone(),
        main.clone(),
    ];
    assert_eq!(collapse_recursion(&deep), once);
    assert_eq!(collapse_recursion(&mutual), once);
    assert_eq!(collapse_recursion(&once), once);
    // Unknown frames are told apart by address.
    let unknowns = vec![unknown(1), unknown(2), unknown(3)];
    assert_eq!(collapse_recursion(&unknowns), unknowns);
}

#[test]
fn tables_resolve_only_missing_addresses() {
    let mut table = SymbolTable::new();
    let mut calls = 0;
    let mut resolve = |a: u64| {
        calls += 1;
        let mut s = Symbol::default();
        s.address = a;
        s.function = Some(format!("f{a}"));
        vec![s]
    };
    let added = table.resolve_missing([&[3u64, 1, 3][..], &[2, 1][..]], &mut resolve);
    assert_eq!(added, vec![1, 2, 3]);
    let added = table.resolve_missing([&[1u64, 4][..]], &mut resolve);
    assert_eq!(added, vec![4]);
    assert_eq!(calls, 4);
    let stack = table.stack(&[4, 9]);
    assert_eq!(stack[0].function.as_deref(), Some("f4"));
    assert_eq!(stack[1], unknown(9));
}

#[test]
fn labels_from_addresses_match_labels_from_built_stacks() {
    let mut table = SymbolTable::new();
    let add = |table: &mut SymbolTable, address: u64, frames: &[(&str, &str, u32)]| {
        let list = frames
            .iter()
            .map(|&(function, file, line)| {
                let mut s = Symbol::default();
                s.address = address;
                s.function = Some(function.into());
                s.file = Some(file.into());
                s.line = Some(line);
                s
            })
            .collect();
        table.insert(address, list);
    };
    add(
        &mut table,
        1,
        &[(
            "alloc::alloc::alloc",
            "/rustc/x/library/alloc/src/alloc.rs",
            9,
        )],
    );
    // An address whose inlined frames hold both runtime and user code.
    add(
        &mut table,
        2,
        &[
            (
                "alloc::vec::Vec<T>::push",
                "/rustc/x/library/alloc/src/vec/mod.rs",
                1,
            ),
            ("app::store", "/w/app/src/lib.rs", 7),
        ],
    );
    add(&mut table, 3, &[("app::main", "/w/app/src/main.rs", 2)]);
    let rules = LabelRules::default();
    for stack in [
        &[1u64, 2, 3][..],
        &[1, 99, 3],
        &[1],
        &[99],
        &[],
        &[99, 1, 98],
    ] {
        let built = table.stack(stack);
        let expected = (rules.label(&built), rules.label_frame(&built).unwrap_or(0));
        assert_eq!(rules.label_of(&table, stack), expected, "{stack:?}");
    }
    assert_eq!(
        rules.label_of(&table, &[1, 2, 3]).0,
        "app::store (app/src/lib.rs:7)"
    );
}

/// One address's frames, innermost first: `(function, file, line)`; the last one is the
/// machine function, with symbol-table name `symbol`.
fn inline_chain(frames: &[(&str, &str, u32)], symbol: Option<&str>) -> Vec<Symbol> {
    let mut out: Vec<Symbol> = frames
        .iter()
        .map(|&(function, file, line)| {
            let mut s = Symbol::default();
            s.address = 0x4242;
            s.function = Some(function.into());
            s.file = Some(file.into());
            s.line = Some(line);
            s.inlined = true;
            s
        })
        .collect();
    let last = out.last_mut().unwrap();
    last.inlined = false;
    last.symbol = symbol.map(Into::into);
    out
}

fn completed(frames: &[(&str, &str, u32)], symbol: Option<&str>) -> Vec<String> {
    let mut table = SymbolTable::new();
    table.insert(0x4242, inline_chain(frames, symbol));
    let names = table.get(0x4242).unwrap().iter();
    names.map(|s| s.function.clone().unwrap()).collect()
}

#[test]
fn closures_take_the_function_they_are_defined_in() {
    const APP: &str = "/w/app/src/lib.rs";
    const ITER: &str = "/rustc/x/library/core/src/iter/traits/iterator.rs";
    // Line-tables-only names: the closure type in a runtime frame's generic arguments
    // names `{closure#1}`; `{closure#0}` (called by it) is written in `run`, the nearest
    // frame of its file; runtime code's own `{closure_env#0}` is not it. The machine
    // function takes its symbol's path.
    let names = completed(
        &[
            ("{closure#0}", APP, 10),
            ("{closure#1}", APP, 12),
            (
                "fold<core::ops::range::Range<usize>, (), core::iter::traits::iterator::Iterator::for_each::call::{closure_env#0}<usize, app::run::{closure_env#1}>>",
                ITER,
                2647,
            ),
            ("run", APP, 12),
            ("main", "/w/app/src/main.rs", 3),
        ],
        Some("app::main"),
    );
    assert_eq!(
        names,
        [
            "run::{closure#0}",
            "app::run::{closure#1}",
            "fold<core::ops::range::Range<usize>, (), core::iter::traits::iterator::Iterator::for_each::call::{closure_env#0}<usize, app::run::{closure_env#1}>>",
            "run",
            "app::main",
        ]
    );
    // A closure called by the function it is written in (`process_batch`), inlined with
    // it into a thread's closure of the same index in another function: the thread
    // start's generic arguments name that one (`main::{closure_env#0}`), not it.
    let names = completed(
        &[
            ("{closure#0}", APP, 28),
            ("process_batch", APP, 35),
            ("{closure#0}", "/w/app/src/main.rs", 49),
            (
                "__rust_begin_short_backtrace<app::main::{closure_env#0}, usize>",
                "/rustc/x/library/std/src/sys/backtrace.rs",
                166,
            ),
        ],
        Some("std::sys::backtrace::__rust_begin_short_backtrace<app::main::{{closure}}, usize>"),
    );
    assert_eq!(names[0], "process_batch::{closure#0}");
    assert_eq!(names[2], "app::main::{closure#0}");
    // An async body that is its own machine function: its symbol is the fn's closure.
    let names = completed(
        &[("{async_fn#0}", "/w/srv/src/server.rs", 323)],
        Some("model_server::server::generate::{{closure}}"),
    );
    assert_eq!(names, ["model_server::server::generate::{async_fn#0}"]);
    // One inlined into an executor generic over its future's type.
    let names = completed(
        &[
            ("{async_fn#0}", APP, 9),
            ("block_on<app::answer::{async_fn_env#0}>", APP, 25),
        ],
        Some("app::block_on"),
    );
    assert_eq!(
        names,
        [
            "app::answer::{async_fn#0}",
            "app::block_on<app::answer::{async_fn_env#0}>"
        ]
    );
    // Nothing to go by: the name stays.
    let names = completed(&[("{closure#0}", APP, 9), ("other", "/w/b.rs", 1)], None);
    assert_eq!(names, ["{closure#0}", "other"]);
    // Names with a path are kept as they are, and so is a symbol of another function.
    let names = completed(
        &[("app::Store<T>::put", APP, 1), ("helper", APP, 2)],
        Some("app::inlined_into::caller"),
    );
    assert_eq!(names, ["app::Store<T>::put", "helper"]);
}

#[test]
fn labels_shorten_generic_arguments_and_stacks_keep_them() {
    assert_eq!(
        short_generics(
            "app::Foo<alloc::string::String, std::collections::hash::map::HashMap<u8, u8>>::get"
        ),
        "app::Foo<…>::get"
    );
    assert_eq!(
        short_generics("<alloc::vec::Vec<alloc::string::String> as core::clone::Clone>::clone"),
        "<alloc::vec::Vec<…> as core::clone::Clone>::clone"
    );
    assert_eq!(
        short_generics(
            "<fn() -> core::result::Result<(), u8> as core::ops::FnOnce<()>>::call_once"
        ),
        "<fn() -> core::result::Result<(), u8> as core::ops::FnOnce<()>>::call_once"
    );
    assert_eq!(
        short_generics("app::keep::<alloc::string::String>"),
        "app::keep<…>"
    );
    // Short lists of parameters stay: `Store<K, V>`, `Vec<u8>`.
    assert_eq!(
        short_generics("<app::Store<K, V> as app::Put<u8>>::put"),
        "<app::Store<K, V> as app::Put<u8>>::put"
    );
    assert_eq!(
        short_generics("app::Pair<Vec<alloc::string::String>, u8>::get"),
        "app::Pair<…>::get"
    );
    assert_eq!(
        short_generics("app::run::{closure#0}"),
        "app::run::{closure#0}"
    );
    assert_eq!(short_generics("broken<a"), "broken<a");
    let f = frame("app::keep<alloc::vec::Vec<u64>>", "/w/app/src/lib.rs", 7);
    assert_eq!(f.short_label(), "app::keep<…> (app/src/lib.rs:7)");
    assert_eq!(
        f.label(),
        "app::keep<alloc::vec::Vec<u64>> (app/src/lib.rs:7)"
    );
    assert_eq!(
        LabelRules::default().label(&[f]),
        "app::keep<…> (app/src/lib.rs:7)"
    );
}

#[test]
fn the_threads_start_is_runtime() {
    let rules = LabelRules::default();
    let start = frame("start_thread", "./nptl/pthread_create.c", 442);
    let clone = Frame {
        file: None,
        line: None,
        ..frame("clone3", "", 0)
    };
    let c_main = Frame {
        file: None,
        line: None,
        ..frame("main", "", 0)
    };
    for f in [&start, &clone, &c_main] {
        assert!(rules.is_ignored(f), "{f:?}");
    }
    // Exact names only: the service's `clone_all` and its own `main` are its code.
    assert!(!rules.is_ignored(&frame("clone_all", "/w/app/src/lib.rs", 1)));
    assert!(!rules.is_ignored(&frame("main", "/w/app/src/main.rs", 1)));
    // Rules of their own (an allow-list) do not match the C `main`.
    let own = LabelRules {
        ignore: vec!["app::".into()],
    };
    assert!(!own.is_ignored(&c_main));
    // A stack with only runtime frames and the thread's start is not labelled with it.
    let stack = [
        frame(
            "alloc::alloc::alloc",
            "/rustc/x/library/alloc/src/alloc.rs",
            9,
        ),
        frame("test::run_test", "/rustc/x/library/test/src/lib.rs", 600),
        start.clone(),
        clone.clone(),
    ];
    assert!(!rules.label(&stack).contains("start_thread"));
    let stack = [
        stack[0].clone(),
        frame("app::work", "/w/app/src/lib.rs", 4),
        start,
    ];
    assert_eq!(rules.label(&stack), "app::work (app/src/lib.rs:4)");
}

#[test]
fn frames_without_files_are_warned_about() {
    let mut table = SymbolTable::new();
    table.insert(
        1,
        inline_chain(&[("app::run", "/w/app/src/lib.rs", 3)], None),
    );
    assert!(table.warnings().is_empty());
    // The C runtime's frames and runtime code without files say nothing.
    let mut bare = Symbol::default();
    bare.function = Some("start_thread".into());
    table.insert(2, vec![bare.clone()]);
    bare.function = Some("std::rt::lang_start".into());
    table.insert(3, vec![bare.clone()]);
    assert!(table.warnings().is_empty());
    // A frame with a file and no line has debug info: nothing to set.
    let mut fileonly = Symbol::default();
    fileonly.function = Some("tokio::runtime::worker::Context::run".into());
    fileonly.file = Some("/cargo/tokio/src/runtime/worker.rs".into());
    table.insert(5, vec![fileonly]);
    assert!(table.warnings().is_empty(), "{:?}", table.warnings());
    // The service's code without debug info does.
    bare.function = Some("app::handler".into());
    table.insert(4, vec![bare]);
    let warnings = table.warnings();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].starts_with("1 of 3 frames"), "{warnings:?}");
    assert!(
        warnings[0].contains("debug = \"line-tables-only\""),
        "{warnings:?}"
    );
}
