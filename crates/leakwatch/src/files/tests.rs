use super::*;
use leakwatch_alloc::{Mode, SiteStats, Symbol};
use leakwatch_report::recording::rotated_set;
use leakwatch_report::{History, Recording};
use leakwatch_testsupport::temp_dir;
use std::io::BufReader;

fn site(id: u32, alloc: u64, freed: u64) -> SiteStats {
    let mut s = SiteStats::default();
    s.id = id;
    s.frames = vec![0x1000 + u64::from(id), 0x2000 + u64::from(id % 7), 0x9999];
    s.alloc_bytes = alloc;
    s.alloc_blocks = alloc as f64 / 16.0;
    s.freed_bytes = freed;
    s.freed_blocks = freed as f64 / 16.0;
    s.live_bytes = alloc - freed;
    s.live_blocks = (alloc - freed) as f64 / 16.0;
    s.freed_seen_bytes = freed / 2;
    s.freed_old_bytes = freed / 4;
    s
}

/// `n` snapshots, 1 s apart, as a recorder would see them: sites appear over time
/// (site `k` at snapshot `3k`), some grow at every snapshot, some every fifth, the rest
/// never move again; each snapshot lists only the sites that exist, and every tenth
/// lists only the sites that moved (as a snapshot pushed from elsewhere may).
fn snapshots(n: u64) -> Vec<Snapshot> {
    (0..n)
        .map(|t| {
            let mut s = Snapshot::default();
            s.pid = 77;
            s.timestamp_ms = 1_700_000_000_000 + t * 1000;
            s.epoch = t + 1;
            s.sample_rate = 1;
            s.mode = Mode::Exact;
            if t == 0 {
                let mut module = leakwatch_alloc::Module::default();
                module.path = "/srv/app".into();
                s.modules = vec![module];
            }
            let sites = (t / 3 + 1).min(40) as u32;
            for id in 0..sites {
                let born = u64::from(id) * 3;
                let age = t - born;
                let moved = match id % 3 {
                    0 => true,
                    1 => age % 5 == 0,
                    _ => age == 0,
                };
                if t % 10 == 9 && !moved {
                    continue;
                }
                let grown = match id % 3 {
                    0 => age,
                    1 => age / 5,
                    _ => 0,
                };
                s.sites.push(site(id, 1000 + grown * 100, grown * 40));
            }
            s.process.live_bytes = s.sites.iter().map(|x| x.live_bytes as i64).sum();
            s
        })
        .collect()
}

fn symbols() -> SymbolTable {
    let mut table = SymbolTable::new();
    for id in 0..40u64 {
        for address in [0x1000 + id, 0x2000 + id % 7, 0x9999] {
            let mut s = Symbol::default();
            s.address = address;
            s.function = Some(format!("app::f{address:x}"));
            s.file = Some("/w/app/src/lib.rs".into());
            s.line = Some(address as u32);
            table.insert(address, vec![s]);
        }
    }
    table
}

/// Writes `snapshots` through a sink at `path` as the recorder does (each pushed to a
/// history first, whose latest state a file's first line describes).
fn record(path: &Path, rotation: Option<Rotation>, snapshots: &[Snapshot]) -> SeriesSink {
    let table = symbols();
    let mut sink = SeriesSink::open(path, rotation).unwrap();
    let mut history = History::default();
    for s in snapshots {
        history.push(s);
        sink.append(s, || history.latest_snapshot(), &table, Some(1 << 30))
            .unwrap();
    }
    sink
}

fn read_set(path: &Path) -> Recording {
    let files = rotated_set(path)
        .into_iter()
        .map(|p| {
            let file = std::fs::File::open(&p).unwrap();
            (p.display().to_string(), BufReader::new(file))
        })
        .collect();
    Recording::read_files(files, History::default()).unwrap()
}

fn read_one(path: &Path) -> Recording {
    let file = std::fs::File::open(path).unwrap();
    Recording::read(&path.display().to_string(), BufReader::new(file)).unwrap()
}

/// Absolute times (ms) of a history's points.
fn times(h: &History) -> Vec<f64> {
    h.times()
        .iter()
        .map(|t| h.start_ms() as f64 + t * 1000.0)
        .collect()
}

