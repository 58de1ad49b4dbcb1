"""Existing serving stacks load embcc artifacts unchanged (SPEC.md section 7) and give embcc's vectors.

Each client is the real package where one can run here:
- sentence-transformers `SentenceTransformer(dir, backend="onnx")`: its ONNX backend resolves only with
  sentence-transformers <= 5.4 + optimum-onnx (transformers < 4.58), which conflicts with embcc's pins, so it runs
  in a separate environment built once by scripts/client_envs.sh; those tests skip, saying so, when it is absent.
- fastembed `TextEmbedding.add_custom_model(...)` on a local artifact directory (no network), in embcc's venv.
- llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`) on 127.0.0.1, a free port,
  bounded in time and always stopped; llama.cpp's own llama-server (POST /lora-adapters) where
  scripts/client_envs.sh llama-server built it.
Checked structurally, because the server cannot be installed here:
- text-embeddings-inference (a Rust binary, not pip-installable): the files and keys its router and ORT backend
  read, and its ORT backend's feeding and output choice emulated with onnxruntime;
- NVIDIA Triton (not pip-installable; no server runs here): the repository `embcc package --layout triton` writes,
  its config.pbtxt parsed with tritonclient's own ModelConfig protobuf, the graph it points at run in onnxruntime.
Vectors are held to the fp32 bar (SPEC.md section 4) against embcc's own runtime for the same artifact.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from embcc.cli import main
from embcc.core.errors import EmbccError
from embcc.core.files import sha256_file
from embcc.core.manifest import ARTIFACT_FORMAT
from embcc.core.spec import ModelSpec
from embcc.export.onnx import GRAPH_OUTPUTS
from embcc.pipeline import artifacts_in, export
from embcc.runtimes import open_artifact
from embcc.verify import BARS, compare

TEXTS = [
    "hello world",
    "a longer text about cooking pasta with fresh tomatoes, garlic and basil",
    "Zürich ist die größte Stadt der Schweiz.",
    "def add(a, b): return a + b",
    "numbers 3.14159 and 42, an emoji 🙂",
    "Short.",
]
MAX_LEN = 512
SOURCE, REVISION = "jinaai/jina-embeddings-v3", "0123abcd"
CLIENT_ENVS = Path(os.environ.get("EMBCC_CLIENT_ENVS") or Path.home() / ".cache" / "embcc" / "envs")
ST_PYTHON = CLIENT_ENVS / "st-onnx" / "bin" / "python"
LLAMA_SERVER = Path(os.environ.get("EMBCC_LLAMA_SERVER") or CLIENT_ENVS / "llama-server" / "bin" / "llama-server")
SERVER_START_S = 90  # a tiny GGUF serves in about a second; the bound is for a loaded shared machine

EXPORTS = {  # key -> (checkpoint fixture key, export options)
    "v3-merge": ("v3", {"task": "retrieval.query", "source": SOURCE, "revision": REVISION}),
    "v3-keep": ("v3", {"lora": "keep"}),
    "v3-hf-merge": ("v3-hf", {"task": "retrieval.passage"}),
    "v5s-merge": ("v5-small", {"task": "retrieval"}),
    "v5n-merge": ("v5-nano", {"task": "retrieval"}),
    "v2": ("v2-small", {}),
    "v3-gguf-merge": ("v3", {"fmt": "gguf", "task": "retrieval.query"}),
    "v3-gguf-keep": ("v3", {"fmt": "gguf", "lora": "keep"}),
    "v5s-gguf-merge": ("v5-small", {"fmt": "gguf", "task": "retrieval"}),
}


@pytest.fixture(scope="module")
def checkpoints(ckpts, v5_ckpts):
    return {**ckpts, **{f"v5-{k}": v for k, v in v5_ckpts.items()}}


@pytest.fixture(scope="module")
def art(checkpoints, tmp_path_factory):
    """art(key) -> the artifact directory that holds the graph (exported once per module, on first use)."""
    root = tmp_path_factory.mktemp("clients")
    made: dict[str, Path] = {}

    def get(key: str) -> Path:
        if key not in made:
            ckpt, options = EXPORTS[key]
            out = export(checkpoints[ckpt], root / key, max_length=MAX_LEN, **options)
            (made[key],) = artifacts_in(out)
        return made[key]

    return get


def _task(art_dir: Path) -> str | None:
    spec = ModelSpec.read(art_dir)
    return spec.task if spec.task is not None else None


def assert_fp32(ref: np.ndarray, got: np.ndarray, what: str) -> dict:
    m = compare(np.asarray(ref), np.asarray(got), BARS["fp32"])
    assert m["passed"], (what, m["min_cosine"], m["max_abs_diff"])
    return m


def _normalise(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---- the graph's outputs and the files beside it ----------------------------------------------------------------


@pytest.mark.parametrize("key", ["v3-merge", "v3-keep"])
def test_graph_keeps_text_embeds_first_and_adds_last_hidden_state(art, key):
    d = art(key)
    sess = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == GRAPH_OUTPUTS == ["text_embeds", "sentence_embedding",
                                                                      "last_hidden_state"]
    ids = np.array([[0, 5, 6, 7, 2], [0, 8, 2, 1, 1]], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": (ids != 1).astype(np.int64)}
    if key.endswith("keep"):
        feeds["task_id"] = np.array(3, dtype=np.int64)
    states, sentence, alias = sess.run(None, feeds)
    assert np.array_equal(states, alias)
    assert sentence.shape == (2, ModelSpec.read(d).dim)


@pytest.mark.parametrize("key", ["v3-merge", "v3-hf-merge", "v3-keep", "v5s-merge", "v5n-merge", "v2"])
def test_config_json_parses_in_transformers_without_remote_code(art, checkpoints, key):
    from transformers import CONFIG_MAPPING, AutoConfig, AutoTokenizer

    d = art(key)
    spec = ModelSpec.read(d)
    cfg = json.loads((d / "config.json").read_text())
    source = json.loads((checkpoints[EXPORTS[key][0]] / "config.json").read_text())
    assert "auto_map" not in cfg and cfg["model_type"] in CONFIG_MAPPING
    assert cfg["model_type"] == {"v3": "xlm-roberta", "v5": "qwen3" if key.startswith("v5s") else "eurobert",
                                 "v2": "bert"}[key[:2]]
    parsed = AutoConfig.from_pretrained(d, trust_remote_code=False)
    assert parsed.hidden_size == spec.dim and parsed.num_hidden_layers == source["num_hidden_layers"]
    assert isinstance(cfg["architectures"], list) and isinstance(cfg["max_position_embeddings"], int)
    if spec.position == "rope":
        assert cfg.get("rope_theta", cfg.get("rotary_emb_base")) == spec.rope_theta
    tok_cfg = json.loads((d / "tokenizer_config.json").read_text())
    assert tok_cfg["model_max_length"] == spec.max_length == MAX_LEN and tok_cfg["padding_side"] == "right"
    assert (d / "special_tokens_map.json").is_file()
    # the HF tokenizer built from these files gives the ids embcc's runtime feeds, prefix included
    emb = open_artifact(d)
    assert cfg["pad_token_id"] == emb.pad_id
    tokenizer = AutoTokenizer.from_pretrained(d)
    task = spec.tasks[0].name if spec.lora == "keep" and spec.tasks else spec.task  # kept adapters: name one
    prefixed, _ = emb.prefixed(TEXTS, task)
    assert [tokenizer(t)["input_ids"] for t in prefixed] == emb.token_ids(TEXTS, task)


@pytest.mark.parametrize("key", ["v3-merge", "v5s-merge", "v2", "v3-keep"])
def test_sentence_transformers_files(art, key):
    d = art(key)
    spec = ModelSpec.read(d)
    if spec.lora == "keep":  # its graph needs task_id, which no sentence-transformers module feeds
        assert not (d / "modules.json").exists() and not (d / "1_Pooling").exists()
        assert "cannot feed it" in (d / "README.md").read_text()
        return
    modules = json.loads((d / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    pooling = json.loads((d / "1_Pooling" / "config.json").read_text())
    mode = {"mean": "pooling_mode_mean_tokens", "last": "pooling_mode_lasttoken"}[spec.pooling]
    assert [k for k, v in pooling.items() if k.startswith("pooling_mode") and v] == [mode]
    assert pooling["word_embedding_dimension"] == spec.dim and (d / "2_Normalize").is_dir()
    assert json.loads((d / "sentence_bert_config.json").read_text())["max_seq_length"] == spec.max_length
    st = json.loads((d / "config_sentence_transformers.json").read_text())
    if spec.tasks:
        assert st["prompts"][st["default_prompt_name"]] == spec.task_by_name(None).prefix_for(spec.role) != ""
    else:
        assert st["prompts"] == {} and st["default_prompt_name"] is None


def test_tokenizer_files_are_written_where_the_checkpoint_has_only_tokenizer_json(checkpoints, tmp_path):
    from transformers import AutoTokenizer

    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoints["v5-small"], ckpt)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        (ckpt / name).unlink()
    (d,) = artifacts_in(export(ckpt, tmp_path / "a", task="retrieval", max_length=64))
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    assert cfg["model_max_length"] == 64 and cfg["padding_side"] == "right" and cfg["pad_token"]
    assert json.loads((d / "special_tokens_map.json").read_text())["pad_token"] == cfg["pad_token"]
    emb = open_artifact(d)
    prefixed, _ = emb.prefixed(TEXTS, "retrieval")
    tokenizer = AutoTokenizer.from_pretrained(d)
    assert [tokenizer(t)["input_ids"] for t in prefixed] == emb.token_ids(TEXTS, "retrieval")
    assert tokenizer.pad_token_id == emb.pad_id == json.loads((d / "config.json").read_text())["pad_token_id"]


def test_readme_says_how_to_call_it(art):
    merged = (art("v3-merge") / "README.md").read_text()
    prefix = ModelSpec.read(art("v3-merge")).task_by_name(None).prefix
    assert json.dumps(prefix) in merged and "Matryoshka" in merged and "sentence_embedding" in merged
    keep = (art("v3-keep") / "README.md").read_text()
    assert "task_id" in keep and all(t.name in keep for t in ModelSpec.read(art("v3-keep")).tasks)
    gguf = (art("v3-gguf-keep") / "README.md").read_text()
    assert "POST /lora-adapters" in gguf and "one server per task" in gguf and "lora-retrieval.query.gguf" in gguf
    assert "--pooling mean" in gguf
    assert "--pooling last" in (art("v5s-gguf-merge") / "README.md").read_text()
    index = (art("v3-merge").parent / "README.md").read_text()
    assert "`retrieval.query/`" in index


def test_license_and_model_card_are_copied_never_invented(checkpoints, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoints["v3"], ckpt)
    (ckpt / "LICENSE").write_text("Creative Commons Attribution Non Commercial 4.0 (test text)\n")
    (ckpt / "NOTICE").write_text("notice text\n")
    (ckpt / "README.md").write_text("---\nlicense: cc-by-nc-4.0\ntags:\n- embeddings\n---\n# The model card\n")
    out = export(ckpt, tmp_path / "a", task="retrieval.query", max_length=MAX_LEN)
    for where in (out, out / "retrieval.query"):
        for name, src in (("LICENSE", "LICENSE"), ("NOTICE", "NOTICE"), ("MODEL_CARD.md", "README.md")):
            assert (where / name).read_bytes() == (ckpt / src).read_bytes()
    readme = (out / "retrieval.query" / "README.md").read_text()
    assert readme.startswith("---\nlicense: cc-by-nc-4.0\n") and "`LICENSE`, `NOTICE` copied from the checkpoint" in readme
    # the fixture itself has none: nothing is invented
    bare = export(checkpoints["v2-small"], tmp_path / "b", max_length=MAX_LEN)
    assert not [f for f in bare.iterdir() if f.name.upper().startswith(("LICEN", "NOTICE", "MODEL_CARD"))]
    assert "holds no LICENSE file, and embcc writes none" in (bare / "README.md").read_text()


def test_provenance_and_artifact_format_are_recorded(art, checkpoints, tmp_path, capsys):
    d = art("v3-merge")
    manifest = json.loads((d.parent / "manifest.json").read_text())
    sha = manifest["source_sha256"]
    assert manifest["source"] == {"sha256": sha, "name": SOURCE, "revision": REVISION}
    assert manifest["artifact_format"] == ARTIFACT_FORMAT == ModelSpec.read(d).artifact_format == 2
    assert all(s in (d / "README.md").read_text() for s in (SOURCE, REVISION, sha))
    assert main(["export", str(checkpoints["v2-small"]), "--out", str(tmp_path / "cli"), "--source", "jinaai/x",
                 "--revision", "r9", "--max-length", "64"]) == 0
    got = json.loads((tmp_path / "cli" / "manifest.json").read_text())["source"]
    assert got["name"] == "jinaai/x" and got["revision"] == "r9"
    plain = json.loads((art("v3-keep") / "manifest.json").read_text())["source"]
    assert set(plain) == {"sha256"}


# ---- integrity: open_artifact checks every file against the manifest ---------------------------------------------


@pytest.fixture
def copy_of(art, tmp_path):
    def get(key: str) -> Path:
        """A copy of the whole export; returns the artifact directory in it (a task directory when merged)."""
        src = art(key)
        root = src if (src / "manifest.json").is_file() else src.parent
        shutil.copytree(root, tmp_path / key)
        return tmp_path / key / src.relative_to(root)

    return get


def test_a_changed_file_is_refused_naming_it(copy_of):
    d = copy_of("v3-merge")
    with open(d / "README.md", "a") as f:
        f.write("edited\n")
    with pytest.raises(EmbccError, match=r"README\.md .*does not match its sha256 in manifest\.json.*verify=False"):
        open_artifact(d)
    assert open_artifact(d, verify=False).encode(TEXTS[:2], task="retrieval.query").shape == (2, 64)


def test_a_truncated_or_missing_file_is_refused(copy_of):
    d = copy_of("v3-keep")
    data = (d / "model.onnx").read_bytes()
    (d / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(EmbccError, match=r"model\.onnx \([\d,]+ bytes\) does not match its sha256"):
        open_artifact(d)
    (d / "model.onnx").write_bytes(data)
    open_artifact(d)
    (d / "tokenizer.json").unlink()
    with pytest.raises(EmbccError, match=r"tokenizer\.json is listed in manifest\.json but missing"):
        open_artifact(d)


def _set_format(d: Path, root: Path, manifest_value, spec_value) -> None:
    m = json.loads((root / "manifest.json").read_text())
    spec = json.loads((d / "embcc.json").read_text())
    for obj, value in ((m, manifest_value), (spec, spec_value)):
        obj.pop("artifact_format", None)
        if value is not None:
            obj["artifact_format"] = value
    (d / "embcc.json").write_text(json.dumps(spec))
    m["files"][str((d / "embcc.json").relative_to(root))] = sha256_file(d / "embcc.json")
    (root / "manifest.json").write_text(json.dumps(m))


def test_artifact_formats(copy_of):
    d = copy_of("v3-keep")
    _set_format(d, d, None, None)  # written before formats were numbered: version 1, still opens
    assert open_artifact(d).spec.artifact_format == 1
    _set_format(d, d, 3, 3)
    with pytest.raises(EmbccError, match=r"artifact format 3, newer than this embcc reads \(2\); upgrade embcc"):
        open_artifact(d)
    _set_format(d, d, 1, 2)
    with pytest.raises(EmbccError, match="embcc.json says artifact format 2, manifest.json says 1"):
        open_artifact(d)
    (d / "manifest.json").unlink()
    with pytest.raises(EmbccError, match="has no manifest.json .* open it with verify=False"):
        open_artifact(d)
    assert open_artifact(d, verify=False)


def test_cli_verify_refuses_a_tampered_artifact_in_one_line(copy_of, checkpoints, capsys):
    d = copy_of("v3-merge")
    with open(d / "tokenizer.json", "a") as f:
        f.write(" ")
    assert main(["verify", str(d.parent), "--reference", str(checkpoints["v3"])]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("embcc: error: ") and "tokenizer.json" in err and "\n" not in err


# ---- sentence-transformers (separate environment) --------------------------------------------------------------

ST_SCRIPT = r"""
import json, sys
import numpy as np
import importlib.metadata as md
from sentence_transformers import SentenceTransformer
jobs, out = json.loads(sys.argv[1]), sys.argv[2]
result = {"versions": {p: md.version(p) for p in ("sentence-transformers", "optimum", "optimum-onnx", "transformers",
                                                  "onnxruntime", "torch")}, "vectors": {}, "errors": {}}
