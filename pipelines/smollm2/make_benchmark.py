#!/usr/bin/env python3
"""Make the SmolLM2 example's general-ability benchmark from real text (deterministic).

    python3 pipelines/smollm2/make_benchmark.py pipelines/smollm2/benchmarks [/usr/share/debian-reference]

Source: the Debian Reference manual in English and Japanese (Debian packages
debian-reference-en and debian-reference-ja, GPL-2+), which scripts/setup.sh
installs from Debian's archive. Nothing derived from it is committed: the
files are made on each machine from the installed package.

Writes, from chapters 1-6 (multiple choice) and 7-12 (text), never the same text:
- cloze-en.jsonl: an English sentence without its last word; the choices are
  that word and three last words of other sentences of similar length
  (seeded), in a seeded order. 200 items.
- cloze-ja.jsonl: a Japanese sentence cut before its last katakana word or
  kanji compound (2+ characters); the choices are that word and three words
  of the same script from other sentences. 200 items. Score it with
  `target_delimiter: ""` (no space before a Japanese word).
- general-en.jsonl, general-ja.jsonl: paragraphs joined into documents of
  about 1,500 characters ({"text": ...}), 12 and 8 documents, for rolling
  perplexity.
"""
import glob
import html.parser
import json
import os
import random
import re
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "benchmarks"
src = sys.argv[2] if len(sys.argv) > 2 else "/usr/share/debian-reference"
BLOCK = {"p", "li", "td", "th", "h1", "h2", "h3", "h4", "h5", "dt", "dd", "title", "caption", "div", "br"}


class Paragraphs(html.parser.HTMLParser):
    """Text of block elements, code (pre) left out."""

    def __init__(self):
        super().__init__()
        self.out, self.cur, self.skip = [], [], 0

    def flush(self):
        t = " ".join("".join(self.cur).split())
        if t:
            self.out.append(t)
        self.cur = []

    def handle_starttag(self, tag, attrs):
        if tag in ("pre", "script", "style", "code", "tt"):
            self.skip += 1
        elif tag in BLOCK:
            self.flush()

    def handle_endtag(self, tag):
        if tag in ("pre", "script", "style", "code", "tt"):
            self.skip = max(0, self.skip - 1)
        elif tag in BLOCK:
            self.flush()

    def handle_data(self, d):
        if not self.skip:
            self.cur.append(d)


def chapters(lang, numbers):
    paras = []
    for n in numbers:
        for f in sorted(glob.glob(os.path.join(src, f"ch{n:02d}.{lang}.html"))):
            p = Paragraphs()
            p.feed(open(f, encoding="utf-8").read())
            p.flush()
            paras += p.out
    if not paras:
        sys.exit(f"no {src}/ch*.{lang}.html: install debian-reference-{lang} (apt-get install debian-reference-{lang})")
    return paras


STOP = set("about above after again against because before being below between could doing during further having herself himself itself myself other ourselves should their theirs themselves there these those through under until which while whom would yours yourself yourselves".split())


# Code spans are left out of the text; sentences that had one read broken.
BROKEN = re.compile(r'""|\(\s|\s\)|\(\)|\s[,.:;/]|\s{2}|「」')


def english_items(paras, rng):
    cands = []
    for p in paras:
        for s in re.split(r"(?<=[.!?])\s+", p):
            m = re.fullmatch(r"([A-Z][A-Za-z ,'()-]+) ([a-z]{5,14})\.", s)
            if not m or not 10 <= len(s.split()) <= 40 or m.group(2) in STOP or BROKEN.search(s):
                continue
            cands.append((m.group(1), m.group(2)))
    cands = sorted(set(cands))
    rng.shuffle(cands)
    return make_items(cands, rng, lambda w, x: abs(len(w) - len(x)) <= 2)


KATA = r"[\u30A0-\u30FF]{3,}"
KANJI = r"[\u4E00-\u9FFF]{2,}"


def japanese_items(paras, rng):
    cands = []
    for p in paras:
        for s in re.split(r"(?<=。)", p):
            s = s.strip()
            if not 20 <= len(s) <= 90 or re.search(r"[A-Za-z]{4,}", s) or BROKEN.search(s) or re.match(r"[\s\u3001-\u3002\u306e\u3092\u306f\u304c]", s):
                continue
            words = [(m.start(), m.group()) for m in re.finditer(f"{KATA}|{KANJI}", s)]
            words = [(i, w) for i, w in words if i >= len(s) * 0.5]
            if not words:
                continue
            i, w = words[-1]
            cands.append((s[:i], w))
    cands = sorted(set(cands))
    rng.shuffle(cands)
    script = lambda w: "kata" if re.fullmatch(KATA, w) else "kanji"
    return make_items(cands, rng, lambda w, x: script(w) == script(x) and abs(len(w) - len(x)) <= 1)


def make_items(cands, rng, similar, n=200):
    words = sorted({w for _, w in cands})
    items, used = [], set()
    for context, gold in cands:
        if len(items) == n:
            break
        if context in used:
            continue
        pool = [w for w in words if w != gold and similar(gold, w)]
        if len(pool) < 3:
            continue
        choices = rng.sample(pool, 3) + [gold]
        rng.shuffle(choices)
        used.add(context)
        items.append({"id": f"{len(items):03d}", "context": context, "choices": choices, "gold": choices.index(gold)})
    return items


def documents(paras, n, size=1500):
    docs, cur = [], ""
    for p in paras:
        if len(p) < 40:
            continue
        cur = f"{cur}\n\n{p}" if cur else p
        if len(cur) >= size:
            docs.append({"text": cur})
            cur = ""
        if len(docs) == n:
            break
    return docs


def write(name, rows):
    with open(os.path.join(out, name), "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{name}: {len(rows)}")


os.makedirs(out, exist_ok=True)
write("cloze-en.jsonl", english_items(chapters("en", range(1, 7)), random.Random(11)))
write("cloze-ja.jsonl", japanese_items(chapters("ja", range(1, 7)), random.Random(12)))
write("general-en.jsonl", documents(chapters("en", range(7, 13)), 12))
write("general-ja.jsonl", documents(chapters("ja", range(7, 13)), 8))
