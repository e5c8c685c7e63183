#!/usr/bin/env python3
"""Write the GGUF fixtures for `tailor_stages::model` (deterministic; needs gguf-py, numpy, safetensors, tokenizers).

  .venv/bin/python stages/tests/make_gguf_fixture.py

Outputs in stages/tests/fixtures/gguf/:
  tiny.gguf                  the tiny HF Llama of train/tests/fixtures/llama_gqa_tied, q/k permuted the way
                             llama.cpp's convert_hf_to_gguf.py does, tensors in F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q5_0/Q5_1,
                             a 128-entry byte-level BPE vocabulary with ChatML control tokens and a chat template
  expected.safetensors       HF-named float32 tensors as gguf-py dequantizes them (q/k un-permuted)
  tokenizer_expected.json    ids the `tokenizers` library gives for a few strings with the same vocabulary
  kquants.gguf               random-but-valid Q4_K / Q5_K / Q6_K tensors (+ one Q2_K), architecture "kquant-test"
  kquants_expected.safetensors  gguf-py's dequantization of the Q4_K / Q5_K / Q6_K tensors
"""
import json, os
import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer

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


def hf_tokenizer(tokens, types, merges):
    added = [{'id': i, 'content': t, 'single_word': False, 'lstrip': False, 'rstrip': False, 'normalized': False,
              'special': types[i] == 3} for i, t in enumerate(tokens) if types[i] in (3, 4)]
    tj = {'version': '1.0', 'truncation': None, 'padding': None, 'added_tokens': added, 'normalizer': None,
          'pre_tokenizer': {'type': 'Sequence', 'pretokenizers': [
              {'type': 'Digits', 'individual_digits': True},
              {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': True}]},
          'post_processor': None, 'decoder': {'type': 'ByteLevel', 'add_prefix_space': True, 'trim_offsets': True, 'use_regex': True},
          'model': {'type': 'BPE', 'dropout': None, 'unk_token': None, 'continuing_subword_prefix': None,
                    'end_of_word_suffix': None, 'fuse_unk': False, 'byte_fallback': False, 'ignore_merges': False,
                    'vocab': {t: i for i, t in enumerate(tokens)}, 'merges': merges}}
    return Tokenizer.from_str(json.dumps(tj))


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
    w.add_tokenizer_model('gpt2')
    w.add_tokenizer_pre('smollm')
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML)
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
    texts = ['Hello world', 'the theme is hello', '<|im_start|>user\nhi 123<|im_end|>\n', 'at <tool> 42!']
    json.dump([{'text': s, 'ids': tok.encode(s).ids} for s in texts], open(os.path.join(OUT, 'tokenizer_expected.json'), 'w'), indent=1)


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
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    save_file(exp, os.path.join(OUT, 'kquants_expected.safetensors'))


if __name__ == '__main__':
    os.makedirs(OUT, exist_ok=True)
    tiny()
    kquants()
    for f in sorted(os.listdir(OUT)):
        print(f, os.path.getsize(os.path.join(OUT, f)))
