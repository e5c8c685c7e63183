//! One output split (train or validation), written as samples arrive.
//!
//! Token ids and loss masks go to scratch files as each chunk is tokenized,
//! so memory holds only the per-sample offsets. At the end the
//! `tokens.safetensors` file is assembled: the header the `safetensors`
//! crate would write for the same tensors (same order, same 8-byte padding;
//! a test holds the two byte-identical), then the tensors' bytes copied from
//! the scratch files.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, Metadata, TensorInfo};
use serde_json::{Value, json};
use tailor_engine::{IoContext, StageError};
use tailor_model::tokenizer::TokenizerFiles;

use super::{FormatConfig, Sample, pack};
use crate::stream;

/// Where a tensor's bytes come from.
enum Bytes {
    File(PathBuf),
    Memory(Vec<u8>),
}

/// A split being written.
pub struct SplitWriter {
    dir: PathBuf,
    ids_path: PathBuf,
    mask_path: PathBuf,
    ids: BufWriter<File>,
    mask: BufWriter<File>,
    samples: BufWriter<File>,
    offsets: Vec<u64>,
    target: u64,
    truncated: usize,
}

impl SplitWriter {
    /// Start the split's files: outputs in `dir`, token scratch in `scratch`.
    pub fn new(dir: &Path, scratch: &Path) -> Result<Self, StageError> {
        let name = dir.file_name().map_or_else(|| "split".into(), |n| n.to_string_lossy().into_owned());
        let ids_path = scratch.join(format!("{name}.ids"));
        let mask_path = scratch.join(format!("{name}.mask"));
        let open = |p: &Path| stream::create(p).ctx(|| format!("creating {}", p.display()));
        Ok(Self {
            dir: dir.to_path_buf(),
            ids: open(&ids_path)?,
            mask: open(&mask_path)?,
            samples: open(&dir.join("samples.jsonl"))?,
            ids_path,
            mask_path,
            offsets: vec![0],
            target: 0,
            truncated: 0,
        })
    }

    /// Append one sample.
    pub fn push(&mut self, s: &Sample) -> Result<(), StageError> {
        let ids: Vec<u8> = s.ids.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.ids.write_all(&ids).ctx(|| "writing token ids".into())?;
        self.mask.write_all(&s.mask).ctx(|| "writing loss masks".into())?;
        let last = self.offsets.last().copied().unwrap_or(0);
        self.offsets.push(last + s.ids.len() as u64);
        let t: usize = s.mask.iter().map(|&m| m as usize).sum();
        self.target += t as u64;
        self.truncated += usize::from(s.truncated);
        let line = json!({"id": s.id, "tokens": s.ids.len(), "target_tokens": t, "truncated": s.truncated, "prompt": s.asked, "reference": s.answer, "fix_of": s.fix_of});
        writeln!(self.samples, "{line}").ctx(|| "samples.jsonl".into())
    }

    /// Samples so far.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Write `tokenizer.json`, `tokens.safetensors` and `manifest.json`;
    /// returns the manifest.
    pub fn finish(self, cfg: &FormatConfig, tok: &TokenizerFiles, manifest: Value) -> Result<Value, StageError> {
        let Self { dir, ids_path, mask_path, ids, mask, mut samples, offsets, target, truncated } = self;
        // The tokenizer travels with the tokens (stored once, by content), so
        // the artifact can be decoded and checked against a model on its own.
        std::fs::write(dir.join("tokenizer.json"), &tok.bytes).ctx(|| "writing tokenizer.json".into())?;
        for w in [ids, mask] {
            w.into_inner().map_err(|e| StageError::msg(format!("writing token scratch: {e}")))?;
        }
        samples.flush().ctx(|| "samples.jsonl".into())?;
        let n_tokens = offsets.last().copied().unwrap_or(0) as usize;
        let le64 = |v: &[u64]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let mut tensors: Vec<(String, Dtype, Vec<usize>, Bytes)> = vec![
            ("input_ids".into(), Dtype::U32, vec![n_tokens], Bytes::File(ids_path.clone())),
            ("loss_mask".into(), Dtype::U8, vec![n_tokens], Bytes::File(mask_path.clone())),
            ("offsets".into(), Dtype::U64, vec![offsets.len()], Bytes::Memory(le64(&offsets))),
        ];
        let mut packs = 0;
        if cfg.packing {
            let lengths: Vec<usize> = offsets.windows(2).map(|w| (w[1] - w[0]) as usize).collect();
            let bins = pack::best_fit_decreasing(&lengths, cfg.max_tokens);
            packs = bins.len();
            let mut pack_offsets = vec![0u64];
            let mut pack_samples: Vec<u32> = Vec::new();
            for b in &bins {
                pack_samples.extend_from_slice(b);
                pack_offsets.push(pack_samples.len() as u64);
            }
            let le32: Vec<u8> = pack_samples.iter().flat_map(|x| x.to_le_bytes()).collect();
            tensors.push(("pack_offsets".into(), Dtype::U64, vec![pack_offsets.len()], Bytes::Memory(le64(&pack_offsets))));
            tensors.push(("pack_samples".into(), Dtype::U32, vec![pack_samples.len()], Bytes::Memory(le32)));
        }
        let path = dir.join("tokens.safetensors");
        write_safetensors(&path, tensors).map_err(|e| StageError::msg(format!("writing {}: {e}", path.display())))?;
        for p in [&ids_path, &mask_path] {
            let _ = std::fs::remove_file(p);
        }
        let mut m = manifest;
        m["samples"] = json!(offsets.len() - 1);
        m["tokens"] = json!(n_tokens);
        m["target_tokens"] = json!(target);
        m["truncated"] = json!(truncated);
        m["packs"] = json!(packs);
        crate::files::write_json(&dir.join("manifest.json"), &m)?;
        Ok(m)
    }
}

