"""embcc.reference (what `embcc verify` will compare artifacts with) against the float64 re-implementations.

The references are built by transformers + PEFT (v3, v5) or by embcc.reference's own float64 JinaBERT (v2) from
the checkpoint's files; reference_impls.py reads the same published layouts with plain safetensors and spells
the forward pass out. Both sides are independent of embcc's export path, and of each other's code. The tests
also show the comparison can fail (halved adapter scaling, a dropped prompt, a wrong RoPE theta), that the
package imports nothing from the export path, and that its scratch directory never outlives it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from reference_impls import (
    sharpen_attention,
    v2_reference,
    v3_hf_reference,
    v3_original_reference,
    v5_reference,
)
from safetensors.torch import load_file, save_file

import embcc.reference.jina_v3 as ref_v3
import embcc.reference.jina_v5 as ref_v5
from embcc.core.errors import EmbccError
from embcc.fixtures import write_fixture
from embcc.probes import PROBES
from embcc.reference import Reference, detect, reference_for

MAX_ABS, MIN_COS = 5e-6, 0.999999
MAX_LENGTH = 512
TEXTS = PROBES[:30]  # short, medium and long texts mixed (the longest truncated at MAX_LENGTH)
FIXTURES = {  # key -> (fixture name, layout)
    "v3": ("jina-v3", "original"),
    "v3-hf": ("jina-v3", "hf"),
    "v2-small": ("jina-v2-small", None),
    "v2-base": ("jina-v2-base", None),  # 6 heads: the non power-of-2 ALiBi slopes
    "v5-small": ("jina-v5-small", "base"),
    "v5-nano": ("jina-v5-nano", "base"),
    "v5-small-premerged": ("jina-v5-small", "premerged"),
    "v5-nano-premerged": ("jina-v5-nano", "premerged"),
}
FORBIDDEN = ("embcc.families", "embcc.export", "embcc.runtimes", "embcc.calibration", "embcc.pipeline",
             "embcc.verify", "embcc.modelspec")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ref-ckpt")
    out = {key: write_fixture(name, root / key, size="tiny", layout=layout, seed=0)
           for key, (name, layout) in FIXTURES.items()}
    out["v3-sharp"] = sharpen_attention(out["v3"], root / "v3-sharp", 4.0)  # peaked attention: theta shows
    return out


_IMPL: dict[tuple, np.ndarray] = {}


def impl(key: str, path: Path, task: str | None, role: str | None, theta: float | None = None) -> np.ndarray:
    """The float64 re-implementation for a fixture key (memoised: several tests compare with the same one)."""
    if key.endswith("premerged"):
        task = None  # a pre-merged checkpoint: the task only chooses the prompt, by role
    memo = (str(path), key, task, role, theta)
    if memo not in _IMPL:
        _IMPL[memo] = _impl(key, path, task, role, theta)
    return _IMPL[memo]


def _impl(key: str, path: Path, task: str | None, role: str | None, theta: float | None) -> np.ndarray:
    if key.startswith("v3-hf"):
        return v3_hf_reference(path, TEXTS, task, rope_theta=theta, max_length=MAX_LENGTH)
    if key.startswith("v3"):
        return v3_original_reference(path, TEXTS, task, rope_theta=theta, max_length=MAX_LENGTH)
    if key.startswith("v2"):
        return v2_reference(path, TEXTS, max_length=MAX_LENGTH)
    return v5_reference(path, TEXTS, task=task, role=role or "document", theta=theta, max_length=MAX_LENGTH)


def stats(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    got64 = got.astype(np.float64)
    cos = (got64 * want).sum(1) / (np.linalg.norm(got64, axis=1) * np.linalg.norm(want, axis=1))
    return float(np.abs(got64 - want).max()), float(cos.min())


def combos(ref) -> list[tuple[str | None, str | None]]:
    """Every (task, role) the reference accepts; v3 also runs task=None (base weights, no prompt)."""
    if not ref.tasks:
        return [(None, None)]
    out = [(t, r) for t in ref.tasks for r in (ref.roles.get(t) or [None])]
    return out if ref.roles else out + [(None, None)]


# ---- agreement with the float64 re-implementations ------------------------------------------------------------


@pytest.mark.parametrize("key", list(FIXTURES))
def test_reference_matches_float64_reimplementation(ckpt: dict[str, Path], key: str) -> None:
    with reference_for(ckpt[key]) as ref:
        rows = []
        for task, role in combos(ref):
            got = ref.encode(TEXTS, task=task, role=role, max_length=MAX_LENGTH)
            assert got.dtype == np.float32 and got.shape == (len(TEXTS), ref.dim)
            assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
            diff, cos = stats(got, impl(key, ckpt[key], task, role))
            rows.append((task, role, diff, cos))
    print(f"\n{key}: " + "; ".join(f"{t}/{r}: max|d| {d:.2e} min cos {c:.9f}" for t, r, d, c in rows))
    bad = [r for r in rows if not (r[2] <= MAX_ABS and r[3] >= MIN_COS)]
    assert not bad, f"{key}: {bad}"


def test_v5_roles_and_prompts_come_from_the_checkpoint(ckpt: dict[str, Path]) -> None:
    with reference_for(ckpt["v5-small"]) as ref:
        assert ref.tasks == json.loads((ckpt["v5-small"] / "config.json").read_text())["task_names"]
        assert ref.roles["retrieval"] == ["query", "document"]
        assert all(ref.roles[t] == ["document"] for t in ref.tasks if t != "retrieval")
        assert ref.default_role == "document"
        query = ref.encode(TEXTS[:4], task="retrieval", role="query", max_length=MAX_LENGTH)
        default = ref.encode(TEXTS[:4], task="retrieval", max_length=MAX_LENGTH)
        document = ref.encode(TEXTS[:4], task="retrieval", role="document", max_length=MAX_LENGTH)
        assert np.array_equal(default, document) and np.abs(query - document).max() > 1e-3
        with pytest.raises(EmbccError, match="no 'query' role"):
            ref.encode(TEXTS[:2], task="clustering", role="query")
        with pytest.raises(EmbccError, match="needs a task"):
            ref.encode(TEXTS[:2])


def test_v3_tasks_differ_and_roles_are_refused(ckpt: dict[str, Path]) -> None:
    with reference_for(ckpt["v3"]) as ref:
        assert ref.roles == {} and ref.default_role is None
        sep = ref.encode(TEXTS[:6], task="separation", max_length=MAX_LENGTH)
        cls = ref.encode(TEXTS[:6], task="classification", max_length=MAX_LENGTH)
        assert np.abs(sep - cls).max() > 1e-3  # same (empty) prompt: only the adapter differs
        with pytest.raises(EmbccError, match="no roles"):
            ref.encode(TEXTS[:2], task="separation", role="query")
        with pytest.raises(EmbccError, match="no task 'nope'"):
            ref.encode(TEXTS[:2], task="nope")


# ---- the comparison can fail for the right reasons ----------------------------------------------------------


def test_halved_adapter_scaling_is_caught(ckpt: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    real = ref_v3.write_peft_folders

    def halved(model, stacked, tasks, rank, alpha, out, where):  # noqa: ANN001
        return real(model, stacked, tasks, rank, alpha / 2, out, where)

    monkeypatch.setattr(ref_v3, "write_peft_folders", halved)
    with reference_for(ckpt["v3"]) as ref:
        got = ref.encode(TEXTS, task="classification", max_length=MAX_LENGTH)
    diff, _ = stats(got, impl("v3", ckpt["v3"], "classification", None))
    assert diff > 100 * MAX_ABS


@pytest.mark.parametrize("key,task,role", [("v3", "retrieval.query", None), ("v3-hf", "retrieval.passage", None),
                                           ("v5-nano", "retrieval", "query"), ("v5-small", "clustering", None)])
def test_dropped_prompt_is_caught(ckpt: dict[str, Path], monkeypatch: pytest.MonkeyPatch, key: str, task: str,
                                  role: str | None) -> None:
    cls = ref_v5.V5Reference if key.startswith("v5") else ref_v3.V3Reference
    monkeypatch.setattr(cls, "_prompt", lambda self, task, role: "")
    with reference_for(ckpt[key]) as ref:
        got = ref.encode(TEXTS, task=task, role=role, max_length=MAX_LENGTH)
    diff, _ = stats(got, impl(key, ckpt[key], task, role))
    assert diff > 100 * MAX_ABS


def test_rope_theta_is_the_checkpoints_unless_overridden(ckpt: dict[str, Path]) -> None:
    path = ckpt["v3-sharp"]
    assert json.loads((path / "config.json").read_text())["rotary_emb_base"] == 20000.0
    at_20k = impl("v3", path, "separation", None, theta=20000.0)
    at_10k = impl("v3", path, "separation", None, theta=10000.0)
    assert np.abs(at_20k - at_10k).max() > 1e-3
    with reference_for(path) as own, reference_for(path, rope_theta=10000.0) as override:
        assert own.describe()["rope_theta"] == 20000.0 and override.describe()["rope_theta"] == 10000.0
        assert stats(own.encode(TEXTS, task="separation", max_length=MAX_LENGTH), at_20k)[0] <= MAX_ABS
        assert stats(override.encode(TEXTS, task="separation", max_length=MAX_LENGTH), at_10k)[0] <= MAX_ABS
    with reference_for(ckpt["v5-nano"], rope_theta=250_000.0) as ref:
        assert ref.describe()["rope_theta"] == 250_000.0
        got = ref.encode(TEXTS, task="retrieval", max_length=MAX_LENGTH)
        assert stats(got, impl("v5-nano", ckpt["v5-nano"], "retrieval", None, theta=250_000.0))[0] <= MAX_ABS


# ---- what is loaded, and what is ignored as transformers ignores it ---------------------------------------------


def test_pooler_and_its_adapter_are_ignored(ckpt: dict[str, Path], tmp_path: Path) -> None:
    changed = shutil.copytree(ckpt["v3"], tmp_path / "v3-pooler")
    tensors = load_file(str(changed / "model.safetensors"))
    g = torch.Generator().manual_seed(1)
    pooler = [k for k in tensors if k.startswith("roberta.pooler.")]
    assert any("lora_A" in k for k in pooler)  # the published layout carries the pooler's own adapters
    for k in pooler:
        tensors[k] = torch.randn(tensors[k].shape, generator=g).to(tensors[k].dtype)
    save_file(tensors, str(changed / "model.safetensors"), metadata={"format": "pt"})
    with reference_for(ckpt["v3"]) as a, reference_for(changed) as b:
        for task in ("retrieval.query", "text-matching"):
            assert np.array_equal(a.encode(TEXTS[:8], task=task, max_length=MAX_LENGTH),
                                  b.encode(TEXTS[:8], task=task, max_length=MAX_LENGTH))


def _native_names(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Jina's module names -> transformers' JinaEmbeddingsV3Model names (what a native -hf save writes)."""
    table = [(r"^emb_ln\.", "embeddings.LayerNorm."), (r"^encoder\.layers\.(\d+)\.mixer\.out_proj\.", r"layers.\1.self_attn.o_proj."),
             (r"^encoder\.layers\.(\d+)\.norm1\.", r"layers.\1.post_attention_layernorm."),
             (r"^encoder\.layers\.(\d+)\.norm2\.", r"layers.\1.post_mlp_layernorm."),
             (r"^encoder\.layers\.(\d+)\.mlp\.", r"layers.\1.mlp.")]
    out = {}
    for key, value in tensors.items():
        key = key.removeprefix("roberta.")
        m = re.match(r"^encoder\.layers\.(\d+)\.mixer\.Wqkv\.(weight|bias)$", key)
        if m:
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"layers.{m[1]}.self_attn.{name}.{m[2]}"] = part.contiguous()
            continue
        for pattern, target in table:
            key = re.sub(pattern, target, key)
        out[key] = value
    return out


