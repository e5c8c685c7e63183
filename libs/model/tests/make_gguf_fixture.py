#!/usr/bin/env python3
"""Write the GGUF fixtures for `tailor_model` (deterministic; needs gguf-py, numpy, safetensors, tokenizers).

  .venv/bin/python libs/model/tests/make_gguf_fixture.py

Outputs in libs/model/tests/fixtures/gguf/:
  tiny.gguf                  the tiny HF Llama of train/tests/fixtures/llama_gqa_tied, q/k permuted the way
                             llama.cpp's convert_hf_to_gguf.py does, tensors in F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q5_0/Q5_1,
                             a 128-entry byte-level BPE vocabulary with ChatML control tokens and a chat template
  expected.safetensors       HF-named float32 tensors as gguf-py dequantizes them (q/k un-permuted)
  tokenizer_expected.json    ids the `tokenizers` library gives for a few strings with the same vocabulary
                             (key "smollm"), and with the tok_*.gguf vocabularies (keys "llama-bpe", "qwen2")
  tok_llama-bpe.gguf, tok_qwen2.gguf  tokenizer-only GGUFs (no tensors) for the Llama 3 / Qwen 2 pre-tokenizers,
                             whose expected ids use transformers' own split regexes
  kquants.gguf               random-but-valid Q4_K / Q5_K / Q6_K tensors (+ one Q2_K), architecture "kquant-test",
                             and two Llama 3.1 / 3.2 `rope_freqs` tensors (head_dim 64, theta 500000)
  kquants_expected.safetensors  gguf-py's dequantization of the Q4_K / Q5_K / Q6_K tensors
"""
import json, os
import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer
from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SRC = os.path.join(ROOT, 'train', 'tests', 'fixtures', 'llama_gqa_tied')
OUT = os.path.join(HERE, 'fixtures', 'gguf')

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
# GGUF name, HF name, storage type in layer 0, in layer 1
LINEARS = [('attn_q', 'self_attn.q_proj', Q.Q4_0, Q.Q4_1), ('attn_k', 'self_attn.k_proj', Q.Q4_0, Q.Q5_1),
           ('attn_v', 'self_attn.v_proj', Q.Q5_0, Q.Q4_1), ('attn_output', 'self_attn.o_proj', Q.Q5_1, Q.Q5_0),
           ('ffn_gate', 'mlp.gate_proj', Q.F16, Q.Q4_1), ('ffn_up', 'mlp.up_proj', Q.BF16, Q.Q8_0),
           ('ffn_down', 'mlp.down_proj', Q.Q4_0, Q.F16)]


def byte_symbols():
    """GPT-2 bytes_to_unicode, as (byte, symbol) pairs."""
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def vocabulary():
    """3 ChatML control tokens, 96 byte symbols (printable ASCII, space, newline), 28 merges, 1 user-defined."""
    sym = byte_symbols()
    tokens = ['<|endoftext|>', '<|im_start|>', '<|im_end|>']
    tokens += [sym[b] for b in list(range(33, 127)) + [32, 10]]
    pairs = ['h e', 'Ġ t', 'Ġt he', 'i n', 'e r', 'o n', 'a n', 'r e', 'Ġ a', 'e n', 'Ġ s', 'o r', 'Ġ w', 'e s',
             'l l', 'Ġ c', 'a t', 'o u', 'i t', 'Ġ h', 'he l', 'hel l', 'Ġ he', 'Ġhe ll', 'Ġhell o', 'Ġw or', 'Ġwor l', 'Ġworl d']
    for p in pairs:
        a, b = p.split(' ')
        assert a in tokens and b in tokens and a + b not in tokens, p
        tokens.append(a + b)
    tokens.append('<tool>')
    assert len(tokens) == 128
    types = [3, 3, 3] + [1] * 124 + [4]
    return tokens, types, pairs


