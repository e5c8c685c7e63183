#!/usr/bin/env python3
"""Make the parity fixtures for tailor-train from transformers and PEFT.

    peer-train/venv/bin/python train/tests/make_fixtures.py train/tests/fixtures

Needs torch==2.13.0, transformers, peft, safetensors (see README, "reference stack").
Writes, per model, a Hugging Face directory (config.json, model.safetensors) and
expected.safetensors with `input_ids` (int64 [2, 12]) and `logits` (float32) from
LlamaForCausalLM in float32 on CPU; and a PEFT LoRA adapter with random (non-zero)
A and B plus the logits of the adapted model. Deterministic (torch.manual_seed).
"""
import os
import sys

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

out = sys.argv[1]
torch.manual_seed(0)
ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(1))

models = {
    # GQA (4 query heads over 2 key/value heads), tied embeddings.
    "llama_gqa_tied": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=128, tie_word_embeddings=True, rms_norm_eps=1e-5,
                           rope_theta=10000.0, max_position_embeddings=256),
    # Untied head, no GQA, Llama-3 RoPE scaling and a large rope_theta.
    "llama3_untied": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=4, vocab_size=128, tie_word_embeddings=False, rms_norm_eps=1e-6,
                          rope_theta=500000.0, max_position_embeddings=256,
                          rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                        "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
}
for name, kw in models.items():
    cfg = LlamaConfig(**kw)
    model = LlamaForCausalLM(cfg).eval()
    # Non-trivial norms, so a wrong norm would show.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    d = os.path.join(out, name)
    model.save_pretrained(d, safe_serialization=True)
    with torch.no_grad():
        logits = model(ids).logits.float()
    save_file({"input_ids": ids.contiguous(), "logits": logits.contiguous()}, os.path.join(d, "expected.safetensors"))
    print(name, tuple(logits.shape), float(logits.abs().max()))

# A PEFT adapter on the first model, with random A and B.
base = LlamaForCausalLM.from_pretrained(os.path.join(out, "llama_gqa_tied")).eval()
lcfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0,
                  init_lora_weights=False, task_type="CAUSAL_LM")
peft_model = get_peft_model(base, lcfg).eval()
with torch.no_grad():
    for n, p in peft_model.named_parameters():
        if "lora_" in n:
            p.copy_(0.05 * torch.randn_like(p))
    logits = peft_model(ids).logits.float()
ad = os.path.join(out, "peft_adapter")
peft_model.save_pretrained(ad)
save_file({"input_ids": ids.contiguous(), "logits": logits.contiguous()}, os.path.join(ad, "expected.safetensors"))
print("peft_adapter", tuple(logits.shape))
