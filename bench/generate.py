#!/usr/bin/env python3
"""Greedy generation speed: transformers' generate vs `tailor-train infer`.

    bash bench/generate.sh [NEW_TOKENS] [PROMPTS]

Arguments: HF model directory, the SmolLM2 example's replies.jsonl, a work
directory, the tailor-train binary, new tokens per prompt, prompts, batch.
Same model (the imported SmolLM2 weights, float32, CPU), same prompts (the
chat template applied by the tokenizer), same batches of 8 (left-padded),
greedy, exactly NEW_TOKENS per prompt (EOS ignored on both sides:
min_new_tokens in transformers, no EOS ids for Tailor), 2 threads on both.
Timed: generation only, model loading excluded on both sides (Tailor's
trainer reports the seconds spent in generation). Prints a JSON line.
"""
import json
import os
import subprocess
import sys
import time

import torch
from transformers import AutoTokenizer, LlamaForCausalLM

model_dir, data, work, trainer, new_tokens, n_prompts, batch = sys.argv[1:]
new_tokens, n_prompts, batch = int(new_tokens), int(n_prompts), int(batch)
torch.set_num_threads(2)
tok = AutoTokenizer.from_pretrained(model_dir)
questions = [json.loads(l)["prompt"] for l in open(data, encoding="utf-8")][:n_prompts]
prompts = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False) for q in questions]
ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
os.makedirs(work, exist_ok=True)

# Tailor: an inference job for tailor-train, as the evaluate stage writes it.
with open(os.path.join(work, "prompts.jsonl"), "w") as f:
    for i, p in enumerate(ids):
        f.write(json.dumps({"id": str(i), "ids": p}) + "\n")
job = {
    "variants": [{"name": "base", "model": os.path.abspath(model_dir), "adapter": None}],
    "dtype": "float32", "device": "cpu", "threads": 2, "score": None,
    "prompts": os.path.abspath(os.path.join(work, "prompts.jsonl")), "loglikelihood": None, "eos": [],
    "decoding": {"max_new_tokens": new_tokens, "temperature": 0.0, "top_p": 1.0, "seed": 0, "stop": [], "batch_size": batch},
    "out": os.path.abspath(work),
}
with open(os.path.join(work, "job.json"), "w") as f:
    json.dump(job, f)


def tailor():
    out = subprocess.run([trainer, "infer", os.path.join(work, "job.json")], capture_output=True, text=True, check=True).stdout
    events = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    done = [e for e in events if e.get("event") == "done"][-1]
    gens = [json.loads(l) for l in open(os.path.join(work, "generations.jsonl"))]
    return done["seconds"], [g["text"] for g in gens]


model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
tok.padding_side = "left"
if tok.pad_token is None:
    tok.pad_token = tok.eos_token


@torch.no_grad()
def hf():
    # Same batches as Tailor's: prompts sorted by length, chunks of `batch`.
    order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
    texts = [None] * len(ids)
    t0 = time.perf_counter()
    for k in range(0, len(order), batch):
        rows = order[k:k + batch]
        enc = tok([prompts[i] for i in rows], return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        for r, o in zip(rows, out):
            texts[r] = tok.decode(o[enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return time.perf_counter() - t0, texts


runs = {"tailor": [], "transformers": []}
for _ in range(2):  # alternating, best of two
    s, ours = tailor()
    runs["tailor"].append(s)
    s, theirs = hf()
    runs["transformers"].append(s)
tokens = new_tokens * len(ids)
best = {k: min(v) for k, v in runs.items()}
same = sum(a == b for a, b in zip(ours, theirs))
print(json.dumps({
    "prompts": len(ids), "new_tokens": new_tokens, "batch": batch, "threads": 2,
    "tailor_tokens_per_s": round(tokens / best["tailor"], 1),
    "transformers_tokens_per_s": round(tokens / best["transformers"], 1),
    "ratio": round(best["transformers"] / best["tailor"], 3),
    "same_text": f"{same}/{len(ids)}",
    "seconds": runs,
}))
