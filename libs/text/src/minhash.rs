//! Near-duplicate detection with MinHash signatures and LSH banding.
//!
//! Design:
//!
//! * **Canonical form.** Text is NFKC-folded (only when not already NFKC),
//!   lowercased, and reduced to alphanumeric characters: whitespace and
//!   punctuation are dropped. Shingles are *character* n-grams of that form,
//!   so the same code works for English and for Japanese, which has no word
//!   boundaries, and punctuation-only edits do not change a text's shingles.
//!   A canonical form shorter than `ngram` is one shingle; an empty one (no
//!   letters or digits) has no shingles and is never reported as a duplicate.
//! * **Cheap permutations.** Each shingle is hashed once to 64 bits
//!   ([`super::hash::hash_chars`]). Permutation `k` is the bijection
//!   `h -> a_k * h + b_k (mod 2^64)` with odd `a_k`; both parameters come from
//!   a splitmix64 stream seeded by `MinHashConfig::seed`. That costs one
//!   multiply and one add per shingle and permutation, and the inner loop runs
//!   over plain arrays the compiler can unroll.
//! * **LSH.** The `bands * rows` signature is cut into `bands` bands; each
//!   band is hashed to one key. Two texts become candidates when any band key
//!   matches; the chance is `1 - (1 - J^rows)^bands` for Jaccard `J`.
//! * **Confirmation.** Candidates are confirmed with the *exact* Jaccard
//!   similarity of the two shingle sets, recomputed on demand from the input
//!   texts, so only `bands` keys and a 64-byte sketch per text are kept —
//!   and the keys can wait in files, one band at a time in memory
//!   ([`NearDupSearch::spilled`]), which is how the clean stage handles
//!   millions of records.
//! * **Kept representatives.** Texts are visited in input order. A text is a
//!   duplicate of the lowest-indexed *kept* text it is confirmed against;
//!   duplicates are never representatives, so chains cannot form. The
//!   search collects candidate pairs band by band and then replays the visit
//!   order, which gives the same answers as an LSH index of the kept texts
//!   built one text at a time (a test holds the two to each other).
//! * **Determinism.** Signatures are computed in parallel with rayon but are a
//!   pure function of each text, and the order-dependent part is sequential,
//!   so results are identical for any thread count.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use super::hash::{GOLDEN, SplitMix64, hash_chars, hash_u64s, mix64};
use super::normalize::is_known_nfkc;

/// Parameters for MinHash signatures and LSH near-duplicate search.
///
/// The similarity is the exact Jaccard similarity of the two texts' sets of
/// character `ngram`s, taken over the canonical form: NFKC, lower case,
/// letters and digits only (spaces, punctuation and symbols removed). The
/// defaults (3-grams, 40 bands × 5 rows, Jaccard ≥ 0.6, same numbers) find
/// edited copies with up to ~15 % of characters changed by word edits,
/// punctuation and spacing, in English and Japanese, and keep records that
/// state different facts in the same frame (`bench/README.md` has the table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MinHashConfig {
    /// Shingle length in characters of the canonical form (0 is treated as
    /// 1). Shorter shingles tolerate more editing; every edited character
    /// changes up to `ngram` shingles.
    pub ngram: usize,
    /// Number of LSH bands (0 is treated as 1).
    pub bands: usize,
    /// Signature values per band (0 is treated as 1). A pair at Jaccard `J`
    /// becomes a candidate with probability `1 - (1 - J^rows)^bands`.
    pub rows: usize,
    /// Minimum exact Jaccard similarity for a confirmed duplicate.
    pub threshold: f64,
    /// Require the same numbers (runs of digits, in order) in both texts:
    /// records that differ in their numbers — prices, dates, counts,
    /// versions — state different facts and are kept.
    pub same_numbers: bool,
    /// Seed for shingle hashing and permutations; signatures are only
    /// comparable between identical configurations.
    pub seed: u64,
}

impl Default for MinHashConfig {
    fn default() -> Self {
        Self { ngram: 3, bands: 40, rows: 5, threshold: 0.6, same_numbers: true, seed: 0 }
    }
}

