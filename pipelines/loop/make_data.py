#!/usr/bin/env python3
"""Make the data of the improve-and-retrain example (deterministic; seed 7).

    python3 pipelines/loop/make_data.py pipelines/loop/data

Support requests in English and Japanese, each labelled with one intent:
refund, shipping, password, cancel, invoice, address. The training file has
the kind of error real annotation has: every refund request that mentions
being charged ("charged twice", "二重に請求") was labelled `invoice` by an
annotator who keyed on the word. `probe.jsonl` (reviewed by a person after
the first evaluation) and `exam.jsonl` (never reviewed, for the final
check) are labelled correctly. `fixes.jsonl` is what the review produced, in
the format `review.html` exports: the failed probe cases with the right
label, and the training records the reviewer found with the same mistake,
each with `meta.fix_of` naming the record it corrects.
"""
import json, os, random, sys

out = sys.argv[1] if len(sys.argv) > 1 else "data"
rng = random.Random(7)
items = ["order", "package", "parcel", "jacket", "laptop", "headset", "book", "lamp", "chair", "camera"]
items_ja = ["注文", "荷物", "ジャケット", "ノートパソコン", "ヘッドセット", "本", "ランプ", "椅子", "カメラ", "靴"]

EN = {
    "refund": ["I want my money back for the {i}", "Please refund the {i} I returned", "Can I get a refund for my {i}?",
               "The {i} broke, I would like a refund", "How do I get a refund on order {n}?"],
    "refund*": ["I was charged twice for the {i}, please refund me", "You charged me for a {i} I never got, refund please",
                "I got charged after returning the {i}, I want a refund", "Order {n} charged me two times, refund the extra"],
    "shipping": ["Where is my {i}?", "My {i} has not arrived yet", "When will order {n} be delivered?",
                 "Can you track the {i} for me?", "The {i} is late, where is it?"],
    "password": ["I forgot my password", "I cannot log in to account {n}", "How do I reset my password?",
                 "My login for account {n} does not work anymore", "Please help me change the password of account {n}",
                 "The reset link for account {n} never came"],
    "cancel": ["Please cancel order {n}", "I want to cancel the {i}", "Can I cancel my subscription?",
               "Stop my order for the {i}", "Cancel the {i} before it ships"],
    "invoice": ["Send me the invoice for order {n}", "I need a receipt for the {i}", "Where can I download my invoice?",
                "The invoice for the {i} has the wrong company name", "Please email the bill for order {n}"],
    "address": ["I moved, please update my address", "Change the delivery address for order {n}",
                "Ship the {i} to my new address", "My address on the account is wrong", "Update where the {i} goes"],
}
JA = {
    "refund": ["{i}の返金をお願いします", "返品した{i}の代金を返してください", "注文{n}を返金してほしいです",
               "{i}が壊れていたので返金を希望します"],
    "refund*": ["{i}の代金が二重に請求されたので返金してください", "届いていない{i}が請求されました。返金をお願いします",
                "返品後も{i}が請求されています。返金してください"],
    "shipping": ["{i}はいつ届きますか", "{i}がまだ届きません", "注文{n}の配送状況を教えてください", "{i}の到着が遅れています"],
    "password": ["パスワードを忘れました", "アカウント{n}にログインできません", "パスワードの再設定方法を教えてください", "アカウント{n}に入れなくなりました"],
    "cancel": ["注文{n}をキャンセルしてください", "{i}の注文を取り消したいです", "定期購入を解約できますか", "発送前に{i}をキャンセルしてください"],
    "invoice": ["注文{n}の請求書を送ってください", "{i}の領収書が必要です", "請求書はどこでダウンロードできますか", "{i}の請求書の宛名が違います"],
    "address": ["引っ越したので住所を変更してください", "注文{n}の配送先を変更したいです", "{i}を新しい住所に送ってください", "登録住所が間違っています"],
}

def make(n, lang_table, item_list):
    recs = []
    for label, templates in lang_table.items():
        for _ in range(n):
            t = rng.choice(templates)
            text = t.format(i=rng.choice(item_list), n=rng.randint(10000, 99999))
            recs.append((text, label))
    return recs

def split(recs, k):
    rng.shuffle(recs)
    return recs[:k], recs[k:]

en, ja = make(60, EN, items), make(45, JA, items_ja)
pool = list(dict.fromkeys(en + ja))  # unique texts, order kept
rng.shuffle(pool)
probe, rest = pool[:60], pool[60:]
exam, train = rest[:60], rest[60:]

def dump(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")

def truth(label):
    return label.rstrip("*")

def annotated(label):
    # The annotation error: charged-and-refund requests became invoices.
    return "invoice" if label == "refund*" else label

train_rows = [{"prompt": t, "completion": annotated(l), "meta": {"case": f"train-{k}"}} for k, (t, l) in enumerate(train)]
dump(os.path.join(out, "requests.jsonl"), train_rows)
dump(os.path.join(out, "probe.jsonl"), [{"prompt": t, "completion": truth(l), "meta": {"case": f"probe-{k}"}} for k, (t, l) in enumerate(probe)])
dump(os.path.join(out, "exam.jsonl"), [{"prompt": t, "completion": truth(l), "meta": {"case": f"exam-{k}"}} for k, (t, l) in enumerate(exam)])
fixes = [{"prompt": t, "completion": "refund", "meta": {"fix_of": f"probe-{k}", "verdict": "fix"}} for k, (t, l) in enumerate(probe) if l == "refund*"]
fixes += [{"prompt": r["prompt"], "completion": "refund", "meta": {"fix_of": r["meta"]["case"], "verdict": "fix"}} for r, (_, l) in zip(train_rows, train) if l == "refund*"]
dump(os.path.join(out, "fixes.jsonl"), fixes)
print(f"train {len(train_rows)} (mislabelled {sum(1 for _, l in train if l == 'refund*')}), probe {len(probe)}, exam {len(exam)}, fixes {len(fixes)}")
