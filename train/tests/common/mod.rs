//! Tokenized splits for training tests, in the layout the format stage
//! writes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A tokens.safetensors as the format stage writes it, from (ids, loss
/// mask) per sample.
pub fn write_split(dir: &Path, samples: &[(Vec<u32>, Vec<u8>)]) {
    std::fs::create_dir_all(dir).unwrap();
    let (mut ids, mut mask, mut off) = (Vec::<u32>::new(), Vec::<u8>::new(), vec![0u64]);
    for (i, m) in samples {
        ids.extend(i);
        mask.extend(m);
        off.push(ids.len() as u64);
    }
    // Raw little-endian arrays with the safetensors crate's layout.
    let ib: Vec<u8> = ids.iter().flat_map(|x| x.to_le_bytes()).collect();
    let ob: Vec<u8> = off.iter().flat_map(|x| x.to_le_bytes()).collect();
    let views = vec![
        ("input_ids", safetensors::tensor::TensorView::new(safetensors::Dtype::U32, vec![ids.len()], &ib).unwrap()),
        ("loss_mask", safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![mask.len()], &mask).unwrap()),
        ("offsets", safetensors::tensor::TensorView::new(safetensors::Dtype::U64, vec![off.len()], &ob).unwrap()),
    ];
    safetensors::serialize_to_file(views, None, &dir.join("tokens.safetensors")).unwrap();
    std::fs::write(dir.join("manifest.json"), "{}").unwrap();
}

/// A repeated pattern whose second half is trained.
pub fn toy_split(dir: &Path, samples: usize, vocab: u32) {
    let rows: Vec<(Vec<u32>, Vec<u8>)> =
        (0..samples as u32).map(|s| ((0..16u32).map(|k| (s * 3 + k * 7) % vocab).collect(), (0..16u32).map(|k| u8::from(k >= 8)).collect())).collect();
    write_split(dir, &rows);
}

/// A model fixture of train/tests/fixtures; a missing one fails the test.
pub fn fixture(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    assert!(p.join("config.json").exists(), "fixture {} is missing", p.display());
    p
}
