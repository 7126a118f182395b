//! `leakwatch report` on a series file recorded with symbolization off
//! (`LEAKWATCH_SYMBOLIZE=0`): sites are labelled by module and offset, with one warning
//! saying how to get names.

use leakwatch_report::{SeriesWriter, SymbolTable};
use leakwatch_types::{Mode, Module, SiteStats, Snapshot};

mod common;
use common::leakwatch;
use leakwatch_testsupport::temp_dir;

const BASE: u64 = 0x5555_0000_0000;

/// Two minutes of a leak (site 1) and a stable site (2) in `/srv/svc`, loaded at
/// [`BASE`], written without symbols.
fn unsymbolized_series() -> String {
    let mut module = Module::default();
    module.path = "/srv/svc".into();
    module.base = BASE;
    module.start = BASE;
    module.end = BASE + 0x10_0000;
    module.build_id = Some("0123abcd".into());
    let mut writer = SeriesWriter::new();
    let empty = SymbolTable::new();
    let mut out = String::new();
    for i in 0..120u64 {
        let mut s = Snapshot::default();
        s.timestamp_ms = 1_800_000_000_000 + i * 1000;
        s.epoch = i + 1;
        s.pid = 77;
        s.mode = Mode::Exact;
        s.sample_rate = 1;
        s.modules = vec![module.clone()];
        s.sites = [
            (1u32, [0x2001u64, 0x3001], 40_000 * i),
            (2, [0x2001, 0x4001], 1 << 20),
        ]
        .into_iter()
        .map(|(id, frames, live)| {
            let mut site = SiteStats::default();
            site.id = id;
            site.frames = frames.iter().map(|f| BASE + f).collect();
            site.alloc_bytes = live;
            site.live_bytes = live;
            site.alloc_blocks = 1.0;
            site.live_blocks = 1.0;
            site
        })
        .collect();
        out.push_str(&writer.line(&s, &empty, None));
    }
    out
}

#[test]
fn an_unsymbolized_series_is_labelled_by_module_and_offset_with_one_warning() {
    let dir = temp_dir("cli-offline");
    let series = dir.join("series.jsonl");
    let text = unsymbolized_series();
    assert!(!text.contains("\"symbols\""), "written without symbols");
    std::fs::write(&series, text).unwrap();
    let s = series.to_str().unwrap();

    let out = leakwatch(&["report", s]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    // The innermost frame's call (0x2001 - 1) in the file, and the stack's hash.
    let rows: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("svc+0x2000 #"))
        .collect();
    assert_eq!(rows.len(), 2, "{report}");
    assert!(rows[0].contains("leak"), "{report}");
    assert_eq!(report.matches("symbols are offline").count(), 1, "{report}");
    assert!(report.contains("--symbols BINARY"), "{report}");

    let json = leakwatch(&["report", s, "--format", "json"]);
    assert!(json.status.success());
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let label = v["sites"][0]["label"].as_str().unwrap();
    assert!(label.starts_with("svc+0x2000 #"), "{label}");
    assert!(v["sites"][0]["function"].is_null());
    let _ = std::fs::remove_dir_all(&dir);
}