impl MinHashConfig {
    /// Number of signature values (`bands * rows`, each at least 1).
    pub fn num_perm(&self) -> usize {
        self.bands.max(1).saturating_mul(self.rows.max(1))
    }

    fn n(&self) -> usize {
        self.ngram.max(1)
    }
}

/// Multiply-add permutation parameters derived from a seed.
struct Permutations {
    a: Vec<u64>,
    b: Vec<u64>,
}

impl Permutations {
    fn new(cfg: &MinHashConfig) -> Self {
        let mut rng = SplitMix64::new(cfg.seed ^ 0x4D49_4E48_4153_4831);
        let k = cfg.num_perm();
        let mut a = Vec::with_capacity(k);
        let mut b = Vec::with_capacity(k);
        for _ in 0..k {
            a.push(rng.next_u64() | 1);
            b.push(rng.next_u64());
        }
        Self { a, b }
    }

    /// Minimum of `a_k * h + b_k` over the shingle hashes, for every `k`.
    ///
    /// Shingles are de-duplicated first (cheap next to `k` passes, and a big
    /// saving on repetitive text). Each permutation then scans the set with
    /// four independent accumulators so the multiply/min chains overlap.
    fn signature(&self, shingles: &[u64]) -> Vec<u64> {
        let mut set = shingles.to_vec();
        set.sort_unstable();
        set.dedup();
        let chunks = set.chunks_exact(4);
        let rest = chunks.remainder();
        self.a
            .iter()
            .zip(&self.b)
            .map(|(&a, &b)| {
                let perm = |h: u64| a.wrapping_mul(h).wrapping_add(b);
                let mut acc = [u64::MAX; 4];
                for quad in chunks.clone() {
                    for (slot, &h) in acc.iter_mut().zip(quad) {
                        *slot = (*slot).min(perm(h));
                    }
                }
                let best = acc[0].min(acc[1]).min(acc[2].min(acc[3]));
                rest.iter().fold(best, |m, &h| m.min(perm(h)))
            })
            .collect()
    }
}

fn push_canonical(out: &mut Vec<char>, c: char) {
    if !c.is_alphanumeric() {
        return;
    }
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
    } else {
        out.extend(c.to_lowercase());
    }
}

/// Lowercased alphanumeric characters of the NFKC form of `text`.
fn canonical_chars(text: &str) -> Vec<char> {
    let mut out = Vec::with_capacity(text.len());
    if is_known_nfkc(text) {
        for c in text.chars() {
            push_canonical(&mut out, c);
        }
    } else {
        for c in text.nfkc() {
            push_canonical(&mut out, c);
        }
    }
    out
}

/// The runs of digits of the canonical form, in order.
fn numbers(text: &str) -> Vec<String> {
    let chars = canonical_chars(text);
    chars.split(|c| !c.is_ascii_digit()).filter(|run| !run.is_empty()).map(|run| run.iter().collect()).collect()
}

/// Shingle hashes in text order (duplicates included).
fn shingle_hashes(text: &str, cfg: &MinHashConfig) -> Vec<u64> {
    let chars = canonical_chars(text);
    let n = cfg.n();
    if chars.is_empty() {
        Vec::new()
    } else if chars.len() <= n {
        vec![hash_chars(&chars, cfg.seed)]
    } else {
        chars.windows(n).map(|w| hash_chars(w, cfg.seed)).collect()
    }
}

/// The sorted, de-duplicated set of 64-bit shingle hashes of `text`.
pub fn shingles(text: &str, cfg: &MinHashConfig) -> Vec<u64> {
    let mut set = shingle_hashes(text, cfg);
    set.sort_unstable();
    set.dedup();
    set
}

/// The MinHash signature of `text`: `cfg.num_perm()` values, deterministic
/// for a given text and configuration. A text without letters or digits gets
/// all `u64::MAX`.
pub fn signature(text: &str, cfg: &MinHashConfig) -> Vec<u64> {
    Permutations::new(cfg).signature(&shingle_hashes(text, cfg))
}

/// Estimated Jaccard similarity: the share of equal positions of two
/// signatures (0.0 when their lengths differ or they are empty).
pub fn estimate_jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let equal = a.iter().zip(b).filter(|(x, y)| x == y).count();
    equal as f64 / a.len() as f64
}

