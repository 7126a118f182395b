//! The recorder's files: the series file (rotated by size) and periodic pprof dumps (a
//! directory of the newest few).
//!
//! Both are bounded on disk and say what they did: rotations, deleted files and write
//! errors are counted in [`FileStats`], and a failed write never leaves a file a reader
//! cannot read (the partial line is cut off, and the next line describes everything).

use leakwatch_alloc::Snapshot;
use leakwatch_report::recording::rotated_path;
use leakwatch_report::{SeriesWriter, SymbolTable};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// When the series file rotates: once it holds `max_bytes`, it is renamed `path.1`
/// (`path.1` to `path.2`, and so on), the oldest beyond `keep` is deleted, and a new
/// `path` starts with a line that describes everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rotation {
    pub(crate) max_bytes: u64,
    /// Rotated files kept besides `path` (at least 1).
    pub(crate) keep: usize,
}

/// What the recorder's files did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileStats {
    /// Lines written to the series file.
    pub lines: u64,
    /// Times the series file was rotated.
    pub rotations: u64,
    /// Rotated series files deleted (beyond `keep`).
    pub deleted_files: u64,
    /// Bytes in the current series file.
    pub bytes: u64,
    /// pprof profiles written to the dump directory.
    pub pprof_dumps: u64,
    /// pprof profiles deleted from the dump directory (beyond `keep`).
    pub pprof_deleted: u64,
    /// pprof profiles that could not be written (or older ones not deleted).
    pub pprof_errors: u64,
}

/// The series file being written.
pub(crate) struct SeriesSink {
    pub(crate) path: PathBuf,
    file: File,
    /// Bytes of `path` that hold complete lines.
    bytes: u64,
    rotation: Option<Rotation>,
    writer: SeriesWriter,
    /// The next line must describe everything: the file is new, or a line may not
    /// have landed.
    fresh: bool,
    /// Set at the first error (logged once).
    pub(crate) failed: bool,
    pub(crate) stats: FileStats,
    /// Test hook: the next write stops after this many bytes and fails.
    #[cfg(test)]
    pub(crate) fail_after: Option<usize>,
}

/// Opens `path` for appending, creating it if missing.
fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("leakwatch: cannot open {}: {e}", path.display()),
            )
        })
}

impl SeriesSink {
    pub(crate) fn open(path: &Path, rotation: Option<Rotation>) -> std::io::Result<SeriesSink> {
        let file = open_append(path)?;
        let bytes = file.metadata().map_or(0, |m| m.len());
        Ok(SeriesSink {
            path: path.to_path_buf(),
            file,
            bytes,
            rotation,
            writer: SeriesWriter::new(),
            fresh: true,
            failed: false,
            stats: FileStats {
                bytes,
                ..FileStats::default()
            },
            #[cfg(test)]
            fail_after: None,
        })
    }