def test_hf_layout_with_native_weight_names(ckpt: dict[str, Path], tmp_path: Path) -> None:
    native = shutil.copytree(ckpt["v3-hf"], tmp_path / "v3-hf-native")
    tensors = _native_names(load_file(str(native / "model.safetensors")))
    assert "layers.0.self_attn.q_proj.weight" in tensors and "embeddings.LayerNorm.weight" in tensors
    save_file(tensors, str(native / "model.safetensors"), metadata={"format": "pt"})
    with reference_for(native) as ref:
        for task in ("retrieval.query", "text-matching"):
            got = ref.encode(TEXTS, task=task, max_length=MAX_LENGTH)
            assert stats(got, impl("v3-hf", ckpt["v3-hf"], task, None))[0] <= MAX_ABS


def test_sharded_original_layout_loads_the_same(ckpt: dict[str, Path], tmp_path: Path) -> None:
    sharded = shutil.copytree(ckpt["v3"], tmp_path / "v3-sharded")
    tensors = load_file(str(sharded / "model.safetensors"))
    (sharded / "model.safetensors").unlink()
    keys = sorted(tensors)
    weight_map = {}
    for i, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2 :])):
        name = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({k: tensors[k] for k in part}, str(sharded / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    with reference_for(ckpt["v3"]) as a, reference_for(sharded) as b:
        assert isinstance(b, Reference)
        for task in ("retrieval.passage", "classification"):
            assert np.array_equal(a.encode(TEXTS[:8], task=task, max_length=MAX_LENGTH),
                                  b.encode(TEXTS[:8], task=task, max_length=MAX_LENGTH))


def test_missing_weight_is_refused_not_randomly_initialised(ckpt: dict[str, Path], tmp_path: Path) -> None:
    broken = shutil.copytree(ckpt["v3-hf"], tmp_path / "v3-hf-broken")
    tensors = load_file(str(broken / "model.safetensors"))
    del tensors[next(k for k in tensors if k.endswith("mlp.fc1.weight"))]
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(EmbccError, match="could not fill"):
        reference_for(broken)


def test_adapter_that_does_not_fit_is_refused_not_a_silent_no_op(ckpt: dict[str, Path], tmp_path: Path) -> None:
    """PEFT only warns when adapter tensors miss the model's modules (lora_B stays 0: the base model)."""
    odd = shutil.copytree(ckpt["v5-nano"], tmp_path / "v5-nano-odd")
    f = odd / "adapters" / "text-matching" / "adapter_model.safetensors"
    tensors = load_file(str(f))
    save_file({k.replace("base_model.model.", "base_model.model.model."): v for k, v in tensors.items()}, str(f))
    with pytest.raises(EmbccError, match="text-matching"):
        reference_for(odd)


def test_converted_weights_are_the_original_bytes(ckpt: dict[str, Path], tmp_path: Path) -> None:
    src = ckpt["v3"] / "model.safetensors"
    adapters = ref_v3.rewrite_weights(src, tmp_path / "model.safetensors")
    before, after = load_file(str(src)), load_file(str(tmp_path / "model.safetensors"))
    assert adapters and all(".parametrizations.weight.0.lora_" in k for k in adapters)
    assert not any("parametrizations" in k for k in after)
    assert len(after) == len(before) - len(adapters)
    for key, value in before.items():
        if key in adapters:
            continue
        new = key.replace(".parametrizations.weight.original", ".weight")
        assert after[new].dtype == value.dtype and torch.equal(after[new], value)


def test_describe_names_library_class_versions_and_adapter_mode(ckpt: dict[str, Path]) -> None:
    import peft
    import transformers

    expect = {"v3": ("JinaEmbeddingsV3Model", "unmerged"), "v3-hf": ("JinaEmbeddingsV3Model", "unmerged"),
              "v5-small": ("Qwen3Model", "unmerged"), "v5-nano-premerged": ("EuroBertModel", "pre-merged"),
              "v2-small": ("V2Reference", "none")}
    for key, (cls, mode) in expect.items():
        with reference_for(ckpt[key]) as ref:
            d = ref.describe()
        assert cls in d["class"] and mode in d["adapters"], (key, d)
        assert d["torch"] == torch.__version__
        if key.startswith("v2"):
            assert "independent" in d["library"] and "re-implementation" in d["notes"]
        else:
            assert d["library"] == f"transformers {transformers.__version__} + peft {peft.__version__}"
            assert "set_adapter" in d["adapters"] or "pre-merged" in d["adapters"]
    with reference_for(ckpt["v3"]) as ref:
        d = ref.describe()
    assert "original" in d["layout"] and "scratch" in d["layout"] and d["prompts"] == "config.json task_instructions"


# ---- detection ------------------------------------------------------------------------------------------------


def test_detection(ckpt: dict[str, Path], tmp_path: Path) -> None:
    assert detect(ckpt["v3"]) == ("jina-v3", "original") and detect(ckpt["v3-hf"]) == ("jina-v3", "hf")
    assert detect(ckpt["v2-base"]) == ("jina-v2", "jinabert")
    assert detect(ckpt["v5-nano"]) == ("jina-v5", "base")
    assert detect(ckpt["v5-small-premerged"]) == ("jina-v5", "premerged")
    plain = tmp_path / "bert"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(EmbccError, match="not a checkpoint the reference knows"):
        detect(plain)
    backbone = shutil.copytree(ckpt["v5-small-premerged"], tmp_path / "qwen3-premerged")
    config = json.loads((backbone / "config.json").read_text())
    config.update(model_type="qwen3", architectures=["Qwen3Model"])
    (backbone / "config.json").write_text(json.dumps(config))
    assert detect(backbone) == ("jina-v5", "premerged")
    with reference_for(backbone) as ref:
        assert ref.describe()["class"] == "Qwen3Model"


# ---- isolation and cleanliness ------------------------------------------------------------------------------------


def test_imports_nothing_from_the_export_path(ckpt: dict[str, Path]) -> None:
    code = (
        "import sys, json\n"
        "import embcc.reference as r\n"
        "for path, task, role in json.loads(sys.argv[1]):\n"
        "    with r.reference_for(path) as ref:\n"
        "        assert ref.encode(['hello world', 'a'], task=task, role=role, max_length=64).shape[0] == 2\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('embcc'))))\n"
    )
    jobs = [(str(ckpt["v3"]), "retrieval.query", None), (str(ckpt["v3-hf"]), "separation", None),
            (str(ckpt["v5-nano"]), "retrieval", "query"), (str(ckpt["v5-small-premerged"]), "clustering", None),
            (str(ckpt["v2-small"]), None, None)]
    done = subprocess.run([sys.executable, "-c", code, json.dumps(jobs)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "embcc.reference" in loaded
    leaked = [m for m in loaded if m.startswith(FORBIDDEN)]
    assert not leaked, leaked


def _tree(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*"))}


def test_scratch_removed_on_close_and_nothing_written_into_the_checkpoint(ckpt: dict[str, Path], tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before = _tree(ckpt["v3"])
    ref = reference_for(ckpt["v3"])
    scratch = ref.scratch.path
    assert scratch.is_dir() and scratch.parent == tmp_path and not scratch.is_relative_to(ckpt["v3"])
    assert (scratch / "config.json").is_file() and (scratch / "adapters" / "retrieval_query").is_dir()
    ref.encode(TEXTS[:3], task="retrieval.query", max_length=MAX_LENGTH)
    ref.close()
    assert not scratch.exists() and list(tmp_path.iterdir()) == []
    ref.close()  # idempotent
    with pytest.raises(EmbccError, match="closed"):
        ref.encode(TEXTS[:1], task="separation")
    assert _tree(ckpt["v3"]) == before


def test_scratch_removed_on_error(ckpt: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = shutil.copytree(ckpt["v3"], tmp_path / "v3-bad")
    config = json.loads((bad / "config.json").read_text())
    config["lora_adaptations"] = config["lora_adaptations"][:4]  # the stacked adapters hold five tasks
    (bad / "config.json").write_text(json.dumps(config))
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_root))
    before = _tree(bad)
    with pytest.raises(EmbccError, match="stacks 5 tasks"):
        reference_for(bad)
    assert list(scratch_root.iterdir()) == []
    assert _tree(bad) == before