/// Exact Jaccard similarity of two sorted, de-duplicated sets (0.0 when both
/// are empty).
fn jaccard_sets(a: &[u64], b: &[u64]) -> f64 {
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
        match x.cmp(y) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - inter;
    if union == 0 { 0.0 } else { inter as f64 / union as f64 }
}

/// Exact Jaccard similarity of the shingle sets of two texts (0.0 when
/// neither has shingles).
pub fn jaccard(a: &str, b: &str, cfg: &MinHashConfig) -> f64 {
    jaccard_sets(&shingles(a, cfg), &shingles(b, cfg))
}

/// Bytes in a text's sketch: one byte of each of its first signature
/// values, enough to estimate a Jaccard similarity to about ±0.06.
const SKETCH: usize = 64;

/// One LSH key per band (empty for a text without shingles) and the
/// text's sketch.
fn band_keys(text: &str, cfg: &MinHashConfig, perms: &Permutations) -> (Vec<u64>, [u8; SKETCH]) {
    let mut sketch = [0u8; SKETCH];
    let hashes = shingle_hashes(text, cfg);
    if hashes.is_empty() {
        return (Vec::new(), sketch);
    }
    let sig = perms.signature(&hashes);
    for (slot, v) in sketch.iter_mut().zip(sig.iter().cycle()) {
        *slot = mix64(*v) as u8;
    }
    let keys = sig.chunks_exact(cfg.rows.max(1)).enumerate().map(|(band, rows)| hash_u64s(rows, cfg.seed ^ (band as u64 + 1).wrapping_mul(GOLDEN))).collect();
    (keys, sketch)
}

/// Whether two sketches leave any real chance that the texts' Jaccard
/// similarity reaches `threshold`. Equal bytes estimate the Jaccard
/// similarity (plus a 1/256 chance collision); a candidate whose estimate is
/// more than 0.3 below the threshold — five standard deviations at worst —
/// is not worth the exact comparison.
fn may_reach(a: &[u8; SKETCH], b: &[u8; SKETCH], threshold: f64) -> bool {
    let equal = a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / SKETCH as f64;
    let estimate = (equal - 1.0 / 256.0) / (1.0 - 1.0 / 256.0);
    estimate >= threshold - 0.3
}

/// Whether text `a` is a near duplicate of text `b` by the configured rule:
/// exact Jaccard similarity of the shingle sets at least `cfg.threshold`,
/// and — with `same_numbers` — the same runs of digits.
pub fn confirmed(a: &str, b: &str, cfg: &MinHashConfig) -> bool {
    jaccard_sets(&shingles(a, cfg), &shingles(b, cfg)) >= cfg.threshold && (!cfg.same_numbers || numbers(a) == numbers(b))
}

/// Where the band keys wait until [`NearDupSearch::resolve`]: in memory, or
/// one file per band (8 bytes per text each), so that only one band's keys
/// are in memory at a time.
enum BandStore {
    Memory(Vec<Vec<u64>>),
    Files(Vec<(PathBuf, BufWriter<File>)>),
}

/// Near-duplicate search over any number of texts, in bounded memory.
///
/// Texts are added in batches ([`Self::add`]); each leaves its band keys
/// (spilled to files with [`Self::spilled`]) and a 64-byte sketch. Then
/// [`Self::resolve`] works band by band: it sorts the band's keys, and every
/// two texts that share a key (and whose sketches leave a chance of
/// reaching the threshold) become a candidate pair. Last, the visit order
/// is replayed: a text is a duplicate of the first *earlier kept* text of
/// its candidates (in visit order) that the caller confirms, and is kept
/// otherwise — the same answer as checking each text against an LSH index
/// of the texts kept so far. Memory: 65 bytes per text plus one band's
/// keys (12 bytes per text) plus the candidate pairs (8 bytes each). A
/// group of `k` texts sharing one band key costs `k²/2` sketch comparisons,
/// so a cluster of thousands of near-identical texts is slow.
pub struct NearDupSearch {
    cfg: MinHashConfig,
    perms: Permutations,
    store: BandStore,
    sketches: Vec<[u8; SKETCH]>,
    has_keys: Vec<bool>,
}

