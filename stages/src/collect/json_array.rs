//! A JSON array source read one element at a time.
//!
//! `serde_json` parses from the reader and hands each element of the
//! top-level array to a callback as soon as it is complete, so a file of
//! any size is read in the memory of its largest element. Line and column
//! of a syntax error come from the reader, as for a file read whole.

use std::fmt;
use std::io::Read;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde_json::Value;
use tailor_engine::StageError;

/// Why the file is not a readable JSON array.
pub enum Problem {
    /// The top-level value is something else (an object, a string, …).
    NotAnArray,
    /// Malformed JSON (or the reader failed), with its position.
    Json(serde_json::Error),
}

/// Give `each(index from 1, element)` every element of the top-level array
/// in `reader`, in order. An error from `each` stops the reading and is put
/// in `failed` (the result is then an error too, to be ignored).
pub fn each_element<R: Read>(reader: R, each: &mut dyn FnMut(u64, Value) -> Result<(), StageError>, failed: &mut Option<StageError>) -> Result<(), Problem> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let seen_array = std::cell::Cell::new(false);
    let result = de::Deserializer::deserialize_any(&mut de, Elements { each, failed, seen_array: &seen_array });
    match result {
        Ok(()) => de.end().map_err(Problem::Json),
        Err(_) if !seen_array.get() => Err(Problem::NotAnArray),
        Err(e) => Err(Problem::Json(e)),
    }
}

struct Elements<'a, 'f> {
    each: &'a mut dyn FnMut(u64, Value) -> Result<(), StageError>,
    failed: &'f mut Option<StageError>,
    seen_array: &'a std::cell::Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Elements<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Elements<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.seen_array.set(true);
        let mut i = 0u64;
        while let Some(v) = seq.next_element::<Value>()? {
            i += 1;
            if let Err(e) = (self.each)(i, v) {
                *self.failed = Some(e);
                return Err(de::Error::custom("stopped by the record sink"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(text: &str) -> (Vec<(u64, Value)>, Result<(), String>) {
        let mut got = Vec::new();
        let mut failed = None;
        let r = each_element(
            text.as_bytes(),
            &mut |i, v| {
                got.push((i, v));
                Ok(())
            },
            &mut failed,
        )
        .map_err(|p| match p {
            Problem::NotAnArray => "not an array".to_string(),
            Problem::Json(e) => format!("{}:{} {e}", e.line(), e.column()),
        });
        (got, r)
    }

    #[test]
    fn elements_arrive_in_order_and_errors_keep_their_place() {
        let (got, r) = collect("[{\"a\": 1},\n {\"b\": [2, 3]}, \"x\"]\n");
        assert!(r.is_ok());
        assert_eq!(got, vec![(1, serde_json::json!({"a": 1})), (2, serde_json::json!({"b": [2, 3]})), (3, serde_json::json!("x"))]);
        assert_eq!(collect("{\"a\": 1}").1.unwrap_err(), "not an array");
        assert_eq!(collect("\"text\"").1.unwrap_err(), "not an array");
        // Elements before a syntax error are delivered; the error has its line.
        let (got, r) = collect("[{\"a\": 1},\n{\"b\": }]");
        assert_eq!(got.len(), 1);
        assert!(r.unwrap_err().starts_with("2:"), "line of the error");
        assert!(collect("[1] [2]").1.unwrap_err().contains("trailing"));
        assert!(collect("[1,").1.is_err());
        // A sink error stops the reading and is handed back.
        let mut failed = None;
        let r = each_element("[1, 2, 3]".as_bytes(), &mut |i, _| if i == 2 { Err(StageError::msg("full")) } else { Ok(()) }, &mut failed);
        assert!(r.is_err() && failed.is_some());
    }
}
