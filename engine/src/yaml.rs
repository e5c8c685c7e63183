//! YAML → JSON value, with the source position of every key and value.
//!
//! Pipeline files are read with `saphyr-parser`'s event stream rather than a
//! serde deserializer, because every later check (schema validation, semantic
//! checks, `${params.x}` resolution) must point at a `file:line:col`. One pass
//! over the events builds both the `serde_json::Value` the checks run on and a
//! [`SpanMap`] from JSON pointers (`/stages/tuned/lr`) to source spans.
//! Plain scalars are typed by the YAML 1.2 core schema (so `yes` stays a
//! string and `2.0e-4` is a float); quoted scalars are always strings.
//! Duplicate keys are errors, not silent overwrites.
//!
//! Hostile input is bounded: nesting deeper than [`MAX_DEPTH`] and alias
//! expansion beyond [`MAX_NODES`] values ("billion laughs") are errors at
//! their position, as are a second document in the file and non-finite
//! numbers (`.nan`, `.inf`), which no setting accepts.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span as YSpan};
use serde_json::{Map, Number, Value};

use crate::diag::{Diagnostic, Span};

/// Where a node sits in the source: its key (for mapping entries) and value.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeSpan {
    /// The key's span, when the node is a mapping value.
    pub key: Option<Span>,
    /// The value's span (for collections, their first token).
    pub value: Span,
}

/// JSON pointer → source position, for every node of a document.
#[derive(Debug, Clone, Default)]
pub struct SpanMap {
    map: HashMap<String, NodeSpan>,
}

impl SpanMap {
    /// The span of a node's value, falling back to the closest ancestor.
    pub fn value(&self, pointer: &str) -> Option<Span> {
        self.lookup(pointer).map(|n| n.value)
    }

    /// The span of a node's key (or its value if it has no key), falling back
    /// to the closest ancestor.
    pub fn key(&self, pointer: &str) -> Option<Span> {
        self.lookup(pointer).map(|n| n.key.unwrap_or(n.value))
    }

    /// Spans for collections point at their key when they have one: a
    /// "missing field" in `stages.tuned` is best shown under `tuned:`.
    pub fn node(&self, pointer: &str, value: &Value) -> Option<Span> {
        if value.is_object() || value.is_array() { self.key(pointer) } else { self.value(pointer) }
    }

    fn lookup(&self, pointer: &str) -> Option<&NodeSpan> {
        let mut p = pointer;
        loop {
            if let Some(n) = self.map.get(p) {
                return Some(n);
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return None,
            }
        }
    }

    /// Give every node under `from` the same span under `to` (unrolled
    /// loop stages point at the body they came from).
    pub fn copy_prefix(&mut self, from: &str, to: &str) {
        let copies: Vec<(String, NodeSpan)> = self
            .map
            .iter()
            .filter(|(k, _)| k.as_str() == from || k.starts_with(&format!("{from}/")))
            .map(|(k, v)| (format!("{to}{}", &k[from.len()..]), *v))
            .collect();
        self.map.extend(copies);
    }

    /// Record a span for a pointer (used by command-line overrides).
    pub fn insert(&mut self, pointer: String, span: NodeSpan) {
        self.map.insert(pointer, span);
    }
}

/// Escape one JSON-pointer segment (`~` → `~0`, `/` → `~1`).
pub fn escape(seg: &str) -> String {
    seg.replace('~', "~0").replace('/', "~1")
}

/// A parsed YAML document.
#[derive(Debug, Clone)]
pub struct Document {
    /// The document as JSON.
    pub value: Value,
    /// Positions of its nodes.
    pub spans: SpanMap,
}

/// Deepest nesting of mappings and sequences accepted (a pipeline needs
/// fewer than ten levels).
pub const MAX_DEPTH: usize = 64;
/// Most values a document may expand to, aliases counted at their full size.
pub const MAX_NODES: usize = 1_000_000;

/// Parse the one document of `src`. Syntax errors, duplicate keys and the
/// limits above come back as diagnostics with their position.
pub fn parse(src: &str) -> Result<Document, Vec<Diagnostic>> {
    let mut b = Builder { parser: Parser::new_from_str(src), spans: SpanMap::default(), anchors: HashMap::new(), errors: Vec::new(), src, nodes: 0 };
    let value = b.document()?;
    b.single_document()?;
    if !b.errors.is_empty() {
        return Err(b.errors);
    }
    Ok(Document { value, spans: b.spans })
}