impl NearDupSearch {
    /// A search that keeps the band keys in memory (`bands * 8` bytes per text).
    pub fn in_memory(cfg: &MinHashConfig) -> Self {
        let bands = cfg.bands.max(1);
        Self::with_store(cfg, BandStore::Memory(vec![Vec::new(); bands]))
    }

    /// A search that writes the band keys to files in `dir` (removed by
    /// [`Self::resolve`]).
    pub fn spilled(cfg: &MinHashConfig, dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut files = Vec::new();
        for band in 0..cfg.bands.max(1) {
            let path = dir.join(format!("band-{band}.u64"));
            files.push((path.clone(), BufWriter::with_capacity(1 << 16, File::create(&path)?)));
        }
        Ok(Self::with_store(cfg, BandStore::Files(files)))
    }

    fn with_store(cfg: &MinHashConfig, store: BandStore) -> Self {
        Self { cfg: cfg.clone(), perms: Permutations::new(cfg), store, sketches: Vec::new(), has_keys: Vec::new() }
    }

    /// Texts added so far.
    pub fn len(&self) -> usize {
        self.sketches.len()
    }

    /// Whether no text was added.
    pub fn is_empty(&self) -> bool {
        self.sketches.is_empty()
    }

    /// Add the next texts (their indices continue from [`Self::len`]).
    pub fn add(&mut self, texts: &[&str]) -> io::Result<()> {
        let keys: Vec<(Vec<u64>, [u8; SKETCH])> = texts.par_iter().map(|t| band_keys(t, &self.cfg, &self.perms)).collect();
        let bands = self.cfg.bands.max(1);
        for (text_keys, sketch) in keys {
            self.has_keys.push(!text_keys.is_empty());
            self.sketches.push(sketch);
            for band in 0..bands {
                let key = text_keys.get(band).copied().unwrap_or(0);
                match &mut self.store {
                    BandStore::Memory(v) => v[band].push(key),
                    BandStore::Files(f) => f[band].1.write_all(&key.to_le_bytes())?,
                }
            }
        }
        Ok(())
    }

    fn band(&mut self, band: usize) -> io::Result<Vec<u64>> {
        match &mut self.store {
            BandStore::Memory(v) => Ok(std::mem::take(&mut v[band])),
            BandStore::Files(f) => {
                let (path, w) = &mut f[band];
                w.flush()?;
                let bytes = std::fs::read(&*path)?;
                std::fs::remove_file(&*path)?;
                Ok(bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect())
            }
        }
    }

