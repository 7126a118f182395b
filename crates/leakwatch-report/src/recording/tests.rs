use super::*;
use leakwatch_types::Mode;

fn site(id: u32, alloc: u64, freed: u64) -> SiteStats {
    let mut s = SiteStats::default();
    s.id = id;
    s.frames = vec![0x100 + u64::from(id), 0x999];
    s.alloc_bytes = alloc;
    s.alloc_blocks = alloc as f64 / 10.0;
    s.freed_bytes = freed;
    s.freed_blocks = freed as f64 / 10.0;
    s.live_bytes = alloc - freed;
    s.live_blocks = (alloc - freed) as f64 / 10.0;
    s
}

fn snapshot(pid: u32, t: u64, sites: Vec<SiteStats>) -> Snapshot {
    let mut s = Snapshot::default();
    s.pid = pid;
    s.timestamp_ms = t;
    s.sample_rate = 1;
    s.mode = Mode::Exact;
    s.process.live_bytes = sites.iter().map(|s| s.live_bytes as i64).sum();
    s.sites = sites;
    s
}

fn symbols() -> SymbolTable {
    let mut table = SymbolTable::new();
    for address in [0x101u64, 0x102, 0x999] {
        let mut s = Symbol::default();
        s.address = address;
        s.function = Some(format!("app::f{address:x}"));
        s.file = Some("/w/app/src/lib.rs".into());
        s.line = Some(address as u32);
        table.insert(address, vec![s]);
    }
    table
}

fn write(snapshots: &[Snapshot]) -> String {
    let mut writer = SeriesWriter::new();
    let table = symbols();
    snapshots
        .iter()
        .map(|s| writer.line(s, &table, Some(1 << 30)))
        .collect()
}

fn read(text: &str) -> Result<Recording> {
    Recording::read("series.jsonl", text.as_bytes())
}

fn three_points() -> Vec<Snapshot> {
    vec![
        snapshot(7, 1_000, vec![site(1, 100, 0)]),
        snapshot(7, 2_000, vec![site(1, 100, 0), site(2, 50, 10)]),
        snapshot(7, 3_000, vec![site(1, 100, 0), site(2, 80, 10)]),
    ]
}

#[test]
fn a_written_series_reads_back_as_the_same_history() {
    let snapshots = three_points();
    let text = write(&snapshots);
    let recording = read(&text).unwrap();
    let mut direct = History::default();
    for s in &snapshots {
        direct.push(s);
    }
    assert_eq!(recording.lines, 3);
    assert_eq!(recording.history.times(), direct.times());
    assert_eq!(recording.history.column(1), direct.column(1));
    assert_eq!(recording.history.column(2), direct.column(2));
    assert_eq!(
        recording.history.latest_snapshot(),
        direct.latest_snapshot()
    );
    assert_eq!(recording.memory_limit, Some(1 << 30));
    assert_eq!(recording.symbols, symbols());
    assert_eq!(recording.earlier_processes, 0);
}

#[test]
fn lines_carry_only_what_changed() {
    let text = write(&three_points());
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Site 1 is described and counted on the first line only; its frames' symbols too.
    assert_eq!(lines[0]["new_sites"].as_array().unwrap().len(), 1);
    assert_eq!(lines[0]["symbols"].as_array().unwrap().len(), 2);
    assert_eq!(
        lines[1]["sites"].as_array().unwrap().len(),
        1,
        "{}",
        lines[1]
    );
    assert_eq!(
        lines[1]["symbols"].as_array().unwrap().len(),
        1,
        "0x999 is not repeated"
    );
    assert_eq!(lines[2]["sites"][0][0], 2);
    assert!(lines[2].get("new_sites").is_none());
    assert!(
        lines[1].get("memory_limit").is_none(),
        "the limit is written when it changes"
    );
}

#[test]
fn a_restarted_process_starts_a_new_history() {
    let mut snapshots = three_points();
    snapshots.push(snapshot(8, 10_000, vec![site(1, 5, 0)]));
    let recording = read(&write(&snapshots)).unwrap();
    assert_eq!(recording.earlier_processes, 1);
    assert_eq!(recording.history.len(), 1);
    assert_eq!(recording.history.latest().pid, 8);
}

