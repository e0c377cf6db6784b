//! The least-recently-used cache a command writer keeps its aggregate states in, bounded by
//! entries and by bytes: a count alone lets a few large aggregates (or many mid-sized ones) take
//! the process's memory. Each entry's size is given by the caller when it is put (an estimate,
//! see `bus::entry_bytes`); the cache evicts from the least recently used end until it is under
//! both bounds, and keeps gauges of its bytes and entries.

use std::hash::Hash;
use std::num::NonZeroUsize;

use lru::LruCache;
use prometheus::IntGauge;

/// The gauges a cache adds its contents to (shared by the caches of one aggregate type's writers).
#[derive(Debug, Clone)]
pub(crate) struct CacheGauges {
    /// Estimated bytes held.
    pub bytes: IntGauge,
    /// Entries held.
    pub entries: IntGauge,
}

/// An LRU map bounded by `max_entries` entries and `max_bytes` estimated bytes.
pub(crate) struct StateCache<K: Hash + Eq, V> {
    entries: LruCache<K, (V, usize)>,
    max_bytes: usize,
    bytes: usize,
    gauges: Option<CacheGauges>,
}

impl<K: Hash + Eq, V> StateCache<K, V> {
    /// An empty cache.
    pub fn new(max_entries: NonZeroUsize, max_bytes: usize, gauges: Option<CacheGauges>) -> Self {
        Self {
            entries: LruCache::new(max_entries),
            max_bytes,
            bytes: 0,
            gauges,
        }
    }

    /// The value of `key`, now the most recently used.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(v, _)| v)
    }

    /// The value of `key`, leaving the order as it is.
    pub fn peek(&self, key: &K) -> Option<&V> {
        self.entries.peek(key).map(|(v, _)| v)
    }

    /// Caches `value` of `bytes` as the most recently used, evicting the least recently used
    /// entries until both bounds hold. A value larger than the whole byte bound is not cached
    /// (and an older value of `key` is dropped, being stale): returns false then.
    pub fn put(&mut self, key: K, value: V, bytes: usize) -> bool {
        if bytes > self.max_bytes {
            self.pop(&key);
            return false;
        }
        // `push` hands back either the key's previous value or the entry evicted for room.
        if let Some((_, (_, old))) = self.entries.push(key, (value, bytes)) {
            self.account(-(old as i64), -1);
        }
        self.account(bytes as i64, 1);
        while self.bytes > self.max_bytes {
            let Some((_, (_, old))) = self.entries.pop_lru() else {
                break;
            };
            self.account(-(old as i64), -1);
        }
        true
    }

    /// Removes `key`.
    pub fn pop(&mut self, key: &K) -> Option<V> {
        let (value, bytes) = self.entries.pop(key)?;
        self.account(-(bytes as i64), -1);
        Some(value)
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        let (bytes, entries) = (self.bytes as i64, self.entries.len() as i64);
        self.entries.clear();
        self.account(-bytes, -entries);
    }

    /// Estimated bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn account(&mut self, bytes: i64, entries: i64) {
        self.bytes = self.bytes.saturating_add_signed(bytes as isize);
        if let Some(g) = &self.gauges {
            g.bytes.add(bytes);
            g.entries.add(entries);
        }
    }
}

impl<K: Hash + Eq, V> Drop for StateCache<K, V> {
    /// A stopped writer's states leave the gauges.
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_entries: usize, max_bytes: usize) -> StateCache<&'static str, u32> {
        StateCache::new(NonZeroUsize::new(max_entries).unwrap(), max_bytes, None)
    }

    #[test]
    fn a_small_byte_bound_holds_fewer_entries_than_the_entry_bound_and_evicts_the_least_recently_used_first()
     {
        let mut c = cache(10, 100);
        assert!(c.put("a", 1, 40));
        assert!(c.put("b", 2, 40));
        assert!(c.put("c", 3, 40));
        // 120 bytes is over 100: the oldest entry goes, although 10 entries would fit.
        assert_eq!((c.len(), c.bytes()), (2, 80));
        assert_eq!(c.peek(&"a"), None);
        // Using b makes c the least recently used.
        assert_eq!(c.get(&"b"), Some(&2));
        assert!(c.put("d", 4, 40));
        assert_eq!(c.peek(&"c"), None);
        assert_eq!((c.peek(&"b"), c.peek(&"d")), (Some(&2), Some(&4)));
        assert_eq!(c.bytes(), 80);
        // One large entry evicts as many as it takes.
        assert!(c.put("e", 5, 90));
        assert_eq!((c.len(), c.bytes()), (1, 90));
    }

    #[test]
    fn a_value_larger_than_the_whole_bound_is_not_cached_and_its_stale_value_is_dropped() {
        let mut c = cache(10, 100);
        assert!(c.put("a", 1, 30));
        assert!(c.put("big", 2, 30));
        assert!(!c.put("big", 3, 101));
        assert_eq!(c.peek(&"big"), None);
        assert_eq!((c.len(), c.bytes()), (1, 30));
        assert_eq!(c.peek(&"a"), Some(&1));
    }

    #[test]
    fn the_entry_bound_still_holds_and_replacing_a_value_counts_its_new_size() {
        let mut c = cache(2, 1000);
        c.put("a", 1, 10);
        c.put("b", 2, 20);
        c.put("c", 3, 30);
        assert_eq!((c.len(), c.bytes()), (2, 50));
        c.put("c", 4, 5);
        assert_eq!((c.len(), c.bytes()), (2, 25));
        assert_eq!(c.pop(&"b"), Some(2));
        assert_eq!(c.bytes(), 5);
    }

    #[test]
    fn the_gauges_follow_the_contents_and_a_dropped_cache_leaves_them() {
        let gauges = CacheGauges {
            bytes: IntGauge::new("b", "b").unwrap(),
            entries: IntGauge::new("e", "e").unwrap(),
        };
        let mut one: StateCache<&str, u32> =
            StateCache::new(NonZeroUsize::new(10).unwrap(), 100, Some(gauges.clone()));
        let mut two: StateCache<&str, u32> =
            StateCache::new(NonZeroUsize::new(10).unwrap(), 100, Some(gauges.clone()));
        one.put("a", 1, 60);
        one.put("b", 2, 60);
        two.put("a", 1, 10);
        assert_eq!((gauges.bytes.get(), gauges.entries.get()), (70, 2));
        one.clear();
        assert_eq!((gauges.bytes.get(), gauges.entries.get()), (10, 1));
        drop(two);
        assert_eq!((gauges.bytes.get(), gauges.entries.get()), (0, 0));
    }
}
