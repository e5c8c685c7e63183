//! Benchmark inputs: multiple-choice task files and text corpora, read
//! with positions in their errors, and turned into log-likelihood requests
//! the way lm-evaluation-harness builds them.
//!
//! A task file is JSON lines, one item per line:
//! `{"id": "q1", "context": "The capital of France is", "choices": ["Paris", "Rome"], "gold": 0}`
//! (`query` or `question` for `context`, `label` or `answer` for `gold`, as
//! in lm-evaluation-harness's preprocessed datasets; `id` defaults to the
//! line number; other keys are ignored). Each choice is scored as the
//! continuation `target_delimiter + choice` of the prompt: the task's
//! `description`, then `num_fewshot` other items of the same file (drawn
//! per item with the task's seed, never the item itself) each written as
//! `context + target_delimiter + gold choice` and joined by
//! `fewshot_delimiter`, then the item's context. Tokenization follows the
//! harness: trailing whitespace of the context moves to the continuation,
//! the continuation's tokens are those of `context + continuation` after
//! the context's own tokens, no special tokens are added, and an empty
//! context is the prefix token. Where one token would span the boundary
//! (common without a space, as in Japanese), the harness's slice would be
//! misaligned or empty; here the continuation is then tokenized on its own.
//!
//! A corpus is a `.txt` file (one document) or JSON lines with a `text`
//! field (one document per line).

use std::path::Path;

use serde::Deserialize;
use tailor_protocol::job::LoglikRequest;
use tokenizers::Tokenizer;

/// One multiple-choice item.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Item id (from the file, or `line N`).
    pub id: String,
    /// The question or text to continue.
    pub context: String,
    /// The possible continuations.
    pub choices: Vec<String>,
    /// Index of the right choice.
    pub gold: usize,
}

#[derive(Deserialize)]
struct RawItem {
    id: Option<serde_json::Value>,
    #[serde(alias = "query", alias = "question")]
    context: Option<String>,
    choices: Option<Vec<String>>,
    #[serde(alias = "label", alias = "answer")]
    gold: Option<usize>,
}

/// Read a task file, all of it (a `limit` only chooses which items are
/// scored; few-shot examples come from the whole file); every problem
/// names the file, line and column.
pub fn read_items(path: &Path) -> Result<Vec<Item>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut items = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |col: usize| format!("{}:{}:{col}", path.display(), i + 1);
        let raw: RawItem = serde_json::from_str(line).map_err(|e| format!("{}: {e} (each line is one JSON object)", at(e.column())))?;
        let Some(context) = raw.context else {
            return Err(format!("{}: the item has no `context` (or `query`/`question`)", at(1)));
        };
        let choices = raw.choices.unwrap_or_default();
        if choices.len() < 2 {
            return Err(format!("{}: an item needs `choices` with at least two strings, found {}", at(1), choices.len()));
        }
        let Some(gold) = raw.gold else {
            return Err(format!("{}: the item has no `gold` (or `label`/`answer`): the index of the right choice", at(1)));
        };
        if gold >= choices.len() {
            return Err(format!("{}: `gold` is {gold}, but there are only {} choices (indices start at 0)", at(1), choices.len()));
        }
        let id = match raw.id {
            Some(serde_json::Value::String(s)) => s,
            Some(v) => v.to_string(),
            None => format!("line {}", i + 1),
        };
        if !ids.insert(id.clone()) {
            return Err(format!("{}: the id {id:?} is used twice", at(1)));
        }
        items.push(Item { id, context, choices, gold });
    }
    if items.is_empty() {
        return Err(format!("{}: no items (one JSON object per line: context, choices, gold)", path.display()));
    }
    Ok(items)
}

/// How a task's prompts are written.
#[derive(Debug, Clone)]
pub struct Prompting {
    /// Text before everything else.
    pub description: String,
    /// Solved examples before each item.
    pub num_fewshot: usize,
    /// Seed of the examples' choice.
    pub seed: u64,
    /// Between a context and its choice.
    pub target_delimiter: String,
    /// Between examples.
    pub fewshot_delimiter: String,
}

