//! Text encodings of source files: byte-order marks and legacy encodings.
//!
//! Every reader downstream sees UTF-8 without a BOM. With `encoding: auto`
//! (the default) a UTF-8, UTF-16 (LE/BE) or UTF-32 (LE/BE) byte-order mark
//! decides, and a file without one is read as UTF-8. A named encoding
//! (`shift_jis`, `euc-jp`, `utf-16`, …) is decoded with `encoding_rs`, the
//! WHATWG decoders browsers use; a BOM, when present, still wins. Malformed
//! sequences in a non-UTF-8 file become U+FFFD (the decoder's rule); UTF-8
//! files are never altered, so invalid UTF-8 stays a reject with its line.

use std::io::{self, Read};

use schemars::JsonSchema;
use serde::Deserialize;

/// Character encoding of a source file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum Encoding {
    /// A byte-order mark decides (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE);
    /// without one, UTF-8.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// UTF-8.
    #[serde(rename = "utf-8", alias = "utf8")]
    Utf8,
    /// UTF-16, little-endian unless a BOM says otherwise.
    #[serde(rename = "utf-16", alias = "utf-16le", alias = "utf16")]
    Utf16Le,
    /// UTF-16, big-endian.
    #[serde(rename = "utf-16be")]
    Utf16Be,
    /// Shift_JIS as Windows writes it (CP932, a superset).
    #[serde(rename = "shift_jis", alias = "sjis", alias = "cp932", alias = "shift-jis")]
    ShiftJis,
    /// EUC-JP.
    #[serde(rename = "euc-jp", alias = "euc_jp", alias = "eucjp")]
    EucJp,
}

impl Encoding {
    fn whatwg(self) -> Option<&'static encoding_rs::Encoding> {
        match self {
            Encoding::Auto | Encoding::Utf8 => None,
            Encoding::Utf16Le => Some(encoding_rs::UTF_16LE),
            Encoding::Utf16Be => Some(encoding_rs::UTF_16BE),
            Encoding::ShiftJis => Some(encoding_rs::SHIFT_JIS),
            Encoding::EucJp => Some(encoding_rs::EUC_JP),
        }
    }
}

/// What the first bytes of a file say about its encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bom {
    /// No byte-order mark.
    None,
    /// EF BB BF.
    Utf8,
    /// FF FE.
    Utf16Le,
    /// FE FF.
    Utf16Be,
    /// FF FE 00 00.
    Utf32Le,
    /// 00 00 FE FF.
    Utf32Be,
}

/// The BOM at the start of `head` (UTF-32 before UTF-16: FF FE 00 00 is
/// UTF-32LE, not UTF-16LE followed by a NUL).
pub fn sniff(head: &[u8]) -> Bom {
    match head {
        [0xFF, 0xFE, 0, 0, ..] => Bom::Utf32Le,
        [0, 0, 0xFE, 0xFF, ..] => Bom::Utf32Be,
        [0xEF, 0xBB, 0xBF, ..] => Bom::Utf8,
        [0xFF, 0xFE, ..] => Bom::Utf16Le,
        [0xFE, 0xFF, ..] => Bom::Utf16Be,
        _ => Bom::None,
    }
}

/// Wrap `inner` so that it yields UTF-8 without a BOM.
pub fn utf8_reader(mut inner: Box<dyn Read + Send>, encoding: Encoding) -> io::Result<Box<dyn Read + Send>> {
    let mut head = Vec::with_capacity(4);
    (&mut inner).take(4).read_to_end(&mut head)?;
    let bom = sniff(&head);
    let whole: Box<dyn Read + Send> = Box::new(io::Cursor::new(head).chain(inner));
    Ok(match bom {
        Bom::Utf32Le | Bom::Utf32Be => Box::new(Utf32 { inner: whole, little: bom == Bom::Utf32Le, out: Vec::new(), at: 0, started: false }),
        Bom::Utf8 | Bom::Utf16Le | Bom::Utf16Be => {
            Box::new(encoding_rs_io::DecodeReaderBytesBuilder::new().bom_sniffing(true).strip_bom(true).utf8_passthru(true).build(whole))
        }
        Bom::None => match encoding.whatwg() {
            None => whole,
            Some(enc) => Box::new(encoding_rs_io::DecodeReaderBytesBuilder::new().encoding(Some(enc)).bom_sniffing(true).strip_bom(true).build(whole)),
        },
    })
}

