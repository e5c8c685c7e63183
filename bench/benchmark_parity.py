#!/usr/bin/env python3
"""Score a `benchmark` stage's multiple-choice tasks with transformers and
compare with Tailor's per-item results (same model, same prompts).

    bash bench/benchmark_parity.sh      # runs this with the reference venv

Arguments: HF model directory (from `tailor import`), the pipeline file's
directory, the stage's items.jsonl, the variant to compare (`base`), then
TASK=PATH[:DELIM] per task (DELIM: the task's target_delimiter, default a
space; `none` for ""). Zero-shot only (what the SmolLM2 example uses).

Prompts and tokens are built here independently with the model's
tokenizer the way lm-evaluation-harness builds them: trailing whitespace of
the context moves to the continuation; the continuation's tokens are those
of context + continuation after the context's own; where a token spans the
boundary (the context's tokens are not a prefix), the continuation is
tokenized alone — Tailor's documented rule. Scores in float32 on the CPU:
log_softmax of the logits, summed over the continuation.

Prints: items, same pick (acc and acc_norm), accuracy both ways, max and
mean |Δ| of per-choice log-probabilities.
"""
import json
import sys

import torch
from transformers import AutoTokenizer, LlamaForCausalLM



def pair(tok, context, continuation):
    """Context and continuation token ids, split as lm-evaluation-harness
    splits them, with Tailor's rule for a token spanning the boundary."""
    enc = lambda text: tok(text, add_special_tokens=False)["input_ids"]
    n = len(context) - len(context.rstrip())
    if n:
        context, continuation = context[:-n], context[-n:] + continuation
    whole, ctx = enc(context + continuation), enc(context)
    if len(whole) > len(ctx) and whole[: len(ctx)] == ctx:
        return ctx, whole[len(ctx):]
    return ctx, enc(continuation)


@torch.no_grad()
def logprob(model, ctx, cont):
    """Summed float32 log-probability of `cont` after `ctx`."""
    ids = torch.tensor([(ctx + cont)[:-1]])
    logp = torch.log_softmax(model(ids).logits[0].float(), -1)[-len(cont):]
    return float(logp.gather(1, torch.tensor(cont)[:, None]).sum())


def main():
    model_dir, root, items_file, variant, *task_args = sys.argv[1:]
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    torch.set_num_threads(2)
    ours = {}
    for line in open(items_file, encoding="utf-8"):
        r = json.loads(line)
        if r["variant"] == variant:
            ours[(r["task"], r["id"])] = r
    n = same = same_norm = right_ours = right_ref = 0
    deltas = []
    for arg in task_args:
        name, spec = arg.split("=", 1)
        path, _, delim = spec.partition(":")
        delim = " " if delim == "" else ("" if delim == "none" else delim)
        for line in open(f"{root}/{path}", encoding="utf-8"):
            item = json.loads(line)
            o = ours.get((name, item["id"]))
            if o is None:
                continue
            lps = [logprob(model, *pair(tok, item["context"], delim + c)) for c in item["choices"]]
            pick = max(range(len(lps)), key=lambda i: (lps[i], -i))
            norm = [lp / max(1, len(c)) for lp, c in zip(lps, item["choices"])]
            pick_norm = max(range(len(norm)), key=lambda i: (norm[i], -i))
            n += 1
            same += pick == o["pick"]
            same_norm += pick_norm == o["pick_norm"]
            right_ours += o["pick"] == item["gold"]
            right_ref += pick == item["gold"]
            deltas += [abs(a - b) for a, b in zip(lps, o["logprobs"])]
    print(json.dumps({
        "items": n,
        "same_pick": same,
        "same_pick_norm": same_norm,
        "acc_tailor": round(right_ours / max(n, 1), 6),
        "acc_transformers": round(right_ref / max(n, 1), 6),
        "max_abs_logprob_diff": max(deltas) if deltas else None,
        "mean_abs_logprob_diff": sum(deltas) / max(len(deltas), 1),
    }))


if __name__ == "__main__":
    main()