    /// Appends the line of `snapshot`. When the file is full it rotates first; the
    /// first line of a file, and the line after a failed write, is written from
    /// `everything()` instead: every site's frames and latest counters, so that the file
    /// stands alone once the older ones are deleted (and nothing a failed line carried
    /// is missing).
    ///
    /// # Errors
    /// When the line could not be written (the file is cut back to its last complete
    /// line where possible) or the file could not be rotated (the line is then
    /// written to the file as it is).
    pub(crate) fn append(
        &mut self,
        snapshot: &Snapshot,
        everything: impl FnOnce() -> Snapshot,
        symbols: &SymbolTable,
        limit: Option<u64>,
    ) -> std::io::Result<()> {
        // A rotation that fails leaves the file as it was (and is tried again at the
        // next line): the line is written to it all the same.
        let rotated = match self.rotation {
            Some(rotation) if self.bytes >= rotation.max_bytes => self.rotate(rotation),
            _ => Ok(()),
        };
        let line = if self.fresh {
            self.writer.restart();
            self.writer.line(&everything(), symbols, limit)
        } else {
            self.writer.line(snapshot, symbols, limit)
        };
        match self.write(line.as_bytes()) {
            Ok(()) => {
                self.bytes += line.len() as u64;
                self.stats.bytes = self.bytes;
                self.stats.lines += 1;
                self.fresh = false;
                rotated
            }
            Err(e) => {
                // Part of the line may have landed: cut it off, so the file still ends
                // with a complete line, and describe everything next time.
                let _ = self.file.set_len(self.bytes);
                self.fresh = true;
                Err(e)
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(n) = self.fail_after.take() {
            self.file.write_all(&bytes[..n.min(bytes.len())])?;
            return Err(std::io::Error::other("injected write failure"));
        }
        self.file.write_all(bytes)
    }

    /// `path.K` to `path.K+1` (the one beyond `keep` deleted), `path` to `path.1`, and
    /// a new `path`.
    fn rotate(&mut self, rotation: Rotation) -> std::io::Result<()> {
        let keep = rotation.keep.max(1);
        // The oldest kept moves out of the set, and so do any beyond it (left by a run
        // that kept more): a reader reads the numbers present from 1 without a gap.
        for n in keep.. {
            match std::fs::remove_file(rotated_path(&self.path, n)) {
                Ok(()) => self.stats.deleted_files += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(e),
            }
        }
        for n in (1..keep).rev() {
            let from = rotated_path(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated_path(&self.path, n + 1))?;
            }
        }
        let newest = rotated_path(&self.path, 1);
        std::fs::rename(&self.path, &newest)?;
        match open_append(&self.path) {
            Ok(file) => self.file = file,
            Err(e) => {
                // Keep writing where we were: put the full file back under its name.
                let _ = std::fs::rename(&newest, &self.path);
                return Err(e);
            }
        }
        self.bytes = 0;
        self.stats.bytes = 0;
        self.stats.rotations += 1;
        self.fresh = true;
        Ok(())
    }

    /// Bytes the sink holds in memory: the writer's record of what it wrote.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.writer.memory_bytes()
    }
}

/// Periodic pprof profiles written to a directory, the newest `keep` kept.
#[derive(Debug, Clone)]
pub(crate) struct PprofDumps {
    pub(crate) dir: PathBuf,
    pub(crate) every: std::time::Duration,
    pub(crate) keep: usize,
}

/// The prefix and suffix of a dump's file name: `heap-20261202T061530.123Z.pb.gz`.
const DUMP_PREFIX: &str = "heap-";
const DUMP_SUFFIX: &str = ".pb.gz";

impl PprofDumps {
    /// The file name of a dump taken at `ms` (since the Unix epoch): UTC, so names sort
    /// in time order.
    pub(crate) fn name(ms: u64) -> String {
        let utc = leakwatch_report::render::text::utc(ms);
        let digits: String = utc.chars().filter(char::is_ascii_digit).collect();
        let (date, time) = digits.split_at(digits.len().min(8));
        format!("{DUMP_PREFIX}{date}T{time}.{:03}Z{DUMP_SUFFIX}", ms % 1000)
    }

    /// Writes `profile` as the dump of time `ms` (to a temporary file, then renamed, so
    /// a reader never sees half a profile), then deletes the oldest dumps (by name, so
    /// by time) beyond `keep`, never the one just written. Returns the path written and how many old dumps were deleted.
    ///
    /// # Errors
    /// When the profile cannot be written or renamed, or an old dump not deleted.
    pub(crate) fn write(&self, ms: u64, profile: &[u8]) -> std::io::Result<(PathBuf, u64)> {
        let name = Self::name(ms);
        let path = self.dir.join(&name);
        let temporary = self.dir.join(format!(".{name}.tmp"));
        let written = File::create(&temporary)
            .and_then(|mut file| file.write_all(profile).and_then(|()| file.sync_all()))
            .and_then(|()| std::fs::rename(&temporary, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temporary);
            return Err(std::io::Error::new(
                e.kind(),
                format!("cannot write {}: {e}", path.display()),
            ));
        }
        let mut dumps: Vec<String> = std::fs::read_dir(&self.dir)?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with(DUMP_PREFIX) && name.ends_with(DUMP_SUFFIX))
            // Never the one just written, even when older dumps carry later times (a
            // wall clock that was ahead in an earlier run).
            .filter(|other| *other != name)
            .collect();
        dumps.sort_unstable();
        let mut deleted = 0;
        let excess = (dumps.len() + 1).saturating_sub(self.keep.max(1));
        for old in &dumps[..excess] {
            std::fs::remove_file(self.dir.join(old))?;
            deleted += 1;
        }
        Ok((path, deleted))
    }
}

#[cfg(test)]
mod tests;