#[test]
fn a_rotated_set_reads_as_one_unrotated_file_of_the_same_snapshots() {
    let dir = temp_dir("files-set");
    let snapshots = snapshots(200);
    let whole = dir.join("whole.jsonl");
    record(&whole, None, &snapshots);
    let rotated = dir.join("rotated.jsonl");
    let sink = record(
        &rotated,
        Some(Rotation {
            max_bytes: 8 << 10,
            keep: 1000,
        }),
        &snapshots,
    );
    let set = rotated_set(&rotated);
    assert!(set.len() >= 5, "{set:?}");
    assert_eq!(sink.stats.rotations as usize, set.len() - 1);
    assert_eq!(sink.stats.deleted_files, 0);
    assert_eq!(set.last(), Some(&rotated), "the current file is read last");
    assert_eq!(
        set[0],
        rotated_path(&rotated, set.len() - 1),
        "oldest first"
    );

    let a = read_one(&whole);
    let b = read_set(&rotated);
    assert_eq!(b.lines, snapshots.len());
    assert_eq!(b.history.len(), a.history.len());
    assert_eq!(b.history.times(), a.history.times());
    assert_eq!(b.history.start_ms(), a.history.start_ms());
    for id in 0..40 {
        assert_eq!(b.history.column(id), a.history.column(id), "site {id}");
        assert_eq!(b.history.departed(id), a.history.departed(id), "site {id}");
    }
    assert_eq!(b.history.latest_snapshot(), a.history.latest_snapshot());
    assert_eq!(b.symbols, a.symbols);
    assert_eq!(b.memory_limit, a.memory_limit);
    assert_eq!(b.earlier_processes, 0);
}

#[test]
fn each_rotated_file_stands_alone_and_deleting_the_oldest_loses_only_their_points() {
    let dir = temp_dir("files-keep");
    let snapshots = snapshots(300);
    let whole = dir.join("whole.jsonl");
    record(&whole, None, &snapshots);
    let path = dir.join("series.jsonl");
    // Left by an earlier run that kept more: deleted at the first rotation.
    for n in 1..=4 {
        std::fs::write(rotated_path(&path, n), "stale\n").unwrap();
    }
    let max_bytes = 6 << 10;
    let sink = record(&path, Some(Rotation { max_bytes, keep: 2 }), &snapshots);
    let set = rotated_set(&path);
    assert_eq!(
        set,
        vec![rotated_path(&path, 2), rotated_path(&path, 1), path.clone()]
    );
    assert!(!rotated_path(&path, 3).exists());
    assert!(sink.stats.rotations > 3, "{:?}", sink.stats);
    // The stale .2 to .4 went at the first rotation, the stale .1 (renamed .2) at the
    // second; then one a rotation.
    assert_eq!(sink.stats.deleted_files, sink.stats.rotations - 2 + 4);
    let whole = read_one(&whole);
    let full = whole.history.latest_snapshot();

    for file in &set {
        // Each file alone: a history whose latest state is the one written last, and
        // every site described (modules, frames, symbols) though older files are gone.
        let alone = read_one(file);
        let size = std::fs::metadata(file).unwrap().len();
        let longest = std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .map(str::len)
            .max()
            .unwrap() as u64;
        assert!(size <= max_bytes + longest + 1, "{file:?}: {size} bytes");
        assert!(!alone.history.latest().modules.is_empty(), "{file:?}");
        assert_eq!(alone.memory_limit, Some(1 << 30));
        let last = alone.history.latest_snapshot();
        for site in &last.sites {
            for address in &site.frames {
                assert!(alone.symbols.contains(*address), "{file:?} {address:x}");
            }
        }
    }

    // The set: the points of the files kept, equal to the same points of the whole
    // file (live bytes at each; departures after the first, which only sets the
    // baseline).
    let kept = read_set(&path);
    let n = kept.history.len();
    let offset = whole.history.len() - n;
    assert!(n < whole.history.len());
    assert_eq!(times(&kept.history), times(&whole.history)[offset..]);
    for id in 0..40 {
        let a = whole.history.column(id).unwrap();
        let b = kept.history.column(id).unwrap();
        assert_eq!(b, a[offset..], "site {id}");
        let (a, b) = (
            whole.history.departed(id).unwrap(),
            kept.history.departed(id).unwrap(),
        );
        for i in 1..n {
            assert_eq!(
                b.seen[i] - b.seen[0],
                a.seen[offset + i] - a.seen[offset],
                "site {id} point {i}"
            );
        }
    }
    assert_eq!(kept.history.latest_snapshot(), full);
}