/// Write a safetensors file whose tensors' bytes come from files or memory,
/// laid out as `safetensors::serialize` lays them out: sorted by dtype
/// (widest first), then name; header padded with spaces to 8 bytes.
fn write_safetensors(path: &Path, mut tensors: Vec<(String, Dtype, Vec<usize>, Bytes)>) -> io::Result<()> {
    tensors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut infos = Vec::with_capacity(tensors.len());
    let mut offset = 0usize;
    for (name, dtype, shape, _) in &tensors {
        let n = shape.iter().product::<usize>() * dtype.bitsize() / 8;
        infos.push((name.clone(), TensorInfo { dtype: *dtype, shape: shape.clone(), data_offsets: (offset, offset + n) }));
        offset += n;
    }
    let header = Metadata::new(None, infos.clone()).map_err(|e| io::Error::other(e.to_string()))?;
    let mut header = serde_json::to_string(&header)?.into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = stream::create(path)?;
    out.write_all(&(header.len() as u64).to_le_bytes())?;
    out.write_all(&header)?;
    for ((_, _, _, bytes), (name, info)) in tensors.iter().zip(&infos) {
        let want = (info.data_offsets.1 - info.data_offsets.0) as u64;
        let got = match bytes {
            Bytes::Memory(b) => {
                out.write_all(b)?;
                b.len() as u64
            }
            Bytes::File(p) => io::copy(&mut File::open(p)?, &mut out)?,
        };
        if got != want {
            return Err(io::Error::other(format!("tensor {name} has {got} bytes, its shape says {want}")));
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    #[test]
    fn the_header_and_layout_equal_the_safetensors_crate() {
        let dir = std::env::temp_dir().join(format!("tailor-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ids: Vec<u8> = (0u32..13).flat_map(|x| (x * 7919).to_le_bytes()).collect();
        let mask: Vec<u8> = (0..13).map(|i| (i % 3 == 0) as u8).collect();
        let offsets: Vec<u8> = [0u64, 5, 13].iter().flat_map(|x| x.to_le_bytes()).collect();
        let packs: Vec<u8> = [1u32, 0].iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(dir.join("ids"), &ids).unwrap();
        let ours = dir.join("ours.safetensors");
        write_safetensors(
            &ours,
            vec![
                ("input_ids".into(), Dtype::U32, vec![13], Bytes::File(dir.join("ids"))),
                ("loss_mask".into(), Dtype::U8, vec![13], Bytes::Memory(mask.clone())),
                ("offsets".into(), Dtype::U64, vec![3], Bytes::Memory(offsets.clone())),
                ("pack_samples".into(), Dtype::U32, vec![2], Bytes::Memory(packs.clone())),
            ],
        )
        .unwrap();
        let theirs = safetensors::serialize(
            vec![
                ("input_ids", TensorView::new(Dtype::U32, vec![13], &ids).unwrap()),
                ("loss_mask", TensorView::new(Dtype::U8, vec![13], &mask).unwrap()),
                ("offsets", TensorView::new(Dtype::U64, vec![3], &offsets).unwrap()),
                ("pack_samples", TensorView::new(Dtype::U32, vec![2], &packs).unwrap()),
            ],
            None,
        )
        .unwrap();
        assert_eq!(std::fs::read(&ours).unwrap(), theirs);
        // A file shorter than its shape is an error, not a broken artifact.
        let err = write_safetensors(&dir.join("bad"), vec![("input_ids".into(), Dtype::U32, vec![14], Bytes::File(dir.join("ids")))]).unwrap_err();
        assert!(err.to_string().contains("52 bytes, its shape says 56"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