/// splitmix64: a small seeded generator for the few-shot draw.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The examples shown before item `i`: `k` distinct other items, drawn
/// with a generator seeded by the task's seed and the item's index (so an
/// item's prompt does not depend on `limit` or on the other items' draws).
pub fn fewshot(n: usize, i: usize, k: usize, seed: u64) -> Vec<usize> {
    let k = k.min(n.saturating_sub(1));
    let mut pool: Vec<usize> = (0..n).filter(|&j| j != i).collect();
    let mut state = mix(seed ^ mix(i as u64));
    for a in 0..k {
        state = mix(state);
        let b = a + (state % (pool.len() - a) as u64) as usize;
        pool.swap(a, b);
    }
    pool.truncate(k);
    pool
}

/// The prompt (context) of item `i`.
pub fn prompt(items: &[Item], i: usize, p: &Prompting) -> String {
    let mut s = p.description.clone();
    for j in fewshot(items.len(), i, p.num_fewshot, p.seed) {
        let ex = &items[j];
        s.push_str(&ex.context);
        s.push_str(&p.target_delimiter);
        s.push_str(&ex.choices[ex.gold]);
        s.push_str(&p.fewshot_delimiter);
    }
    s.push_str(&items[i].context);
    s
}

/// Token ids of a context and a continuation, split as the harness splits
/// them (see the module docs).
pub fn encode_pair(tok: &Tokenizer, context: &str, continuation: &str, prefix: u32) -> Result<(Vec<u32>, Vec<u32>), String> {
    let trimmed = context.trim_end();
    let (context, continuation) = (trimmed, format!("{}{continuation}", &context[trimmed.len()..]));
    let enc = |t: &str| tok.encode(t, false).map(|e| e.get_ids().to_vec()).map_err(|e| format!("tokenizing: {e}"));
    if context.is_empty() {
        return Ok((vec![prefix], enc(&continuation)?));
    }
    let whole = enc(&format!("{context}{continuation}"))?;
    let ctx = enc(context)?;
    if whole.len() > ctx.len() && whole[..ctx.len()] == ctx[..] {
        let cont = whole[ctx.len()..].to_vec();
        return Ok((ctx, cont));
    }
    // A token spans the boundary (「…は」+「い」 → 「はい」): the continuation
    // is scored as its own tokens after the context's.
    let own = enc(&continuation)?;
    Ok((ctx, own))
}

/// The requests of one task's first `scored` items: one per item and
/// choice, ids `TASK/ITEM/CHOICE`; few-shot examples from all `items`.
pub fn requests(task: &str, items: &[Item], scored: usize, p: &Prompting, tok: &Tokenizer, prefix: u32) -> Result<Vec<LoglikRequest>, String> {
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate().take(scored) {
        let context = prompt(items, i, p);
        for (c, choice) in item.choices.iter().enumerate() {
            let (ctx, cont) = encode_pair(tok, &context, &format!("{}{choice}", p.target_delimiter), prefix)?;
            if cont.is_empty() {
                return Err(format!("task {task}, item {}: choice {c} ({choice:?}) has no tokens", item.id));
            }
            out.push(LoglikRequest { id: request_id(task, &item.id, c), context: ctx, continuation: cont });
        }
    }
    Ok(out)
}

/// The id of a request: task, item and choice.
pub fn request_id(task: &str, item: &str, choice: usize) -> String {
    format!("{task}/{item}/{choice}")
}

