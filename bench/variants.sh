#!/usr/bin/env bash
# Spelling-variant (表記ゆれ) groups on real Japanese text, for judging their precision by hand: the
# Debian reference manual in Japanese (Debian package debian-reference-ja, GPL-2+), its HTML
# chapters reduced to paragraphs (code blocks dropped), then every group the default rules find,
# with counts and one context per spelling. The judged list and the precision are in
# bench/README.md.
#
#   apt-get install debian-reference-ja   # once
#   bash bench/variants.sh > variants.txt
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${SRC:-/usr/share/debian-reference}
ls "$SRC"/ch*.ja.html >/dev/null 2>&1 || { echo "no $SRC/ch*.ja.html: apt-get install debian-reference-ja" >&2; exit 1; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
python3 - "$SRC" "$OUT/paragraphs.txt" <<'PY'
import glob, html.parser, sys
BLOCK = {"p", "li", "td", "th", "h1", "h2", "h3", "h4", "h5", "dt", "dd", "title", "caption", "div", "br"}
class P(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.out, self.cur, self.skip = [], [], 0
    def flush(self):
        t = " ".join("".join(self.cur).split())
        if t:
            self.out.append(t)
        self.cur = []
    def handle_starttag(self, tag, a):
        if tag in ("pre", "script", "style"):
            self.skip += 1
        elif tag in BLOCK:
            self.flush()
    def handle_endtag(self, tag):
        if tag in ("pre", "script", "style"):
            self.skip -= 1
        elif tag in BLOCK:
            self.flush()
    def handle_data(self, d):
        if not self.skip:
            self.cur.append(d)
paras = []
for f in sorted(glob.glob(sys.argv[1] + "/*.ja.html")):
    p = P()
    p.feed(open(f, encoding="utf-8").read())
    p.flush()
    paras += p.out
open(sys.argv[2], "w").write("\n\n".join(paras))
PY
TAILOR_VARIANTS_TEXT="$OUT/paragraphs.txt" cargo test --release -q -p tailor-text --test variants_real -- --ignored --nocapture 2>&1 | grep -v '^running\|^test \|^$'
