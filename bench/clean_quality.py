#!/usr/bin/env python3
"""Score Tailor's dedup against make_records.py's truth file.

    python3 bench/clean_quality.py REJECTS.jsonl RECORDS.truth.jsonl

A reject's record keeps its source line (`record.source.line`), which is the
line of records.jsonl the truth file describes. Prints recall of injected
exact/NFKC copies and of near copies per language, and false removals (base
records removed as duplicates)."""
import json
import sys
from collections import Counter

rejects, truth_path = sys.argv[1], sys.argv[2]
removed = {}
for line in open(rejects, encoding="utf-8"):
    r = json.loads(line)
    if r["step"] == "dedup":
        removed[r["record"]["source"]["line"]] = "exact" if r["reason"].startswith("exact") else "near"
truth = [json.loads(l) for l in open(truth_path, encoding="utf-8")]
total, hit = Counter(), Counter()
false_removals = 0
for t in truth:
    k = t["kind"]
    if k == "base":
        false_removals += t["line"] in removed
        continue
    key = (k, t["lang"]) if k == "near" else (k, "all")
    total[key] += 1
    hit[key] += t["line"] in removed
for key in sorted(total):
    print(f"recall {key[0]:5} {key[1]:3}: {hit[key]}/{total[key]} = {hit[key] / total[key]:.3f}")
print(f"false removals (base records removed): {false_removals}")
print(f"removed: exact {sum(1 for v in removed.values() if v == 'exact')}, near {sum(1 for v in removed.values() if v == 'near')}")
