"""Writes tests/fixtures/metrics/reference.json: reference values for the
Rust metrics in libs/metric, from the Python implementations they
follow.

  * sacrebleu's chrF with its defaults (CHRF(): char_order=6, word_order=0,
    beta=2, whitespace removed, effective-order averaging), per sentence
    and over the whole corpus (statistics summed), on sacrebleu's 0-100 scale;
  * rouge-score's ROUGE-L F-measure (RougeScorer(["rougeL"],
    use_stemmer=False)), for English pairs only (Tailor scores mostly-CJK
    references on characters; rouge-score would give 0 there), 0-1.

Deterministic: a fixed list of pairs, no randomness. Run from the repository
root with the project's venv:

    .venv/bin/pip install sacrebleu rouge-score
    .venv/bin/python libs/metric/tests/make_metric_fixture.py
"""

import json
import pathlib

import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.metrics import CHRF

# (hypothesis, reference, english?)
PAIRS = [
    ("The cat sat on the mat.", "The cat is on the mat.", True),
    ("the cat sat on the mat", "the cat sat on the mat", True),
    ("A quick brown fox jumps over the lazy dog", "The quick brown fox jumped over the lazy dog.", True),
    ("Paris", "Paris", True),
    ("paris", "Paris", True),
    ("The capital of France is Paris.", "Paris", True),
    ("", "The reference is not empty.", True),
    ("The hypothesis is not empty.", "", True),
    ("", "", True),
    ("ab", "abc", True),
    ("abc", "abd", True),
    ("aaa aaa", "a", True),
    ("It's 2024 -- isn't it?", "It is 2024, is it not?", True),
    ("Hello,\tworld!\n  Second   line.", "Hello world! Second line.", True),
    ("naïve café résumé", "naive cafe resume", True),
    ("1 2 3 4 5 6 7", "1 2 3 4 5 6 7 8", True),
    ("Machine translation is hard", "Machine translation is difficult", True),
    ("the the the the", "the cat", True),
    ("I love 🍣 and 🍜!", "I love sushi and ramen!", True),
    ("今日は晴れです。", "今日は晴れです。", False),
    ("今日は晴れです", "今日は雨です", False),
    ("猫がマットに座った", "猫はマットの上に座った", False),
    ("猫が好き", "猫が好きだ", False),
    ("東京\u3000タワーに行きました", "東京タワーに行きました。", False),
    ("ｶﾀｶﾅのテスト", "カタカナのテスト", False),
    ("", "日本語の文です。", False),
    ("ありがとうございます！", "", False),
    ("これはペンです。あれは本です。", "これは本です。あれはペンです。", False),
    ("Tailor は日本語の文章を扱う", "Tailor は日本語を扱います", False),
    ("答えは１２３です", "答えは123です", False),
]


def main() -> None:
    chrf = CHRF()
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    out = []
    for hyp, ref, english in PAIRS:
        row = {"hyp": hyp, "ref": ref, "chrf": chrf.sentence_score(hyp, [ref]).score}
        row["rouge_l"] = scorer.score(ref, hyp)["rougeL"].fmeasure if english else None
        out.append(row)
    hyps = [h for h, _, _ in PAIRS]
    refs = [r for _, r, _ in PAIRS]
    fixture = {
        "generator": "libs/metric/tests/make_metric_fixture.py",
        "sacrebleu": sacrebleu.__version__,
        "chrf_signature": str(chrf.get_signature()),
        "corpus_chrf": CHRF().corpus_score(hyps, [refs]).score,
        "pairs": out,
    }
    path = pathlib.Path(__file__).parent / "fixtures" / "metrics" / "reference.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path} ({len(out)} pairs)")


if __name__ == "__main__":
    main()
