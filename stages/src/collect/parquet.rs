//! Parquet sources (what Hugging Face datasets ship): each row becomes a
//! JSON object through the parquet crate's record API, then goes through
//! the same field mapping as JSONL. Row numbers are 1-based.

use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::Value;

/// Every row of a Parquet file as a JSON object, or an error naming the file.
pub fn rows(path: &Path) -> Result<Vec<Value>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = SerializedFileReader::new(file).map_err(|e| format!("{}: not a readable Parquet file: {e}", path.display()))?;
    let iter = reader.get_row_iter(None).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, row) in iter.enumerate() {
        let row = row.map_err(|e| format!("{}: row {}: {e}", path.display(), i + 1))?;
        out.push(row.to_json_value());
    }
    Ok(out)
}
