#!/usr/bin/env python3
"""Input of the scale benchmark (bench/scale_data.sh): N prompt/completion records, ~500 bytes each.

    python3 bench/make_many_records.py OUT.jsonl [--n 5000000] [--seed 0]

English-like sentences are made of letters drawn at English letter frequencies, Japanese-like ones
of kana and kanji (50,000 words each, a 200,000-sentence pool), so unrelated records share few character 3-grams, as
text of many topics does (the cost of near-duplicate search grows with that background similarity). A record is one
sentence of prompt and 3-6 sentences of completion. On top: ~10 % exact copies and ~5 % near copies
(one sentence of the completion replaced, or a few words dropped) of an earlier record, so that
dedup has work to do. Deterministic for a seed; standard library only. ~2.5 GB for 5 M records.
"""
import argparse
import json
import random

# Letters at their English frequencies (per mille).
EN_LETTERS = "etaoinshrdlcumwfgypbvkjxqz"
EN_FREQ = [127, 91, 82, 75, 70, 67, 63, 61, 60, 43, 40, 28, 28, 24, 24, 22, 20, 20, 20, 15, 10, 8, 2, 2, 1, 1]
JA_SYL = list("あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわん") + list(
    "学習評価品質重複形式前処理日本語英語文章質問回答理由方法結果確認設定変更実行開始終了")
JA_END = ["です。", "ます。", "でした。", "ました。", "だ。", "である。"]


def en_word(r):
    return "".join(r.choices(EN_LETTERS, weights=EN_FREQ, k=2 + int(r.random() * 7)))


def ja_word(r):
    return "".join(r.choice(JA_SYL) for _ in range(2 + int(r.random() * 3)))


def sentence(r, ja, en_words, ja_words):
    n = 6 + int(r.random() * 8)
    if ja:
        return "".join(r.choice(ja_words) + r.choice("はがをにでと") for _ in range(n - 1)) + r.choice(ja_words) + r.choice(JA_END)
    return " ".join(r.choice(en_words) for _ in range(n)).capitalize() + r.choice(".!?")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=5_000_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    r = random.Random(args.seed)
    en_words = [en_word(r) for _ in range(50_000)]
    ja_words = [ja_word(r) for _ in range(50_000)]
    pool = [(sentence(r, i % 3 == 0, en_words, ja_words), i % 3 == 0) for i in range(200_000)]
    ja_pool = [s for s, ja in pool if ja]
    en_pool = [s for s, ja in pool if not ja]
    recent = []  # a window of earlier records to copy from
    counts = {"base": 0, "exact": 0, "near": 0}
    with open(args.out, "w", encoding="utf-8") as f:
        for _ in range(args.n):
            u = r.random()
            if recent and u < 0.10:
                rec = r.choice(recent)
                counts["exact"] += 1
            elif recent and u < 0.15:
                p, c = r.choice(recent)
                parts = c.split("\n")
                k = int(r.random() * len(parts))
                src = ja_pool if any(ord(ch) > 0x3000 for ch in parts[k]) else en_pool
                parts[k] = r.choice(src)
                rec = (p, "\n".join(parts))
                counts["near"] += 1
            else:
                src = ja_pool if r.random() < 0.33 else en_pool
                prompt = r.choice(src)
                completion = "\n".join(r.choice(src) for _ in range(3 + int(r.random() * 4)))
                rec = (prompt, completion)
                counts["base"] += 1
                if len(recent) < 50_000:
                    recent.append(rec)
                else:
                    recent[int(r.random() * len(recent))] = rec
            f.write(json.dumps({"prompt": rec[0], "completion": rec[1]}, ensure_ascii=False))
            f.write("\n")
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
