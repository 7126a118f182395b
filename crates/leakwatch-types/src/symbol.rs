//! Where a site's return addresses come from and what they name: the modules loaded in
//! the process, and the source frames of one address.

use serde::{Deserialize, Serialize};

/// A module (executable or shared library) mapped into the process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Module {
    /// Path of the file, as the dynamic loader reports it (empty for the main program on
    /// some systems: then it is `/proc/self/exe`'s target).
    pub path: String,
    /// Load bias: the value added to the file's virtual addresses.
    pub base: u64,
    /// Lowest address of the module's loadable segments.
    pub start: u64,
    /// One past the highest address of the module's loadable segments.
    pub end: u64,
    /// The GNU build id in lowercase hex, when the file has one.
    pub build_id: Option<String>,
    /// The executable segment (the first loadable one with execute permission): its
    /// runtime address, one past its last byte, and its offset in the file. Offline
    /// symbolizers map an address to the file through it (`go tool pprof BINARY` takes
    /// `address - text_start + p_vaddr` of the file's executable segment; pprof proper
    /// `address - text_start + text_offset` as a file offset). All 0 when unknown
    /// (modules recorded before these fields).
    #[serde(default)]
    pub text_start: u64,
    /// See [`Module::text_start`].
    #[serde(default)]
    pub text_end: u64,
    /// See [`Module::text_start`].
    #[serde(default)]
    pub text_offset: u64,
}

/// One source-level frame. A return address can map to several: the inlined calls
/// first, innermost first, then the function that contains them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Symbol {
    /// The address this frame came from (a return address, as in `SiteStats::frames`).
    pub address: u64,
    /// Demangled function name, without the hash suffix.
    pub function: Option<String>,
    /// Source file.
    pub file: Option<String>,
    /// Line in `file`.
    pub line: Option<u32>,
    /// This frame was inlined into the next one.
    pub inlined: bool,
    /// The symbol-table name (demangled, without the hash suffix) of the machine
    /// function that holds the address: set on the outermost frame of an address only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
}
