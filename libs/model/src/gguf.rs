//! Reader for GGUF, llama.cpp's model file format (versions 2 and 3,
//! little-endian).
//!
//! Layout: `"GGUF"`, u32 version, u64 tensor count, u64 metadata count, the
//! metadata key/values, the tensor infos (name, dims in ggml order — `ne[0]`
//! varies fastest —, type, offset), padding to `general.alignment`
//! (default 32), then the tensor data.
//!
//! [`Gguf::open`] reads only the header, through a buffered reader that
//! knows the file length: every length, count and offset is checked against
//! the bytes that remain before anything is allocated or read, so a corrupt
//! or truncated file gives an error naming the file, the key or tensor and
//! what is wrong — never a panic or a huge allocation. Tensor data is read
//! later, one tensor at a time, by seeking ([`Gguf::read_tensor`]), so
//! memory stays around the size of the largest tensor however big the file.

use crate::error::{ModelError, Result};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::ggml::{GgmlType, describe_type};

/// Nested arrays deeper than this are refused (no GGUF writer nests at all).
const MAX_DEPTH: usize = 4;
/// ggml tensors have at most four dimensions (`GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// GGUF type 0.
    U8(u8),
    /// GGUF type 1.
    I8(i8),
    /// GGUF type 2.
    U16(u16),
    /// GGUF type 3.
    I16(i16),
    /// GGUF type 4.
    U32(u32),
    /// GGUF type 5.
    I32(i32),
    /// GGUF type 6.
    F32(f32),
    /// GGUF type 7.
    Bool(bool),
    /// GGUF type 8 (UTF-8).
    String(String),
    /// GGUF type 9: elements of one type.
    Array(Vec<Value>),
    /// GGUF type 10.
    U64(u64),
    /// GGUF type 11.
    I64(i64),
    /// GGUF type 12.
    F64(f64),
}

impl Value {
    /// Any integer (or bool) value as `i128`.
    pub fn as_int(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            Value::Bool(v) => v.into(),
            _ => return None,
        })
    }

    /// A floating-point (or integer) value as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_int().map(|v| v as f64),
        }
    }

    /// A string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// An array value.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One tensor's header entry.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Tensor name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` varies fastest (the row length).
    pub dims: Vec<u64>,
    /// ggml type id.
    pub type_id: u32,
    /// The type, when this importer supports it.
    pub ty: Option<GgmlType>,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Number of values.
    pub n_elements: u64,
    /// Bytes of data (0 when the type is unsupported and the size unknown).
    pub n_bytes: u64,
}

impl TensorInfo {
    /// The shape in row-major order (PyTorch / safetensors): reversed dims.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// `ggml` type name for messages (`Q4_K (type 12)`).
    pub fn type_description(&self) -> String {
        describe_type(self.type_id)
    }
}

/// A parsed GGUF header; tensor data stays on disk.
#[derive(Debug)]
pub struct Gguf {
    /// The file.
    pub path: PathBuf,
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata, by key.
    pub metadata: BTreeMap<String, Value>,
    /// Tensor infos, in file order.
    pub tensors: Vec<TensorInfo>,
    /// Data alignment (`general.alignment`, default 32).
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_start: u64,
    /// File length in bytes.
    pub file_len: u64,
}

/// A buffered reader that tracks its position and refuses to read past
/// the end of the file.
struct Header {
    r: BufReader<File>,
    pos: u64,
    len: u64,
    path: PathBuf,
}

impl Header {
    fn err(&self, what: &str, msg: &str) -> ModelError {
        ModelError::malformed(&self.path, format!("{what}: {msg} (at byte {} of {})", self.pos, self.len))
    }

