//! Where a module's file is: in the process, the path the loader reports; offline, the
//! files and directories given with `--symbols`, matched by GNU build id.

use crate::map::MappedFile;
use std::path::{Path, PathBuf};

/// What the symbolizer needs to know of a loaded module (as `Snapshot::modules` lists
/// them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleRef<'a> {
    /// Path of the file as the dynamic loader reported it (empty for the main program
    /// on some systems).
    pub path: &'a str,
    /// Load bias: runtime address = file address + `base`.
    pub base: u64,
    /// Lowest runtime address of its loadable segments.
    pub start: u64,
    /// One past the highest.
    pub end: u64,
    /// GNU build id, lowercase hex.
    pub build_id: Option<&'a str>,
}

impl<'a> From<&'a leakwatch_types::Module> for ModuleRef<'a> {
    fn from(m: &'a leakwatch_types::Module) -> Self {
        ModuleRef {
            path: &m.path,
            base: m.base,
            start: m.start,
            end: m.end,
            build_id: m.build_id.as_deref(),
        }
    }
}

/// Finds the file to read a module's debug info and symbols from.
pub trait Locate {
    /// The file for `module`.
    ///
    /// # Errors
    /// Why there is none, in a few words naming the module.
    fn locate(&mut self, module: &ModuleRef<'_>) -> Result<PathBuf, String>;
}

/// The files of the modules loaded in this process: the loader's path, or
/// `/proc/self/exe` for the main program when the path is empty.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadedFiles;

impl Locate for LoadedFiles {
    fn locate(&mut self, module: &ModuleRef<'_>) -> Result<PathBuf, String> {
        if module.path.is_empty() {
            return Ok(PathBuf::from("/proc/self/exe"));
        }
        let path = Path::new(module.path);
        if !path.is_absolute() {
            // The vDSO ("linux-vdso.so.1") has no file.
            return Err(format!("{}: no file to read", module.path));
        }
        Ok(path.to_path_buf())
    }
}

/// Symbol files given by the user (`leakwatch report --symbols PATH`): binaries or
/// debug files, matched to modules by their GNU build id (or, for a module without
/// one, by file name), and directories searched as `.build-id/xx/rest.debug`.
#[derive(Debug, Clone, Default)]
pub struct SymbolFiles {
    files: Vec<SymbolFile>,
    dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
struct SymbolFile {
    path: PathBuf,
    build_id: Option<String>,
}

impl SymbolFiles {
    /// No files yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a binary, a debug file or a directory.
    ///
    /// # Errors
    /// When `path` does not exist, cannot be read, or is a file but not an ELF file.
    pub fn add(&mut self, path: &Path) -> Result<(), String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.is_dir() {
            self.dirs.push(path.to_path_buf());
            return Ok(());
        }
        let build_id = build_id(path)?;
        self.files.push(SymbolFile {
            path: path.to_path_buf(),
            build_id,
        });
        Ok(())
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty()
    }
}

impl Locate for SymbolFiles {
    fn locate(&mut self, module: &ModuleRef<'_>) -> Result<PathBuf, String> {
        let name = Path::new(module.path).file_name();
        let Some(id) = module.build_id else {
            // Without a build id, only the file name can tell.
            return self
                .files
                .iter()
                .find(|f| name.is_some() && f.path.file_name() == name)
                .map(|f| f.path.clone())
                .ok_or_else(|| {
                    format!(
                        "{}: no build id, and no --symbols file of that name",
                        display_name(module.path)
                    )
                });
        };
        if let Some(file) = self
            .files
            .iter()
            .find(|f| f.build_id.as_deref() == Some(id))
        {
            return Ok(file.path.clone());
        }
        if id.len() > 2 && id.is_ascii() {
            let (head, rest) = id.split_at(2);
            let leaf = format!("{rest}.debug");
            for dir in &self.dirs {
                for candidate in [
                    dir.join(".build-id").join(head).join(&leaf),
                    dir.join(head).join(&leaf),
                ] {
                    if candidate.is_file()
                        && build_id(&candidate).ok().flatten().as_deref() == Some(id)
                    {
                        return Ok(candidate);
                    }
                }
            }
        }
        Err(format!(
            "{}: no --symbols file with build id {id}",
            display_name(module.path)
        ))
    }
}

fn display_name(path: &str) -> &str {
    if path.is_empty() {
        "the main program"
    } else {
        path
    }
}

/// The GNU build id of the ELF file at `path`, lowercase hex.
///
/// # Errors
/// When the file cannot be read or is not an ELF file.
pub fn build_id(path: &Path) -> Result<Option<String>, String> {
    use object::Object;
    let map = MappedFile::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bytes = map.bytes();
    if !bytes.starts_with(b"\x7fELF") {
        return Err(format!("{}: not an ELF file", path.display()));
    }
    let file = object::File::parse(bytes)
        .map_err(|e| format!("{}: not a readable ELF file: {e}", path.display()))?;
    let id = file
        .build_id()
        .map_err(|e| format!("{}: bad build id note: {e}", path.display()))?;
    Ok(id.map(hex))
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}