struct Builder<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    spans: SpanMap,
    /// Anchored values and how many values each expands to.
    anchors: HashMap<usize, (Value, usize)>,
    errors: Vec<Diagnostic>,
    src: &'a str,
    /// Values built so far (aliases at their full size).
    nodes: usize,
}

fn limit_error(message: String, span: Span, help: &str) -> Vec<Diagnostic> {
    vec![Diagnostic::error(message).at(Some(span)).label("here").help(help)]
}

fn to_span(s: YSpan, src: &str) -> Span {
    let line = s.start.line();
    let col = s.start.col() + 1;
    let len = if s.end.line() == s.start.line() {
        s.end.index().saturating_sub(s.start.index())
    } else {
        src.lines().nth(line.saturating_sub(1)).map_or(1, |l| l.chars().count().saturating_sub(col - 1))
    };
    Span { line, col, len: len.max(1) }
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event<'a>, YSpan), Vec<Diagnostic>> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => {
                let m = e.marker();
                let span = Span { line: m.line(), col: m.col() + 1, len: 1 };
                Err(vec![
                    Diagnostic::error(format!("invalid YAML: {}", e.info()))
                        .at(Some(span))
                        .label("the YAML parser stopped here")
                        .help("check indentation, unclosed quotes or brackets, and that `key: value` pairs have a space after the colon"),
                ])
            }
            None => Ok((Event::StreamEnd, YSpan::default())),
        }
    }

    fn document(&mut self) -> Result<Value, Vec<Diagnostic>> {
        loop {
            let (ev, span) = self.next()?;
            match ev {
                Event::StreamStart | Event::Nothing => {}
                Event::DocumentStart(_) => {
                    let (ev, span) = self.next()?;
                    if let Event::DocumentEnd = ev {
                        return Ok(Value::Null);
                    }
                    return self.node(ev, span, "", None, 0);
                }
                Event::StreamEnd => return Ok(Value::Null),
                _ => return self.node(ev, span, "", None, 0),
            }
        }
    }

    /// After the first document: nothing but its end and the end of the
    /// stream (a second document would be silently ignored otherwise).
    fn single_document(&mut self) -> Result<(), Vec<Diagnostic>> {
        loop {
            let (ev, span) = self.next()?;
            match ev {
                Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(()),
                _ => {
                    return Err(limit_error(
                        "a second YAML document starts here".into(),
                        to_span(span, self.src),
                        "a pipeline file holds one document: remove the extra `---` (and what follows), or move it into a file of its own",
                    ));
                }
            }
        }
    }

    fn node(&mut self, ev: Event<'a>, span: YSpan, ptr: &str, key: Option<Span>, depth: usize) -> Result<Value, Vec<Diagnostic>> {
        let vspan = to_span(span, self.src);
        self.nodes += 1;
        if depth > MAX_DEPTH {
            return Err(limit_error(
                format!("nesting deeper than {MAX_DEPTH} levels"),
                vspan,
                "a pipeline file needs only a few levels; this looks like generated or hostile input",
            ));
        }
        self.spans.insert(ptr.to_string(), NodeSpan { key, value: vspan });
        let first = self.nodes;
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let forced_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                if style == ScalarStyle::Plain && !forced_str && is_non_finite(&text) {
                    self.errors.push(
                        Diagnostic::error(format!("`{text}` is not a finite number"))
                            .at(Some(vspan))
                            .label("not allowed here")
                            .help("no setting accepts NaN or infinity; write a number, or quote it if you meant the text"),
                    );
                }
                let v = if style == ScalarStyle::Plain && !forced_str { resolve_plain(&text) } else { Value::String(text.into_owned()) };
                if anchor > 0 {
                    self.anchors.insert(anchor, (v.clone(), 1));
                }
                Ok(v)
            }
            Event::Alias(id) => {
                let (v, size) = self.anchors.get(&id).cloned().unwrap_or((Value::Null, 1));
                self.nodes += size;
                if self.nodes > MAX_NODES {
                    return Err(limit_error(
                        format!("aliases expand this document to more than {MAX_NODES} values"),
                        vspan,
                        "each `*alias` copies its anchor in full; nested aliases multiply (a \"billion laughs\" file). Write the values out, or use `${params.x}` for repeated settings",
                    ));
                }
                Ok(v)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if let Event::SequenceEnd = ev {
                        break;
                    }
                    let child = format!("{ptr}/{}", items.len());
                    items.push(self.node(ev, span, &child, None, depth + 1)?);
                }
                let v = Value::Array(items);
                if anchor > 0 {
                    self.anchors.insert(anchor, (v.clone(), self.nodes - first + 1));
                }
                Ok(v)
            }
            Event::MappingStart(anchor, _) => {
                let mut map = Map::new();
                loop {
                    let (kev, kspan) = self.next()?;
                    let k = match kev {
                        Event::MappingEnd => break,
                        Event::Scalar(text, _, _, _) => text.into_owned(),
                        other => {
                            // Complex keys: build them, then use their JSON text.
                            let v = self.node(other, kspan, &format!("{ptr}/?"), None, depth + 1)?;
                            v.to_string()
                        }
                    };
                    let key_span = to_span(kspan, self.src);
                    let child = format!("{ptr}/{}", escape(&k));
                    let (vev, vspan) = self.next()?;
                    let v = self.node(vev, vspan, &child, Some(key_span), depth + 1)?;
                    if map.contains_key(&k) {
                        self.errors.push(
                            Diagnostic::error(format!("duplicate key `{k}`"))
                                .at(Some(key_span))
                                .label("defined again here")
                                .help("YAML keys must be unique within a mapping; remove or rename one of them"),
                        );
                    }
                    map.insert(k, v);
                }
                let v = Value::Object(map);
                if anchor > 0 {
                    self.anchors.insert(anchor, (v.clone(), self.nodes - first + 1));
                }
                Ok(v)
            }
            _ => Ok(Value::Null),
        }
    }
}