    /// Fail unless `n` more bytes exist.
    fn need(&self, n: u64, what: &str) -> Result<()> {
        if self.len.saturating_sub(self.pos) < n {
            return Err(self.err(what, &format!("file is truncated: needs {n} more bytes, {} left", self.len.saturating_sub(self.pos))));
        }
        Ok(())
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        self.need(N as u64, what)?;
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|e| self.err(what, &e.to_string()))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.bytes::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        self.bytes::<8>(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        self.need(n, what)?;
        let mut buf = vec![0u8; n as usize];
        self.r.read_exact(&mut buf).map_err(|e| self.err(what, &e.to_string()))?;
        self.pos += n;
        String::from_utf8(buf).map_err(|_| self.err(what, "string is not valid UTF-8"))
    }

    /// A metadata value of GGUF type `t`.
    fn value(&mut self, t: u32, what: &str, depth: usize) -> Result<Value> {
        Ok(match t {
            0 => Value::U8(self.bytes::<1>(what)?[0]),
            1 => Value::I8(self.bytes::<1>(what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.bytes(what)?)),
            3 => Value::I16(i16::from_le_bytes(self.bytes(what)?)),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(i32::from_le_bytes(self.bytes(what)?)),
            6 => Value::F32(f32::from_le_bytes(self.bytes(what)?)),
            7 => match self.bytes::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(what, &format!("bool value is {b}, not 0 or 1"))),
            },
            8 => Value::String(self.string(what)?),
            9 => self.array(what, depth)?,
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(i64::from_le_bytes(self.bytes(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.bytes(what)?)),
            other => return Err(self.err(what, &format!("unknown metadata value type {other}"))),
        })
    }

    fn array(&mut self, what: &str, depth: usize) -> Result<Value> {
        if depth >= MAX_DEPTH {
            return Err(self.err(what, "arrays nested too deeply"));
        }
        let t = self.u32(what)?;
        let n = self.u64(what)?;
        // Every element takes at least one byte (strings: eight), so a count
        // the rest of the file cannot hold is corrupt; check before allocating.
        let min = match t {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 | 10..=12 => 8,
            9 => 12,
            other => return Err(self.err(what, &format!("unknown array element type {other}"))),
        };
        self.need(n.saturating_mul(min), &format!("{what}: array of {n} elements"))?;
        let mut items = Vec::with_capacity(n.min(1 << 16) as usize);
        for _ in 0..n {
            items.push(self.value(t, what, depth + 1)?);
        }
        Ok(Value::Array(items))
    }
}