    /// Decide every text. `order` is the visit order (text indices; texts
    /// not in it are never duplicates and never kept representatives);
    /// `confirm(i, j)` says whether text `i` is a near duplicate of the
    /// earlier kept text `j` (use [`confirmed`] on their texts, plus any
    /// condition of your own; it is called from several threads, and for
    /// some pairs the visit order would not need). Entry `i` of the result
    /// is `Some(j)` for a duplicate, `None` otherwise.
    pub fn resolve(mut self, order: &[u32], confirm: impl Fn(usize, usize) -> bool + Sync) -> io::Result<Vec<Option<usize>>> {
        let n = self.len();
        let mut pos = vec![u32::MAX; n];
        for (p, &i) in order.iter().enumerate() {
            if let Some(slot) = pos.get_mut(i as usize)
                && self.has_keys[i as usize]
            {
                *slot = p as u32;
            }
        }
        let threshold = self.cfg.threshold;
        // Candidate pairs (later, earlier) in visit positions, from every band.
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        for band in 0..self.cfg.bands.max(1) {
            let keys = self.band(band)?;
            let mut by_key: Vec<(u64, u32)> = keys.iter().zip(&pos).filter(|(_, p)| **p != u32::MAX).map(|(k, p)| (*k, *p)).collect();
            drop(keys);
            by_key.par_sort_unstable();
            let sketches = &self.sketches;
            let found: Vec<(u32, u32)> = by_key
                .par_chunk_by(|a, b| a.0 == b.0)
                .filter(|run| run.len() > 1)
                .flat_map_iter(|run| {
                    (1..run.len()).flat_map(move |x| {
                        (0..x).filter_map(move |y| {
                            let (later, earlier) = (run[x].1, run[y].1);
                            let sk = |p: u32| &sketches[order[p as usize] as usize];
                            may_reach(sk(later), sk(earlier), threshold).then_some((later, earlier))
                        })
                    })
                })
                .collect();
            drop(by_key);
            if !found.is_empty() {
                pairs.extend(found);
                pairs.par_sort_unstable();
                pairs.dedup();
            }
        }
        let mut kept = vec![true; order.len()];
        let mut result = vec![None; n];
        // Replay the visit order. Confirmations run in parallel, a block of
        // texts at a time, for every candidate still kept when the block
        // starts (kept-ness only ever turns off, so none that the replay
        // asks for is missing); the replay then takes, for each text, the
        // first candidate that is still kept and confirmed.
        let groups: Vec<&[(u32, u32)]> = pairs.chunk_by(|a, b| a.0 == b.0).collect();
        for block in groups.chunks(2048) {
            let confirmed: Vec<Vec<bool>> = block
                .par_iter()
                .map(|g| {
                    g.iter()
                        .map(|&(later, earlier)| kept[earlier as usize] && confirm(order[later as usize] as usize, order[earlier as usize] as usize))
                        .collect()
                })
                .collect();
            for (g, ok) in block.iter().zip(confirmed) {
                let later = g[0].0 as usize;
                if let Some(&(_, earlier)) = g.iter().zip(ok).find(|(p, ok)| *ok && kept[p.1 as usize]).map(|(p, _)| p) {
                    kept[later] = false;
                    result[order[later] as usize] = Some(order[earlier as usize] as usize);
                }
            }
        }
        Ok(result)
    }
}

/// Finds near-duplicates among `texts`.
///
/// Entry `i` is `Some(j)` (with `j < i`) when text `i` has exact shingle
/// Jaccard similarity `>= cfg.threshold` with the earlier *kept* text `j`
/// found through LSH (the lowest such `j`), and `None` when text `i` is kept.
/// The result does not depend on the rayon thread count.
pub fn near_duplicates(texts: &[&str], cfg: &MinHashConfig) -> Vec<Option<usize>> {
    near_duplicates_where(texts, cfg, |_, _| true)
}

/// [`near_duplicates`] with one more condition a pair must meet: `also(i,
/// j)` for text `i` and the earlier kept text `j` (the clean stage asks
/// that the two answers be alike too, so that one question with different
/// answers is never a duplicate).
pub fn near_duplicates_where(texts: &[&str], cfg: &MinHashConfig, also: impl Fn(usize, usize) -> bool + Sync) -> Vec<Option<usize>> {
    let mut search = NearDupSearch::in_memory(cfg);
    let order: Vec<u32> = (0..texts.len() as u32).collect();
    // In memory, neither call touches a file.
    if search.add(texts).is_err() {
        return vec![None; texts.len()];
    }
    search.resolve(&order, |i, j| confirmed(texts[i], texts[j], cfg) && also(i, j)).unwrap_or_else(|_| vec![None; texts.len()])
}

#[cfg(test)]
mod tests {
    use super::super::hash::SplitMix64;
    use super::*;
    use std::collections::HashMap;
    use std::hash::{BuildHasherDefault, Hasher};

    /// End of a bucket chain.
    const END: usize = usize::MAX;

    /// Hasher for keys that are hashes already: passes the `u64` through.
    #[derive(Default)]
    struct KeyHasher(u64);

