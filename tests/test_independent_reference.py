"""embcc (torch reference and exported ONNX artifacts) against independent float64 re-implementations.

The re-implementations in `reference_impls.py` read the published checkpoint layouts directly (no embcc
loader, no embcc or transformers model code), so a mistake in embcc's key renaming, Wqkv splitting, adapter
scaling/merging, RoPE, ALiBi or pooling would make these comparisons fail. The fixtures are random-weight
checkpoints written by embcc's own fixture writer in the published layouts.

Random tiny weights attend almost uniformly, which makes the pooled vectors nearly blind to the RoPE base: on
the plain v3 fixture, theta 10000 and 20000 differ by only ~1e-4 (no more than the comparison bar allows), so
a wrong theta would pass there. "v3-sharp" is the same checkpoint with the query and key rows of every fused
Wqkv scaled by 4 (exact in bfloat16): its attention is peaked like a trained model's, and the theta
differences become ~1e-3 on every text. The v3 comparisons run on both (the one merge export on v3-sharp
only).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from reference_impls import alibi_slopes, sharpen_attention, v2_reference, v3_original_reference

from embcc.export.torch_embedder import TorchEmbedder
from embcc.families import load
from embcc.fixtures import write_fixture
from embcc.pipeline import export
from embcc.runtimes import open_artifact

Ref = Callable[..., np.ndarray]  # reference(key, task=None, theta=None) -> [N, H]

MIN_COS = 0.99999
MAX_ABS = 1e-4  # embcc computes in float32, the reference in float64

_LONG_SENTENCES = [
    "Embedding models turn a sentence into a vector of numbers so that texts with similar meanings",
    "end up close to each other, which is what search, clustering and classification rely on.",
    "A transformer encoder reads the whole sequence at once and lets every token attend to every other",
    "token; rotary position embeddings rotate queries and keys by an angle that grows with the position,",
    "while linear biases penalise attention between distant tokens in proportion to their distance.",
    "Der schnelle braune Fuchs springt über den faulen Hund, und die Größe der Bäume ist beachtlich.",
    "Exporting the model to ONNX and comparing the outputs with PyTorch catches mistakes early.",
]
LONG = " ".join(_LONG_SENTENCES * 3)  # ~300 words
assert 250 <= len(LONG.split()) <= 350

TEXTS = [
    "Hello world!",
    "What is the capital of France?",
    "The quick brown fox jumps over the lazy dog.",
    "Größe, Übermaß, äöü ß: Der Bär läuft über die Brücke.",
    "Straße und Mädchen schön",
    "机器学习 and 日本語のテキスト 한국어",
    "中文文本嵌入模型",
    "  double  spaces  and trailing  ",
    "Numbers 3.14159 and 1,000,000! 2024-05-17",
    "def f(x): return x**2  # comment",
    LONG,
    "word",
]

SHARPEN = 4.0
FIXTURES = {
    "v3": ("jina-v3", "original"),
    "v2-small": ("jina-v2-small", None),
    "v2-base": ("jina-v2-base", None),  # 6 heads: non power-of-2 ALiBi slopes
}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("indep-ckpt")
    out = {key: write_fixture(name, root / key, size="tiny", layout=layout, seed=0)
           for key, (name, layout) in FIXTURES.items()}
    out["v3-sharp"] = sharpen_attention(out["v3"], root / "v3-sharp", SHARPEN)
    return out


@pytest.fixture(scope="module")
def reference(ckpt: dict[str, Path]) -> Ref:
    """Memoised reference embeddings of TEXTS: reference(key, task=None, theta=None)."""
    cache: dict[tuple, np.ndarray] = {}

    def get(key: str, task: str | None = None, theta: float | None = None) -> np.ndarray:
        if (key, task, theta) not in cache:
            if key.startswith("v3"):
                cache[key, task, theta] = v3_original_reference(ckpt[key], TEXTS, task, rope_theta=theta)
            else:
                cache[key, task, theta] = v2_reference(ckpt[key], TEXTS)
        return cache[key, task, theta]

    return get


def v3_tasks(ckpt: dict[str, Path]) -> list[str]:
    tasks = json.loads((ckpt["v3"] / "config.json").read_text())["lora_adaptations"]
    assert len(tasks) >= 2
    return tasks


def mismatch(got: np.ndarray, want: np.ndarray, label: str) -> str | None:
    """None when `got` meets the bars against `want`, else a line saying by how much and where it does not."""
    got = np.asarray(got, dtype=np.float64)
    if got.shape != want.shape:
        return f"{label}: shape {got.shape} != reference {want.shape}"
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    diff = np.abs(got - want).max(1)
    if cos.min() >= MIN_COS and diff.max() <= MAX_ABS:
        return None
    worst = int(np.argmax(diff))
    return (f"{label}: min cosine {cos.min():.8f} (text {int(np.argmin(cos))}), "
            f"max abs diff {diff.max():.2e} (text {worst}: {TEXTS[worst][:40]!r})")


def assert_all_match(results: list[tuple[np.ndarray, np.ndarray, str]]) -> None:
    failures = [m for got, want, label in results if (m := mismatch(got, want, label)) is not None]
    assert not failures, "\n".join(failures)


# ---- the reference can tell the difference (so the comparisons below can fail) -----------------------------


@pytest.mark.parametrize("key", ["v3", "v3-sharp"])
def test_reference_distinguishes_tasks(reference: Ref, key: str) -> None:
    query, separation = reference(key, "retrieval.query"), reference(key, "separation")
    classification = reference(key, "classification")
    assert np.abs(query - separation).max() > 1e-3
    assert np.abs(classification - separation).max() > 1e-3  # same (empty) prefix: only the adapter differs


def test_reference_distinguishes_rope_theta(ckpt: dict[str, Path], reference: Ref) -> None:
    assert json.loads((ckpt["v3-sharp"] / "config.json").read_text())["rotary_emb_base"] == 20000.0
    a = v3_original_reference(ckpt["v3-sharp"], [LONG], "separation", rope_theta=10000.0)
    b = v3_original_reference(ckpt["v3-sharp"], [LONG], "separation", rope_theta=20000.0)
    assert np.abs(a - b).max() > 1e-3
    # the default (config) theta against 10000, on every text: beyond the bar, so a wrong theta fails
    default = reference("v3-sharp", "retrieval.query")
    other = reference("v3-sharp", "retrieval.query", 10000.0)
    assert np.abs(default - other).max(1).min() > 5 * MAX_ABS


def test_reference_padded_batches_agree_with_one_at_a_time(ckpt: dict[str, Path],
                                                           reference: Ref) -> None:
    batched = v3_original_reference(ckpt["v3"], TEXTS, "retrieval.passage", batch_size=len(TEXTS))
    assert np.abs(batched - reference("v3", "retrieval.passage")).max() < 1e-10
    batched = v2_reference(ckpt["v2-base"], TEXTS, batch_size=len(TEXTS))
    assert np.abs(batched - reference("v2-base")).max() < 1e-10
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-12)


def test_alibi_slopes_non_power_of_two() -> None:
    assert alibi_slopes(4) == [0.25, 0.0625, 0.015625, 0.00390625]
    assert alibi_slopes(6) == [0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]


# ---- embcc's torch reference -------------------------------------------------------------------------------


V3_KEYS = ["v3", "v3-sharp"]


@pytest.mark.parametrize("key", V3_KEYS)
def test_v3_torch_matches_reference_for_every_task(ckpt: dict[str, Path], reference: Ref,
                                                   key: str) -> None:
    embedder = TorchEmbedder(load(ckpt[key]))
    assert_all_match([(embedder.encode(TEXTS, task=t), reference(key, t), f"{key} torch {t}")
                      for t in v3_tasks(ckpt)])


@pytest.mark.parametrize("key", V3_KEYS)
def test_v3_torch_matches_reference_with_rope_theta(ckpt: dict[str, Path], reference: Ref,
                                                    key: str) -> None:
    embedder = TorchEmbedder(load(ckpt[key]), rope_theta=10000.0)
    got = embedder.encode(TEXTS, task="retrieval.query")
    want = reference(key, "retrieval.query", 10000.0)
    assert_all_match([(got, want, f"{key} torch retrieval.query theta=10000")])


@pytest.mark.parametrize("key", ["v2-small", "v2-base"])
def test_v2_torch_matches_reference(ckpt: dict[str, Path], reference: Ref, key: str) -> None:
    assert_all_match([(TorchEmbedder(load(ckpt[key])).encode(TEXTS), reference(key), f"torch {key}")])


# ---- exported ONNX artifacts -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", V3_KEYS)
def test_v3_onnx_keep_matches_reference_for_every_task(ckpt: dict[str, Path], reference: Ref,
                                                       tmp_path: Path, key: str) -> None:
    artifact = open_artifact(export(ckpt[key], tmp_path / "keep", lora="keep"))
    assert_all_match([(artifact.encode(TEXTS, task=t), reference(key, t), f"{key} onnx keep {t}")
                      for t in v3_tasks(ckpt)])


def test_v3_onnx_merge_matches_reference(ckpt: dict[str, Path], reference: Ref,
                                         tmp_path: Path) -> None:
    out = export(ckpt["v3-sharp"], tmp_path / "merge", lora="merge", task="retrieval.query")
    artifact = open_artifact(out / "retrieval.query")
    got = artifact.encode(TEXTS, task="retrieval.query")
    assert_all_match([(got, reference("v3-sharp", "retrieval.query"), "v3-sharp onnx merge retrieval.query")])


@pytest.mark.parametrize("key", ["v2-small", "v2-base"])
def test_v2_onnx_matches_reference(ckpt: dict[str, Path], reference: Ref, tmp_path: Path,
                                   key: str) -> None:
    artifact = open_artifact(export(ckpt[key], tmp_path / key))
    assert_all_match([(artifact.encode(TEXTS), reference(key), f"onnx {key}")])