def hf_tokenizer(tokens, types, merges, pre='smollm', bos=None):
    """The tokenizer Hugging Face ships for this pre-tokenizer family (Llama 3: tiktoken-style, BOS added)."""
    added = [{'id': i, 'content': t, 'single_word': False, 'lstrip': False, 'rstrip': False, 'normalized': False,
              'special': types[i] == 3} for i, t in enumerate(tokens) if types[i] in (3, 4)]
    byte_level = {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': pre == 'smollm'}
    first = ({'type': 'Digits', 'individual_digits': True} if pre == 'smollm' else
             {'type': 'Split', 'pattern': {'Regex': GGUF_PRE_TOKENIZER_SPLITS[pre]}, 'behavior': 'Isolated', 'invert': False})
    post = None if bos is None else {'type': 'TemplateProcessing', 'single': [{'SpecialToken': {'id': tokens[bos], 'type_id': 0}}, {'Sequence': {'id': 'A', 'type_id': 0}}],
                                     'pair': [{'Sequence': {'id': 'A', 'type_id': 0}}, {'Sequence': {'id': 'B', 'type_id': 1}}],
                                     'special_tokens': {tokens[bos]: {'id': tokens[bos], 'ids': [bos], 'tokens': [tokens[bos]]}}}
    tj = {'version': '1.0', 'truncation': None, 'padding': None, 'added_tokens': added,
          'normalizer': {'type': 'NFC'} if pre == 'qwen2' else None,
          'pre_tokenizer': {'type': 'Sequence', 'pretokenizers': [first, byte_level]},
          'post_processor': post, 'decoder': {'type': 'ByteLevel', 'add_prefix_space': True, 'trim_offsets': True, 'use_regex': True},
          'model': {'type': 'BPE', 'dropout': None, 'unk_token': None, 'continuing_subword_prefix': None,
                    'end_of_word_suffix': None, 'fuse_unk': False, 'byte_fallback': False, 'ignore_merges': pre == 'llama-bpe',
                    'vocab': {t: i for i, t in enumerate(tokens)}, 'merges': merges}}
    return Tokenizer.from_str(json.dumps(tj))


def add_vocabulary(w, tokens, types, merges, pre, add_bos):
    w.add_tokenizer_model('gpt2')
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(add_bos)
    w.add_chat_template(CHATML)


TEXTS = ['Hello world', 'the theme is hello', '<|im_start|>user\nhi 123<|im_end|>\n', 'at <tool> 42!']
# Digit grouping (Llama 3: up to 3, Qwen 2: 1), whole-word vocabulary hits (Llama 3 ignores merges), NFC (Qwen 2).
PRE_TEXTS = TEXTS + ['12345 678', ' xyz and  xyz', 'cafe\u0301 caf\u00e9', "I'M here, WE'LL see\r\n\n  ok"]


def tokenizer_only(pre, expected):
    """A GGUF holding only a (slightly larger) vocabulary, for pre-tokenizer `pre`."""
    tokens, types, merges = vocabulary()
    tokens = tokens[:-1] + ['12', '123', 'Ġxyz', 'Ã', '©', 'Ì'] + tokens[-1:]
    types = [3, 3, 3] + [1] * (len(tokens) - 4) + [4]
    merges = merges + ['1 2', '12 3']
    add_bos = pre == 'llama-bpe'
    w = gguf.GGUFWriter(os.path.join(OUT, f'tok_{pre}.gguf'), 'llama')
    add_vocabulary(w, tokens, types, merges, pre, add_bos)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    tok = hf_tokenizer(tokens, types, merges, pre, 1 if add_bos else None)
    expected[pre] = [{'text': s, 'ids': tok.encode(s).ids} for s in PRE_TEXTS]


def permute(w, n_head):
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def stored(writer, name, w, qtype):
    """Add `w` (HF row-major float32) as `qtype`; return what gguf-py's dequantize gives back."""
    data = w.astype(np.float32) if qtype == Q.F32 else gguf.quants.quantize(w.astype(np.float32), qtype)
    writer.add_tensor(name, data, raw_dtype=qtype)
    return gguf.quants.dequantize(data, qtype).astype(np.float32).reshape(w.shape)


def tiny():
    cfg = json.load(open(os.path.join(SRC, 'config.json')))
    sd = load_file(os.path.join(SRC, 'model.safetensors'))
    H, KVH, L = cfg['num_attention_heads'], cfg['num_key_value_heads'], cfg['num_hidden_layers']
    w = gguf.GGUFWriter(os.path.join(OUT, 'tiny.gguf'), 'llama')
    w.add_name('tiny-llama-gqa')
    w.add_block_count(L)
    w.add_context_length(cfg['max_position_embeddings'])
    w.add_embedding_length(cfg['hidden_size'])
    w.add_feed_forward_length(cfg['intermediate_size'])
    w.add_head_count(H)
    w.add_head_count_kv(KVH)
    w.add_rope_freq_base(cfg['rope_parameters']['rope_theta'])
    w.add_layer_norm_rms_eps(cfg['rms_norm_eps'])
    w.add_rope_dimension_count(cfg['head_dim'])
    w.add_vocab_size(cfg['vocab_size'])
    tokens, types, merges = vocabulary()
    add_vocabulary(w, tokens, types, merges, 'smollm', False)
    exp = {'model.embed_tokens.weight': stored(w, 'token_embd.weight', sd['model.embed_tokens.weight'], Q.Q8_0)}
    for i in range(L):
        p, hp = f'blk.{i}.', f'model.layers.{i}.'
        exp[hp + 'input_layernorm.weight'] = stored(w, p + 'attn_norm.weight', sd[hp + 'input_layernorm.weight'], Q.F32)
        for g, h, t0, t1 in LINEARS:
            x = sd[hp + h + '.weight']
            nh = H if g == 'attn_q' else KVH if g == 'attn_k' else None
            y = stored(w, p + g + '.weight', permute(x, nh) if nh else x, t1 if i else t0)
            exp[hp + h + '.weight'] = unpermute(y, nh) if nh else y
        exp[hp + 'post_attention_layernorm.weight'] = stored(w, p + 'ffn_norm.weight', sd[hp + 'post_attention_layernorm.weight'], Q.F32)
    exp['model.norm.weight'] = stored(w, 'output_norm.weight', sd['model.norm.weight'], Q.F32)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    save_file({k: np.ascontiguousarray(v) for k, v in exp.items()}, os.path.join(OUT, 'expected.safetensors'))
    tok = hf_tokenizer(tokens, types, merges)
    return {'smollm': [{'text': s, 'ids': tok.encode(s).ids} for s in TEXTS]}


def kquants():
    rng = np.random.default_rng(1234)
    w = gguf.GGUFWriter(os.path.join(OUT, 'kquants.gguf'), 'kquant-test')
    w.add_custom_alignment(64)
    exp = {}
    # type, bytes per 256-element block, offsets of its f16 scales (d, dmin)
    for qt, size, f16_at in [(Q.Q4_K, 144, (0, 2)), (Q.Q5_K, 176, (0, 2)), (Q.Q6_K, 210, (208,)), (Q.Q2_K, 84, (80, 82))]:
        blocks = rng.integers(0, 256, size=(2, 2, size), dtype=np.uint8)  # 2 rows x 512 columns
        for at in f16_at:
            blocks[..., at:at + 2] = rng.uniform(0.001, 0.1, size=(2, 2)).astype(np.float16).view(np.uint8).reshape(2, 2, 2)
        data = blocks.reshape(2, 2 * size)
        w.add_tensor(qt.name.lower(), data, raw_dtype=qt)
        if qt != Q.Q2_K:
            exp[qt.name.lower()] = gguf.quants.dequantize(data, qt).astype(np.float32)
    # rope_freqs.weight the way convert_hf_to_gguf.py writes it for Llama 3.1 (factor 8) and 3.2 (factor 32)
    for name, factor in [('rope_freqs_llama31', 8.0), ('rope_freqs_llama32', 32.0)]:
        w.add_tensor(name, llama3_rope_factors(500000.0, 64, factor, 1.0, 4.0, 8192))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    save_file(exp, os.path.join(OUT, 'kquants_expected.safetensors'))


def llama3_rope_factors(base, dim, factor, low_freq_factor, high_freq_factor, old_context_len):
    """LlamaModel.generate_extra_tensors in llama.cpp's convert_hf_to_gguf.py, in torch float32 as there."""
    import math, torch
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    low_freq_wavelen, high_freq_wavelen = old_context_len / low_freq_factor, old_context_len / high_freq_factor
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            out.append(1)
        elif wavelen > low_freq_wavelen:
            out.append(factor)
        else:
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(out, dtype=torch.float32).numpy()


if __name__ == '__main__':
    os.makedirs(OUT, exist_ok=True)
    expected = tiny()
    for pre in ['llama-bpe', 'qwen2']:
        tokenizer_only(pre, expected)
    json.dump(expected, open(os.path.join(OUT, 'tokenizer_expected.json'), 'w'), indent=1)
    kquants()
    for f in sorted(os.listdir(OUT)):
        print(f, os.path.getsize(os.path.join(OUT, f)))