    impl Hasher for KeyHasher {
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = self.0.rotate_left(8) ^ u64::from(*b);
            }
        }

        fn write_u64(&mut self, v: u64) {
            self.0 = v;
        }

        fn finish(&self) -> u64 {
            self.0
        }
    }

    /// The first implementation, kept as the oracle: texts visited in order,
    /// each checked against an LSH index (buckets chained per band) of the
    /// texts kept so far. [`NearDupSearch`] must give the same answers.
    fn sequential_reference(texts: &[&str], cfg: &MinHashConfig, also: impl Fn(usize, usize) -> bool) -> Vec<Option<usize>> {
        let perms = Permutations::new(cfg);
        let keys: Vec<(Vec<u64>, [u8; SKETCH])> = texts.par_iter().map(|t| band_keys(t, cfg, &perms)).collect();
        // Per band: key → the newest kept text with that key, chained through
        // `links` (text, next) to the older ones. Keys are already hashes.
        let mut buckets: Vec<HashMap<u64, usize, BuildHasherDefault<KeyHasher>>> = (0..cfg.bands.max(1)).map(|_| HashMap::default()).collect();
        let mut links: Vec<(usize, usize)> = Vec::new();
        let mut result = vec![None; texts.len()];
        let mut candidates: Vec<usize> = Vec::new();
        for (i, (text, (text_keys, sketch))) in texts.iter().zip(&keys).enumerate() {
            if text_keys.is_empty() {
                continue;
            }
            candidates.clear();
            for (bucket, key) in buckets.iter().zip(text_keys) {
                let mut at = bucket.get(key).copied().unwrap_or(END);
                while let Some(&(j, next)) = links.get(at) {
                    candidates.push(j);
                    at = next;
                }
            }
            candidates.sort_unstable();
            candidates.dedup();
            let mut own: Option<Vec<u64>> = None;
            let mut found = None;
            for &j in &candidates {
                let Some(other) = texts.get(j) else { continue };
                if !keys.get(j).is_some_and(|(_, theirs)| may_reach(sketch, theirs, cfg.threshold)) {
                    continue;
                }
                let mine = own.get_or_insert_with(|| shingles(text, cfg));
                if jaccard_sets(mine, &shingles(other, cfg)) >= cfg.threshold && (!cfg.same_numbers || numbers(text) == numbers(other)) && also(i, j) {
                    found = Some(j);
                    break;
                }
            }
            match found {
                Some(j) => {
                    if let Some(slot) = result.get_mut(i) {
                        *slot = Some(j);
                    }
                }
                None => {
                    for (bucket, key) in buckets.iter_mut().zip(text_keys) {
                        let next = bucket.insert(*key, links.len()).unwrap_or(END);
                        links.push((i, next));
                    }
                }
            }
        }
        result
    }

    const EN_WORDS: &[&str] = &[
        "the",
        "model",
        "data",
        "training",
        "pipeline",
        "quickly",
        "learns",
        "from",
        "every",
        "example",
        "while",
        "engineers",
        "review",
        "results",
        "carefully",
        "before",
        "shipping",
        "new",
        "features",
        "to",
        "customers",
        "who",
        "expect",
        "reliable",
        "answers",
        "about",
        "weather",
        "markets",
        "history",
        "science",
        "music",
        "and",
        "sports",
        "with",
        "clear",
        "language",
        "in",
        "many",
        "contexts",
        "today",
    ];
    const JA_PHRASES: &[&str] = &[
        "今日は",
        "天気が良いので",
        "公園まで",
        "散歩に行きました",
        "駅の近くに",
        "新しい店が",
        "できたそうです",
        "友達と",
        "昼ご飯を",
        "食べました",
        "来週の会議では",
        "計画について",
        "話し合う予定です",
        "図書館で",
        "本を借りて",
        "夜遅くまで",
        "読んでいました",
        "電車が遅れたので",
        "少し遅刻しました",
        "明日は",
        "雨が降るかもしれません",
        "傘を持って",
        "出かけてください",
        "彼女は",
        "毎朝コーヒーを",
        "飲んでいます",
    ];

    fn pick<'a>(rng: &mut SplitMix64, items: &[&'a str]) -> &'a str {
        let idx = (rng.next_u64() % items.len() as u64) as usize;
        items.get(idx).copied().unwrap_or("")
    }

    fn english(rng: &mut SplitMix64) -> String {
        let mut s = String::new();
        while s.len() < 200 {
            s.push_str(pick(rng, EN_WORDS));
            s.push(if rng.next_u64().is_multiple_of(9) { ',' } else { ' ' });
        }
        s.push('.');
        s
    }

    fn japanese(rng: &mut SplitMix64) -> String {
        let mut s = String::new();
        while s.chars().count() < 200 {
            s.push_str(pick(rng, JA_PHRASES));
            if rng.next_u64().is_multiple_of(4) {
                s.push('。');
            }
        }
        s
    }

    /// Applies 1-3 small edits: a substitution, deletion, punctuation change
    /// or です→でした.
    fn mutate(rng: &mut SplitMix64, text: &str) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        let edits = 1 + rng.next_u64() % 3;
        for _ in 0..edits {
            let pos = (rng.next_u64() % chars.len().max(1) as u64) as usize;
            match rng.next_u64() % 4 {
                0 => {
                    if let Some(c) = chars.get_mut(pos) {
                        *c = if c.is_ascii() { 'x' } else { 'の' };
                    }
                }
                1 => {
                    if pos < chars.len() {
                        chars.remove(pos);
                    }
                }
                2 => chars.insert(pos, if chars.first().is_some_and(char::is_ascii) { '!' } else { '、' }),
                _ => {
                    let s: String = chars.iter().collect();
                    chars = s.replacen("です", "でした", 1).replacen("the", "teh", 1).chars().collect();
                }
            }
        }
        chars.into_iter().collect()
    }

    #[test]
    fn signature_is_deterministic_and_seeded() {
        let cfg = MinHashConfig::default();
        let a = signature("The quick brown fox jumps over the lazy dog", &cfg);
        assert_eq!(a.len(), 200);
        assert_eq!(a, signature("The quick brown fox jumps over the lazy dog", &cfg));
        // Case, spacing and punctuation are not part of the canonical form.
        assert_eq!(a, signature("the QUICK brown-fox, jumps over the lazy dog!!", &cfg));
        let other = MinHashConfig { seed: 1, ..MinHashConfig::default() };
        assert_ne!(a, signature("The quick brown fox jumps over the lazy dog", &other));
        assert!(signature("!!! ...", &cfg).iter().all(|&v| v == u64::MAX));
    }

    #[test]
    fn full_width_matches_ascii() {
        let cfg = MinHashConfig::default();
        assert_eq!(jaccard("ＡＢＣ１２３ｄｅｆ", "abc123def", &cfg), 1.0);
    }

    #[test]
    fn estimate_tracks_exact_jaccard() {
        let cfg = MinHashConfig::default();
        let mut rng = SplitMix64::new(11);
        for _ in 0..20 {
            let a = english(&mut rng);
            let once = mutate(&mut rng, &a);
            let b = mutate(&mut rng, &once);
            let exact = jaccard(&a, &b, &cfg);
            let est = estimate_jaccard(&signature(&a, &cfg), &signature(&b, &cfg));
            assert!((exact - est).abs() < 0.12, "exact {exact} est {est}");
        }
    }

    #[test]
    fn short_and_empty_texts() {
        let cfg = MinHashConfig::default();
        let texts = ["abc", "ABC", "abd", "", "...", "", "はい", "はい。"];
        let got = near_duplicates(&texts, &cfg);
        assert_eq!(got, vec![None, Some(0), None, None, None, None, None, Some(6)]);
    }

    #[test]
    fn degenerate_config_does_not_panic() {
        let cfg = MinHashConfig { ngram: 0, bands: 0, rows: 0, threshold: 0.95, same_numbers: true, seed: 3 };
        let got = near_duplicates(&["hello world", "hello world", "other"], &cfg);
        assert_eq!(got, vec![None, Some(0), None]);
    }

    fn corpus(seed: u64, n: usize) -> (Vec<String>, usize) {
        let mut rng = SplitMix64::new(seed);
        let mut originals: Vec<String> = (0..n).map(|i| if i % 2 == 0 { english(&mut rng) } else { japanese(&mut rng) }).collect();
        let copies: Vec<String> = originals.iter().map(|t| mutate(&mut rng, t)).collect();
        originals.extend(copies);
        (originals, n)
    }

    #[test]
    fn recall_and_precision_on_synthetic_near_duplicates() {
        let cfg = MinHashConfig::default();
        let (texts, n) = corpus(42, 200);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let got = near_duplicates(&refs, &cfg);
        let false_pos = got.iter().take(n).filter(|r| r.is_some()).count();
        assert_eq!(false_pos, 0, "unrelated originals must stay unique");
        let hits = (0..n).filter(|&i| got.get(n + i) == Some(&Some(i))).count();
        let recall = hits as f64 / n as f64;
        let min_j = (0..n).filter_map(|i| Some(jaccard(texts.get(i)?, texts.get(n + i)?, &cfg))).fold(1.0f64, f64::min);
        println!("near-duplicate recall {recall:.3} (min pair Jaccard {min_j:.3})");
        assert!(recall >= 0.95, "recall {recall}");
        let wrong = (0..n).filter(|&i| matches!(got.get(n + i), Some(Some(j)) if *j != i)).count();
        assert_eq!(wrong, 0);
    }

    #[test]
    fn identical_across_thread_counts() {
        let cfg = MinHashConfig::default();
        let (texts, _) = corpus(7, 120);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
            pool.install(|| near_duplicates(&refs, &cfg))
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(4));
        assert!(one.iter().any(Option::is_some));
    }

    #[test]
    fn cluster_points_at_first_kept_text() {
        let cfg = MinHashConfig::default();
        let base = "これは重複検出のテストです。同じ内容の文章が何度も現れる場合に、最初の文章だけを残して\
                    後から来た文章を重複として報告できるかどうかを確認します。長さは百文字程度あれば十分でしょう。";
        let texts = [base, "全く関係のない別の話題について書かれた文章がここにあります。", base, &base.replace("です", "でした")];
        assert_eq!(near_duplicates(&texts, &cfg), vec![None, None, Some(0), Some(0)]);
    }
    #[test]
    fn search_equals_the_sequential_index() {
        let cfg = MinHashConfig::default();
        let mut rng = SplitMix64::new(99);
        let (mut texts, n) = corpus(5, 150);
        // Clusters: copies of copies, so kept-ness decides who represents whom.
        for i in 0..40 {
            let base = texts[i].clone();
            let mut t = base;
            for _ in 0..4 {
                t = mutate(&mut rng, &t);
                texts.push(t.clone());
            }
        }
        texts.extend(["", "...", "abc", "ABC", "はい", "はい。"].map(String::from));
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let also = |i: usize, j: usize| !(i + j).is_multiple_of(7);
        let want = sequential_reference(&refs, &cfg, also);
        assert!(want.iter().filter(|d| d.is_some()).count() > n / 2, "the corpus must have duplicates");
        assert_eq!(near_duplicates_where(&refs, &cfg, also), want);
        // Spilled to files and added in uneven batches: the same answers.
        let dir = std::env::temp_dir().join(format!("tailor-neardup-{}", std::process::id()));
        let mut search = NearDupSearch::spilled(&cfg, &dir).unwrap();
        for batch in refs.chunks(37) {
            search.add(batch).unwrap();
        }
        let order: Vec<u32> = (0..refs.len() as u32).collect();
        let got = search.resolve(&order, |i, j| confirmed(refs[i], refs[j], &cfg) && also(i, j)).unwrap();
        assert_eq!(got, want);
        assert!(std::fs::read_dir(&dir).unwrap().next().is_none(), "band files are removed");
        std::fs::remove_dir_all(&dir).unwrap();
        // Another visit order (reversed): the reference on reversed texts.
        let rev: Vec<&str> = refs.iter().rev().copied().collect();
        let want_rev = sequential_reference(&rev, &cfg, |_, _| true);
        let mut search = NearDupSearch::in_memory(&cfg);
        search.add(&refs).unwrap();
        let order: Vec<u32> = (0..refs.len() as u32).rev().collect();
        let got = search.resolve(&order, |i, j| confirmed(refs[i], refs[j], &cfg)).unwrap();
        let last = refs.len() - 1;
        let mapped: Vec<Option<usize>> = (0..refs.len()).map(|k| got[last - k].map(|j| last - j)).collect();
        assert_eq!(mapped, want_rev);
    }
}
