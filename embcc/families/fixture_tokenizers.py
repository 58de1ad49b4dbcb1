"""Small but real tokenizers of the kinds Jina publishes, for random-weight test fixtures.

Two writers, both deterministic (same arguments -> same bytes) and offline:

* :func:`write_bert_wordpiece` -- BERT WordPiece, as used by jina-embeddings-v2 (English).
* :func:`write_xlmr_unigram` -- XLM-RoBERTa sentencepiece Unigram, as used by jina-embeddings-v3.

Vocabularies are learned from the tiny inline corpus below with the ``tokenizers`` / ``sentencepiece`` trainers
and then padded with unreachable filler tokens up to the requested vocabulary size, so fixtures can mimic the
published embedding-matrix shapes (30528 for v2, 250002 for v3) without shipping real vocabularies.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

_ENGLISH = (
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG; PACK MY BOX WITH FIVE DOZEN LIQUOR JUGS.",
    "Embeddings map sentences to vectors so that similar meanings end up close together.",
    "Jina AI trains multilingual text embedding models for search and retrieval.",
    "What is the capital of France? Paris is the capital of France.",
    "A transformer encoder reads the whole sequence at once, using self-attention.",
    "Please export the model to ONNX, then compare the outputs with PyTorch.",
    "The test suite checks cosine similarity, mean pooling and normalization.",
    "In 2023, the model supported sequences of up to 8192 tokens.",
    "Prices rose by 3.5% to $1,299.99 on 12/31/2024 at 10:45 a.m.",
    "Call +1 (555) 010-9999 or e-mail support@example.com for help!",
    "Visit https://example.org/docs?page=2&lang=en#section-4 for details.",
    "She said: \"It's not what you think; it's what you do.\"",
    "Weights, biases, and layer norms are stored in safetensors files.",
    "Searching, ranking, clustering and classification all use embeddings.",
    "I don't know whether they'll arrive before the meeting starts.",
    "The café served a crème brûlée, a jalapeño omelette and naïve rosé wine.",
    "Résumé, façade, coöperate, Zoë, Ångström and smørrebrød are loan words.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 256 1024 65536 3.14159 -7 1e-5.",
    "Symbols like @ # $ % ^ & * ( ) [ ] { } < > / \\ | ~ ` _ - + = ; : , . ? ! ' \" appear in code.",
    "def encode(texts: list[str]) -> np.ndarray: return model(texts)[0].mean(axis=1)",
    "for (int i = 0; i < n; ++i) { sum += x[i] * w[i]; }",
    "SELECT id, title FROM documents WHERE score >= 0.75 ORDER BY score DESC;",
    "<div class=\"result\">Hello, world!</div> <br/> &amp; &lt;tag&gt;",
    "x = {'key': [1, 2, 3], \"other\": None}  # a comment with CAPITALS",
    "Long words: internationalization, uncharacteristically, antidisestablishmentarianism.",
    "Running, runner, runs, ran; walking, walked, walks; tokenize, tokenizer, tokenization.",
    "The new release was great 👍 and everyone was happy 😀 about it.",
    "Machine learning models learn patterns from data and generalize to unseen examples.",
    "Retrieval augmented generation combines a retriever with a language model.",
    "Hello hello HELLO Hello, World WORLD world!",
)

_EUROPEAN = (
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Größere Modelle benötigen mehr Speicher, aber die Qualität ist höher.",
    "Straße, Mädchen, Bäume, schön, Übersetzung und Ärger sind deutsche Wörter.",
    "Können Sie mir bitte sagen, wie spät es ist?",
    "Le modèle transforme chaque phrase en un vecteur de nombres réels.",
    "Où est la bibliothèque ? Elle est à côté de l'hôpital, près de la forêt.",
    "Ça coûte cher, mais c'est très efficace pour la recherche sémantique.",
    "El rápido zorro marrón salta sobre el perro perezoso.",
    "¿Dónde está la estación? ¡Muchas gracias por tu ayuda, señor!",
    "La niña comió una manzana y el niño bebió café con azúcar.",
)

_CJK_FEW = (
    "机器学习模型可以把文本变成向量。",
    "日本語のテキストも検索できます。",
)

_WORLD = (
    *_CJK_FEW,
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "Модель преобразует предложения в векторы для семантического поиска.",
    "Привет, как дела? Всё хорошо, спасибо!",
    "Москва является столицей России, а Киев столицей Украины.",
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από το τεμπέλικο σκυλί.",
    "Καλημέρα σας, τι κάνετε σήμερα;",
    "Τα μοντέλα ενσωμάτωσης χρησιμοποιούνται για αναζήτηση.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "مرحبا بكم في عالم التعلم الآلي.",
    "النموذج يحول النصوص إلى متجهات رقمية.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "नमस्ते, आप कैसे हैं? मैं ठीक हूँ।",
    "यह मॉडल खोज के लिए वाक्यों को वेक्टर में बदलता है।",
    "快速的棕色狐狸跳过了懒狗。",
    "北京是中国的首都，上海是最大的城市。",
    "我们使用向量搜索来查找相似的文档。",
    "素早い茶色の狐が怠け者の犬を飛び越える。",
    "東京は日本の首都です。今日はいい天気ですね。",
    "カタカナとひらがなと漢字を使います。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
    "안녕하세요, 만나서 반갑습니다.",
    "임베딩 모델은 문장을 벡터로 바꿉니다.",
    "print(f\"{name!r}: {value:.3f}\")  # Python 3.11",
    "const sum = (a, b) => a + b; console.log(sum(2, 40));",
    "fn main() { let v: Vec<u32> = (1..=10).collect(); println!(\"{:?}\", v); }",
    "Version 2.0.1 released on 2024-05-17: 1,234,567 downloads, 99.9% uptime.",
)

_BERT_SPECIALS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
_XLMR_FILLER_SCORE = -1.0e6  # far below any real piece: fillers never win Viterbi against real pieces
_XLMR_SPM_PIECES = 800  # target size of the trained sentencepiece model (before padding)


def _added_token(content: str, *, lstrip: bool = False) -> dict[str, Any]:
    """The ``added_tokens_decoder`` entry transformers writes for a special token."""
    return {"content": content, "lstrip": lstrip, "normalized": False, "rstrip": False, "single_word": False,
            "special": True}


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


def _wordpiece_subwords(words: Counter[str]) -> list[str]:
    """Rank WordPiece candidates (word prefixes, ``##`` suffixes) by corpus frequency, most frequent first.

    ``tokenizers``' WordPieceTrainer breaks frequency ties in hash order (different vocab on every run), so the
    vocabulary is learned by plain counting instead.
    """
    counts: Counter[str] = Counter()
    for word, n in words.items():
        for k in range(2, len(word) + 1):
            counts[word[:k]] += n
        for k in range(1, len(word) - 1):
            counts["##" + word[k:]] += n
    return [tok for tok, n in sorted(counts.items(), key=lambda kv: (-kv[1], -len(kv[0]), kv[0])) if n >= 2]


def write_bert_wordpiece(out_dir: Path, *, vocab_size: int, lowercase: bool = True,
                         model_max_length: int = 8192) -> int:
    """Write a BERT WordPiece tokenizer (jina-embeddings-v2 kind) with exactly ``vocab_size`` tokens.

    Layout: ``[PAD]``=0, ``[unused0..98]``=1..99, ``[UNK]``=100, ``[CLS]``=101, ``[SEP]``=102, ``[MASK]``=103,
    then every corpus character and its ``##`` continuation, then the most frequent word prefixes and ``##``
    suffixes of the inline corpus, then ``[unused99]``... fillers. Writes ``vocab.txt``, ``tokenizer.json``,
    ``tokenizer_config.json`` and ``special_tokens_map.json``; returns the vocabulary size written.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_reserved = max(_BERT_SPECIALS.values()) + 1
    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                            lowercase=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()

    # Count words as the tokenizer itself would see them (normalized, pre-tokenized).
    words = Counter(w for text in _ENGLISH + _EUROPEAN + _CJK_FEW
                    for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in words for c in w})
    base = chars + ["##" + c for c in chars]
    budget = vocab_size - n_reserved - len(base)
    if budget < 0:
        raise ValueError(f"vocab_size={vocab_size} is too small; need at least {n_reserved + len(base)}")
    subwords = _wordpiece_subwords(words)[:budget]

    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(n_reserved - 5)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += base + subwords
    vocab += [f"[unused{i}]" for i in range(n_reserved - 5, n_reserved - 5 + vocab_size - len(vocab))]
    assert len(vocab) == vocab_size and all(vocab[i] == t for t, i in _BERT_SPECIALS.items())
    (out_dir / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")

    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
                                     max_input_chars_per_word=100))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", _BERT_SPECIALS["[CLS]"]), ("[SEP]", _BERT_SPECIALS["[SEP]"])])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in _BERT_SPECIALS])
    tok.save(str(out_dir / "tokenizer.json"))

    specials = {"cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]", "sep_token": "[SEP]",
                "unk_token": "[UNK]"}
    _write_json(out_dir / "special_tokens_map.json", specials)
    _write_json(out_dir / "tokenizer_config.json", {
        **specials,
        "added_tokens_decoder": {str(i): _added_token(t) for t, i in _BERT_SPECIALS.items()},
        "clean_up_tokenization_spaces": True,
        "do_basic_tokenize": True,
        "do_lower_case": lowercase,
        "model_max_length": model_max_length,
        "never_split": None,
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "tokenizer_class": "BertTokenizer",
    })
    return vocab_size