fn error(text: &str) -> String {
    read(text).unwrap_err().to_string()
}

#[test]
fn bad_files_get_an_error_naming_the_line() {
    let good = write(&three_points());
    assert_eq!(error(""), "series.jsonl: empty file: no snapshots recorded");
    assert_eq!(
        error("\n\n"),
        "series.jsonl: empty file: no snapshots recorded"
    );

    // Cut inside the last line, as a process killed mid-write leaves it.
    let cut = &good[..good.len() - 20];
    let e = error(cut);
    assert!(e.starts_with("series.jsonl:3: truncated"), "{e}");

    let mut corrupt: Vec<&str> = good.lines().collect();
    corrupt[1] = "{\"leakwatch_series\": 1, garbage";
    let e = error(&corrupt.join("\n"));
    assert!(e.starts_with("series.jsonl:2: not valid JSON"), "{e}");

    let e = error("hello world\n");
    assert!(e.starts_with("series.jsonl:1: not valid JSON"), "{e}");
    let e = error("{\"some\": \"json\"}\n");
    assert_eq!(
        e,
        "series.jsonl:1: not a leakwatch series line (no \"leakwatch_series\" field)"
    );
    let e = error("{\"format\": \"leakwatch-report\", \"version\": 1}\n");
    assert!(
        e.contains("this is a JSON report, not a series file"),
        "{e}"
    );

    let future = good
        .lines()
        .next()
        .unwrap()
        .replace("\"leakwatch_series\":1", "\"leakwatch_series\":99");
    let e = error(&future);
    assert_eq!(
        e,
        "series.jsonl:1: series version 99 is not supported (this build reads 1)"
    );

    // The first lines lost: counters of a site no line describes.
    let headless: String = good.lines().skip(2).map(|l| format!("{l}\n")).collect();
    let e = error(&headless);
    assert!(
        e.starts_with("series.jsonl:1: counters for site 2, which no earlier line describes"),
        "{e}"
    );

    // A field of the wrong type.
    let wrong = good
        .lines()
        .next()
        .unwrap()
        .replace("\"pid\":7", "\"pid\":\"seven\"");
    let e = error(&wrong);
    assert!(
        e.starts_with("series.jsonl:1: not a valid series line"),
        "{e}"
    );
}

#[test]
fn unsymbolized_addresses_are_left_out_and_symbolized_unknown_ones_kept() {
    // 0x101 named, 0x999 symbolized without a name (an empty entry), 0x102 and its
    // site's other frames not symbolized at all (the table lacks them).
    let mut table = SymbolTable::new();
    let mut named = Symbol::default();
    named.address = 0x101;
    named.function = Some("app::f".into());
    table.insert(0x101, vec![named]);
    table.insert(0x999, Vec::new());
    let mut writer = SeriesWriter::new();
    let snapshots = three_points();
    let text: String = snapshots
        .iter()
        .map(|s| writer.line(s, &table, None))
        .collect();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let written: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.get("symbols"))
        .flat_map(|s| s.as_array().unwrap().iter())
        .map(|list| list[0]["address"].as_u64().unwrap())
        .collect();
    assert_eq!(written, [0x101, 0x999], "{text}");

    let recording = read(&text).unwrap();
    assert!(recording.symbols.contains(0x101));
    // Symbolized, unknown: an entry with one frame without a name.
    let unknown = recording.symbols.get(0x999).unwrap();
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].function, None);
    // Not symbolized: no entry.
    assert!(!recording.symbols.contains(0x102));
    assert_eq!(recording.symbols.len(), 2);
}