#[test]
fn a_failed_write_leaves_a_readable_file_and_the_next_line_describes_everything() {
    let dir = temp_dir("files-fail");
    let path = dir.join("series.jsonl");
    let snapshots = snapshots(60);
    let table = symbols();
    let mut sink = SeriesSink::open(&path, None).unwrap();
    let mut history = History::default();
    let mut failed = 0;
    for (i, s) in snapshots.iter().enumerate() {
        history.push(s);
        // Lines 20 to 24 fail halfway through (a full disk, say).
        sink.fail_after = (20..25).contains(&i).then_some(100);
        if sink
            .append(s, || history.latest_snapshot(), &table, None)
            .is_err()
        {
            failed += 1;
        }
    }
    assert_eq!(failed, 5);
    assert_eq!(sink.stats.lines, 55);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 55, "no partial line is left");
    let recording = read_one(&path);
    assert_eq!(recording.lines, 55);
    // What the lost lines carried came with the next one: the latest state is whole.
    assert_eq!(
        recording.history.latest_snapshot(),
        history.latest_snapshot()
    );
    // The line after the failures (snapshot 25's) described every site again: all 9
    // of them then, where a delta line would have described the one new site.
    let after: serde_json::Value = serde_json::from_str(text.lines().nth(20).unwrap()).unwrap();
    assert_eq!(after["timestamp_ms"], snapshots[25].timestamp_ms);
    assert_eq!(snapshots[25].sites.len(), 9);
    assert_eq!(after["new_sites"].as_array().map(Vec::len), Some(9));
    assert!(after["modules"].as_array().is_some_and(|m| !m.is_empty()));
}

#[test]
fn pprof_dump_names_sort_in_time_order() {
    assert_eq!(
        PprofDumps::name(1_700_000_000_123),
        "heap-20231114T221320.123Z.pb.gz"
    );
    let a = PprofDumps::name(1_700_000_009_999);
    let b = PprofDumps::name(1_700_000_010_000);
    assert!(a < b, "{a} {b}");
}

#[test]
fn pprof_dumps_keep_the_newest_and_leave_no_temporary_files() {
    let dir = temp_dir("files-dumps");
    let dumps = PprofDumps {
        dir: dir.to_path_buf(),
        every: std::time::Duration::from_secs(60),
        keep: 3,
    };
    // A file of someone else's in the directory is never deleted.
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let mut deleted = 0;
    for i in 0..5u64 {
        let (path, d) = dumps
            .write(
                1_700_000_000_000 + i * 60_000,
                format!("profile {i}").as_bytes(),
            )
            .unwrap();
        assert!(path.is_file());
        deleted += d;
    }
    assert_eq!(deleted, 2);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "heap-20231114T221520.000Z.pb.gz",
            "heap-20231114T221620.000Z.pb.gz",
            "heap-20231114T221720.000Z.pb.gz",
            "notes.txt"
        ]
    );
    assert_eq!(
        std::fs::read(dir.join(&names[2])).unwrap(),
        b"profile 4".to_vec()
    );

    // A directory that went away: an error naming the file, no temporary left behind.
    std::fs::remove_dir_all(&dir).unwrap();
    let e = dumps.write(1_700_000_999_000, b"x").unwrap_err();
    assert!(e.to_string().contains("cannot write"), "{e}");
}

#[test]
fn a_rotation_that_fails_keeps_writing_to_the_file_and_is_tried_again() {
    let dir = temp_dir("files-stuck");
    let path = dir.join("series.jsonl");
    // `path.1` is a directory with a file in it: it cannot be deleted as the oldest.
    let blocker = rotated_path(&path, 1);
    std::fs::create_dir_all(&blocker).unwrap();
    std::fs::write(blocker.join("x"), "x").unwrap();
    let snapshots = snapshots(40);
    let table = symbols();
    let rotation = Rotation {
        max_bytes: 1,
        keep: 1,
    };
    let mut sink = SeriesSink::open(&path, Some(rotation)).unwrap();
    let mut history = History::default();
    let mut errors = 0;
    for s in &snapshots[..20] {
        history.push(s);
        errors += usize::from(
            sink.append(s, || history.latest_snapshot(), &table, None)
                .is_err(),
        );
    }
    // Every line after the first wanted a rotation that failed, and was written anyway.
    assert_eq!(errors, 19);
    assert_eq!(sink.stats.lines, 20);
    assert_eq!(sink.stats.rotations, 0);
    assert_eq!(read_one(&path).lines, 20);

    std::fs::remove_dir_all(&blocker).unwrap();
    for s in &snapshots[20..] {
        history.push(s);
        sink.append(s, || history.latest_snapshot(), &table, None)
            .unwrap();
    }
    assert_eq!(sink.stats.rotations, 20);
    assert_eq!(read_one(&path).lines, 1, "one line a file at 1 byte");
    assert_eq!(
        read_one(&path).history.latest_snapshot(),
        history.latest_snapshot()
    );
    assert_eq!(read_one(&rotated_path(&path, 1)).lines, 1);
}
