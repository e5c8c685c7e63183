#!/usr/bin/env python3
"""Expected log-likelihoods for train/tests/loglik.rs, from transformers.

    .venv/bin/python train/tests/make_loglik_fixture.py train/tests/fixtures

Scores (context, continuation) requests with LlamaForCausalLM in float32 on
the CPU, the way lm-evaluation-harness's Hugging Face model does: input =
(context + continuation)[-(window + 1):][:-1], the continuation's tokens are
the last positions' targets, log_softmax summed; `greedy` = every target is
the argmax. One context is longer than the window (256), so the oldest
tokens are cut. Uses the committed fixture model llama_gqa_tied (made by
make_fixtures.py). Writes loglik.json. Deterministic.
"""
import json
import os
import random
import sys

import torch
from transformers import LlamaForCausalLM

out = sys.argv[1]
model = LlamaForCausalLM.from_pretrained(os.path.join(out, "llama_gqa_tied"), torch_dtype=torch.float32).eval()
window = model.config.max_position_embeddings
rng = random.Random(7)
requests = []
for i, (c, n) in enumerate([(1, 1), (3, 1), (5, 4), (12, 3), (40, 7), (2, 20), (90, 1), (300, 5), (7, 7), (64, 2)]):
    requests.append({"id": f"r{i}", "context": [rng.randrange(128) for _ in range(c)], "continuation": [rng.randrange(128) for _ in range(n)]})
# A continuation the model itself prefers, so `greedy` is true at least once.
ctx = [rng.randrange(128) for _ in range(6)]
seq = list(ctx)
with torch.no_grad():
    for _ in range(3):
        seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
requests.append({"id": "greedy", "context": ctx, "continuation": seq[len(ctx):]})
with torch.no_grad():
    for r in requests:
        whole = r["context"] + r["continuation"]
        inp = whole[-(window + 1):][:-1]
        n = len(r["continuation"])
        logp = torch.log_softmax(model(torch.tensor([inp])).logits[0].float(), -1)[-n:]
        tgt = torch.tensor(r["continuation"])
        r["logprob"] = float(logp.gather(1, tgt[:, None]).sum())
        r["greedy"] = bool((logp.argmax(-1) == tgt).all())
with open(os.path.join(out, "loglik.json"), "w") as f:
    json.dump({"window": window, "requests": requests}, f, indent=1)
print(len(requests), "requests;", sum(r["greedy"] for r in requests), "greedy")