#[test]
fn an_address_symbolized_later_is_written_by_the_next_line_describing_it() {
    let mut writer = SeriesWriter::new();
    let snapshots = three_points();
    let empty = SymbolTable::new();
    let first = writer.line(&snapshots[0], &empty, None);
    assert!(!first.contains("\"symbols\""), "{first}");
    // Site 2 (frames 0x102, 0x999) is new on the second line, now with symbols: they are
    // written; site 1's 0x101, described on the first line, is not repeated.
    let second = writer.line(&snapshots[1], &symbols(), None);
    let line: serde_json::Value = serde_json::from_str(&second).unwrap();
    let addresses: Vec<u64> = line["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|list| list[0]["address"].as_u64().unwrap())
        .collect();
    assert_eq!(addresses, [0x102, 0x999]);
}

#[test]
fn modules_travel_with_their_executable_segment() {
    let mut snapshots = three_points();
    let mut module = leakwatch_types::Module::default();
    module.path = "/srv/model-server".into();
    module.base = 0x5555_0000_0000;
    module.start = 0x5555_0000_0000;
    module.end = 0x5555_0050_0000;
    module.build_id = Some("ab12".into());
    module.text_start = 0x5555_0013_7330;
    module.text_end = 0x5555_0043_4080;
    module.text_offset = 0x13_6330;
    snapshots[0].modules = vec![module.clone()];
    let recording = read(&write(&snapshots)).unwrap();
    assert_eq!(recording.history.latest().modules, [module]);
}

#[test]
fn departure_ages_are_written_and_read_back_and_lines_without_them_leave_them_unknown() {
    let mut sites = vec![site(1, 1000, 0)];
    let mut snapshots = vec![snapshot(7, 1_000, sites.clone())];
    for t in 1..20u64 {
        sites[0].freed_bytes += 2048;
        sites[0].alloc_bytes += 2048;
        sites[0].freed_old_bytes += 2048;
        sites[0].freed_seen_bytes += 2048;
        // Two KiB, 10 snapshots old.
        sites[0].freed_old_age_sq += 2 * 100;
        snapshots.push(snapshot(7, 1_000 + t * 1000, sites.clone()));
    }
    for (epoch, s) in snapshots.iter_mut().enumerate() {
        s.epoch = epoch as u64 + 1;
    }
    let text = write(&snapshots);
    assert!(
        text.lines()
            .skip(1)
            .all(|l| l.contains("\"departed_ages\"")),
        "{text}"
    );
    let recording = read(&text).unwrap();
    assert_eq!(
        recording.history.latest_snapshot().sites[0].freed_old_age_sq,
        19 * 200
    );
    let d = recording.history.departed(1).expect("departures are known");
    let mean_sq =
        (d.old_age_sq.last().unwrap() - d.old_age_sq[0]) / (d.old.last().unwrap() - d.old[0]);
    assert_eq!(mean_sq, 100.0);
    // The same file as a writer from before departure ages wrote it.
    let older: String = text
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("departed_ages");
            format!("{v}\n")
        })
        .collect();
    let recording = read(&older).unwrap();
    let d = recording.history.departed(1).expect("departures are known");
    assert!(d.old_age_sq.is_empty(), "{d:?}");
}

