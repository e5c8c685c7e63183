#!/usr/bin/env python3
"""Expected benchmark requests on the real SmolLM2, from transformers.

    tailor import .models/SmolLM2-135M-Instruct.Q4_1.gguf --out peer-train/smollm2-import
    .venv/bin/python tests/make_smollm2_loglik_fixture.py peer-train/smollm2-import tests/fixtures/smollm2_loglik.json

For hand-written multiple-choice items (English with a space before the
choice, Japanese without), the token ids of each choice's context and
continuation built the way lm-evaluation-harness builds them (trailing
whitespace to the continuation; the continuation = the whole's tokens
after the context's; where a token spans the boundary, the continuation
tokenized alone — Tailor's documented rule) with the model's own tokenizer,
and the summed log-probability from LlamaForCausalLM in float32 on the CPU.
tests/gguf.rs checks Tailor's tokenization and scores against these.
"""
import json
import os
import sys

import torch
from transformers import AutoTokenizer, LlamaForCausalLM

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from benchmark_parity import logprob, pair  # noqa: E402  (the same rules as the parity check)

model_dir, out = sys.argv[1:]
tok = AutoTokenizer.from_pretrained(model_dir)
model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
items = [
    ("The capital of France is", ["Paris", "Rome", "a small fish"], " "),
    ("Water freezes at zero degrees ", ["Celsius", "Fahrenheit"], " "),
    ("To install a package on Debian, run apt-get", ["install", "remove", "purple"], " "),
    ("Question: How many legs does a spider have?\nAnswer:", ["eight", "six", "two"], " "),
    ("日本の首都は", ["東京", "大阪", "りんご"], ""),
    ("「あ」の次は", ["い", "か"], ""),
]


rows = []
for context, choices, delim in items:
    scored = []
    for c in choices:
        ctx, cont = pair(tok, context, delim + c)
        scored.append({"choice": c, "context_ids": ctx, "continuation_ids": cont, "logprob": logprob(model, ctx, cont)})
    rows.append({"context": context, "delimiter": delim, "choices": scored})
with open(out, "w", encoding="utf-8") as f:
    json.dump(rows, f, ensure_ascii=False, indent=1)
print(len(rows), "items")
