//! Per-session state: each session's key/value cache, kept between its requests, bounded
//! by a byte budget (least recently used first out) and an idle timeout.
//!
//! This is where the outage's leak lives. Sessions are keyed by model version and id. In
//! the fixed store (the default), eviction removes the exact entry it chose, and a model
//! swap drops every session of the old version. In the leaky store (`--leaky`, the code
//! as it was before the postmortem), the eviction order keeps only session ids and
//! evictions look them up under the model version the store was created with. Until the
//! first model update that is the current version and all is well; after it, evictions
//! miss: the byte count goes down, the entries stay, and every new session adds its cache
//! for good. The old version's sessions are never dropped either.

use crate::model::{DIM, KvCache};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A session's identity: the model version that serves it, and the client's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    /// Model version.
    pub version: u32,
    /// Client-chosen session id.
    pub id: String,
}

/// One session's state.
#[derive(Debug)]
pub struct Session {
    /// The context so far.
    pub cache: KvCache,
    /// Requests served.
    pub requests: u64,
    /// Seed of the session's sampling.
    pub seed: u64,
}

/// A session in the store, with what the store needs to know without locking it.
#[derive(Debug)]
struct Entry {
    session: Arc<Mutex<Session>>,
    stamp: u64,
    last_used: Instant,
    bytes: usize,
}

/// Which store: the fixed one, or the one from before the postmortem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Evicts exactly the entry it chose; drops old versions' sessions on a model swap.
    Fixed,
    /// Evicts by session id under the store's first model version (the leak).
    Leaky,
}

/// Settings of a [`SessionStore`].
#[derive(Debug, Clone, Copy)]
pub struct StoreConfig {
    /// Context words kept per session.
    pub context_tokens: usize,
    /// Bytes of session caches to keep, at most.
    pub budget_bytes: usize,
    /// Sessions idle this long are dropped (fixed store).
    pub idle_timeout: Duration,
    /// Fixed or leaky.
    pub eviction: Eviction,
}

/// What the store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Sessions in the map.
    pub sessions: usize,
    /// Cache bytes the store believes it holds.
    pub accounted_bytes: usize,
    /// Cache bytes the sessions in the map really hold.
    pub held_bytes: usize,
    /// Sessions opened.
    pub opened: u64,
    /// Evictions that removed a session.
    pub evicted: u64,
    /// Evictions that found nothing to remove (the leaky store after a model swap).
    pub missed_evictions: u64,
}

/// The sessions of every model version.
#[derive(Debug)]
pub struct SessionStore {
    config: StoreConfig,
    sessions: HashMap<SessionKey, Entry>,
    /// Least recently used first: stamp -> key (the fixed store).
    order: BTreeMap<u64, SessionKey>,
    /// Least recently used first: stamp -> session id (the leaky store).
    order_by_id: BTreeMap<u64, String>,
    /// The model version when the store was created (what the leaky store evicts under).
    created_version: u32,
    next_stamp: u64,
    stats: StoreStats,
}

impl SessionStore {
    /// An empty store for a service starting at model `version`.
    pub fn new(config: StoreConfig, version: u32) -> SessionStore {
        SessionStore {
            config,
            sessions: HashMap::new(),
            order: BTreeMap::new(),
            order_by_id: BTreeMap::new(),
            created_version: version,
            next_stamp: 0,
            stats: StoreStats::default(),
        }
    }

    /// The session `key`, opened if new (evicting others to stay within the budget).
    /// Never waits on a session's own lock.
    pub fn session(&mut self, key: &SessionKey) -> Arc<Mutex<Session>> {
        self.next_stamp += 1;
        let stamp = self.next_stamp;
        if let Some(entry) = self.sessions.get_mut(key) {
            let old = std::mem::replace(&mut entry.stamp, stamp);
            entry.last_used = Instant::now();
            let session = Arc::clone(&entry.session);
            self.forget_order(old);
            self.remember_order(stamp, key);
            return session;
        }
        let session = self.open_session(key);
        let bytes = session.cache.bytes();
        let session = Arc::new(Mutex::new(session));
        self.sessions.insert(
            key.clone(),
            Entry {
                session: Arc::clone(&session),
                stamp,
                last_used: Instant::now(),
                bytes,
            },
        );
        self.remember_order(stamp, key);
        self.stats.opened += 1;
        self.stats.accounted_bytes += bytes;
        while self.stats.accounted_bytes > self.config.budget_bytes && self.evict_oldest() {}
        session
    }

    /// Allocates a new session's state: its whole context cache, up front.
    #[inline(never)]
    fn open_session(&self, key: &SessionKey) -> Session {
        let floats = self.config.context_tokens * DIM;
        let keys = Vec::with_capacity(floats);
        let values = Vec::with_capacity(floats);
        Session {
            cache: KvCache::new(keys, values, self.config.context_tokens),
            requests: 0,
            seed: seed_of(&key.id),
        }
    }

    fn remember_order(&mut self, stamp: u64, key: &SessionKey) {
        match self.config.eviction {
            Eviction::Fixed => {
                self.order.insert(stamp, key.clone());
            }
            Eviction::Leaky => {
                self.order_by_id.insert(stamp, key.id.clone());
            }
        }
    }

    fn forget_order(&mut self, stamp: u64) {
        match self.config.eviction {
            Eviction::Fixed => self.order.remove(&stamp).map(drop),
            Eviction::Leaky => self.order_by_id.remove(&stamp).map(drop),
        };
    }

