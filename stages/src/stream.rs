//! Records in chunks: the clean and format stages never hold a whole dataset.
//!
//! A `records.jsonl` is read a chunk at a time (parsed in parallel), each
//! record with its place in the file, so that a step that needs to look
//! back — deduplication confirming a candidate pair — can read one record
//! again without keeping the others. Chunks are written back in order, so
//! the output is the same for any chunk size.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;
use tailor_text::record::Record;

/// Records per chunk unless `TAILOR_CHUNK_RECORDS` says otherwise (tests use
/// tiny chunks to show the output does not depend on it).
const CHUNK_RECORDS: usize = 16_384;

/// Bytes per chunk at most (long records make smaller chunks).
const CHUNK_BYTES: usize = 32 << 20;

/// Records per chunk.
pub fn chunk_records() -> usize {
    std::env::var("TAILOR_CHUNK_RECORDS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(CHUNK_RECORDS)
}

/// Where a record's line is in its file.
#[derive(Debug, Clone, Copy)]
pub struct Loc {
    /// Byte offset of the line.
    pub offset: u64,
    /// Length of the line without its newline.
    pub len: u32,
}

/// Read `path` a chunk at a time and hand each chunk (records and their
/// places) to `f`, in file order. Returns the number of records read. A
/// line that is not a record is an error naming `path:line`.
pub fn for_each_chunk(path: &Path, mut f: impl FnMut(Vec<Record>, Vec<Loc>) -> Result<(), String>) -> Result<usize, String> {
    let file = File::open(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let per_chunk = chunk_records();
    let (mut offset, mut line_no, mut total) = (0u64, 0usize, 0usize);
    let mut lines: Vec<(usize, Loc, Vec<u8>)> = Vec::new();
    let mut bytes = 0usize;
    let parse = |lines: &mut Vec<(usize, Loc, Vec<u8>)>| -> Result<(Vec<Record>, Vec<Loc>), String> {
        let parsed: Result<Vec<Record>, String> =
            lines.par_iter().map(|(no, _, text)| serde_json::from_slice(text).map_err(|e| format!("{}:{no}: {e}", path.display()))).collect();
        let locs = lines.iter().map(|(_, l, _)| *l).collect();
        lines.clear();
        Ok((parsed?, locs))
    };
    loop {
        let mut buf = Vec::new();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| format!("reading {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let start = offset;
        offset += n as u64;
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        bytes += buf.len();
        lines.push((line_no, Loc { offset: start, len: buf.len() as u32 }, buf));
        if lines.len() >= per_chunk || bytes >= CHUNK_BYTES {
            let (records, locs) = parse(&mut lines)?;
            total += records.len();
            bytes = 0;
            f(records, locs)?;
        }
    }
    if !lines.is_empty() {
        let (records, locs) = parse(&mut lines)?;
        total += records.len();
        f(records, locs)?;
    }
    Ok(total)
}

/// Random access to the records of one file, by their [`Loc`].
pub struct RecordFile {
    file: File,
    name: String,
}

impl RecordFile {
    /// Open `path` for reading records at their places.
    pub fn open(path: &Path) -> Result<Self, String> {
        Ok(Self { file: File::open(path).map_err(|e| format!("reading {}: {e}", path.display()))?, name: path.display().to_string() })
    }

    /// The record whose line is at `loc`.
    pub fn read(&self, loc: Loc) -> Result<Record, String> {
        let mut buf = vec![0u8; loc.len as usize];
        self.file.read_exact_at(&mut buf, loc.offset).map_err(|e| format!("reading {} at byte {}: {e}", self.name, loc.offset))?;
        serde_json::from_slice(&buf).map_err(|e| format!("reading {} at byte {}: {e}", self.name, loc.offset))
    }
}

/// Append `items` as JSONL lines (serialized in parallel, written in order).
pub fn write_lines<T: Serialize + Sync>(w: &mut BufWriter<File>, items: &[T]) -> io::Result<()> {
    let lines: Vec<Vec<u8>> = items.par_iter().map(serde_json::to_vec).collect::<Result<_, _>>().map_err(io::Error::other)?;
    for line in lines {
        w.write_all(&line)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// A buffered file for writing.
pub fn create(path: &Path) -> io::Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(1 << 20, File::create(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_carry_places_that_read_back_and_bad_lines_name_their_line() {
        let dir = std::env::temp_dir().join(format!("tailor-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("records.jsonl");
        let lines =
            [r#"{"id":"a","prompt":"p","completion":"c","source":{"path":"x","line":1}}"#, "", r#"{"id":"b","text":"t","source":{"path":"x","line":2}}"#];
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let mut seen = Vec::new();
        let n = for_each_chunk(&path, |records, locs| {
            seen.extend(records.into_iter().zip(locs));
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 2);
        let file = RecordFile::open(&path).unwrap();
        for (r, loc) in &seen {
            assert_eq!(&file.read(*loc).unwrap(), r);
        }
        std::fs::write(&path, format!("{}\n{{broken\n", lines[0])).unwrap();
        let err = for_each_chunk(&path, |_, _| Ok(())).unwrap_err();
        assert!(err.contains("records.jsonl:2:"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