for name, job in jobs.items():
    try:
        model = SentenceTransformer(job["dir"], backend="onnx", device="cpu", truncate_dim=job.get("truncate_dim"))
        kw = {"prompt_name": job["prompt_name"]} if job.get("prompt_name") else {}
        result["vectors"][name] = model.encode(job["texts"], batch_size=4, **kw).tolist()
        result["modules"] = result.get("modules", {}) | {name: [type(m).__name__ for m in model]}
    except Exception as e:
        result["errors"][name] = f"{type(e).__name__}: {e}"[:500]
json.dump(result, open(out, "w"))
"""


def _run_st(jobs: dict, tmp_path: Path) -> dict:
    if not ST_PYTHON.is_file():
        pytest.skip(f"sentence-transformers' ONNX backend needs its own environment ({ST_PYTHON} is absent): "
                    "build it once with scripts/client_envs.sh")
    out = tmp_path / "st.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="2")
    proc = subprocess.run([str(ST_PYTHON), "-c", ST_SCRIPT, json.dumps(jobs), str(out)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_sentence_transformers_onnx_backend_gives_embccs_vectors(art, tmp_path):
    v3, v5s, v5n = art("v3-merge"), art("v5s-merge"), art("v5n-merge")
    jobs = {
        "v3": {"dir": str(v3), "texts": TEXTS},
        "v3-dim32": {"dir": str(v3), "texts": TEXTS, "truncate_dim": 32},
        "v5s": {"dir": str(v5s), "texts": TEXTS},
        "v5s-query": {"dir": str(v5s), "texts": TEXTS, "prompt_name": "query"},
        "v5n": {"dir": str(v5n), "texts": TEXTS},
    }
    got = _run_st(jobs, tmp_path)
    assert set(got["vectors"]) >= {"v3", "v3-dim32", "v5s", "v5s-query"}, got["errors"]
    e3, e5 = open_artifact(v3), open_artifact(v5s)
    assert_fp32(e3.encode(TEXTS, task="retrieval.query"), got["vectors"]["v3"], "v3 default prompt")
    assert_fp32(e3.encode(TEXTS, task="retrieval.query", dim=32), _normalise(got["vectors"]["v3-dim32"]), "v3 dim 32")
    assert_fp32(e5.encode(TEXTS, task="retrieval"), got["vectors"]["v5s"], "v5-small document")
    assert_fp32(e5.encode(TEXTS, task="retrieval", role="query"), got["vectors"]["v5s-query"], "v5-small query")
    assert got["modules"]["v3"] == ["Transformer", "Pooling", "Normalize"]
    # the prompts really are applied: the query and document prompts give other vectors
    other = compare(e5.encode(TEXTS, task="retrieval", role="query"), np.asarray(got["vectors"]["v5s"]), {})
    assert other["min_cosine"] < 0.9999
    # v5-nano's config.json is EuroBERT's, which transformers < 4.58 (the only versions optimum-onnx takes) does
    # not know: that stack cannot load nano artifacts, whatever the files say (README.md says so).
    if "v5n" in got["vectors"]:
        assert_fp32(open_artifact(v5n).encode(TEXTS, task="retrieval"), got["vectors"]["v5n"], "v5-nano")
    else:
        assert "eurobert" in got["errors"]["v5n"].lower()


# ---- fastembed ---------------------------------------------------------------------------------------------------

_registered: set[str] = set()


def _fastembed(name: str, d: Path, pooling, normalization: bool, output_name: str | None, tmp_path: Path):
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource

    spec = ModelSpec.read(d)
    if name not in _registered:
        TextEmbedding.add_custom_model(name, pooling=pooling, normalization=normalization,
                                       sources=ModelSource(hf=name), dim=spec.dim, model_file="model.onnx",
                                       output_name=output_name)
        _registered.add(name)
    return TextEmbedding(name, specific_model_path=str(d), cache_dir=str(tmp_path / "fastembed"), threads=1)


@pytest.mark.parametrize("key", ["v3-merge", "v5s-merge"])
def test_fastembed_custom_model_gives_embccs_vectors(art, key, tmp_path, monkeypatch):
    from fastembed.common.model_description import PoolingType

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    d = art(key)
    spec = ModelSpec.read(d)
    task = spec.task_by_name(None)
    prefixed = [task.prefix_for(spec.role) + t for t in TEXTS]  # fastembed adds no prefix: the caller does
    want = open_artifact(d).encode(TEXTS, task=task.name)
    pooled = _fastembed(f"embcc-test/{key}-sentence", d, PoolingType.DISABLED, False, "sentence_embedding", tmp_path)
    assert_fp32(want, np.stack(list(pooled.embed(prefixed, batch_size=4))), f"{key} sentence_embedding")
    mode = {"mean": PoolingType.MEAN, "last": PoolingType.LAST_TOKEN}[spec.pooling]
    states = _fastembed(f"embcc-test/{key}-states", d, mode, True, None, tmp_path)  # output 0: text_embeds
    assert_fp32(want, np.stack(list(states.embed(prefixed, batch_size=4))), f"{key} text_embeds + {mode}")


# ---- text-embeddings-inference (structural) ----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["v3-merge", "v5s-merge", "v2"])
def test_text_embeddings_inference_ort_contract(art, key):
    """TEI is a Rust server (not pip-installable), so this checks what its router and ORT backend read (the
    serde structs of router/src/lib.rs and backends/ort/src/lib.rs) and emulates the backend's feeding with
    onnxruntime: model.onnx, pad id from config.json, padding side from tokenizer_config.json, only the inputs
    the graph declares, `sentence_embedding` taken when present."""
    from tokenizers import Tokenizer

    d = art(key)
    spec = ModelSpec.read(d)
    cfg = json.loads((d / "config.json").read_text())
    assert isinstance(cfg["architectures"], list) and all(isinstance(a, str) for a in cfg["architectures"])
    assert not any(a.endswith("Classification") for a in cfg["architectures"])  # TEI would serve a classifier
    assert isinstance(cfg["model_type"], str) and isinstance(cfg["max_position_embeddings"], int)
    assert isinstance(cfg["hidden_size"], int) and isinstance(cfg["num_hidden_layers"], int)
    assert isinstance(cfg.get("pad_token_id", 0), int) and isinstance(cfg.get("num_key_value_heads", 1), int)
    pool = json.loads((d / "1_Pooling" / "config.json").read_text())
    assert isinstance(pool["pooling_mode_cls_token"], bool) and isinstance(pool["pooling_mode_mean_tokens"], bool)
    assert sum(pool[k] for k in ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_lasttoken")) == 1
    max_seq = json.loads((d / "sentence_bert_config.json").read_text())["max_seq_length"]
    assert max_seq == spec.max_length
    prompts = json.loads((d / "config_sentence_transformers.json").read_text())["prompts"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in prompts.items())
    side = json.loads((d / "tokenizer_config.json").read_text()).get("padding_side", "right")
    assert side in ("left", "right")
    sess = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    assert {"input_ids", "attention_mask"} <= names <= {"input_ids", "attention_mask", "token_type_ids", "position_ids"}
    assert "sentence_embedding" in {o.name for o in sess.get_outputs()}
    # the backend's batch: --default-prompt-name's prompt, truncation at max_seq_length, padded per padding_side
    prompt = prompts[json.loads((d / "config_sentence_transformers.json").read_text())["default_prompt_name"]] if prompts else ""
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_seq)
    ids = [e.ids for e in tok.encode_batch([prompt + t for t in TEXTS])]
    width = max(map(len, ids))
    pad = cfg.get("pad_token_id", cfg.get("eos_token_id", 0))
    rows = [([pad] * (width - len(r)) + r) if side == "left" else (r + [pad] * (width - len(r))) for r in ids]
    mask = [([0] * (width - len(r)) + [1] * len(r)) if side == "left" else ([1] * len(r) + [0] * (width - len(r)))
            for r in ids]
    (got,) = sess.run(["sentence_embedding"], {"input_ids": np.array(rows, dtype=np.int64),
                                               "attention_mask": np.array(mask, dtype=np.int64)})
    assert_fp32(open_artifact(d).encode(TEXTS, task=_task(d)), got, f"{key} as TEI feeds it")


def test_text_embeddings_inference_cannot_feed_task_id(art):
    """A kept-adapter graph requires task_id, which TEI's ORT backend never feeds: the README points to merge."""
    d = art("v3-keep")
    sess = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
    assert "task_id" in {i.name for i in sess.get_inputs()}
    assert "serve a merged artifact" in (d / "README.md").read_text()