class _SpmFile:
    """The bits of a slow ``XLMRobertaTokenizer`` that ``XLMRobertaConverter`` reads."""

    add_prefix_space = True

    def __init__(self, vocab_file: str) -> None:
        self.vocab_file = vocab_file

    def convert_tokens_to_ids(self, token: str) -> int:
        return {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}[token]


def _train_spm_proto(num_pieces: int) -> Any:
    """Train a sentencepiece Unigram model on the inline corpus and return its ``ModelProto``."""
    import io

    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    spm.set_random_generator_seed(0)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_ENGLISH + _EUROPEAN + _WORLD), model_writer=buf, model_type="unigram",
        vocab_size=num_pieces, hard_vocab_limit=False, character_coverage=1.0, byte_fallback=False,
        normalization_rule_name="nmt_nfkc", num_threads=1, shuffle_input_sentence=False, minloglevel=2)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(buf.getvalue())
    return proto


def write_xlmr_unigram(out_dir: Path, *, vocab_size: int, model_max_length: int = 8194) -> int:
    """Write an XLM-RoBERTa Unigram tokenizer (jina-embeddings-v3 kind) with exactly ``vocab_size`` tokens.

    A sentencepiece Unigram model (``<unk>``, ``<s>``, ``</s>``, pieces...) is trained on the inline multilingual
    corpus and padded with unreachable ``▁<fillN>`` pieces scored far below every real piece, saved as
    ``sentencepiece.bpe.model`` and converted with transformers' ``XLMRobertaConverter`` into ``tokenizer.json``
    (ids: ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, pieces..., ``<mask>``=last). Also writes
    ``tokenizer_config.json`` and ``special_tokens_map.json``; returns the vocabulary size written.
    """
    from tokenizers import AddedToken
    from transformers.convert_slow_tokenizer import XLMRobertaConverter

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # tokenizer.json = [<s>, <pad>, </s>, <unk>] + spm pieces[3:] + [<mask>] -> two more entries than spm.
    try:
        proto = _train_spm_proto(min(vocab_size - 2, _XLMR_SPM_PIECES))
    except RuntimeError as err:  # sentencepiece refuses fewer pieces than the corpus has characters
        raise ValueError(f"vocab_size={vocab_size} is too small for the fixture corpus: {err}") from err
    n_fill = vocab_size - 2 - len(proto.pieces)
    if n_fill < 0:
        raise ValueError(f"vocab_size={vocab_size} is too small; need at least {len(proto.pieces) + 2}")
    fill = type(proto).SentencePiece
    proto.pieces.extend(fill(piece=f"▁<fill{i}>", score=_XLMR_FILLER_SCORE) for i in range(n_fill))
    spm_path = out_dir / "sentencepiece.bpe.model"
    spm_path.write_bytes(proto.SerializeToString(deterministic=True))

    tok = XLMRobertaConverter(_SpmFile(str(spm_path))).converted()
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ("<s>", "<pad>", "</s>", "<unk>")]
                           + [AddedToken("<mask>", lstrip=True, normalized=False, special=True)])
    assert tok.get_vocab_size() == vocab_size and tok.token_to_id("<mask>") == vocab_size - 1
    tok.save(str(out_dir / "tokenizer.json"))

    specials = {"bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
                "sep_token": "</s>", "unk_token": "<unk>"}
    mask = _added_token("<mask>", lstrip=True)
    _write_json(out_dir / "special_tokens_map.json",
                {**specials, "mask_token": {k: v for k, v in mask.items() if k != "special"}})
    decoder = {str(i): _added_token(t) for i, t in enumerate(("<s>", "<pad>", "</s>", "<unk>"))}
    _write_json(out_dir / "tokenizer_config.json", {
        **specials,
        "added_tokens_decoder": {**decoder, str(vocab_size - 1): mask},
        "clean_up_tokenization_spaces": True,
        "mask_token": "<mask>",
        "model_max_length": model_max_length,
        "tokenizer_class": "XLMRobertaTokenizer",
    })
    return vocab_size


__all__ = ["write_bert_wordpiece", "write_xlmr_unigram"]


def as_published_v3(tokenizer_json: Path) -> None:
    """Rewrite an XLM-R fixture's tokenizer.json the way Jina publishes v3's: a plain Precompiled normalizer
    (spaces kept) and a Metaspace pre-tokenizer, instead of transformers' converter output (Strip + Replace,
    i.e. sentencepiece's remove_extra_whitespaces)."""
    tj = json.loads(tokenizer_json.read_text())
    tj["normalizer"] = tj["normalizer"]["normalizers"][0]
    tj["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True,
                           "prepend_scheme": "always"}
    tokenizer_json.write_text(json.dumps(tj, ensure_ascii=False))
