//! Configuration: the defaults, the `const` settings a `static` allocator carries, and
//! the environment variables that override them at the first allocation. Parsing here
//! never allocates (it runs inside the first allocation).

use crate::os::with_env;
use crate::stack::{MAX_DEPTH_LIMIT, Unwinder};

/// Default sampling rate: on average one sample per 512 KiB allocated. See
/// docs/BENCHMARKS.md for the overhead and accuracy measurements behind it.
pub const DEFAULT_SAMPLE_RATE: u32 = 512 * 1024;
/// Default maximum number of frames kept per stack.
pub const DEFAULT_MAX_DEPTH: u32 = 32;
/// Default bound on distinct call sites.
pub const DEFAULT_MAX_SITES: u32 = 65_536;
/// Default bound on tracked live blocks (exact mode: about 1 GiB of table at the bound).
pub const DEFAULT_MAX_BLOCKS: u64 = 32 << 20;

/// Settings fixed when tracking starts. Built with the `const` methods of
/// [`LeakWatch`](crate::LeakWatch); environment variables override them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub(crate) enabled: bool,
    pub(crate) sample_rate: u32,
    pub(crate) max_depth: u32,
    pub(crate) max_sites: u32,
    pub(crate) max_blocks: u64,
    pub(crate) unwinder: Unwinder,
    pub(crate) seed: u64,
}

impl Config {
    /// Tracking off until enabled; default rate, depth and bounds.
    pub const DEFAULT: Config = Config {
        enabled: false,
        sample_rate: DEFAULT_SAMPLE_RATE,
        max_depth: DEFAULT_MAX_DEPTH,
        max_sites: DEFAULT_MAX_SITES,
        max_blocks: DEFAULT_MAX_BLOCKS,
        unwinder: Unwinder::Auto,
        seed: 0,
    };
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}

/// Environment variables that were set but could not be parsed (bit per variable).
pub(crate) const ENV_NAMES: [&str; 7] = [
    "LEAKWATCH",
    "LEAKWATCH_SAMPLE",
    "LEAKWATCH_MAX_DEPTH",
    "LEAKWATCH_MAX_SITES",
    "LEAKWATCH_MAX_BLOCKS",
    "LEAKWATCH_UNWINDER",
    "LEAKWATCH_SEED",
];

/// Applies the `LEAKWATCH*` environment variables to `config`. Returns a bit mask of the
/// variables (indices into [`ENV_NAMES`]) whose values were invalid and ignored.
pub(crate) fn apply_env(config: &mut Config) -> u32 {
    let mut invalid = 0u32;
    let mut note = |index: usize, ok: Option<()>| {
        if ok.is_none() {
            invalid |= 1 << index;
        }
    };
    if let Some(ok) = with_env(c"LEAKWATCH", |v| {
        let (enabled, exact) = parse_switch(v)?;
        config.enabled = enabled;
        if exact {
            config.sample_rate = 1;
        }
        Some(())
    }) {
        note(0, ok);
    }
    if let Some(ok) = with_env(c"LEAKWATCH_SAMPLE", |v| {
        config.sample_rate = u32::try_from(parse_size(v)?).ok()?.max(1);
        Some(())
    }) {
        note(1, ok);
    }
    if let Some(ok) = with_env(c"LEAKWATCH_MAX_DEPTH", |v| {
        let depth = parse_size(v)?;
        (1..=MAX_DEPTH_LIMIT as u64)
            .contains(&depth)
            .then(|| config.max_depth = depth as u32)
    }) {
        note(2, ok);
    }
    if let Some(ok) = with_env(c"LEAKWATCH_MAX_SITES", |v| {
        config.max_sites = u32::try_from(parse_size(v)?).ok().filter(|&n| n >= 2)?;
        Some(())
    }) {
        note(3, ok);
    }
    if let Some(ok) = with_env(c"LEAKWATCH_MAX_BLOCKS", |v| {
        config.max_blocks = parse_size(v).filter(|&n| n >= 1)?;
        Some(())
    }) {
        note(4, ok);
    }
    if let Some(ok) = with_env(c"LEAKWATCH_UNWINDER", |v| {
        config.unwinder = match v {
            b"auto" => Unwinder::Auto,
            b"fp" | b"frame-pointers" => Unwinder::FramePointers,
            b"backtrace" | b"dwarf" => Unwinder::Backtrace,
            b"cached-dwarf" => Unwinder::CachedDwarf,
            _ => return None,
        };
        Some(())
    }) {
        note(5, ok);
    }
    if let Some(ok) = with_env(c"LEAKWATCH_SEED", |v| {
        config.seed = parse_size(v)?;
        Some(())
    }) {
        note(6, ok);
    }
    invalid
}

/// `LEAKWATCH`: `1|on|true|yes|sampled` (sampled), `exact`, `0|off|false|no|` (off).
/// Returns `(enabled, exact)`.
fn parse_switch(v: &[u8]) -> Option<(bool, bool)> {
    match v {
        b"1" | b"on" | b"true" | b"yes" | b"sampled" => Some((true, false)),
        b"exact" => Some((true, true)),
        b"0" | b"off" | b"false" | b"no" | b"" => Some((false, false)),
        _ => None,
    }
}

pub(crate) use leakwatch_types::parse_size_bytes as parse_size;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_parse() {
        assert_eq!(parse_switch(b"1"), Some((true, false)));
        assert_eq!(parse_switch(b"exact"), Some((true, true)));
        assert_eq!(parse_switch(b"off"), Some((false, false)));
        assert_eq!(parse_switch(b"maybe"), None);
    }
}