# ---- NVIDIA Triton (structural) ----------------------------------------------------------------------------------


def _triton_config(path: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _triton_graph(model: Path) -> Path:
    """The graph file of a Triton model: 1/model.onnx, or 1/model.onnx/model.onnx (the directory form, for a graph
    with external data: embcc's fused model.onnx shares model.onnx_data with model.portable.onnx)."""
    graph = model / "1" / "model.onnx"
    return graph / "model.onnx" if graph.is_dir() else graph


def _run_triton_graph(graph: Path, config, feeds: dict) -> dict:
    """Run the graph as Triton's onnxruntime backend would: shapes checked against config.pbtxt first."""
    from tritonclient.grpc import model_config_pb2

    batched = config.max_batch_size > 0
    for inp in config.input:
        shape = feeds[inp.name].shape
        declared = list(inp.dims)
        got = list(shape[1:] if batched else shape)
        assert len(got) == len(declared) and all(d == -1 or d == g for d, g in zip(declared, got)), inp.name
        assert model_config_pb2.DataType.Name(inp.data_type) == "TYPE_INT64" and feeds[inp.name].dtype == np.int64
    sess = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    outs = sess.run([o.name for o in config.output], feeds)
    return dict(zip([o.name for o in config.output], outs))


def test_triton_repository_for_a_merged_artifact(art, tmp_path):
    """Triton cannot be installed here (no server runs): config.pbtxt is parsed with Triton's own ModelConfig
    protobuf (tritonclient) and the graph it points at is run by onnxruntime with the shapes it declares."""
    from tritonclient.grpc import model_config_pb2

    d = art("v3-merge")
    spec = ModelSpec.read(d)
    repo = tmp_path / "repo"
    assert main(["package", str(d.parent), "--layout", "triton", "--out", str(repo), "--name", "jina-v3"]) == 0
    (model,) = list(repo.iterdir())
    assert model.name == "jina-v3_retrieval_query"
    config = _triton_config(model / "config.pbtxt")
    assert config.name == model.name and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size > 0 and config.HasField("dynamic_batching")
    assert [i.name for i in config.input] == ["input_ids", "attention_mask"]
    assert all(list(i.dims) == [-1] and model_config_pb2.DataType.Name(i.data_type) == "TYPE_INT64"
               for i in config.input)
    outs = {o.name: list(o.dims) for o in config.output}
    assert outs == {"text_embeds": [-1, spec.dim], "sentence_embedding": [spec.dim], "last_hidden_state": [-1, spec.dim]}
    graph = _triton_graph(model)
    assert graph.is_file() and graph.read_bytes() == (d / "model.onnx").read_bytes()
    assert (model / "tokenizer.json").is_file() and (model / "embcc.json").is_file()
    emb = open_artifact(d)
    ids, mask = emb.batch(emb.token_ids(TEXTS, task="retrieval.query"))
    got = _run_triton_graph(graph, config, {"input_ids": ids, "attention_mask": mask})
    assert_fp32(emb.encode(TEXTS, task="retrieval.query"), got["sentence_embedding"], "triton merged")


def test_triton_repository_for_kept_adapters(art, tmp_path):
    d = art("v3-keep")
    repo = tmp_path / "repo"
    from embcc.package import package

    package(d, repo, name="v3")
    config = _triton_config(repo / "v3" / "config.pbtxt")
    task_id = next(i for i in config.input if i.name == "task_id")
    assert list(task_id.dims) == [1]
    # one task_id per call: requests of two tasks must never share a batch, so Triton gets full shapes
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    emb = open_artifact(d)
    for task in ("retrieval.passage", "text-matching"):
        ids, mask = emb.batch(emb.token_ids(TEXTS, task=task))
        t = np.array([emb.spec.task_by_name(task).id], dtype=np.int64)
        got = _run_triton_graph(_triton_graph(repo / "v3"), config,
                                {"input_ids": ids, "attention_mask": mask, "task_id": t})
        assert_fp32(emb.encode(TEXTS, task=task), got["sentence_embedding"], f"triton keep {task}")


def test_triton_directory_form_for_external_data(checkpoints, tmp_path, monkeypatch):
    """A graph with external data goes in as Triton's `1/model.onnx/` directory, its data beside it."""
    import embcc.export.onnx as onnx_export

    monkeypatch.setattr(onnx_export, "needs_external", lambda n: True)
    out = export(checkpoints["v2-small"], tmp_path / "ext", max_length=64)
    locations = {e.value for i in onnx.load(str(out / "model.onnx"), load_external_data=False).graph.initializer
                 for e in i.external_data if e.key == "location"}
    assert locations
    from embcc.package import package

    package(out, tmp_path / "repo", name="v2")
    folder = tmp_path / "repo" / "v2" / "1" / "model.onnx"
    assert folder.is_dir() and {p.name for p in folder.iterdir()} == {"model.onnx", *locations}
    config = _triton_config(tmp_path / "repo" / "v2" / "config.pbtxt")
    emb = open_artifact(out)
    ids, mask = emb.batch(emb.token_ids(TEXTS))
    got = _run_triton_graph(folder / "model.onnx", config, {"input_ids": ids, "attention_mask": mask})
    assert_fp32(emb.encode(TEXTS), got["sentence_embedding"], "triton external data")


def test_triton_packaging_refuses_what_it_cannot_serve(art, copy_of, tmp_path, capsys):
    from embcc.package import package

    with pytest.raises(EmbccError, match="holds no ONNX graph"):
        package(art("v3-gguf-merge").parent, tmp_path / "r1")
    d = copy_of("v3-keep")
    with open(d / "model.onnx", "ab") as f:
        f.write(b"\0")
    assert main(["package", str(d), "--layout", "triton", "--out", str(tmp_path / "r2")]) == 2
    assert "does not match its sha256" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()


# ---- llama.cpp servers ------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(url: str, body: dict | list | None = None, timeout: float = 60) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


@contextlib.contextmanager
def _server(argv: list[str], health: str):
    """Start a server on 127.0.0.1 (argv gets the port appended), wait until `health` answers, always stop it."""
    port = _free_port()
    proc = subprocess.Popen([*argv, str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                _http(base + health, timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(f"server exited ({proc.returncode}): {proc.stdout.read().decode()[-2000:]}") from None
                if time.monotonic() > deadline:
                    raise AssertionError(f"server not up after {SERVER_START_S} s") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)
        proc.stdout.close()


def _llama_cpp_python_server(model: Path, *extra: str):
    return _server([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--embedding", "true",
                    "--n_ctx", str(MAX_LEN), "--n_batch", str(MAX_LEN), "--n_threads", "1", "--verbose", "false",
                    *extra, "--host", "127.0.0.1", "--port"], "/v1/models")


def _embed(base: str, texts: list[str]) -> np.ndarray:
    r = _http(base + "/v1/embeddings", {"input": texts})
    return _normalise([d["embedding"] for d in sorted(r["data"], key=lambda d: d["index"])])


def _readme_prefix(d: Path, task: str) -> str:
    """The prefix the artifact's README tells a llama.cpp caller to add (it must be the runtime's own)."""
    spec = ModelSpec.read(d)
    prefix = spec.task_by_name(task).prefix_for(spec.role)
    assert f"| {task} | " in (d / "README.md").read_text() and json.dumps(prefix) in (d / "README.md").read_text()
    return prefix


@pytest.mark.parametrize("key", ["v3-gguf-merge", "v5s-gguf-merge"])
def test_llama_cpp_python_server_serves_a_merged_gguf(art, key):
    d = art(key)
    task = ModelSpec.read(d).task
    readme = (d / "README.md").read_text()
    flags = ["--type_k", "0", "--type_v", "0"]  # f32 KV cache, as the README says for f32 parity
    assert " ".join(flags) in readme
    prefix = _readme_prefix(d, task)
    with _llama_cpp_python_server(d / "model.gguf", *flags) as base:
        got = _embed(base, [prefix + t for t in TEXTS])
    assert_fp32(open_artifact(d).encode(TEXTS, task=task), got, f"{key} through llama_cpp.server")


def test_llama_cpp_python_server_one_server_per_task_with_kept_adapters(art):
    """Adapter scales are global in llama.cpp's servers: one server per task, started with that task's file."""
    d = art("v3-gguf-keep")
    emb = open_artifact(d)
    got = {}
    for task in ("retrieval.query", "text-matching"):
        with _llama_cpp_python_server(d / "model.gguf", "--lora_path", str(d / f"lora-{task}.gguf")) as base:
            got[task] = _embed(base, [_readme_prefix(d, task) + t for t in TEXTS])
        assert_fp32(emb.encode(TEXTS, task=task), got[task], f"llama_cpp.server --lora_path {task}")
    # the adapter really is applied: the two servers disagree
    assert compare(got["retrieval.query"], got["text-matching"], {})["min_cosine"] < 0.999


def test_llama_server_switches_tasks_globally_with_lora_adapters(art):
    """llama.cpp's own llama-server (built opt-in by scripts/client_envs.sh llama-server; no pip package ships
    it): all adapters loaded unapplied, the task chosen for the whole server by POST /lora-adapters."""
    if not LLAMA_SERVER.is_file():
        pytest.skip(f"llama-server is absent ({LLAMA_SERVER}): build it with scripts/client_envs.sh llama-server")
    d = art("v3-gguf-keep")
    emb = open_artifact(d)
    spec = ModelSpec.read(d)
    tasks = [t.name for t in spec.tasks]
    argv = [str(LLAMA_SERVER), "-m", str(d / "model.gguf"), "--embedding", "--pooling", "mean", "-c", str(MAX_LEN),
            "-b", str(MAX_LEN), "-ub", str(MAX_LEN), "-t", "1", "--flash-attn", "off", "--lora-init-without-apply"]
    for t in tasks:
        argv += ["--lora", str(d / f"lora-{t}.gguf")]
    with _server([*argv, "--host", "127.0.0.1", "--port"], "/health") as base:
        listed = _http(base + "/lora-adapters")
        assert [Path(a["path"]).name for a in listed] == [f"lora-{t}.gguf" for t in tasks]
        for task in ("text-matching", "retrieval.query"):
            i = tasks.index(task)
            _http(base + "/lora-adapters", [{"id": j, "scale": 1.0 if j == i else 0.0} for j in range(len(tasks))])
            got = _embed(base, [_readme_prefix(d, task) + t for t in TEXTS])
            assert_fp32(emb.encode(TEXTS, task=task), got, f"llama-server switched to {task}")
