#!/usr/bin/env python3
"""Make the NF4 fixture for tailor-train from bitsandbytes (the reference QLoRA code).

    CUDA_VISIBLE_DEVICES= .venv/bin/python train/tests/make_nf4_fixture.py train/tests/fixtures/nf4

Needs torch==2.13.0 and bitsandbytes (0.50, whose CPU backend quantizes NF4); for example
`pip install --target /tmp/bnb torch==2.13.0 bitsandbytes==0.50.0` and `PYTHONPATH=/tmp/bnb`. For a known
tensor (torch.manual_seed(0), shapes that leave a partial block of 64 and a partial block
of 256 absmax values) it writes the input, bitsandbytes' packed NF4 bytes, its absmax per
block, its dequantized weight, and the same with double quantization (compress_statistics):
8-bit absmax codes, the second-level scales, the offset, bitsandbytes' dynamic code table
and the dequantized weight.
"""
import os, sys
import torch
import bitsandbytes.functional as F
from safetensors.torch import save_file

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
tensors = {}
for name, shape in {"a": (96, 200), "b": (7, 100)}.items():
    x = torch.randn(*shape) * 0.05
    x[0, :5] = torch.tensor([0.0, 1.0, -1.0, 0.5, -0.25])
    q, st = F.quantize_4bit(x, blocksize=64, quant_type="nf4", compress_statistics=False)
    tensors[f"{name}.x"] = x.contiguous()
    tensors[f"{name}.packed"] = q.reshape(-1).contiguous()
    tensors[f"{name}.absmax"] = st.absmax.float().contiguous()
    tensors[f"{name}.y"] = F.dequantize_4bit(q, st).float().contiguous()
    q2, st2 = F.quantize_4bit(x, blocksize=64, quant_type="nf4", compress_statistics=True)
    assert torch.equal(q2, q)
    tensors[f"{name}.dq.absmax_q"] = st2.absmax.reshape(-1).contiguous()
    tensors[f"{name}.dq.scale"] = st2.state2.absmax.float().contiguous()
    tensors[f"{name}.dq.offset"] = st2.offset.reshape(1).float().contiguous()
    tensors[f"{name}.dq.y"] = F.dequantize_4bit(q2, st2).float().contiguous()
# Edge cases. Values exactly on the midpoint between two NF4 levels (float32, as bitsandbytes
# computes them), in a block whose absmax is 1 so the scaled value is the midpoint itself:
# bitsandbytes takes the lower level.
code = F.get_4bit_type("nf4", device="cpu").float()
mid = torch.cat([(code[:-1] + code[1:]) / 2, torch.tensor([1.0])]).reshape(1, 16)
# Odd element counts: the last byte's low nibble is what bitsandbytes packs for the padding.
cases = {"mid": mid}
for rows, cols in [(1, 1), (1, 3), (3, 5), (5, 13), (1, 127)]:
    torch.manual_seed(rows * 1000 + cols)
    cases[f"odd{rows * cols}"] = torch.randn(rows, cols) * 0.05
for name, x in cases.items():
    q, st = F.quantize_4bit(x, blocksize=64, quant_type="nf4", compress_statistics=False)
    tensors[f"{name}.x"] = x.contiguous()
    tensors[f"{name}.packed"] = q.reshape(-1).contiguous()
    tensors[f"{name}.absmax"] = st.absmax.float().contiguous()
    tensors[f"{name}.y"] = F.dequantize_4bit(q, st).float().contiguous()
tensors["nf4_code"] = F.get_4bit_type("nf4", device="cpu").float().contiguous()
tensors["dynamic_code"] = F.create_dynamic_map(signed=True).float().contiguous()
save_file(tensors, os.path.join(out, "bnb.safetensors"))
print({k: tuple(v.shape) for k, v in tensors.items()})