/// Read a corpus: a `.txt` file is one document; JSON lines give one
/// document per line's `text`.
pub fn read_documents(path: &Path, limit: Option<usize>) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let is_jsonl = path.extension().is_some_and(|e| e == "jsonl" || e == "json");
    let mut docs = Vec::new();
    if !is_jsonl {
        docs.push(text);
    } else {
        #[derive(Deserialize)]
        struct Doc {
            text: Option<String>,
        }
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            if limit.is_some_and(|l| docs.len() >= l) {
                break;
            }
            let d: Doc = serde_json::from_str(line).map_err(|e| format!("{}:{}:{}: {e}", path.display(), i + 1, e.column()))?;
            docs.push(d.text.ok_or_else(|| format!("{}:{}:1: the line has no `text`", path.display(), i + 1))?);
        }
    }
    docs.retain(|d| !d.trim().is_empty());
    if docs.is_empty() {
        return Err(format!("{}: no text to score", path.display()));
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("task.jsonl");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn items_are_read_with_aliases_and_positions_in_errors() {
        let (_d, p) = write(
            "{\"query\": \"Q\", \"choices\": [\"a\", \"b\"], \"label\": 1}\n\n{\"id\": 7, \"context\": \"R\", \"choices\": [\"c\", \"d\"], \"gold\": 0}\n",
        );
        let items = read_items(&p).unwrap();
        assert_eq!(items[0], Item { id: "line 1".into(), context: "Q".into(), choices: vec!["a".into(), "b".into()], gold: 1 });
        assert_eq!(items[1].id, "7");
        for (bad, want) in [
            ("{\"context\": \"Q\", \"choices\": [\"a\"], \"gold\": 0}", "task.jsonl:1:1: an item needs `choices` with at least two"),
            ("{\"context\": \"Q\", \"choices\": [\"a\", \"b\"], \"gold\": 2}", "`gold` is 2, but there are only 2 choices"),
            ("{\"choices\": [\"a\", \"b\"], \"gold\": 0}", "no `context`"),
            ("{\"context\": \"Q\", \"choices\": [\"a\", \"b\"]}", "no `gold`"),
            ("{\"context\": \"Q\", \"choices\": [\"a\", \"b\"], \"gold\": 0,}", "task.jsonl:1:"),
            ("", "no items"),
        ] {
            let (_d, p) = write(bad);
            let e = read_items(&p).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
        let (_d, p) = write(
            "{\"id\": \"x\", \"context\": \"Q\", \"choices\": [\"a\", \"b\"], \"gold\": 0}\n{\"id\": \"x\", \"context\": \"Q\", \"choices\": [\"a\", \"b\"], \"gold\": 0}",
        );
        assert!(read_items(&p).unwrap_err().contains("task.jsonl:2:1: the id \"x\" is used twice"));
    }

    #[test]
    fn fewshot_draws_are_seeded_distinct_and_never_the_item() {
        for i in 0..10 {
            let a = fewshot(10, i, 3, 1234);
            assert_eq!(a, fewshot(10, i, 3, 1234));
            assert_eq!(a.len(), 3);
            assert!(!a.contains(&i));
            let set: std::collections::BTreeSet<_> = a.iter().collect();
            assert_eq!(set.len(), 3);
        }
        assert_ne!((0..10).map(|i| fewshot(10, i, 3, 1)).collect::<Vec<_>>(), (0..10).map(|i| fewshot(10, i, 3, 2)).collect::<Vec<_>>());
        assert_eq!(fewshot(3, 0, 5, 0).len(), 2, "at most the other items");
        assert!(fewshot(1, 0, 2, 0).is_empty());
    }

    #[test]
    fn prompts_put_solved_examples_first() {
        let item = |c: &str, g: &str| Item { id: c.into(), context: c.into(), choices: vec![g.into(), "no".into()], gold: 0 };
        let items = vec![item("A is", "a"), item("B is", "b")];
        let p = Prompting { description: "Facts.\n\n".into(), num_fewshot: 1, seed: 0, target_delimiter: " ".into(), fewshot_delimiter: "\n\n".into() };
        assert_eq!(prompt(&items, 0, &p), "Facts.\n\nB is b\n\nA is");
        let p0 = Prompting { num_fewshot: 0, ..p };
        assert_eq!(prompt(&items, 1, &p0), "Facts.\n\nB is");
    }
}