    /// Evicts the least recently used session; false when there is none to evict.
    fn evict_oldest(&mut self) -> bool {
        let key = match self.config.eviction {
            Eviction::Fixed => match self.order.pop_first() {
                Some((_, key)) => key,
                None => return false,
            },
            Eviction::Leaky => match self.order_by_id.pop_first() {
                // The bug: the version is the store's first, not the session's.
                Some((_, id)) => SessionKey {
                    version: self.created_version,
                    id,
                },
                None => return false,
            },
        };
        // What a session holds (the store counts them all alike).
        let bytes = self.session_bytes();
        self.stats.accounted_bytes = self.stats.accounted_bytes.saturating_sub(bytes);
        if self.sessions.remove(&key).is_some() {
            self.stats.evicted += 1;
        } else {
            self.stats.missed_evictions += 1;
        }
        true
    }

    /// The model changed to `version`: the fixed store drops every other version's
    /// sessions; the leaky store keeps them.
    pub fn model_swapped(&mut self, version: u32) {
        if self.config.eviction == Eviction::Fixed {
            let mut dropped_bytes = 0;
            let mut dropped = 0;
            self.sessions.retain(|k, e| {
                let keep = k.version == version;
                if !keep {
                    dropped += 1;
                    dropped_bytes += e.bytes;
                }
                keep
            });
            self.order.retain(|_, k| k.version == version);
            self.stats.evicted += dropped;
            self.stats.accounted_bytes = self.stats.accounted_bytes.saturating_sub(dropped_bytes);
        }
    }

    /// Drops sessions idle for longer than the timeout (the fixed store; the leaky one
    /// never had this). Returns how many.
    pub fn drop_idle(&mut self) -> usize {
        if self.config.eviction != Eviction::Fixed {
            return 0;
        }
        let now = Instant::now();
        let timeout = self.config.idle_timeout;
        let idle: Vec<(u64, SessionKey)> = self
            .order
            .iter()
            .filter(|(_, key)| {
                self.sessions
                    .get(*key)
                    .is_some_and(|e| now.duration_since(e.last_used) > timeout)
            })
            .map(|(stamp, key)| (*stamp, key.clone()))
            .collect();
        for (stamp, key) in &idle {
            self.order.remove(stamp);
            if let Some(entry) = self.sessions.remove(key) {
                self.stats.evicted += 1;
                self.stats.accounted_bytes = self.stats.accounted_bytes.saturating_sub(entry.bytes);
            }
        }
        idle.len()
    }

    /// What one session's cache holds.
    fn session_bytes(&self) -> usize {
        self.config.context_tokens * DIM * 2 * std::mem::size_of::<f32>()
    }

    /// What the store holds now.
    pub fn stats(&self) -> StoreStats {
        let mut stats = self.stats;
        stats.sessions = self.sessions.len();
        stats.held_bytes = self.sessions.values().map(|e| e.bytes).sum();
        stats
    }
}

/// A stable seed from a session id (FNV-1a).
fn seed_of(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(eviction: Eviction) -> SessionStore {
        SessionStore::new(
            StoreConfig {
                context_tokens: 16,
                // Room for 10 sessions of 16 x 32 x 2 floats.
                budget_bytes: 10 * 16 * DIM * 2 * 4,
                idle_timeout: Duration::from_secs(60),
                eviction,
            },
            1,
        )
    }

    fn key(version: u32, n: u32) -> SessionKey {
        SessionKey {
            version,
            id: format!("s{n}"),
        }
    }

    #[test]
    fn the_fixed_store_stays_within_its_budget_across_model_swaps() {
        let mut s = store(Eviction::Fixed);
        for n in 0..100 {
            s.session(&key(1, n));
        }
        assert_eq!(s.stats().sessions, 10);
        s.model_swapped(2);
        assert_eq!(s.stats().sessions, 0);
        for n in 0..100 {
            s.session(&key(2, n));
        }
        let stats = s.stats();
        assert_eq!(stats.sessions, 10);
        assert_eq!(stats.held_bytes, stats.accounted_bytes);
        assert_eq!(stats.missed_evictions, 0);
    }

    #[test]
    fn the_leaky_store_is_fine_until_the_model_changes() {
        let mut s = store(Eviction::Leaky);
        for n in 0..100 {
            s.session(&key(1, n));
        }
        assert_eq!(s.stats().sessions, 10, "bounded before the swap");
        s.model_swapped(2);
        for n in 0..100 {
            s.session(&key(2, n));
        }
        let stats = s.stats();
        // The ten sessions of version 1 still in the eviction order go (they are what
        // the store evicts under); after them every eviction misses, and all 100 new
        // sessions stay, while the store believes it holds ten.
        assert_eq!(stats.sessions, 100, "every new session stays: {stats:?}");
        assert_eq!(stats.missed_evictions, 90);
        assert_eq!(stats.held_bytes, 10 * stats.accounted_bytes);
    }

    #[test]
    fn sessions_are_reused_and_touched() {
        let mut s = store(Eviction::Fixed);
        let a = s.session(&key(1, 0));
        for n in 1..10 {
            s.session(&key(1, n));
        }
        // Touch s0, then open one more: s1 (now the oldest) goes, s0 stays.
        let again = s.session(&key(1, 0));
        assert!(Arc::ptr_eq(&a, &again));
        s.session(&key(1, 10));
        assert!(s.sessions.contains_key(&key(1, 0)));
        assert!(!s.sessions.contains_key(&key(1, 1)));
    }

    #[test]
    fn idle_sessions_are_dropped_by_the_fixed_store() {
        let mut s = store(Eviction::Fixed);
        s.config.idle_timeout = Duration::from_millis(1);
        s.session(&key(1, 0));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.drop_idle(), 1);
        assert_eq!(s.stats().sessions, 0);
    }
}
