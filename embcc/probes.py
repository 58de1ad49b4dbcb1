"""The built-in probe set `embcc verify` runs: held out from calibration, >= 100 texts, many languages,
1 token to past the maximum length, in an order that mixes lengths within every batch so padding matters."""

from __future__ import annotations

SENTENCES = [
    "How do I reset my password?",
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of Australia?",
    "Canberra is the capital city of Australia, not Sydney as many people assume.",
    "Machine learning models map text to dense vectors that capture meaning.",
    "Retrieval-augmented generation combines a search index with a language model.",
    "Please summarise the quarterly earnings report in three sentences.",
    "The patient was prescribed 20 mg of atorvastatin once daily.",
    "Water boils at 100 degrees Celsius at sea level.",
    "In 1969, Apollo 11 landed the first humans on the Moon.",
    "def add(a, b):\n    return a + b",
    "SELECT name, price FROM products WHERE price > 100 ORDER BY price DESC;",
    "for (let i = 0; i < items.length; i++) { total += items[i].price; }",
    "Error: connection refused (ECONNREFUSED) at 127.0.0.1:5432",
    "Wie spät ist es?",
    "Die Grüße aus München kamen überraschend früh an.",
    "Der Zug nach Köln hat heute zwanzig Minuten Verspätung.",
    "Où se trouve la gare la plus proche ?",
    "Les élèves ont présenté leurs travaux devant le jury.",
    "¿Dónde está la biblioteca?",
    "El niño comió una manzana y después se durmió.",
    "Il tempo oggi è bello e soleggiato.",
    "O gato está dormindo no sofá da sala.",
    "De fiets staat achter het huis.",
    "Kiedy odjeżdża następny pociąg do Krakowa?",
    "Как пройти в библиотеку?",
    "Москва — столица России и крупнейший город страны.",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "أين أقرب محطة قطار؟",
    "اللغة العربية تكتب من اليمين إلى اليسار.",
    "מה השעה עכשיו?",
    "दिल्ली भारत की राजधानी है।",
    "আমি ভাত খেতে ভালোবাসি।",
    "北京是中国的首都。",
    "机器学习模型将文本映射为稠密向量。",
    "東京は日本の首都です。",
    "今日はとても暑いですね。",
    "서울은 대한민국의 수도입니다.",
    "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย",
    "Hà Nội là thủ đô của Việt Nam.",
    "İstanbul, Türkiye'nin en kalabalık şehridir.",
    "Helsinki on Suomen pääkaupunki.",
    "Ndege wanaruka juu angani.",
    "Price: $1,299.99 (incl. 19% VAT) — order #A-2024-0042",
    "π ≈ 3.14159, e ≈ 2.71828, √2 ≈ 1.41421",
    "I love this! 😀🚀✨",
    "e-mail: someone@example.com, url: https://example.com/a?b=c&d=e",
    "Mixed Deutsch and English in one Satz, avec un peu de français.",
]

SHORT = ["a", "?", "OK", "7", "ß", "中", "🙂", "hi", "Straße", "naïve café", "x y", "ok ok"]

WHITESPACE = ["", " ", "double  space", "  leading spaces", "trailing spaces  ", "tab\tand\nnewline",
              "Ünïcödé  with   gaps", "a  b   c    d"]

QUERIES = [
    "best way to learn python", "symptoms of flu", "weather tomorrow", "cheap flights to lisbon",
    "how to bake sourdough bread", "Wer hat die Relativitätstheorie entwickelt?", "recette crêpes",
    "что такое нейронная сеть", "如何学习编程", "東京 観光 おすすめ", "vector database comparison",
    "int8 quantization accuracy loss", "GPU vs CPU inference cost", "beste Pizza in Berlin",
    "¿qué hora es?", "lowest price guarantee",
]


def _passage(i: int, words: int) -> str:
    """A passage of about `words` words built from the sentences, different for every i."""
    out: list[str] = []
    k = i
    while sum(len(s.split()) for s in out) < words:
        out.append(SENTENCES[k % len(SENTENCES)])
        k = k * 7 + 3
    return " ".join(out)


def probe_texts() -> list[str]:
    """>= 100 texts; every batch of 16 mixes short, medium and long texts; one exceeds 8,192 tokens."""
    short = SHORT + WHITESPACE + QUERIES
    medium = SENTENCES + [_passage(i, 40 + 9 * i) for i in range(12)]
    long = [_passage(i, 150 * (i + 1)) for i in range(6)] + [_passage(7, 900), _passage(99, 12000)]
    texts: list[str] = []
    pools = [short, medium, long]
    idx = [0, 0, 0]
    while any(i < len(p) for i, p in zip(idx, pools)):
        for j, p in enumerate(pools):
            take = (2, 5, 1)[j]
            texts.extend(p[idx[j] : idx[j] + take])
            idx[j] += take
    return texts


PROBES = probe_texts()
