//! The plain data of leakwatch: what its allocator (`leakwatch-alloc`) produces and its
//! reports (`leakwatch-report`, the `leakwatch` command) read. Snapshots of the tracker,
//! per-site counters, loaded modules, symbols of return addresses.
//!
//! No allocator, no unsafe code, no unwinder: a crate that only reads snapshots (from a
//! series file, a JSON report) depends on this one alone. The layering is
//! `leakwatch-alloc -> leakwatch-types <- leakwatch-report`.

#![forbid(unsafe_code)]

mod snapshot;
mod symbol;

pub use snapshot::{
    AGE_BOUNDS_SECONDS, MAX_DEPARTED_AGE, MAX_TAG_BYTES, MAX_TAG_SETS, MAX_TAGS, Mode,
    OLD_SNAPSHOTS, OVERFLOW_TAGS, OverflowStats, ProcessStats, SCHEMA_VERSION, SiteStats, Snapshot,
    Tags, TrackerStats, Unwinder,
};
pub use symbol::{Module, Symbol};

/// Parses a size like `512k`, `64MiB` or `2g` (binary units; case-insensitive; `KB`
/// and `K` also mean 1024). `None` for anything else, or on overflow.
///
/// ```
/// assert_eq!(leakwatch_types::parse_size("512k"), Some(512 * 1024));
/// assert_eq!(leakwatch_types::parse_size("2GiB"), Some(2 << 30));
/// assert_eq!(leakwatch_types::parse_size("lots"), None);
/// ```
pub fn parse_size(text: &str) -> Option<u64> {
    parse_size_bytes(text.trim().as_bytes())
}

/// [`parse_size`] of raw bytes, untrimmed: a decimal number with an optional binary suffix: `k`/`KiB`, `m`/`MiB`, `g`/`GiB`
/// (case-insensitive, `KB` and `K` also accepted).
pub fn parse_size_bytes(v: &[u8]) -> Option<u64> {
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in &v[..digits] {
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    let mut suffix = [0u8; 3];
    let rest = &v[digits..];
    if rest.len() > suffix.len() {
        return None;
    }
    for (s, b) in suffix.iter_mut().zip(rest) {
        *s = b.to_ascii_lowercase();
    }
    let shift = match &suffix[..rest.len()] {
        b"" => 0,
        b"k" | b"kb" | b"kib" => 10,
        b"m" | b"mb" | b"mib" => 20,
        b"g" | b"gb" | b"gib" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size_bytes(b"512"), Some(512));
        assert_eq!(parse_size_bytes(b"512k"), Some(512 << 10));
        assert_eq!(parse_size_bytes(b"512KiB"), Some(512 << 10));
        assert_eq!(parse_size_bytes(b"4M"), Some(4 << 20));
        assert_eq!(parse_size_bytes(b"1gb"), Some(1 << 30));
        assert_eq!(parse_size_bytes(b""), None);
        assert_eq!(parse_size_bytes(b"k"), None);
        assert_eq!(parse_size_bytes(b"12 k"), None);
        assert_eq!(parse_size_bytes(b"12kibi"), None);
        assert_eq!(parse_size_bytes(b"99999999999999999999"), None);
        assert_eq!(parse_size(" 2m "), Some(2 << 20));
    }

    #[test]
    fn snapshots_round_trip_through_json() {
        let mut snapshot = Snapshot {
            schema_version: SCHEMA_VERSION,
            mode: Mode::Sampled,
            ..Snapshot::default()
        };
        snapshot.sites.push(SiteStats {
            id: 7,
            frames: vec![0x1000, 0x2000],
            live_bytes: 4096,
            ..SiteStats::default()
        });
        snapshot.modules.push(Module {
            path: "/bin/service".into(),
            build_id: Some("abcd".into()),
            ..Module::default()
        });
        let json = serde_json::to_string(&snapshot).unwrap();
        let back: Snapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snapshot);
        assert_eq!(back.tracked_live_bytes(), 4096);
    }
}
