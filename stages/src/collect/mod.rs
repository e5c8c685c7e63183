//! `collect`: read records from local files into the canonical JSONL.
//!
//! Sources are files or globs in JSONL, JSON (an array of objects), CSV/TSV,
//! Parquet or plain text, optionally gzip- or zstd-compressed. Each source maps its
//! fields onto the canonical body (`prompt`/`completion`, Alpaca
//! `instruction`/`input`/`output`, chat `messages` — ShareGPT
//! `conversations` with `from`/`value` too — or `text`), adds constant
//! metadata, and may be sampled or limited with a seed. Files are read in
//! parallel; output order is source order, then file order, then line order,
//! whatever the thread count. A malformed line either fails the stage with
//! `file:line:col` and a fix, or (with `on_error: skip`) goes to the rejects
//! output with its reason.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tailor_engine::{ConfigIssue, FileDecl, IoContext, OutputDecl, Stage, StageContext, StageError, StageOutcome, StageSpec};

use crate::show;
use tailor_text::record::{Body, Message, Provenance, Record, Reject, body_id, body_json_id};

mod decode;
mod fast;
mod json_array;
mod parquet;
mod seen;

pub use decode::Encoding;

/// Largest accepted line or JSON document.
const MAX_LINE: usize = 16 << 20;

/// Configuration of a `collect` stage.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectConfig {
    /// Where the records come from, read in this order.
    pub sources: Vec<Source>,
    /// What a malformed line or record does: `fail` stops the stage and names
    /// the file, line and column; `skip` goes on and writes it, with the
    /// reason, to the `rejects` output.
    #[serde(default)]
    pub on_error: OnError,
    /// With `on_error: skip`: the largest share of a source's records that
    /// may be rejected before the stage fails with the source's counts (a
    /// file read in the wrong encoding or format rejects every line). `1.0`
    /// accepts any share.
    #[serde(default = "half")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_reject_share: f64,
}

fn half() -> f64 {
    0.5
}

/// Error policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop at the first bad record.
    #[default]
    Fail,
    /// Keep going; record it in `rejects`.
    Skip,
}

/// File format of a source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// By extension: .jsonl/.ndjson, .json, .csv, .tsv, .parquet, .txt/.md.
    #[default]
    Auto,
    /// One JSON object per line.
    Jsonl,
    /// One JSON array of objects.
    Json,
    /// Comma-separated with a header row.
    Csv,
    /// Tab-separated with a header row.
    Tsv,
    /// Apache Parquet (rows become objects; nested columns stay nested).
    Parquet,
    /// Plain text, split per `split`.
    Text,
}

/// How plain text becomes records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TextSplit {
    /// One record per file.
    #[default]
    File,
    /// One record per blank-line-separated paragraph.
    Paragraph,
    /// One record per non-empty line.
    Line,
}

/// One source of records.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// A file or glob (`data/**/*.jsonl`), relative to the pipeline file.
    /// Files ending in `.gz` or `.zst` are decompressed.
    pub path: String,
    /// File format; `auto` decides by extension.
    #[serde(default)]
    pub format: Format,
    /// Field mapping, canonical field ← source field, e.g.
    /// `{prompt: question, completion: answer}`. Canonical fields: prompt,
    /// completion, instruction, input, output, messages, text. Dotted source
    /// paths reach into nested objects (`data.q`).
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    /// Constant metadata added to every record of this source (`{lang: ja}`).
    #[serde(default)]
    pub meta: Map<String, Value>,
    /// Keep each record with this probability (deterministic for a seed).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sample: Option<f64>,
    /// Keep at most this many records from this source (after sampling).
    pub limit: Option<usize>,
    /// Seed for `sample`.
    #[serde(default)]
    pub seed: u64,
    /// For text files: one record per `file`, `paragraph` or `line`.
    #[serde(default)]
    pub split: TextSplit,
    /// Character encoding: `auto` (a UTF-8/16/32 byte-order mark decides,
    /// else UTF-8), `utf-8`, `utf-16`, `utf-16be`, `shift_jis`, `euc-jp`.
    #[serde(default)]
    pub encoding: Encoding,
}

const CANONICAL: &[&str] = &["prompt", "completion", "instruction", "input", "output", "messages", "text"];

/// The `collect` stage kind.
pub struct Collect;

fn expand(root: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = root.join(pattern);
    let text = full.to_str().ok_or("the path is not valid UTF-8")?;
    if !pattern.contains(['*', '?', '[']) {
        return match tailor_engine::paths::not_a_file(&full) {
            None => Ok(vec![PathBuf::from(pattern)]),
            Some(what) if full.is_dir() => Err(format!(
                "`{pattern}` {what}; to read the files in it, give a glob such as `{}/*.jsonl` or `{}/**/*`",
                pattern.trim_end_matches('/'),
                pattern.trim_end_matches('/')
            )),
            Some(what) => Err(format!("`{pattern}` {what}")),
        };
    }
    let mut out = Vec::new();
    for entry in glob::glob(text).map_err(|e| format!("bad glob `{pattern}`: {e}"))? {
        let p = entry.map_err(|e| e.to_string())?;
        if p.is_file() {
            out.push(p.strip_prefix(root).map(Path::to_path_buf).unwrap_or(p));
        }
    }
    out.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    if out.is_empty() {
        return Err(format!("no file matches `{pattern}`"));
    }
    Ok(out)
}

