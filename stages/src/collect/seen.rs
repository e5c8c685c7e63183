//! How many times each body digest has been seen so far, for the `-N` of
//! repeated records. Collect asks this once per record, in order, and the
//! table grows to every record of the run (1.6 M in the no-op benchmark),
//! far beyond the CPU cache: a lookup is a cache miss. So the table is
//! one flat array of keys (a digest is its own hash; one cache line per
//! lookup) that a caller can [`Seen::warm`] for the next few hundred keys
//! — independent loads whose misses overlap — before adding them in order.

use std::collections::HashMap;

/// Counts per 64-bit digest.
pub struct Seen {
    /// Open addressing with linear probing; 0 marks an empty slot.
    slots: Vec<u64>,
    len: usize,
    /// Count of the key 0 (which cannot live in `slots`).
    zero: u32,
    /// Counts of keys seen more than once (few).
    repeats: HashMap<u64, u32>,
}

impl Default for Seen {
    fn default() -> Self {
        Seen { slots: vec![0; 1 << 16], len: 0, zero: 0, repeats: HashMap::new() }
    }
}

impl Seen {
    fn home(&self, key: u64) -> usize {
        key as usize & (self.slots.len() - 1)
    }

    /// Load the slots of `keys` into the cache; returns a value to keep
    /// the loads from being optimized away.
    pub fn warm(&self, keys: impl Iterator<Item = u64>) -> u64 {
        keys.fold(0, |acc, k| acc ^ self.slots[self.home(k)])
    }

    /// Count one more `key`; returns how many times it has now been seen.
    pub fn add(&mut self, key: u64) -> u32 {
        if key == 0 {
            self.zero += 1;
            return self.zero;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            match self.slots[i] {
                0 => break,
                k if k == key => {
                    let n = self.repeats.entry(key).or_insert(1);
                    *n += 1;
                    return *n;
                }
                _ => i = (i + 1) & mask,
            }
        }
        self.slots[i] = key;
        self.len += 1;
        if self.len * 2 > self.slots.len() {
            self.grow();
        }
        1
    }

    fn grow(&mut self) {
        let doubled = vec![0; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        let mask = self.slots.len() - 1;
        for k in old.into_iter().filter(|&k| k != 0) {
            let mut i = k as usize & mask;
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = k;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_like_a_hash_map_through_growth_and_collisions() {
        let mut seen = Seen::default();
        let mut oracle: HashMap<u64, u32> = HashMap::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..300_000u64 {
            // Random keys, some repeated, some sharing low bits (same home
            // slot), and zero.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = match i % 7 {
                0 => x % 1000,
                1 => (x << 20) & !0xF_FFFF,
                _ => x,
            };
            let n = oracle.entry(key).or_insert(0);
            *n += 1;
            assert_eq!(seen.add(key), *n, "key {key:#x} at {i}");
        }
        assert!(oracle.contains_key(&0) && seen.slots.len() >= 2 * seen.len);
    }
}
