#!/usr/bin/env python3
"""Make the SmolLM2 example's data (deterministic).

    python3 pipelines/smollm2/make_data.py pipelines/smollm2/data

From the BSD-licensed chatterbot-corpus conversations the quickstart ships
(English CSV: question, answer, topic), one reply per question, rewritten as
the reply format the fine-tuned model must keep: a single JSON object
{"topic": ..., "answer": ...} with the corpus topic and the answer's first
sentence. SmolLM2-135M-Instruct answers in free text; after a few dozen
LoRA steps on these it answers in this format.
"""
import csv, json, os, random, re, sys

out = sys.argv[1] if len(sys.argv) > 1 else "data"
src = os.path.join(os.path.dirname(__file__), "..", "quickstart", "data", "chatterbot_en.csv")
seen, rows = set(), []
with open(src, encoding="utf-8") as f:
    for r in csv.DictReader(f):
        q, a, t = r["question"].strip(), r["answer"].strip(), r["topic"].strip()
        if not q or not a or q.lower() in seen:
            continue
        seen.add(q.lower())
        first = re.split(r"(?<=[.!?])\s", a)[0][:160]
        rows.append({"prompt": q, "completion": json.dumps({"topic": t, "answer": first}, ensure_ascii=False), "meta": {"topic": t}})
random.Random(3).shuffle(rows)
rows = rows[:400]
with open(os.path.join(out, "replies.jsonl"), "w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
topics = sorted({r["meta"]["topic"] for r in rows})
print(len(rows), "replies;", len(topics), "topics:", " ".join(topics))