impl Stage for Collect {
    type Config = CollectConfig;
    const KIND: &'static str = "collect";
    const VERSION: u32 = 2;
    const IMPLEMENTATION: &'static str = crate::identity::COLLECT;
    const ABOUT: &'static str = "Read records from JSONL, JSON, CSV/TSV or text files into canonical JSONL.";
    const OUTPUTS: &'static [OutputDecl] = &[
        OutputDecl { name: "records", kind: "records", about: "the collected records (records.jsonl)" },
        OutputDecl { name: "rejects", kind: "rejects", about: "malformed input, with reasons (rejects.jsonl)" },
    ];

    fn spec(config: &CollectConfig, root: &Path) -> Result<StageSpec, Vec<ConfigIssue>> {
        let mut spec = StageSpec::default();
        let mut issues = Vec::new();
        for (i, s) in config.sources.iter().enumerate() {
            for canon in s.map.keys().filter(|k| !CANONICAL.contains(&k.as_str())) {
                let mut issue = ConfigIssue::new(format!("/sources/{i}/map/{canon}"), format!("`{canon}` is not a canonical field"));
                issue = issue.help(match tailor_engine::diag::did_you_mean(canon, CANONICAL.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`? (the mapping is canonical field: source field)"),
                    None => format!("canonical fields: {}", CANONICAL.join(", ")),
                });
                issues.push(issue);
            }
            match expand(root, &s.path) {
                Ok(files) => spec.files.extend(files.into_iter().map(|path| FileDecl { path, pointer: format!("/sources/{i}/path") })),
                Err(e) => issues.push(ConfigIssue::new(format!("/sources/{i}/path"), e).help("paths are relative to the pipeline file's directory")),
            }
        }
        if issues.is_empty() { Ok(spec) } else { Err(issues) }
    }

    fn run(config: &CollectConfig, ctx: &mut StageContext<'_>) -> Result<StageOutcome, StageError> {
        let root = ctx.root.to_path_buf();
        let mut jobs = Vec::new();
        for (si, s) in config.sources.iter().enumerate() {
            let files = expand(&root, &s.path).map_err(StageError::msg)?;
            jobs.extend(files.into_iter().map(|f| (si, f)));
        }
        ctx.progress().set_length(jobs.len() as u64);
        ctx.progress().set_message("reading");
        let bar = ctx.progress().clone();
        let records_path = ctx.output_dir("records")?.join("records.jsonl");
        let rejects_path = ctx.output_dir("rejects")?.join("rejects.jsonl");
        let em = Emitter::new(config, &records_path, &rejects_path)?;
        // Files stream through in order: small ones in parallel windows
        // (each read whole), a big one alone, line by line, straight to the
        // output — so memory stays bounded whatever the input size. A writer
        // thread puts each window in order (sampling, limits, repeats) and
        // writes it while the next window is read.
        let sizes: Vec<u64> = jobs.iter().map(|(_, rel)| std::fs::metadata(root.join(rel)).map_or(0, |m| m.len())).collect();
        let big: Vec<bool> = jobs.iter().zip(&sizes).map(|((_, rel), &size)| is_big(rel, size)).collect();
        let (send, receive) = std::sync::mpsc::sync_channel::<Batch>(1);
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| write_batches(em, receive, config, &root, &jobs));
            let mut i = 0;
            while i < jobs.len() {
                if big[i] {
                    if send.send(Batch::Big(i)).is_err() {
                        break;
                    }
                    bar.inc(1);
                    i += 1;
                    continue;
                }
                let mut j = i;
                let mut bytes = 0u64;
                while j < jobs.len() && !big[j] && j - i < WINDOW_FILES && bytes < WINDOW_BYTES {
                    bytes += sizes[j];
                    j += 1;
                }
                // Reading, ids and the JSON of each record happen in parallel;
                // only what depends on order (sampling, limits, repeats) does not.
                let reads: Vec<(usize, Result<(Vec<Ready>, Vec<Reject>), StageError>)> = (i..j)
                    .into_par_iter()
                    .map(|k| {
                        let (si, rel) = &jobs[k];
                        let src = &config.sources[*si];
                        let r = read_file(&root, rel, src, config.on_error).map(|fr| {
                            let shown = rel.display().to_string();
                            let ready = fr.records.into_iter().map(|(line, own, body)| Ready::new(src, &shown, line, own, body, true)).collect();
                            (ready, fr.rejects)
                        });
                        bar.inc(1);
                        (k, r)
                    })
                    .collect();
                if send.send(Batch::Window(reads)).is_err() {
                    break;
                }
                i = j;
            }
            drop(send);
            let em = writer.join().map_err(|_| StageError::msg("the collect writer thread panicked"))??;
            em.finish(jobs.len())
        })
    }

    fn report(output: &OutputDecl, dir: &Path) -> Option<String> {
        (output.kind == "records").then(|| tailor_report::records(dir))
    }

    fn show(output: &OutputDecl, dir: &Path, w: &mut dyn std::io::Write, limit: usize) -> std::io::Result<bool> {
        show::records_or_rejects(output, dir, w, limit)
    }
}

/// Work for the collect writer thread, in file order.
enum Batch {
    /// A window of small files read in parallel: (job index, what it held).
    Window(Vec<(usize, Result<(Vec<Ready>, Vec<Reject>), StageError>)>),
    /// A big file (job index), read line by line by the writer itself.
    Big(usize),
}

/// Put the batches in order into the emitter; returns it for `finish`.
fn write_batches<'a>(
    mut em: Emitter<'a>,
    batches: std::sync::mpsc::Receiver<Batch>,
    config: &'a CollectConfig,
    root: &Path,
    jobs: &[(usize, PathBuf)],
) -> Result<Emitter<'a>, StageError> {
    for batch in batches {
        match batch {
            Batch::Big(k) => {
                let (si, rel) = &jobs[k];
                em.start_file(*si, rel);
                read_into(root, rel, &config.sources[*si], config.on_error, &mut em)?;
                em.end_file();
            }
            Batch::Window(reads) => {
                for (k, r) in reads {
                    let (ready, rejects) = r?;
                    let (si, rel) = &jobs[k];
                    em.start_file(*si, rel);
                    for rej in rejects {
                        em.reject(rej)?;
                    }
                    // A few hundred ids' slots at a time into the cache
                    // (see `seen`), then emitted in order.
                    let mut ready = ready.into_iter().peekable();
                    while ready.peek().is_some() {
                        let group: Vec<Ready> = ready.by_ref().take(256).collect();
                        std::hint::black_box(em.seen.warm(group.iter().map(|r| seen_key(&r.base))));
                        for r in group {
                            em.emit(r)?;
                        }
                    }
                    em.end_file();
                }
            }
        }
    }
    Ok(em)
}

/// A deterministic number in [0, 1) from an id and a seed.
fn unit(id: &str, seed: u64) -> f64 {
    let h = blake3::hash(format!("{seed}:{id}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// A small file read whole.
struct FileRead {
    /// (line, the record's metadata: its `meta` object and unmapped fields, body)
    records: Vec<(u64, Map<String, Value>, Body)>,
    rejects: Vec<Reject>,
}

/// Where a file's records and rejects go, in file order.
trait Sink {
    fn record(&mut self, line: u64, meta: Map<String, Value>, body: Body) -> Result<(), StageError>;
    fn reject(&mut self, r: Reject) -> Result<(), StageError>;
}

impl Sink for FileRead {
    fn record(&mut self, line: u64, meta: Map<String, Value>, body: Body) -> Result<(), StageError> {
        self.records.push((line, meta, body));
        Ok(())
    }

    fn reject(&mut self, r: Reject) -> Result<(), StageError> {
        self.rejects.push(r);
        Ok(())
    }
}

/// A file read alone and streamed: over 32 MiB, or 4 MiB compressed.
const BIG: u64 = 32 << 20;
/// At most this many small files, or bytes, are read at once.
const WINDOW_FILES: usize = 256;
const WINDOW_BYTES: u64 = 8 << 20;

fn is_big(path: &Path, size: u64) -> bool {
    let name = path.to_string_lossy();
    let compressed = name.ends_with(".gz") || name.ends_with(".zst");
    size > if compressed { BIG / 8 } else { BIG }
}

/// The collected records and rejects, written as they arrive: sampling,
/// limits and ids in source, file and line order, and the counts.
struct Emitter<'a> {
    config: &'a CollectConfig,
    records: std::io::BufWriter<std::fs::File>,
    rejects: std::io::BufWriter<std::fs::File>,
    /// Records seen per body digest (for the `-N` of repeats).
    seen: seen::Seen,
    taken: Vec<usize>,
    /// (records read, rejected) per source, before sampling and limits.
    counts: Vec<(usize, usize)>,
    why: Vec<BTreeMap<String, usize>>,
    /// Records written per source.
    kept: Vec<usize>,
    warnings: Vec<String>,
    /// The file being read: its source, path and items so far.
    file: (usize, String, usize),
    /// Where `stats.json` goes.
    stats: PathBuf,
}

impl<'a> Emitter<'a> {
    fn new(config: &'a CollectConfig, records: &Path, rejects: &Path) -> Result<Self, StageError> {
        let create = |p: &Path| std::fs::File::create(p).map(|f| std::io::BufWriter::with_capacity(64 << 10, f)).ctx(|| format!("creating {}", p.display()));
        Ok(Self {
            config,
            records: create(records)?,
            rejects: create(rejects)?,
            seen: Default::default(),
            taken: vec![0; config.sources.len()],
            counts: vec![(0, 0); config.sources.len()],
            why: vec![BTreeMap::new(); config.sources.len()],
            kept: vec![0; config.sources.len()],
            warnings: Vec::new(),
            file: (0, String::new(), 0),
            stats: records.with_file_name("stats.json"),
        })
    }

    fn start_file(&mut self, si: usize, rel: &Path) {
        self.file = (si, rel.display().to_string(), 0);
    }

    fn end_file(&mut self) {
        if self.file.2 == 0 {
            self.warnings.push(format!("{} has no records", self.file.1));
        }
    }

    fn write_line<T: serde::Serialize>(w: &mut std::io::BufWriter<std::fs::File>, item: &T) -> Result<(), StageError> {
        serde_json::to_writer(&mut *w, item).map_err(|e| StageError::msg(format!("writing the output: {e}")))?;
        w.write_all(b"\n").ctx(|| "writing the output".into())
    }

    /// Check the reject shares, write the stats, and say what happened.
    fn finish(mut self, files: usize) -> Result<StageOutcome, StageError> {
        for (si, &(read, rejected)) in self.counts.iter().enumerate() {
            let total = read + rejected;
            if rejected > 0 && rejected as f64 > self.config.max_reject_share * total as f64 {
                let top: Vec<String> = {
                    let mut by: Vec<(&String, &usize)> = self.why[si].iter().collect();
                    by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                    by.into_iter().take(3).map(|(r, n)| format!("  {n} × {r}")).collect()
                };
                return Err(StageError::msg(format!(
                    "source {} (`{}`): {rejected} of {total} records rejected, over the allowed share of {}\n{}\n  fix the source (its format, `encoding:` or `map:`), or raise `max_reject_share` on the stage (1.0 accepts any share)",
                    si + 1,
                    self.config.sources[si].path,
                    self.config.max_reject_share,
                    top.join("\n")
                )));
            }
        }
        self.records.flush().ctx(|| "writing records.jsonl".into())?;
        self.rejects.flush().ctx(|| "writing rejects.jsonl".into())?;
        let records: usize = self.kept.iter().sum();
        let rejected: usize = self.counts.iter().map(|c| c.1).sum();
        let mut per_source: BTreeMap<&str, usize> = BTreeMap::new();
        for (s, n) in self.config.sources.iter().zip(&self.kept).filter(|(_, n)| **n > 0) {
            *per_source.entry(s.path.as_str()).or_insert(0) += n;
        }
        let stats = json!({"records": records, "rejected": rejected, "per_source": per_source});
        crate::files::write_json(&self.stats, &stats)?;
        let mut metrics = BTreeMap::new();
        metrics.insert("records".into(), json!(records));
        metrics.insert("rejected".into(), json!(rejected));
        metrics.insert("files".into(), json!(files));
        Ok(StageOutcome { metrics, warnings: self.warnings, check: None })
    }
}

/// A record ready to write, with its base id (the body's digest): as its
/// JSON line under that id when made in parallel, else as the record.
struct Ready {
    base: String,
    rec: Result<Vec<u8>, Box<Record>>,
}

impl Ready {
    fn new(src: &Source, path: &str, line: u64, own: Map<String, Value>, body: Body, serialize: bool) -> Self {
        // The record's own metadata, then the source's constants over it.
        let mut meta = own;
        meta.extend(src.meta.clone());
        if serialize && let Some((base, line)) = spliced(&body, path, line, &meta) {
            return Self { base, rec: Ok(line) };
        }
        let base = body_id(&body);
        let rec = Record { id: base.clone(), body, source: Provenance { path: path.to_string(), line }, meta };
        let rec = match serialize.then(|| serde_json::to_vec(&rec)) {
            Some(Ok(mut v)) => {
                v.push(b'\n');
                Ok(v)
            }
            _ => Err(Box::new(rec)),
        };
        Self { base, rec }
    }
}

/// A record's JSON line, built around the body's canonical JSON (which its
/// id is the digest of), so that the body is serialized once: the same
/// bytes as serializing the [`Record`] (`id`, the body's fields flattened,
/// `source`, then `meta` unless empty). Returns the id and the line.
fn spliced(body: &Body, path: &str, line: u64, meta: &Map<String, Value>) -> Option<(String, Vec<u8>)> {
    let json = tailor_text::record::body_json(body);
    let base = body_json_id(&json);
    let fields = json.strip_prefix(b"{")?.strip_suffix(b"}")?;
    let mut out = Vec::with_capacity(json.len() + path.len() + 64);
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(base.as_bytes());
    out.push(b'"');
    if !fields.is_empty() {
        out.push(b',');
        out.extend_from_slice(fields);
    }
    out.extend_from_slice(b",\"source\":{\"path\":");
    tailor_text::record::json_str(path, &mut out);
    out.extend_from_slice(format!(",\"line\":{line}}}").as_bytes());
    if !meta.is_empty() {
        out.extend_from_slice(b",\"meta\":");
        serde_json::to_writer(&mut out, meta).ok()?;
    }
    out.extend_from_slice(b"}\n");
    Some((base, out))
}

/// The JSON line of a repeat: `"id":"BASE"` (the first field) becomes
/// `"id":"BASE-N"`; `None` if the line does not start that way.
fn renumber(line: &[u8], base: &str, n: u32) -> Option<Vec<u8>> {
    let head = format!("{{\"id\":\"{base}\"");
    let rest = line.strip_prefix(head.as_bytes())?;
    let mut out = Vec::with_capacity(line.len() + 8);
    out.extend_from_slice(format!("{{\"id\":\"{base}-{n}\"").as_bytes());
    out.extend_from_slice(rest);
    Some(out)
}

/// The `seen` key of a base id (16 hex digits of a digest).
fn seen_key(base: &str) -> u64 {
    u64::from_str_radix(base, 16).unwrap_or_else(|_| tailor_text::hash::hash_bytes(base.as_bytes(), 0))
}

impl Emitter<'_> {
    /// Sample, limit and number one record, then write it.
    fn emit(&mut self, r: Ready) -> Result<(), StageError> {
        let (si, _, _) = self.file;
        self.file.2 += 1;
        self.counts[si].0 += 1;
        let s = &self.config.sources[si];
        if let Some(p) = s.sample
            && unit(&r.base, s.seed) >= p
        {
            return Ok(());
        }
        if s.limit.is_some_and(|l| self.taken[si] >= l) {
            return Ok(());
        }
        self.taken[si] += 1;
        let n = self.seen.add(seen_key(&r.base));
        match r.rec {
            Ok(line) if n == 1 => self.records.write_all(&line).ctx(|| "writing the output".into())?,
            Ok(line) => match renumber(&line, &r.base, n) {
                Some(line) => self.records.write_all(&line).ctx(|| "writing the output".into())?,
                None => return Err(StageError::msg(format!("internal: record {} does not start with its id", r.base))),
            },
            Err(mut rec) => {
                if n > 1 {
                    rec.id = format!("{}-{n}", r.base);
                }
                Self::write_line(&mut self.records, &rec)?;
            }
        }
        self.kept[si] += 1;
        Ok(())
    }
}

impl Sink for Emitter<'_> {
    fn record(&mut self, line: u64, own: Map<String, Value>, body: Body) -> Result<(), StageError> {
        let src = &self.config.sources[self.file.0];
        let r = Ready::new(src, &self.file.1, line, own, body, false);
        self.emit(r)
    }

    fn reject(&mut self, r: Reject) -> Result<(), StageError> {
        let si = self.file.0;
        self.file.2 += 1;
        self.counts[si].1 += 1;
        *self.why[si].entry(r.reason.clone()).or_insert(0) += 1;
        Self::write_line(&mut self.rejects, &r)?;
        Ok(())
    }
}

fn open(path: &Path, encoding: Encoding) -> Result<Box<dyn Read + Send>, StageError> {
    let raw = decompressed(path)?;
    decode::utf8_reader(raw, encoding).ctx(|| format!("reading {}", path.display()))
}

fn decompressed(path: &Path) -> Result<Box<dyn Read + Send>, StageError> {
    let f = std::fs::File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let name = path.to_string_lossy();
    Ok(if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else if name.ends_with(".zst") {
        Box::new(ruzstd::decoding::StreamingDecoder::new(f).map_err(|e| StageError::msg(format!("{}: not a zstd file: {e}", path.display())))?)
    } else {
        Box::new(f)
    })
}

fn detect(rel: &Path, f: Format) -> Format {
    if f != Format::Auto {
        return f;
    }
    let name = rel.to_string_lossy().to_lowercase();
    let name = name.trim_end_matches(".gz").trim_end_matches(".zst");
    match name.rsplit('.').next() {
        Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        Some("tsv") => Format::Tsv,
        Some("parquet") => Format::Parquet,
        Some("txt" | "md" | "text") => Format::Text,
        _ => Format::Jsonl,
    }
}

fn read_file(root: &Path, rel: &Path, src: &Source, on_error: OnError) -> Result<FileRead, StageError> {
    let mut out = FileRead { records: Vec::new(), rejects: Vec::new() };
    read_into(root, rel, src, on_error, &mut out)?;
    Ok(out)
}

/// Read one file into `out`, record by record.
fn read_into(root: &Path, rel: &Path, src: &Source, on_error: OnError, out: &mut dyn Sink) -> Result<(), StageError> {
    let shown = rel.display().to_string();
    // The position goes into the reject's id; the reason says what is wrong
    // without it, so `tailor show` groups identical problems.
    let bad = |out: &mut dyn Sink, line: u64, col: Option<usize>, reason: String, raw: Value| -> Result<(), StageError> {
        let at = match col {
            Some(c) => format!("{shown}:{line}:{c}"),
            None => format!("{shown}:{line}"),
        };
        match on_error {
            OnError::Fail => {
                Err(StageError::msg(format!("{at}: {reason}\n  fix the input, or set `on_error: skip` on the stage to keep going and record it in `rejects`")))
            }
            OnError::Skip => out.reject(Reject { id: at, step: "collect".into(), reason, record: raw }),
        }
    };
    let format = detect(rel, src.format);
    if format == Format::Parquet {
        let mut each = |i: u64, v: Value| -> Result<(), StageError> {
            match to_body(&v, &src.map) {
                Ok(b) => out.record(i, meta_of(&v, &src.map, &b), b),
                Err(why) => bad(out, i, None, why, v),
            }
        };
        if let Err(e) = parquet::each_row(&root.join(rel), &mut each)? {
            bad(out, 0, None, e, Value::Null)?;
        }
        return Ok(());
    }
    let mut reader = BufReader::new(open(&root.join(rel), src.encoding)?);
    match format {
        Format::Jsonl | Format::Auto | Format::Parquet => {
            let mut buf = Vec::new();
            let mut line = 0u64;
            // The one-pass reader for flat records, while it keeps
            // answering: a file of chat records (or with a `map:`) would
            // pay for two parses of every line.
            let mut flat = src.map.is_empty();
            let (mut hits, mut misses) = (0u64, 0u64);
            loop {
                buf.clear();
                let n = reader.read_until(b'\n', &mut buf).ctx(|| format!("reading {shown}"))?;
                if n == 0 {
                    break;
                }
                line += 1;
                if line == 1 && buf.starts_with(&[0xEF, 0xBB, 0xBF]) {
                    buf.drain(..3);
                }
                if buf.len() > MAX_LINE {
                    bad(out, line, None, format!("line is {} bytes, over the {} MiB limit for one record", buf.len(), MAX_LINE >> 20), Value::Null)?;
                    continue;
                }
                // SIMD validation (the common, valid case); the standard
                // library's only to find where a bad line goes wrong.
                let text = match simdutf8::basic::from_utf8(&buf) {
                    Ok(t) => t.trim_end_matches(['\n', '\r']),
                    Err(_) => {
                        let at = std::str::from_utf8(&buf).err().map_or(0, |e| e.valid_up_to());
                        let raw = Value::String(String::from_utf8_lossy(&buf).into_owned());
                        bad(out, line, Some(at + 1), format!("invalid UTF-8; {}", decode::not_utf8_hint(&buf)), raw)?;
                        continue;
                    }
                };
                if text.trim().is_empty() {
                    continue;
                }
                if flat {
                    if let Some((body, meta)) = fast::flat_record(text) {
                        hits += 1;
                        out.record(line, meta, body)?;
                        continue;
                    }
                    misses += 1;
                    flat = misses <= hits + 16;
                }
                match serde_json::from_str::<Value>(text) {
                    Ok(v) => match to_body(&v, &src.map) {
                        Ok(b) => out.record(line, meta_of(&v, &src.map, &b), b)?,
                        Err(why) => bad(out, line, None, why, v)?,
                    },
                    Err(e) => bad(out, line, Some(e.column()), json_reason(&e), Value::String(text.chars().take(2000).collect()))?,
                }
            }
        }
        Format::Json => {
            // One array element at a time: a JSON array of any size is read
            // in the memory of its largest element.
            let mut failed = None;
            let mut each = |i: u64, v: Value| -> Result<(), StageError> {
                match to_body(&v, &src.map) {
                    Ok(b) => out.record(i, meta_of(&v, &src.map, &b), b),
                    Err(why) => bad(out, i, None, why, v),
                }
            };
            // A UTF-8 byte-order mark is skipped; the first bytes are kept
            // for the hint should the file turn out not to be UTF-8.
            let head = {
                let buf = reader.fill_buf().ctx(|| format!("reading {shown}"))?;
                let bom = usize::from(buf.starts_with(&[0xEF, 0xBB, 0xBF])) * 3;
                let head = buf[bom..].iter().take(4096).copied().collect::<Vec<u8>>();
                reader.consume(bom);
                head
            };
            let parsed = json_array::each_element(&mut reader, &mut each, &mut failed);
            if let Some(e) = failed {
                return Err(e);
            }
            match parsed {
                Ok(()) => {}
                Err(json_array::Problem::NotAnArray) => {
                    bad(out, 1, Some(1), "expected a JSON array of objects; for one object per line use `format: jsonl`".into(), Value::Null)?
                }
                Err(json_array::Problem::Json(e)) if e.is_io() => bad(out, 1, None, format!("cannot read: {e}"), Value::Null)?,
                // serde_json says "invalid unicode code point" for bytes that are not UTF-8.
                Err(json_array::Problem::Json(e)) if e.to_string().contains("unicode") => {
                    bad(out, e.line() as u64, Some(e.column()), format!("invalid UTF-8; {}", decode::not_utf8_hint(&head)), Value::Null)?
                }
                Err(json_array::Problem::Json(e)) => bad(out, e.line() as u64, Some(e.column()), json_reason(&e), Value::Null)?,
            }
        }
        fmt @ (Format::Csv | Format::Tsv) => {
            // Flexible, so that a ragged row is one reject at its own line
            // and the reader's line count (which includes the newlines in
            // quoted fields) stays true for the rows after it.
            let mut rdr = csv::ReaderBuilder::new().delimiter(if fmt == Format::Tsv { b'\t' } else { b',' }).flexible(true).from_reader(reader);
            let headers = match rdr.headers() {
                Ok(h) => h.clone(),
                Err(e) => {
                    bad(out, 1, None, csv_reason(&e), Value::Null)?;
                    return Ok(());
                }
            };
            let mut row = csv::StringRecord::new();
            loop {
                match rdr.read_record(&mut row) {
                    Ok(false) => break,
                    Ok(true) => {
                        let line = row.position().map_or(0, |p| p.line());
                        let fields: Vec<Value> = row.iter().map(|v| Value::String(v.to_string())).collect();
                        if row.len() != headers.len() {
                            let why = format!("row has {} fields, the header has {}", row.len(), headers.len());
                            bad(out, line, None, why, Value::Array(fields))?;
                            continue;
                        }
                        let v = Value::Object(headers.iter().map(String::from).zip(fields).collect());
                        match to_body(&v, &src.map) {
                            Ok(b) => out.record(line, meta_of(&v, &src.map, &b), b)?,
                            Err(why) => bad(out, line, None, why, v)?,
                        }
                    }
                    Err(e) => {
                        let line = e.position().map_or(0, |p| p.line());
                        bad(out, line, None, csv_reason(&e), Value::Null)?;
                        if !matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) {
                            break;
                        }
                    }
                }
            }
        }
        Format::Text => {
            let mut text = String::new();
            if let Err(e) = read_text(&mut reader, &mut text) {
                bad(out, 1, None, e, Value::Null)?;
                return Ok(());
            }
            let text = text.trim_start_matches('\u{feff}').replace("\r\n", "\n");
            match src.split {
                TextSplit::File => {
                    if !text.trim().is_empty() {
                        out.record(1, Map::new(), Body::Text { text: text.trim().to_string() })?;
                    }
                }
                TextSplit::Line => {
                    for (i, l) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                        out.record(i as u64 + 1, Map::new(), Body::Text { text: l.trim().to_string() })?;
                    }
                }
                TextSplit::Paragraph => {
                    let mut start = 0;
                    let mut para = Vec::new();
                    for (i, l) in text.lines().enumerate() {
                        if l.trim().is_empty() {
                            if !para.is_empty() {
                                out.record(start as u64 + 1, Map::new(), Body::Text { text: para.join("\n") })?;
                                para.clear();
                            }
                        } else {
                            if para.is_empty() {
                                start = i;
                            }
                            para.push(l.trim_end());
                        }
                    }
                    if !para.is_empty() {
                        out.record(start as u64 + 1, Map::new(), Body::Text { text: para.join("\n") })?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, seg| match cur {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => a.get(seg.parse::<usize>().ok()?),
        _ => None,
    })
}

fn as_text(v: &Value, field: &str) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        _ => Err(format!("field `{field}` must be text, found {}", if v.is_array() { "a list" } else { "an object" })),
    }
}

fn role(r: &str) -> String {
    match r {
        "human" | "user" => "user".into(),
        "gpt" | "assistant" | "model" | "bot" => "assistant".into(),
        "system" => "system".into(),
        other => other.to_string(),
    }
}

/// A record's metadata: its own `meta` object (so labels and corrections
/// such as `fix_of` travel with the record), then every field the body did
/// not use (`id`, `task`, extra CSV columns), so nothing is dropped. A field
/// whose name the record's `meta` already has goes under `meta.unmapped`.
fn meta_of(v: &Value, map: &BTreeMap<String, String>, body: &Body) -> Map<String, Value> {
    let mut meta = v.get("meta").and_then(Value::as_object).cloned().unwrap_or_default();
    let Some(obj) = v.as_object() else { return meta };
    let canon: &[&str] = match body {
        Body::Chat { .. } => &["messages", "conversations"],
        Body::Instruction { .. } => &["instruction", "input", "output"],
        Body::Completion { .. } => &["prompt", "completion"],
        Body::Text { .. } => &["text"],
    };
    // Source paths the body consumed: mapped ones, else the canonical names.
    let used: Vec<&str> = canon.iter().map(|c| map.get(*c).map_or(*c, String::as_str)).collect();
    // A field whose name the record's own `meta` already uses goes under
    // `meta.unmapped`, so neither value is lost.
    let mut clashes = Map::new();
    let own: Vec<String> = meta.keys().cloned().collect();
    for (k, v) in obj {
        if k == "meta" || used.contains(&k.as_str()) {
            continue;
        }
        if own.contains(k) {
            clashes.insert(k.clone(), v.clone());
            continue;
        }
        // A dotted path reaches into this field: keep the rest of it.
        let inner: Vec<&str> = used.iter().filter_map(|u| u.strip_prefix(k.as_str()).and_then(|r| r.strip_prefix('.'))).collect();
        if inner.is_empty() {
            meta.insert(k.clone(), v.clone());
        } else if let Value::Object(o) = v {
            let mut rest = Map::new();
            rest.insert(k.clone(), Value::Object(o.clone()));
            for path in inner {
                remove_path(&mut rest, &format!("{k}.{path}"));
            }
            meta.extend(rest);
        } else {
            meta.insert(k.clone(), v.clone());
        }
    }
    if !clashes.is_empty() {
        let key = (0..).map(|i| if i == 0 { "unmapped".to_string() } else { format!("unmapped_{i}") }).find(|k| !meta.contains_key(k)).unwrap_or_default();
        meta.insert(key, Value::Object(clashes));
    }
    meta
}

/// Remove a dotted path from an object; an object left empty goes too.
fn remove_path(obj: &mut Map<String, Value>, path: &str) {
    match path.split_once('.') {
        None => {
            obj.remove(path);
        }
        Some((head, tail)) => {
            if let Some(Value::Object(inner)) = obj.get_mut(head) {
                remove_path(inner, tail);
                if inner.is_empty() {
                    obj.remove(head);
                }
            }
        }
    }
}

/// A JSON parse error in words, without serde's `at line L column C` (the
/// reject's id carries the position).
fn json_reason(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let msg = msg.rsplit_once(" at line ").map_or(msg.as_str(), |(m, _)| m);
    format!("invalid JSON: {msg}")
}

/// A CSV error in words, without positions.
fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => format!("invalid UTF-8; {}", decode::not_utf8_hint(&[])),
        csv::ErrorKind::Io(io) => format!("cannot read: {io}"),
        _ => "malformed CSV".to_string(),
    }
}

/// Read the whole (decoded) file as text; the error says how to fix it.
fn read_text(reader: &mut impl Read, text: &mut String) -> Result<(), String> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(|e| format!("cannot read: {e}"))?;
    match String::from_utf8(bytes) {
        Ok(t) => {
            *text = t;
            Ok(())
        }
        Err(e) => Err(format!("invalid UTF-8; {}", decode::not_utf8_hint(e.as_bytes()))),
    }
}

/// Turn one source object into a canonical body.
pub fn to_body(v: &Value, map: &BTreeMap<String, String>) -> Result<Body, String> {
    if !v.is_object() {
        return Err(format!("expected a JSON object, found {}", if v.is_array() { "a list" } else { "a scalar" }));
    }
    let field = |canon: &str| -> Option<(&Value, String)> {
        match map.get(canon) {
            Some(src) => get_path(v, src).map(|x| (x, src.clone())),
            None => v.get(canon).map(|x| (x, canon.to_string())),
        }
    };
    let msgs = field("messages").or_else(|| v.get("conversations").map(|x| (x, "conversations".to_string())));
    if let Some((m, name)) = msgs {
        let items = m.as_array().ok_or(format!("field `{name}` must be a list of messages"))?;
        let mut messages = Vec::new();
        for (i, it) in items.iter().enumerate() {
            let r =
                it.get("role").or_else(|| it.get("from")).and_then(Value::as_str).ok_or(format!("message {} in `{name}` has no `role` (or `from`)", i + 1))?;
            let c = it.get("content").or_else(|| it.get("value")).ok_or(format!("message {} in `{name}` has no `content` (or `value`)", i + 1))?;
            messages.push(Message { role: role(r), content: as_text(c, "content")? });
        }
        if messages.is_empty() {
            return Err(format!("`{name}` is empty"));
        }
        return Ok(Body::Chat { messages });
    }
    if let (Some((i, fi)), Some((o, fo))) = (field("instruction"), field("output")) {
        let input = match field("input") {
            Some((x, f)) => as_text(x, &f)?,
            None => String::new(),
        };
        return Ok(Body::Instruction { instruction: as_text(i, &fi)?, input, output: as_text(o, &fo)? });
    }
    if let (Some((p, fp)), Some((c, fc))) = (field("prompt"), field("completion")) {
        return Ok(Body::Completion { prompt: as_text(p, &fp)?, completion: as_text(c, &fc)? });
    }
    if let Some((t, ft)) = field("text") {
        return Ok(Body::Text { text: as_text(t, &ft)? });
    }
    let keys: Vec<&str> = v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    let missing: Vec<String> = map.iter().filter(|(_, s)| get_path(v, s).is_none()).map(|(c, s)| format!("`{s}` (for {c})")).collect();
    if !missing.is_empty() {
        return Err(format!("record has no field {}; its fields are: {}", missing.join(", "), keys.join(", ")));
    }
    let pick = |names: &[&str], fallback: usize| -> String {
        names.iter().find(|n| keys.contains(n)).map_or_else(|| keys.get(fallback).map_or("FIELD", |k| k).to_string(), |n| n.to_string())
    };
    let p = pick(&["question", "query", "input", "instruction", "user", "q", "prompt"], 0);
    let c = pick(&["answer", "response", "reply", "output", "assistant", "a", "completion"], 1);
    Err(format!(
        "record has none of prompt+completion, instruction+output, messages or text; its fields are: {}; add a `map:` to the source, e.g. `map: {{prompt: {p}, completion: {c}}}`",
        keys.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_from_common_shapes() {
        let none = BTreeMap::new();
        let cases = [
            (json!({"prompt": "p", "completion": "c"}), "Completion"),
            (json!({"instruction": "i", "output": "o"}), "Instruction"),
            (json!({"messages": [{"role": "user", "content": "hi"}]}), "Chat"),
            (json!({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}), "Chat"),
            (json!({"text": "t"}), "Text"),
        ];
        for (v, want) in cases {
            let b = to_body(&v, &none).unwrap();
            assert!(format!("{b:?}").starts_with(want), "{v} → {b:?}");
        }
        let map: BTreeMap<String, String> = [("prompt".into(), "q".into()), ("completion".into(), "a.text".into())].into();
        let b = to_body(&json!({"q": "why", "a": {"text": 42}}), &map).unwrap();
        assert_eq!(b, Body::Completion { prompt: "why".into(), completion: "42".into() });
        // Unused fields join `meta`; one that clashes with the record's own
        // `meta` key is kept under `meta.unmapped`; dotted mappings leave the
        // rest of their object.
        let v = json!({"q": "why", "a": {"text": 42, "score": 3}, "lang": "en", "id": 7, "meta": {"lang": "ja"}});
        let b = to_body(&v, &map).unwrap();
        assert_eq!(Value::Object(meta_of(&v, &map, &b)), json!({"lang": "ja", "id": 7, "a": {"score": 3}, "unmapped": {"lang": "en"}}));
        let err = to_body(&json!({"question": "q"}), &none).unwrap_err();
        assert!(err.contains("its fields are: question"), "{err}");
    }

    /// A big file streamed line by line writes exactly what the same file
    /// read whole and serialized in parallel writes: records, ids of repeats
    /// (renumbered in the serialized line), sampling, limits, rejects.
    #[test]
    fn streamed_and_whole_reads_write_the_same_output() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..300 {
            match i % 7 {
                0 => text.push_str("{broken\n"),
                1 => text.push_str("{\"prompt\": \"same\", \"completion\": \"again\"}\n"),
                // Every body shape, with text that needs escaping.
                2 => text.push_str(&format!("{{\"messages\": [{{\"role\": \"user\", \"content\": \"q{i} \\\"quoted\\\"\\n\"}}, {{\"role\": \"assistant\", \"content\": \"答え{i}\"}}]}}\n")),
                3 => text.push_str(&format!("{{\"instruction\": \"do {i}\", \"input\": \"\\t\", \"output\": \"done\\u0001\"}}\n")),
                4 => text.push_str(&format!("{{\"text\": \"plain {i} 本文\", \"id\": {i}}}\n")),
                _ => text.push_str(&format!("{{\"prompt\": \"q{i}\", \"completion\": \"a{i}\", \"task\": \"t{}\"}}\n", i % 3)),
            }
        }
        std::fs::write(dir.path().join("d.jsonl"), &text).unwrap();
        let config: CollectConfig = serde_json::from_value(json!({
            "on_error": "skip", "max_reject_share": 1.0,
            "sources": [{"path": "d.jsonl", "sample": 0.8, "seed": 3, "limit": 150}, {"path": "d.jsonl", "meta": {"copy": 2}}]
        }))
        .unwrap();
        let run = |streamed: bool| {
            let out = tempfile::tempdir().unwrap();
            let (rec, rej) = (out.path().join("records.jsonl"), out.path().join("rejects.jsonl"));
            let mut em = Emitter::new(&config, &rec, &rej).unwrap();
            for (si, src) in config.sources.iter().enumerate() {
                em.start_file(si, Path::new("d.jsonl"));
                if streamed {
                    read_into(dir.path(), Path::new("d.jsonl"), src, OnError::Skip, &mut em).unwrap();
                } else {
                    let fr = read_file(dir.path(), Path::new("d.jsonl"), src, OnError::Skip).unwrap();
                    for r in fr.rejects {
                        em.reject(r).unwrap();
                    }
                    for (line, meta, body) in fr.records {
                        em.emit(Ready::new(src, "d.jsonl", line, meta, body, true)).unwrap();
                    }
                }
                em.end_file();
            }
            let outcome = em.finish(2).unwrap();
            (std::fs::read_to_string(rec).unwrap(), std::fs::read_to_string(rej).unwrap(), outcome.metrics)
        };
        let (whole, streamed) = (run(false), run(true));
        assert_eq!(whole, streamed);
        for shape in ["\"messages\":[", "\"instruction\":", "\"text\":\"plain", "\"prompt\":\"q"] {
            assert!(whole.0.contains(shape), "{shape} missing from the output");
        }
        assert!(whole.0.contains("\"id\":") && whole.0.contains("-2\"") && whole.0.lines().count() > 150 && whole.1.lines().count() == 2 * 43);
    }

    #[test]
    fn sampling_is_deterministic() {
        assert_eq!(unit("abc", 1), unit("abc", 1));
        assert_ne!(unit("abc", 1), unit("abc", 2));
    }

    fn fuzz_cases() -> u32 {
        std::env::var("TAILOR_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
    }

    /// Lines that are often almost JSON records.
    fn jsonl_lines() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let line = prop_oneof![
            Just(b"{\"prompt\": \"p\", \"completion\": \"c\"}".to_vec()),
            Just(b"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}".to_vec()),
            Just(b"{\"text\": 3}".to_vec()),
            Just(b"{\"prompt\": ".to_vec()),
            Just(b"[1, 2]".to_vec()),
            Just(b"   ".to_vec()),
            Just(vec![0xEF, 0xBB, 0xBF]),
            Just(vec![0xff, 0xfe, b'a']),
            proptest::collection::vec(any::<u8>(), 0..40),
        ];
        proptest::collection::vec(line, 0..30).prop_map(|lines| lines.join(&b"\n"[..]))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: fuzz_cases(), failure_persistence: None, ..proptest::prelude::ProptestConfig::default() })]

        /// JSONL: every non-blank line becomes a record or a reject with its
        /// line number — nothing is lost silently, nothing panics.
        #[test]
        fn jsonl_lines_are_records_or_rejects(bytes in jsonl_lines()) {
            // A UTF-16/32 byte-order mark makes it another file altogether.
            proptest::prop_assume!(matches!(decode::sniff(&bytes), decode::Bom::None | decode::Bom::Utf8));
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("d.jsonl"), &bytes).unwrap();
            let src: Source = serde_json::from_value(json!({"path": "d.jsonl"})).unwrap();
            let read = read_file(dir.path(), Path::new("d.jsonl"), &src, OnError::Skip).unwrap();
            let lines = bytes.split(|b| *b == b'\n').enumerate().filter(|(i, l)| {
                let l = if *i == 0 { l.strip_prefix(&[0xEF, 0xBB, 0xBF][..]).unwrap_or(l) } else { l };
                !std::str::from_utf8(l).is_ok_and(|t| t.trim().is_empty())
            }).count();
            proptest::prop_assert_eq!(read.records.len() + read.rejects.len(), lines);
        }

        /// CSV, TSV, JSON arrays and text: any bytes give records and
        /// rejects, never a panic.
        #[test]
        fn other_formats_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600), ext in proptest::sample::select(vec!["csv", "tsv", "json", "txt"])) {
            let dir = tempfile::tempdir().unwrap();
            let name = format!("d.{ext}");
            let mut text = if ext == "csv" { b"prompt,completion\n".to_vec() } else if ext == "tsv" { b"prompt\tcompletion\n".to_vec() } else { Vec::new() };
            text.extend(&bytes);
            std::fs::write(dir.path().join(&name), &text).unwrap();
            let src: Source = serde_json::from_value(json!({"path": name})).unwrap();
            let _ = read_file(dir.path(), Path::new(&name), &src, OnError::Skip).unwrap();
        }
    }
}