#[test]
fn a_line_lists_only_the_sites_whose_counters_moved() {
    // 1,000 sites; after the first snapshot, one site moves at each (alternately its
    // allocations, then its frees with departures), every snapshot listing all sites.
    let mut sites: Vec<SiteStats> = (0..1000).map(|id| site(id, 1000, 0)).collect();
    let mut snapshots = vec![snapshot(7, 1_000, sites.clone())];
    for t in 1..50u64 {
        let moved = (t * 37 % 1000) as usize;
        if t % 2 == 1 {
            sites[moved].alloc_bytes += 64;
            sites[moved].live_bytes += 64;
        } else {
            sites[moved].freed_bytes += 64;
            sites[moved].live_bytes -= 64;
            sites[moved].freed_seen_bytes += 64;
        }
        snapshots.push(snapshot(7, 1_000 + t * 1000, sites.clone()));
    }
    let text = write(&snapshots);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["sites"].as_array().unwrap().len(), 1000);
    assert_eq!(lines[0]["new_sites"].as_array().unwrap().len(), 1000);
    for (t, line) in lines.iter().enumerate().skip(1) {
        let moved = (t as u64 * 37 % 1000) as u32;
        let listed = line["sites"].as_array().unwrap();
        assert_eq!(listed.len(), 1, "line {t}: {listed:?}");
        assert_eq!(listed[0][0], moved, "line {t}");
        assert!(line.get("new_sites").is_none() && line.get("symbols").is_none());
        assert!(line.get("modules").is_none());
        // Departures only on the lines whose frees moved them.
        assert_eq!(line.get("departed").is_some(), t % 2 == 0, "line {t}");
    }
    // A steady snapshot (nothing moved) is a header and no site.
    let mut steady = snapshots.clone();
    steady.push(snapshot(7, 60_000, sites.clone()));
    let last = write(&steady).lines().last().unwrap().to_string();
    let last: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(last["sites"].as_array().unwrap().len(), 0);
    // And what was written reads back as the snapshots themselves.
    let recording = read(&text).unwrap();
    let mut direct = History::default();
    for s in &snapshots {
        direct.push(s);
    }
    assert_eq!(
        recording.history.latest_snapshot(),
        direct.latest_snapshot()
    );
    for id in [0, 37, 74, 999] {
        assert_eq!(recording.history.column(id), direct.column(id));
    }
}

#[test]
fn a_site_described_again_with_its_frames_is_no_news_and_with_others_an_error() {
    // What a rotated file's first line (or the line after a failed write) does:
    // describe every site again.
    let snapshots = three_points();
    let mut writer = SeriesWriter::new();
    let table = symbols();
    let mut text = writer.line(&snapshots[0], &table, None);
    text.push_str(&writer.line(&snapshots[1], &table, None));
    writer.restart();
    let again = writer.line(&snapshots[2], &table, None);
    assert!(again.contains("\"new_sites\""), "{again}");
    text.push_str(&again);
    let recording = read(&text).unwrap();
    let whole = read(&write(&snapshots)).unwrap();
    assert_eq!(recording.history.times(), whole.history.times());
    assert_eq!(recording.history.column(2), whole.history.column(2));
    assert_eq!(
        recording.history.latest_snapshot(),
        whole.history.latest_snapshot()
    );

    // Other frames for a known id: refused, naming the line.
    let mut other = snapshots[2].clone();
    other.sites[1].frames = vec![0x555];
    writer.restart();
    let mut crafted = text.clone();
    crafted.push_str(&writer.line(&other, &table, None));
    let e = error(&crafted);
    assert!(
        e.starts_with("series.jsonl:4: site 2 is described twice, with different frames"),
        "{e}"
    );

    // One line describing a site twice: refused.
    let first = write(&snapshots[..1]);
    let doubled = first.replacen(
        "\"new_sites\":[",
        "\"new_sites\":[{\"id\":1,\"frames\":[257,2457]},",
        1,
    );
    let e = error(&doubled);
    assert!(
        e.starts_with("series.jsonl:1: site 1 is described twice in one line"),
        "{e}"
    );
}

#[test]
fn a_sites_tags_travel_with_its_description_and_bad_ones_are_an_error() {
    let mut tagged = site(1, 100, 0);
    tagged.tags.insert("model".into(), "2".into());
    let text = write(&[
        snapshot(7, 1_000, vec![tagged.clone()]),
        snapshot(
            7,
            2_000,
            vec![{
                let mut s = tagged.clone();
                s.alloc_bytes = 200;
                s.live_bytes = 200;
                s
            }],
        ),
    ]);
    // Described once, with its frames.
    assert_eq!(text.matches("\"tags\"").count(), 1, "{text}");
    let recording = read(&text).unwrap();
    let back = recording.history.site(1).unwrap();
    assert_eq!(back.tags, tagged.tags);
    assert_eq!(back.live_bytes, 200);
    // More tags than a set holds, or a tag longer than the tracker writes: refused.
    let many: String = (0..=leakwatch_types::MAX_TAGS)
        .map(|i| format!("\"k{i}\":\"v\""))
        .collect::<Vec<_>>()
        .join(",");
    let first = text.lines().next().unwrap();
    let crafted = first.replace(
        "\"tags\":{\"model\":\"2\"}",
        &format!("\"tags\":{{{many}}}"),
    );
    assert_ne!(crafted, first);
    assert!(
        error(&crafted).contains("tags in one site"),
        "{}",
        error(&crafted)
    );
    let long = "x".repeat(leakwatch_types::MAX_TAG_BYTES + 1);
    let crafted = first.replace("\"model\":\"2\"", &format!("\"model\":\"{long}\""));
    assert!(
        error(&crafted).contains("longer than"),
        "{}",
        error(&crafted)
    );
}

