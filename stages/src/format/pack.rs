//! Train/validation split and sequence packing.

/// A deterministic number in [0, 1) from a record id and a seed. The split
/// depends on nothing else, so adding a record never moves another across it.
pub fn unit(id: &str, seed: u64) -> f64 {
    let h = blake3::hash(format!("split:{seed}:{id}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Best-fit decreasing: put samples (by length) into bins of `capacity`
/// tokens, each into the fullest bin it still fits (among equally full
/// bins, the one whose space changed last). Returns bins of sample indices;
/// a bin's samples keep their boundaries (the trainer resets positions and
/// masks attention at each one). O(n log n): the bins with space left are
/// kept in an ordered set.
pub fn best_fit_decreasing(lengths: &[usize], capacity: usize) -> Vec<Vec<u32>> {
    use std::cmp::Reverse;
    use std::collections::BTreeSet;
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (Reverse(lengths[i]), i));
    // (remaining space, newest first, bin index).
    let mut free: BTreeSet<(usize, Reverse<u64>, usize)> = BTreeSet::new();
    let mut bins: Vec<Vec<u32>> = Vec::new();
    let mut stamp = 0u64;
    for i in order {
        let need = lengths[i].min(capacity);
        let found = free.range((need, Reverse(u64::MAX), 0)..).next().copied();
        let (left, b) = match found {
            Some(entry @ (space, _, b)) => {
                free.remove(&entry);
                bins[b].push(i as u32);
                (space - need, b)
            }
            None => {
                bins.push(vec![i as u32]);
                (capacity - need, bins.len() - 1)
            }
        };
        stamp += 1;
        free.insert((left, Reverse(stamp), b));
    }
    bins
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_fills_bins_without_overflow() {
        let lengths = [9, 7, 5, 4, 3, 2, 2, 1];
        let bins = best_fit_decreasing(&lengths, 10);
        let mut seen: Vec<u32> = bins.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..8).collect::<Vec<u32>>());
        for b in &bins {
            assert!(b.iter().map(|&i| lengths[i as usize]).sum::<usize>() <= 10);
        }
        assert_eq!(bins.len(), 4, "33 tokens need at least 4 bins of 10: {bins:?}");
    }

    #[test]
    fn split_is_stable_under_additions() {
        let ids: Vec<String> = (0..1000).map(|i| format!("r{i}")).collect();
        let before: Vec<bool> = ids.iter().map(|id| unit(id, 3) < 0.1).collect();
        let n = before.iter().filter(|b| **b).count();
        assert!((60..140).contains(&n), "{n}");
        // Adding records changes nothing for existing ones: the rule is per id.
        let after: Vec<bool> = ids.iter().chain(std::iter::once(&"new".to_string())).map(|id| unit(id, 3) < 0.1).collect();
        assert_eq!(&after[..1000], &before[..]);
    }

    /// The first implementation (a sorted vector, quadratic in the number
    /// of bins), kept as the oracle for the ordered-set version.
    fn best_fit_reference(lengths: &[usize], capacity: usize) -> Vec<Vec<u32>> {
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(lengths[i]), i));
        let mut free: Vec<(usize, usize)> = Vec::new();
        let mut bins: Vec<Vec<u32>> = Vec::new();
        for i in order {
            let need = lengths[i].min(capacity);
            let pos = free.partition_point(|&(space, _)| space < need);
            let (left, b) = if pos < free.len() {
                let (space, b) = free.remove(pos);
                bins[b].push(i as u32);
                (space - need, b)
            } else {
                bins.push(vec![i as u32]);
                (capacity - need, bins.len() - 1)
            };
            let at = free.partition_point(|&(s, _)| s < left);
            free.insert(at, (left, b));
        }
        bins
    }

    #[test]
    fn packing_equals_the_reference_on_random_lengths() {
        let mut x = 12345u64;
        for (n, capacity) in [(0, 8), (1, 8), (50, 16), (2000, 128), (5000, 512)] {
            let lengths: Vec<usize> = (0..n)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    1 + (x >> 33) as usize % (capacity + capacity / 4)
                })
                .collect();
            assert_eq!(best_fit_decreasing(&lengths, capacity), best_fit_reference(&lengths, capacity), "{n} samples, capacity {capacity}");
        }
    }
}