impl Gguf {
    /// Parse the header of the GGUF file at `path` and check every tensor's
    /// data range against the file length.
    pub fn open(path: &Path) -> Result<Gguf> {
        let file = File::open(path).map_err(ModelError::io(path))?;
        let len = file.metadata().map_err(ModelError::io(path))?.len();
        let mut h = Header { r: BufReader::with_capacity(1 << 16, file), pos: 0, len, path: path.to_path_buf() };
        let magic = h.bytes::<4>("magic")?;
        if &magic != b"GGUF" {
            return Err(ModelError::malformed(path, format!("not a GGUF file (magic is {:?}, expected \"GGUF\")", String::from_utf8_lossy(&magic))));
        }
        let version = h.u32("version")?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(ModelError::unsupported(
                    path,
                    "GGUF version 1 is not supported (only versions 2 and 3); re-convert the model with a current llama.cpp",
                ));
            }
            v if (1..=3).contains(&v.swap_bytes()) => {
                return Err(ModelError::unsupported(path, format!("big-endian GGUF (version {}) is not supported", v.swap_bytes())));
            }
            v => return Err(ModelError::unsupported(path, format!("unsupported GGUF version {v} (only versions 2 and 3)"))),
        }
        let n_tensors = h.u64("tensor count")?;
        let n_kv = h.u64("metadata count")?;
        // A key/value takes at least 8+4+1 bytes, a tensor info 8+4+8+4+8.
        h.need(n_kv.saturating_mul(13), &format!("{n_kv} metadata entries"))?;
        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = h.string(&format!("metadata key #{i}"))?;
            let t = h.u32(&format!("type of metadata {key:?}"))?;
            let v = h.value(t, &format!("metadata {key:?}"), 0)?;
            if metadata.insert(key.clone(), v).is_some() {
                return Err(ModelError::malformed(path, format!("metadata key {key:?} appears twice")));
            }
        }
        h.need(n_tensors.saturating_mul(32), &format!("{n_tensors} tensor infos"))?;
        let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors.min(1 << 16) as usize);
        for i in 0..n_tensors {
            tensors.push(read_info(&mut h, i)?);
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => match v.as_int() {
                Some(a) if a > 0 && (a as u64).is_power_of_two() && matches!(v, Value::U32(_)) => a as u64,
                _ => return Err(ModelError::malformed(path, format!("general.alignment must be a u32 power of two, got {v:?}"))),
            },
        };
        let data_start = h.pos.div_ceil(alignment) * alignment;
        let g = Gguf { path: path.to_path_buf(), version, metadata, tensors, alignment, data_start, file_len: len };
        g.check_tensors()?;
        Ok(g)
    }

    /// Names unique, offsets aligned, data inside the file.
    fn check_tensors(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for t in &self.tensors {
            let at = |msg: String| ModelError::malformed(&self.path, format!("tensor {}: {msg}", t.name));
            if !seen.insert(t.name.as_str()) {
                return Err(at("name appears twice".into()));
            }
            if t.offset % self.alignment != 0 {
                return Err(at(format!("data offset {} is not a multiple of the alignment {}", t.offset, self.alignment)));
            }
            let end = self.data_start.checked_add(t.offset).and_then(|s| s.checked_add(t.n_bytes));
            match end {
                Some(end) if end <= self.file_len => {}
                _ => {
                    return Err(at(format!(
                        "data (offset {} + {} bytes after the data start {}) runs past the end of the file ({} bytes); the file is truncated or corrupt",
                        t.offset, t.n_bytes, self.data_start, self.file_len
                    )));
                }
            }
        }
        Ok(())
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// A string metadata value; an error when present with another type.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| self.wrong_type(key, "a string", v)),
        }
    }

    /// A non-negative integer metadata value (any integer type).
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_int() {
                Some(i) if (0..=i128::from(u64::MAX)).contains(&i) && !matches!(v, Value::Bool(_)) => Ok(Some(i as u64)),
                _ => Err(self.wrong_type(key, "a non-negative integer", v)),
            },
        }
    }

    /// A numeric metadata value as `f64`.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| self.wrong_type(key, "a number", v)),
        }
    }

    /// A boolean metadata value.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong_type(key, "a bool", v)),
        }
    }

    /// A required non-negative integer.
    pub fn require_u64(&self, key: &str) -> Result<u64> {
        self.get_u64(key)?.ok_or_else(|| ModelError::malformed(&self.path, format!("required metadata {key:?} is missing")))
    }

    /// A string array (e.g. `tokenizer.ggml.tokens`).
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let items = v.as_array().ok_or_else(|| self.wrong_type(key, "an array of strings", v))?;
        items.iter().map(|x| x.as_str().ok_or_else(|| self.wrong_type(key, "an array of strings", x))).collect::<Result<_>>().map(Some)
    }

    /// An integer array (e.g. `tokenizer.ggml.token_type`).
    pub fn get_int_array(&self, key: &str) -> Result<Option<Vec<i128>>> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let items = v.as_array().ok_or_else(|| self.wrong_type(key, "an array of integers", v))?;
        items.iter().map(|x| x.as_int().ok_or_else(|| self.wrong_type(key, "an array of integers", x))).collect::<Result<_>>().map(Some)
    }

    fn wrong_type(&self, key: &str, want: &str, v: &Value) -> ModelError {
        let shown = match v {
            Value::String(s) => format!("string {:?}", s.chars().take(40).collect::<String>()),
            Value::Array(a) => format!("an array of {} values", a.len()),
            other => format!("{other:?}"),
        };
        ModelError::malformed(&self.path, format!("metadata {key:?} should be {want}, found {shown}"))
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of tensor `t` (of a supported type), read by seeking.
    pub fn read_tensor(&self, t: &TensorInfo) -> Result<Vec<u8>> {
        if t.ty.is_none() {
            return Err(ModelError::unsupported(&self.path, format!("tensor {}: type {} cannot be read", t.name, t.type_description())));
        }
        let mut f = File::open(&self.path).map_err(ModelError::io(&self.path))?;
        f.seek(SeekFrom::Start(self.data_start + t.offset)).map_err(ModelError::io(&self.path))?;
        let mut buf = vec![0u8; t.n_bytes as usize];
        f.read_exact(&mut buf).map_err(ModelError::io(&self.path))?;
        Ok(buf)
    }
}