/// Type a plain scalar by the YAML 1.2 core schema.
pub fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let neg = s.starts_with('-');
    if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = s.parse::<i64>() {
            return Value::Number(i.into());
        }
        if let Ok(u) = s.strip_prefix('+').unwrap_or(s).parse::<u64>() {
            return Value::Number(u.into());
        }
    }
    if let Some(hex) = s.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Value::Number(i.into());
    }
    if let Some(oct) = s.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Value::Number(i.into());
    }
    match body {
        ".inf" | ".Inf" | ".INF" => {
            return Value::String(if neg { "-inf".into() } else { "inf".into() });
        }
        ".nan" | ".NaN" | ".NAN" => return Value::String("nan".into()),
        _ => {}
    }
    if is_float(body)
        && let Some(n) = s.parse::<f64>().ok().and_then(Number::from_f64)
    {
        return Value::Number(n);
    }
    Value::String(s.to_string())
}

/// `.nan`, `.inf`, `-.inf` and their spellings in the core schema.
fn is_non_finite(s: &str) -> bool {
    matches!(s.strip_prefix(['+', '-']).unwrap_or(s), ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN")
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_float(s: &str) -> bool {
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mant_ok = match mant.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mant),
    };
    let exp_ok = exp.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    mant_ok && exp_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_follow_core_schema() {
        for (text, want) in [
            ("1", json!(1)),
            ("-3", json!(-3)),
            ("2.0e-4", json!(0.0002)),
            ("1e3", json!(1000.0)),
            (".5", json!(0.5)),
            ("yes", json!("yes")),
            ("true", json!(true)),
            ("~", json!(null)),
            ("0x1F", json!(31)),
            ("1.2.3", json!("1.2.3")),
            ("q_proj", json!("q_proj")),
        ] {
            assert_eq!(resolve_plain(text), want, "{text}");
        }
    }

    #[test]
    fn spans_point_at_keys_and_values() {
        let src = "name: x\nstages:\n  raw:\n    kind: collect\n    lr: '2'\n";
        let doc = parse(src).unwrap();
        assert_eq!(doc.value["stages"]["raw"]["lr"], json!("2"));
        let s = doc.spans.value("/stages/raw/kind").unwrap();
        assert_eq!((s.line, s.col, s.len), (4, 11, 7));
        let k = doc.spans.key("/stages/raw").unwrap();
        assert_eq!((k.line, k.col), (3, 3));
        // Missing pointers fall back to the nearest ancestor.
        assert_eq!(doc.spans.key("/stages/raw/nope").unwrap().line, 3);
    }

    #[test]
    fn flow_style_and_duplicates() {
        let doc = parse("a: {b: [1, 2], c: \"3\"}\n").unwrap();
        assert_eq!(doc.value, json!({"a": {"b": [1, 2], "c": "3"}}));
        let errs = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(errs[0].span.unwrap().line, 2);
    }

    #[test]
    fn hostile_input_is_bounded_with_a_position() {
        // 9,000 nested levels, block or flow style: an error, not a stack overflow.
        let block = format!("a:\n{}x\n", "- ".repeat(9000));
        let errs = parse(&block).unwrap_err();
        assert!(errs[0].message.contains("nesting deeper than 64 levels"), "{}", errs[0].message);
        assert_eq!(errs[0].span.unwrap().line, 2);
        let flow = format!("a: {}{}\n", "[".repeat(9000), "]".repeat(9000));
        let errs = parse(&flow).unwrap_err();
        assert_eq!(errs[0].span.unwrap().line, 1, "{}", errs[0].message);
        // A billion laughs: an error long before memory runs out.
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 9].join(", ");
            bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let errs = parse(&bomb).unwrap_err();
        assert!(errs[0].message.contains("aliases expand"), "{}", errs[0].message);
        assert!(errs[0].span.unwrap().line > 1);
        // A second document is not silently ignored.
        let errs = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(errs[0].message.contains("second YAML document"));
        assert_eq!(errs[0].span.unwrap().line, 2);
        assert!(parse("---\na: 1\n...\n").is_ok());
        // Non-finite numbers are named as such, where they are.
        let errs = parse("lr: .nan\nx: -.inf\n").unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(errs[0].message.contains("`.nan` is not a finite number"));
        assert_eq!((errs[1].span.unwrap().line, errs[1].span.unwrap().col), (2, 4));
        assert_eq!(parse("q: '.nan'\n").unwrap().value["q"], json!(".nan"));
        // A u64 is an integer, not a float.
        assert_eq!(parse("seed: 18446744073709551615\n").unwrap().value["seed"], json!(18446744073709551615u64));
    }

    #[test]
    fn syntax_error_has_position() {
        let errs = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(errs[0].message.starts_with("invalid YAML"));
        assert!(errs[0].span.is_some());
    }

    /// Cases per property: `TAILOR_FUZZ_CASES` (the suite runs 2,000; the
    /// closing note of the cache issue reports a run of 100,000).
    pub(crate) fn fuzz_cases() -> u32 {
        std::env::var("TAILOR_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
    }

    /// YAML-ish token soup: structure, anchors, aliases, tags, documents.
    fn yamlish() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let token = prop_oneof![
            Just("["),
            Just("]"),
            Just("{"),
            Just("}"),
            Just(": "),
            Just("- "),
            Just("\n"),
            Just("  "),
            Just(","),
            Just("? "),
            Just("&a "),
            Just("*a"),
            Just("&b "),
            Just("*b"),
            Just("'"),
            Just("\""),
            Just("---\n"),
            Just("...\n"),
            Just("# c\n"),
            Just("key"),
            Just("stages"),
            Just("1"),
            Just("-2.5e3"),
            Just(".nan"),
            Just(".inf"),
            Just("18446744073709551616"),
            Just("!!str "),
            Just("|\n"),
            Just("\t"),
            Just("ü"),
            Just("\u{0}"),
        ];
        proptest::collection::vec(token, 0..300).prop_map(|v| v.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: fuzz_cases(), failure_persistence: None, ..proptest::prelude::ProptestConfig::default() })]

        /// Any text: a document or diagnostics with positions, never a
        /// panic, and never more values than the expansion limit.
        #[test]
        fn parse_never_panics_on_token_soup(src in yamlish()) {
            match parse(&src) {
                Ok(doc) => proptest::prop_assert!(count(&doc.value) <= MAX_NODES + 1),
                Err(errs) => proptest::prop_assert!(!errs.is_empty()),
            }
        }

        #[test]
        fn parse_never_panics_on_any_string(src in "\\PC{0,400}") {
            let _ = parse(&src);
        }
    }

    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Array(a) => a.iter().map(count).sum(),
            Value::Object(m) => m.values().map(count).sum(),
            _ => 0,
        }
    }
}
