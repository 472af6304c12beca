"""Texts that tokenizer tests run through both the engine and a reference: curated hard cases
(scripts, emoji, code, numbers, whitespace runs, contractions) and seeded random ones (slices
of this repository's sources, random strings over a mixed alphabet)."""

import random
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CURATED = [
    "The capital of France is", "Hello world!\n\nNew  para", " leading space", "trailing ",
    "  two leading", "tabs\tand\t\ttabs", "line\nbreaks\n\n\nthree\n\n\n\n\nfive", "   ", "\n",
    "Numbers: 1234567890 3.14159 1,000,000 2026-11-23", "emoji 🤖🎉 👨‍👩‍👧 ok",
    "中文分词测试，这是一个句子。", "日本語のテキストです。カタカナ、ひらがな。", "Привет, как дела?",
    "مرحبا بالعالم", "हिन्दी पाठ", "Ελληνικά κείμενα", "한국어 텍스트입니다",
    "def f(x):\n    return x**2  # square\n", "for (int i = 0; i < n; ++i) { a[i] += b[i]; }",
    "https://example.com/path?q=1&r=two#frag", "ÀÉÎÕÜ àéîõü ß ﬁ", "private \ue000\ue123 \U0001f9ff",
    "control \x01\x02 chars", "a" * 300, "It's we'll they'd I'm", "<table><tr><td>x</td></tr>",
    "zero\u200bwidth", "combining e\u0301 vs é", "$$\\frac{a}{b}$$", " \n \n ",
]

# Digits, contractions, case and newline forms where byte-level BPE pre-tokenizers differ.
BPE_EXTRA = [
    "x = 12345678901234567890", "3.14e-10 and -0.5", "IP 192.168.0.1:8080", "The 1990's and 80s",
    "ＡＢＣ fullwidth １２３", "Ⅻ ½ ² ³ ٣٤ ๕", "DON'T Don'T don't we'VE", "crlf\r\nline\r\n\r\n",
    "a\u00a0b\u2009c\u3000d", "😀😃😄 🇺🇸 🏳️‍🌈 " + "🙂" * 10, "   leading and trailing   ",
    "import numpy as np\nnp.array([1, 2, 3])\n\n\nclass A:\n\tpass\n",
    "    if x:\n        return {'a': 1}\n    else:\n        return None\n",
    "fn main() -> i32 { println!(\"{}\", 1_000); 0 }", "SELECT * FROM t WHERE id=42;",
    "'quoted' \"double\" `back` ‘curly’ “curly”", "...!!!???,,,;;;", "$100 + 50% = ~€150",
    "ÄÖÜäöü ÇçŞş İı Ǆǅǆ ﬀ", "Ελληνικά ΑΒΓ αβγ", "Tiếng Việt có dấu", "עברית ועוד",
    "กรุงเทพมหานคร", "ქართული", "ᏣᎳᎩ", "\U0001d400\U0001d41a math", "<|im_start|> is text here",
]


def generated_texts(seed=5):
    rng = random.Random(seed)
    texts = []
    sources = sorted(REPO.glob("engine/**/*.cpp")) + sorted(REPO.glob("tests/python/*.py"))
    for f in sources[:40]:
        s = f.read_text(encoding="utf-8")
        for _ in range(5):
            a = rng.randrange(max(1, len(s) - 300))
            texts.append(s[a:a + rng.randrange(1, 300)])
    alphabet = ("abcXYZ 0123456789 \n\t.,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`éüßçñ中文日本語한국어"
                "Привет مرحبا हिन्दी🤖🎉\u200b\u00a0\u3000")
    for _ in range(300):
        texts.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 80))))
    return texts
