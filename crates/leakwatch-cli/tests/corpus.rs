//! Every file of the fuzz corpora (`fuzz/corpus/{series,report,args}`: seeds, and each
//! finding once fixed) replayed on stable through the checks the fuzz targets make
//! (`fuzz/src/checks.rs`): no panic, one-line errors, reports that survive a JSON round
//! trip, parsed arguments that name only files given.

#[allow(dead_code)]
#[path = "../src/args.rs"]
mod args;
#[path = "../../../fuzz/src/checks.rs"]
mod checks;

use std::path::Path;

/// A fuzz target's checks: panics when an input breaks an invariant.
type Check = fn(&[u8]);

#[test]
fn every_corpus_file_passes_the_fuzz_targets_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let targets: [(&str, Check); 3] = [
        ("series", checks::check_series),
        ("report", checks::check_report),
        ("args", checks::check_args),
    ];
    let mut failed = Vec::new();
    for (target, check) in targets {
        let dir = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 3, "{}: {} files", dir.display(), files.len());
        for file in files {
            let data = std::fs::read(&file).unwrap();
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failed.push(file.display().to_string());
            }
        }
    }
    assert!(failed.is_empty(), "failed the checks: {failed:#?}");
}
