//! A streaming writer of float32 `.safetensors` files.
//!
//! The format is an 8-byte little-endian header length, a JSON header
//! (`{"name": {"dtype", "shape", "data_offsets": [begin, end]}, …,
//! "__metadata__": {…}}`) padded with spaces to a multiple of 8, then the
//! tensors' bytes back to back. Because every shape is known before any
//! data, the header is written first and tensors then arrive one at a time,
//! in any number of pieces (a row at a time, say) — nothing needs to hold
//! more than the piece being written.
//!
//! The file is written as `<name>.tmp` beside the target and renamed into
//! place by [`SafetensorsWriter::finish`] once every tensor is complete; a
//! writer dropped before that removes its temporary file, so a failed import
//! never leaves a half-written `model.safetensors`.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};
use serde_json::{Map, Value, json};

/// One tensor to be written: its name and row-major shape.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Tensor name.
    pub name: String,
    /// Shape, outermost dimension first.
    pub shape: Vec<usize>,
}

/// Writes a float32 safetensors file tensor by tensor, in plan order.
pub struct SafetensorsWriter {
    out: Option<BufWriter<File>>,
    tmp: PathBuf,
    target: PathBuf,
    plan: Vec<Planned>,
    /// Index of the tensor being written.
    current: usize,
    /// Values of it written so far.
    filled: usize,
}

fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// The padded JSON header for `plan`.
fn header(target: &Path, plan: &[Planned], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut map = Map::new();
    let mut offset = 0usize;
    for p in plan {
        let bytes = numel(&p.shape)
            .and_then(|n| n.checked_mul(4))
            .ok_or_else(|| ModelError::malformed(target, format!("tensor {}: shape {:?} is too large", p.name, p.shape)))?;
        let end = offset.checked_add(bytes).ok_or_else(|| ModelError::malformed(target, "safetensors data larger than memory can address"))?;
        map.insert(p.name.clone(), json!({"dtype": "F32", "shape": p.shape, "data_offsets": [offset, end]}));
        offset = end;
    }
    if !metadata.is_empty() {
        map.insert("__metadata__".into(), json!(metadata));
    }
    let mut text = serde_json::to_vec(&Value::Object(map)).map_err(|e| ModelError::malformed(target, format!("header: {e}")))?;
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    Ok(text)
}

impl SafetensorsWriter {
    /// Start writing `target`: the header for `plan` goes out at once.
    pub fn create(target: &Path, plan: Vec<Planned>, metadata: &BTreeMap<String, String>) -> Result<Self> {
        let mut seen = HashSet::new();
        if let Some(dup) = plan.iter().find(|p| !seen.insert(p.name.as_str())) {
            return Err(ModelError::malformed(target, format!("tensor {} is planned twice", dup.name)));
        }
        let head = header(target, &plan, metadata)?;
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model.safetensors".into());
        let tmp = target.with_file_name(format!("{name}.tmp"));
        let file = File::create(&tmp).map_err(ModelError::io(&tmp))?;
        let mut w = SafetensorsWriter { out: Some(BufWriter::with_capacity(1 << 20, file)), tmp, target: target.to_path_buf(), plan, current: 0, filled: 0 };
        w.raw(&(head.len() as u64).to_le_bytes())?;
        w.raw(&head)?;
        w.skip_empty();
        Ok(w)
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        let out = self.out.as_mut().ok_or_else(|| ModelError::malformed(&self.tmp, "already finished"))?;
        out.write_all(bytes).map_err(ModelError::io(&self.tmp))
    }

    /// Move past tensors with no values (and past the one just completed).
    fn skip_empty(&mut self) {
        while let Some(p) = self.plan.get(self.current) {
            if numel(&p.shape).unwrap_or(0) != self.filled {
                break;
            }
            self.current += 1;
            self.filled = 0;
        }
    }

    /// The name of the tensor the next values belong to.
    pub fn current(&self) -> Option<&str> {
        self.plan.get(self.current).map(|p| p.name.as_str())
    }

    /// Append `values` to the current tensor; a tensor may arrive in any
    /// number of pieces, but a piece may not spill into the next tensor.
    pub fn write(&mut self, values: &[f32]) -> Result<()> {
        let Some(p) = self.plan.get(self.current) else {
            return Err(ModelError::malformed(&self.target, "every planned tensor is already written"));
        };
        let total = numel(&p.shape).unwrap_or(0);
        if self.filled + values.len() > total {
            return Err(ModelError::malformed(
                &self.target,
                format!("tensor {} has {} values, {} more were written", p.name, total, self.filled + values.len() - total),
            ));
        }
        let mut bytes = Vec::with_capacity(values.len().min(1 << 16) * 4);
        for chunk in values.chunks(1 << 16) {
            bytes.clear();
            chunk.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
            self.raw(&bytes)?;
        }
        self.filled += values.len();
        self.skip_empty();
        Ok(())
    }

    /// Flush, check every tensor is complete and rename into place.
    pub fn finish(mut self) -> Result<()> {
        if let Some(name) = self.current() {
            return Err(ModelError::malformed(&self.target, format!("tensor {name} is incomplete ({} values written)", self.filled)));
        }
        let out = self.out.take().ok_or_else(|| ModelError::malformed(&self.tmp, "already finished"))?;
        let done = out
            .into_inner()
            .map_err(|e| ModelError::Io { path: self.tmp.clone(), source: e.into_error() })
            .and_then(|file| file.sync_all().map_err(ModelError::io(&self.tmp)))
            .and_then(|()| std::fs::rename(&self.tmp, &self.target).map_err(ModelError::io(&self.target)));
        if done.is_err() {
            // The error above is what matters; a leftover temporary file is harmless.
            let _ = std::fs::remove_file(&self.tmp);
        }
        done
    }
}

impl Drop for SafetensorsWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            // Abandoned mid-write: nothing to report to from a destructor.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_file_loads_with_the_safetensors_crate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let plan = vec![
            Planned { name: "b".into(), shape: vec![2, 3] },
            Planned { name: "empty".into(), shape: vec![0, 4] },
            Planned { name: "a".into(), shape: vec![1] },
        ];
        let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        let mut w = SafetensorsWriter::create(&path, plan, &meta).unwrap();
        w.write(&[1.0, 2.0]).unwrap();
        w.write(&[3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!(w.current(), Some("a"));
        assert!(w.write(&[7.0, 8.0]).unwrap_err().to_string().contains("tensor a has 1 values"));
        w.write(&[7.0]).unwrap();
        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let b = st.tensor("b").unwrap();
        assert_eq!(b.shape(), &[2, 3]);
        assert_eq!(b.data()[20..24], 6f32.to_le_bytes());
        assert_eq!(st.tensor("empty").unwrap().shape(), &[0, 4]);
        assert_eq!(st.tensor("a").unwrap().data(), &7f32.to_le_bytes());
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        assert_eq!(n % 8, 0);
        assert!(!dir.path().join("m.safetensors.tmp").exists());
    }

    #[test]
    fn incomplete_writer_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let mut w = SafetensorsWriter::create(&path, vec![Planned { name: "x".into(), shape: vec![4] }], &BTreeMap::new()).unwrap();
        w.write(&[1.0]).unwrap();
        assert!(w.finish().unwrap_err().to_string().contains("tensor x is incomplete"));
        let mut w = SafetensorsWriter::create(&path, vec![Planned { name: "x".into(), shape: vec![4] }], &BTreeMap::new()).unwrap();
        w.write(&[1.0]).unwrap();
        drop(w);
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }
}