/// `site` with ages: `old` old bytes, the rest of its live bytes under 10 s.
fn aged_site(id: u32, alloc: u64, freed: u64, old: u64) -> SiteStats {
    let mut s = site(id, alloc, freed);
    s.old_bytes = Some(old);
    s.age_bytes = vec![s.live_bytes - old, old, 0, 0, 0];
    s
}

#[test]
fn ages_travel_and_a_site_that_only_aged_is_written_for_them() {
    let snapshots = vec![
        snapshot(
            7,
            1_000,
            vec![aged_site(1, 100, 0, 0), aged_site(2, 50, 0, 0)],
        ),
        // Site 1 only aged (same counters); site 2 did not change at all.
        snapshot(
            7,
            2_000,
            vec![aged_site(1, 100, 0, 60), aged_site(2, 50, 0, 0)],
        ),
        snapshot(
            7,
            3_000,
            vec![aged_site(1, 100, 0, 100), aged_site(2, 90, 0, 0)],
        ),
    ];
    let text = write(&snapshots);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[1]["sites"].as_array().unwrap().len(),
        1,
        "{}",
        lines[1]
    );
    assert_eq!(lines[1]["ages"][0][0], 1);
    assert_eq!(lines[1]["ages"][0][1], 60);
    assert_eq!(
        lines[1]["ages"].as_array().unwrap().len(),
        1,
        "site 2's ages held"
    );
    // Site 2's live bytes grew, all young: its buckets changed, its old bytes did not.
    assert_eq!(
        lines[2]["ages"].as_array().unwrap().len(),
        2,
        "{}",
        lines[2]
    );
    let recording = read(&text).unwrap();
    let mut direct = History::default();
    for s in &snapshots {
        direct.push(s);
    }
    assert_eq!(recording.history.aged(1), Some(vec![0.0, 60.0, 100.0]));
    assert_eq!(recording.history.aged(2), Some(vec![0.0, 0.0, 0.0]));
    assert_eq!(recording.history.aged(1), direct.aged(1));
    let latest = recording.history.latest_snapshot();
    assert_eq!(latest.sites[0].age_bytes, vec![0, 100, 0, 0, 0]);
    assert_eq!(latest.sites[1].old_bytes, Some(0));
    assert_eq!(
        recording.history.series().aged.get(&1),
        Some(&vec![0.0, 60.0, 100.0])
    );
}

#[test]
fn a_series_without_ages_leaves_them_unknown_and_bad_ages_are_an_error() {
    // Lines written before ages (three_points has none): the series has no old bytes.
    let recording = read(&write(&three_points())).unwrap();
    assert_eq!(recording.history.aged(1), None);
    assert!(recording.history.series().aged.is_empty());
    let mut line: serde_json::Value =
        serde_json::from_str(write(&three_points()).lines().next().unwrap()).unwrap();
    line["ages"] = serde_json::json!([[1, 5, vec![0u64; 17]]]);
    let e = error(&format!("{line}\n"));
    assert!(e.contains(":1:") && e.contains("age buckets"), "{e}");
    line["ages"] = serde_json::json!([[9, 5, [0, 5]]]);
    let e = error(&format!("{line}\n"));
    assert!(e.contains("ages for site 9"), "{e}");
}
