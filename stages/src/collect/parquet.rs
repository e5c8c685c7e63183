//! Parquet sources (what Hugging Face datasets ship): each row becomes a
//! JSON object through the parquet crate's record API, then goes through
//! the same field mapping as JSONL. Row numbers are 1-based. Rows are read
//! one at a time (the reader holds one row group's pages), never the whole
//! file.

use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::Value;
use tailor_engine::StageError;

/// Give `each(row number, row as a JSON object)` every row of a Parquet
/// file, in order. The outer error is `each`'s; the inner one says what is
/// wrong with the file (naming it), after the rows before the problem.
pub fn each_row(path: &Path, each: &mut dyn FnMut(u64, Value) -> Result<(), StageError>) -> Result<Result<(), String>, StageError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return Ok(Err(format!("{}: {e}", path.display()))),
    };
    let reader = match SerializedFileReader::new(file) {
        Ok(r) => r,
        Err(e) => return Ok(Err(format!("{}: not a readable Parquet file: {e}", path.display()))),
    };
    let iter = match reader.get_row_iter(None) {
        Ok(i) => i,
        Err(e) => return Ok(Err(format!("{}: {e}", path.display()))),
    };
    for (i, row) in iter.enumerate() {
        match row {
            Ok(row) => each(i as u64 + 1, row.to_json_value())?,
            Err(e) => return Ok(Err(format!("{}: row {}: {e}", path.display(), i + 1))),
        }
    }
    Ok(Ok(()))
}