/// One tensor info, with its element count and (for supported types) size.
fn read_info(h: &mut Header, i: u64) -> Result<TensorInfo> {
    let name = h.string(&format!("name of tensor #{i}"))?;
    let what = format!("tensor {name}");
    let n_dims = h.u32(&what)?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(h.err(&what, &format!("has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(h.u64(&what)?);
    }
    let type_id = h.u32(&what)?;
    let offset = h.u64(&what)?;
    let n_elements = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).filter(|&n| n < (1u64 << 48));
    let Some(n_elements) = n_elements else {
        return Err(h.err(&what, &format!("dimensions {dims:?} are too large")));
    };
    let ty = GgmlType::from_id(type_id);
    let n_bytes = match ty {
        None => 0,
        Some(t) => match (dims[0] % t.block_size() as u64, t.bytes_for(n_elements)) {
            (0, Some(b)) => b,
            _ => return Err(h.err(&what, &format!("row length {} is not a multiple of the {} block size {}", dims[0], t.name(), t.block_size()))),
        },
    };
    Ok(TensorInfo { name, dims, type_id, ty, offset, n_elements, n_bytes })
}

/// Whether a path names a GGUF file (by its extension).
pub fn is_gguf(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fuzz_cases() -> u32 {
        std::env::var("TAILOR_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
    }

    /// A GGUF-looking header: the magic, a version, counts that are often
    /// huge, then keys, types and lengths drawn to hit every branch.
    fn header() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let count = prop_oneof![0u64..4, Just(u64::MAX), Just(1u64 << 40), any::<u64>()];
        let version = prop_oneof![Just(3u32), Just(2), Just(1), any::<u32>()];
        let item = prop_oneof![
            // string key + type + value
            (0u64..12, proptest::collection::vec(any::<u8>(), 0..12), 0u32..14, proptest::collection::vec(any::<u8>(), 0..24)).prop_map(|(n, k, t, v)| {
                let mut b = n.to_le_bytes().to_vec();
                b.extend(k);
                b.extend(t.to_le_bytes());
                b.extend(v);
                b
            }),
            // an array header with a huge length
            (any::<u32>(), any::<u64>()).prop_map(|(t, n)| {
                let mut b = 9u32.to_le_bytes().to_vec();
                b.extend(t.to_le_bytes());
                b.extend(n.to_le_bytes());
                b
            }),
            proptest::collection::vec(any::<u8>(), 0..64),
        ];
        (version, count.clone(), count, proptest::collection::vec(item, 0..8)).prop_map(|(v, nt, nk, items)| {
            let mut b = b"GGUF".to_vec();
            b.extend(v.to_le_bytes());
            b.extend(nt.to_le_bytes());
            b.extend(nk.to_le_bytes());
            for i in items {
                b.extend(i);
            }
            b
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: fuzz_cases(), failure_persistence: None, ..proptest::prelude::ProptestConfig::default() })]

        /// Any header: parsed or refused with a message; no panic, and no
        /// allocation sized by a count the file cannot back.
        #[test]
        fn open_never_panics(bytes in header()) {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("m.gguf");
            std::fs::write(&p, &bytes).unwrap();
            if let Err(e) = Gguf::open(&p) {
                proptest::prop_assert!(e.to_string().contains("m.gguf"), "{}", e);
            }
        }
    }
}