/// A hint for bytes that are not UTF-8, by what they look like.
pub fn not_utf8_hint(sample: &[u8]) -> &'static str {
    let nuls = sample.iter().filter(|b| **b == 0).count();
    if nuls * 4 >= sample.len().max(1) {
        "the bytes look like UTF-16 without a byte-order mark: set `encoding: utf-16` (or `utf-16be`) on the source"
    } else {
        "set `encoding: shift_jis` or `encoding: euc-jp` on the source if the file is in a Japanese legacy encoding, or convert it to UTF-8"
    }
}

/// UTF-32 (after its BOM) to UTF-8; a unit that is not a scalar value
/// becomes U+FFFD, a trailing partial unit too.
struct Utf32 {
    inner: Box<dyn Read + Send>,
    little: bool,
    out: Vec<u8>,
    at: usize,
    started: bool,
}

impl Read for Utf32 {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.out.len() {
            self.out.clear();
            self.at = 0;
            let mut raw = Vec::with_capacity(16 << 10);
            (&mut self.inner).take(16 << 10).read_to_end(&mut raw)?;
            let mut units = raw.chunks(4);
            if !self.started {
                self.started = true;
                units.next(); // the BOM
            }
            for u in units {
                let c = match <[u8; 4]>::try_from(u) {
                    Ok(b) => char::from_u32(if self.little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) }).unwrap_or('\u{FFFD}'),
                    Err(_) => '\u{FFFD}',
                };
                let mut tmp = [0u8; 4];
                self.out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: Vec<u8>, enc: Encoding) -> String {
        let mut s = String::new();
        utf8_reader(Box::new(io::Cursor::new(bytes)), enc).unwrap().read_to_string(&mut s).unwrap();
        s
    }

    fn utf16(text: &str, little: bool) -> Vec<u8> {
        let mut out = if little { vec![0xFF, 0xFE] } else { vec![0xFE, 0xFF] };
        for u in text.encode_utf16() {
            out.extend(if little { u.to_le_bytes() } else { u.to_be_bytes() });
        }
        out
    }

    fn utf32(text: &str, little: bool) -> Vec<u8> {
        let mut out = if little { vec![0xFF, 0xFE, 0, 0] } else { vec![0, 0, 0xFE, 0xFF] };
        for c in text.chars() {
            out.extend(if little { (c as u32).to_le_bytes() } else { (c as u32).to_be_bytes() });
        }
        out
    }

    #[test]
    fn boms_decide_whatever_the_setting() {
        let text = "{\"text\": \"日本語 and ASCII 🎌\"}\n{\"text\": \"二行目\"}\n";
        let mut utf8 = vec![0xEF, 0xBB, 0xBF];
        utf8.extend(text.as_bytes());
        for enc in [Encoding::Auto, Encoding::ShiftJis] {
            assert_eq!(decode(utf8.clone(), enc), text);
            assert_eq!(decode(utf16(text, true), enc), text);
            assert_eq!(decode(utf16(text, false), enc), text);
            assert_eq!(decode(utf32(text, true), enc), text);
            assert_eq!(decode(utf32(text, false), enc), text);
        }
        // A long file crosses the UTF-32 reader's buffer boundary intact.
        let long = text.repeat(2000);
        assert_eq!(decode(utf32(&long, true), Encoding::Auto), long);
    }

    #[test]
    fn legacy_japanese_encodings() {
        let text = "{\"prompt\": \"こんにちは\", \"completion\": \"今日は良い天気です。\"}\n";
        let (sjis, _, bad) = encoding_rs::SHIFT_JIS.encode(text);
        assert!(!bad);
        assert_eq!(decode(sjis.to_vec(), Encoding::ShiftJis), text);
        let (euc, _, bad) = encoding_rs::EUC_JP.encode(text);
        assert!(!bad);
        assert_eq!(decode(euc.to_vec(), Encoding::EucJp), text);
        let no_bom: Vec<u8> = utf16(text, true)[2..].to_vec();
        assert_eq!(decode(no_bom.clone(), Encoding::Utf16Le), text);
        // Auto leaves bytes without a BOM alone (UTF-8 checks come later).
        let mut raw = Vec::new();
        utf8_reader(Box::new(io::Cursor::new(sjis.to_vec())), Encoding::Auto).unwrap().read_to_end(&mut raw).unwrap();
        assert_eq!(raw, &sjis[..]);
        assert!(not_utf8_hint(&no_bom).contains("UTF-16"));
        assert!(not_utf8_hint(&sjis).contains("shift_jis"));
    }

    #[test]
    fn sniff_prefers_utf32() {
        assert_eq!(sniff(&[0xFF, 0xFE, 0, 0]), Bom::Utf32Le);
        assert_eq!(sniff(&[0xFF, 0xFE, b'a', 0]), Bom::Utf16Le);
        assert_eq!(sniff(b"{}"), Bom::None);
        assert_eq!(sniff(&[]), Bom::None);
    }
}
