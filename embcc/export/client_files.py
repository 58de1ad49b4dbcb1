"""What existing clients need beside the graph, written into every artifact directory in one place.

The pipeline calls `write_client_files` after the format wrote its files (and embcc.json), before the manifest:

- every artifact: `README.md` (how to call it: inputs, the task prefixes and roles the caller adds, pooling,
  Matryoshka dims, task_id for kept adapters, per client), the checkpoint's own LICENSE/NOTICE files and model
  card (its README.md, as `MODEL_CARD.md`) copied byte for byte, never written by embcc, and the provenance
  (source sha256, plus the name and revision the user gave) in README.md and manifest.json;
- ONNX artifacts, for the clients that load a directory (SPEC.md section 7): `config.json` (the family's
  `client_config`: a transformers type every client version parses, no remote code, the dims
  text-embeddings-inference reads, pad id from the tokenizer files), `tokenizer_config.json` (the checkpoint's,
  with `model_max_length` set to the artifact's max length and `padding_side` right, as embcc's runtimes pad)
  and `special_tokens_map.json` (fastembed reads both); and, where the graph needs no `task_id` (a client of
  these files cannot feed one), the sentence-transformers files: `modules.json` (Transformer -> Pooling ->
  Normalize), `sentence_bert_config.json` (max_seq_length), `1_Pooling/config.json` (the family's pooling),
  `2_Normalize/`, and `config_sentence_transformers.json` with the task's prompts as default prompt.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import onnx

from embcc import __version__
from embcc.core.bundle import Bundle
from embcc.core.files import write_json
from embcc.core.manifest import ARTIFACT_FORMAT
from embcc.core.spec import ModelSpec
from embcc.export.base import Plan
from embcc.runtimes import onnx_forms
from embcc.runtimes.llamacpp import MODEL_FILE as GGUF_FILE
from embcc.runtimes.llamacpp import adapter_file
from embcc.runtimes.preprocess import pad_id_of

README = "README.md"
MODEL_CARD = "MODEL_CARD.md"  # the checkpoint's README.md, copied
LICENSE_NAMES = re.compile(r"^(LICEN[CS]E|NOTICE|COPYING)([.-].*)?$", re.IGNORECASE)
ST_POOLING = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token", "last": "pooling_mode_lasttoken"}
ST_POOLING_KEYS = ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
                   "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")
FASTEMBED_POOLING = {"mean": "MEAN", "cls": "CLS", "last": "LAST_TOKEN"}
LLAMA_POOLING = {"mean": "mean", "cls": "cls", "last": "last"}
POOLING_WORDS = {"mean": "mean over the attention mask (prefix tokens included)",
                 "cls": "the first token", "last": "the last real token (the EOS the tokenizer appends)"}


def write_client_files(root: Path, bundle: Bundle, plan: Plan, *, source: dict | None = None) -> None:
    """Client files into every artifact directory of one export staged at `root` (see the module docstring)."""
    source = {"sha256": bundle.source_sha256, **{k: v for k, v in (source or {}).items() if v}}
    dirs = [root / sub if sub else root for sub, _task, _part in plan.units]
    for where in dirs:
        write_artifact_files(where, ModelSpec.read(where), bundle, source)
    if dirs != [root]:
        _copy_source_files(bundle.path, root)
        (root / README).write_text(_index_readme(root, dirs, bundle, plan, source))


def write_artifact_files(where: Path, spec: ModelSpec, bundle: Bundle, source: dict) -> None:
    graphs = onnx_forms(where)
    io = _graph_io(where / graphs[0]) if graphs else None
    config = bundle.family.client_config(bundle, spec) if graphs else None
    st = False
    if config is not None:
        tok = _tokenizer_files(where, spec)
        write_json(where / "config.json", {**config, "pad_token_id": tok["pad_id"]})
        if "task_id" not in io["inputs"]:
            _st_files(where, spec)
            st = True
    copied = _copy_source_files(bundle.path, where)
    (where / README).write_text(_readme(where, spec, graphs, io, config, st, copied, source))


# ---- files for the ONNX clients ---------------------------------------------------------------------------------


def _graph_io(path: Path) -> dict:
    """Input and output names, element types and shapes (symbolic axes by name) of one graph."""
    model = onnx.load(str(path), load_external_data=False)
    init = {i.name for i in model.graph.initializer}

    def describe(values) -> dict:
        out = {}
        for v in values:
            if v.name in init:
                continue
            t = v.type.tensor_type
            shape = None if not t.HasField("shape") else [d.dim_param or d.dim_value for d in t.shape.dim]
            out[v.name] = (onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, shape)
        return out

    return {"inputs": describe(model.graph.input), "outputs": describe(model.graph.output)}


def _tokenizer_files(where: Path, spec: ModelSpec) -> dict:
    """tokenizer_config.json and special_tokens_map.json as clients read them; returns the pad id."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(where / "tokenizer.json"))
    pad_id = pad_id_of(tokenizer, where)
    f = where / "tokenizer_config.json"
    cfg = json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {"tokenizer_class": "PreTrainedTokenizerFast"}
    if not cfg.get("pad_token"):  # fastembed refuses a tokenizer without a pad token
        cfg["pad_token"] = tokenizer.id_to_token(pad_id)
    cfg["model_max_length"] = spec.max_length  # fastembed and transformers truncate here, as embcc's runtimes do
    cfg["padding_side"] = "right"  # text-embeddings-inference pools by it; embcc's runtimes pad right
    write_json(f, cfg)
    special = where / "special_tokens_map.json"
    if not special.is_file():
        write_json(special, {k: v for k, v in cfg.items() if k.endswith("_token") and isinstance(v, str | dict)})
    return {"pad_id": pad_id}


def _st_files(where: Path, spec: ModelSpec) -> None:
    write_json(where / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    write_json(where / "sentence_bert_config.json", {"max_seq_length": spec.max_length, "do_lower_case": False})
    (where / "1_Pooling").mkdir(exist_ok=True)
    pooling = {k: k == ST_POOLING[spec.pooling] for k in ST_POOLING_KEYS}
    write_json(where / "1_Pooling" / "config.json",
               {"word_embedding_dimension": spec.dim, **pooling, "include_prompt": True})
    (where / "2_Normalize").mkdir(exist_ok=True)
    prompts, default = _prompts(spec)
    write_json(where / "config_sentence_transformers.json",
               {"prompts": prompts, "default_prompt_name": default, "similarity_fn_name": "cosine",
                "model_type": "SentenceTransformer"})


def _merged_task(spec: ModelSpec):
    """The one task an artifact runs (its merged task, or a pre-merged model's), None for kept adapters (the
    caller picks per call) and for models without tasks."""
    return spec.task_by_name(None) if spec.tasks and spec.lora != "keep" else None


def _prompts(spec: ModelSpec) -> tuple[dict[str, str], str | None]:
    """sentence-transformers prompts for a graph without task_id: the merged task's prefix (per role where the
    family has roles) as the default prompt, so `encode(texts)` adds what embcc's runtime adds."""
    task = _merged_task(spec)
    if task is None:
        return {}, None
    if task.roles:
        role = spec.role if spec.role in task.roles else next(iter(task.roles))
        return dict(task.roles), role
    return {task.name: task.prefix}, task.name


def _copy_source_files(checkpoint: Path, where: Path) -> list[str]:
    """The checkpoint's license files and model card, copied as found."""
    copied = []
    for f in sorted(checkpoint.iterdir()):
        if f.is_file() and LICENSE_NAMES.match(f.name):
            shutil.copyfile(f, where / f.name)
            copied.append(f.name)
    if (checkpoint / "README.md").is_file():
        shutil.copyfile(checkpoint / "README.md", where / MODEL_CARD)
        copied.append(MODEL_CARD)
    return copied


# ---- README.md -------------------------------------------------------------------------------------------------


def _front_matter(where: Path) -> str:
    """The model card's YAML front matter (license, tags ...), copied verbatim so a hub shows the source's terms."""
    card = where / MODEL_CARD
    if not card.is_file():
        return ""
    text = card.read_text(encoding="utf-8", errors="replace")
    m = re.match(r"---\n.*?\n---\n", text, re.DOTALL)
    return m.group(0) + "\n" if m else ""


def _provenance(source: dict) -> list[str]:
    named = source.get("name")
    lines = [f"- Source checkpoint: {f'`{named}`' if named else 'a local directory (no name given at export)'}"
             + (f", revision `{source['revision']}`" if source.get("revision") else "")]
    lines.append(f"- Source sha256 (every file of the checkpoint directory, names and bytes): `{source['sha256']}`")
    if not named:
        lines.append("- Pass `embcc export ... --source NAME --revision REV` to record where the checkpoint came from.")
    lines.append(f"- Written by embcc {__version__}, artifact format {ARTIFACT_FORMAT}; `manifest.json` holds the "
                 "sha256 of every file, and embcc refuses to open a file that does not match it.")
    return lines


def _license_lines(copied: list[str]) -> list[str]:
    lic = [f for f in copied if f != MODEL_CARD]
    lines = []
    lines.append(f"- License: {', '.join(f'`{f}`' for f in lic)} copied from the checkpoint." if lic else
                 "- License: the checkpoint holds no LICENSE file, and embcc writes none; the source model's own "
                 "terms apply (see its model card).")
    lines.append(f"- Model card: `{MODEL_CARD}` is the checkpoint's README.md, copied." if MODEL_CARD in copied else
                 "- Model card: the checkpoint holds none.")
    return lines


def _task_table(spec: ModelSpec) -> list[str]:
    if not spec.tasks:
        return ["This model has no tasks and takes no prefix."]
    rows = ["| task | task_id | prefix to prepend | roles |", "|---|---|---|---|"]
    shown = spec.tasks if spec.lora == "keep" else [t for t in [_merged_task(spec)] if t is not None]
    for t in shown:
        roles = ", ".join(f"{r}: `{json.dumps(p)}`" for r, p in t.roles.items()) if t.roles else "-"
        rows.append(f"| {t.name} | {t.id} | `{json.dumps(t.prefix)}` | {roles} |")
    return rows


def _io_table(io: dict) -> list[str]:
    rows = ["| | name | type | shape |", "|---|---|---|---|"]
    for kind in ("inputs", "outputs"):
        for name, (dtype, shape) in io[kind].items():
            rows.append(f"| {kind[:-1]} | `{name}` | {dtype} | {shape if shape is not None else 'scalar or [1]'} |")
    return rows


def _readme(where: Path, spec: ModelSpec, graphs: list[str], io: dict | None, config: dict | None, st: bool,
            copied: list[str], source: dict) -> str:
    task = _merged_task(spec)
    what = "every task (adapters kept, chosen per call)" if spec.lora == "keep" else (
        f"task `{task.name}`" + (" (adapter merged)" if spec.lora == "merge" else "") if task else "no tasks")
    fmt = "ONNX" if graphs else "GGUF"
    L = [_front_matter(where) + f"# {spec.family}: {what}, {fmt} {spec.precision}", ""]
    L += [f"Exported by embcc from a {spec.family} checkpoint. `embcc.json` holds the same facts for embcc's own "
          "runtimes (`embcc.runtimes.open_artifact(dir).encode(texts, task=..., dim=...)`).", ""]
    L += ["## What the caller must do", ""]
    L += [f"- Tokenise with `tokenizer.json`, truncating at {spec.max_length} tokens (special tokens included); "
          "pad on the right and pass the attention mask." if graphs else
          f"- llama.cpp tokenises from the GGUF's own vocabulary; the artifact was made for up to {spec.max_length} "
          "tokens per text (special tokens included): size the context to it and keep texts within it."]
    L += ["- Prepend the task prefix (and, where the model has roles, the role's prefix) to every text, unless the "
          "client adds it (sentence-transformers and text-embeddings-inference read the prompts of "
          "`config_sentence_transformers.json`; llama.cpp, fastembed and plain ONNX Runtime add nothing). "
          "A forgotten prefix gives valid-looking but wrong vectors.", ""]
    L += _task_table(spec) + [""]
    if spec.role is not None:
        L += [f"The default role of this artifact is `{spec.role}`.", ""]
    L += [f"- Pooling: {POOLING_WORDS[spec.pooling]}, then L2 normalisation"
          + (" (`sentence_embedding` holds the result; `text_embeds` / `last_hidden_state` hold the token states)."
             if graphs else f" (the GGUF says pooling `{LLAMA_POOLING[spec.pooling]}`; llama.cpp pools, the caller "
             "normalises).")]
    dims = spec.matryoshka_dims or []
    L += [f"- Dimension {spec.dim}" + (f"; Matryoshka: keep the first d of {', '.join(map(str, dims))} values, then "
                                       "L2-normalise again." if dims else ".")]
    if spec.lora == "keep" and graphs:
        L += ["- `task_id` (int64, a scalar or a one-element array) picks the task's adapter; one task per batch. "
              "sentence-transformers, fastembed and text-embeddings-inference cannot feed it: serve a merged "
              "artifact (`embcc export --lora merge`) with them, or Triton (below)."]
    L += [""]
    if graphs:
        L += _onnx_clients(where, spec, graphs, io, config, st)
    else:
        L += _gguf_clients(where, spec)
    L += ["## Provenance and license", ""] + _provenance(source) + _license_lines(copied) + [""]
    return "\n".join(L)


def _onnx_clients(where: Path, spec: ModelSpec, graphs: list[str], io: dict, config: dict | None, st: bool) -> list[str]:
    L = ["## The graphs", ""]
    for g in graphs:
        L.append(f"- `{g}`: " + ("what ONNX Runtime runs on CPU (it may hold com.microsoft contrib ops)."
                                 if g == "model.onnx" else "standard ONNX ops only (TensorRT and other consumers)."))
    L += [""] + _io_table(io) + [""]
    merged = _merged_task(spec)
    prefix = merged.prefix_for(spec.role) if merged else ""  # kept adapters: the chosen task's prefix (table above)
    feed = '"input_ids": ids, "attention_mask": mask' + (', "task_id": np.array(TASK_ID)' if "task_id" in io["inputs"] else "")
    L += ["## Clients", "", "ONNX Runtime:", "", "```python", "import numpy as np, onnxruntime as ort",
          "from tokenizers import Tokenizer", 'tok = Tokenizer.from_file("tokenizer.json")',
          f"tok.enable_truncation({spec.max_length}); tok.enable_padding(pad_id=PAD_ID)  # pad_token_id of config.json",
          f"enc = tok.encode_batch([{json.dumps(prefix) if merged or not spec.tasks else 'PREFIX'} + t for t in texts])"
          + ("  # PREFIX: the task's, from the table above" if spec.lora == "keep" and spec.tasks else ""),
          "ids = np.array([e.ids for e in enc]); mask = np.array([e.attention_mask for e in enc])",
          'sess = ort.InferenceSession("model.onnx")',
          f'(vectors,) = sess.run(["sentence_embedding"], {{{feed}}})  # pooled and L2-normalised', "```", ""]
    if config is None:
        return L
    mt = config["model_type"]
    if st:
        L += ["sentence-transformers (`backend=\"onnx\"`, through optimum's ORTModelForFeatureExtraction; it "
              "resolves with sentence-transformers <= 5.4 + optimum-onnx, which pin transformers < 4.58; "
              f"config.json's model_type `{mt}` must be one that transformers version knows):", "",
              "```python", "from sentence_transformers import SentenceTransformer",
              'model = SentenceTransformer(DIR, backend="onnx", model_kwargs={"file_name": "model.onnx"})',
              "vectors = model.encode(texts)  # the default prompt (the task prefix) is added"
              + (f"; truncate_dim={min(spec.matryoshka_dims)}.. for Matryoshka" if spec.matryoshka_dims else ""),
              "```", ""]
    if "task_id" not in io["inputs"]:
        L += ["fastembed (reads tokenizer.json, tokenizer_config.json, special_tokens_map.json, config.json; adds "
              "no prefix):", "", "```python", "from fastembed import TextEmbedding",
              "from fastembed.common.model_description import ModelSource, PoolingType",
              f'TextEmbedding.add_custom_model("local/{spec.family}", pooling=PoolingType.DISABLED, '
              f'normalization=False, sources=ModelSource(hf="local/{spec.family}"), dim={spec.dim}, '
              'model_file="model.onnx", output_name="sentence_embedding")',
              f'model = TextEmbedding("local/{spec.family}", specific_model_path=DIR)',
              f"vectors = list(model.embed([{json.dumps(prefix)} + t for t in texts]))",
              "```", "",
              f"(or `pooling=PoolingType.{FASTEMBED_POOLING[spec.pooling]}, normalization=True` on output 0, "
              "`text_embeds`).", ""]
        L += ["text-embeddings-inference (ORT backend, CPU image): `text-embeddings-router --model-id DIR` uses "
              "`model.onnx`, its `sentence_embedding` output, config.json's `hidden_size` / `num_hidden_layers` / "
              "`max_position_embeddings`, `sentence_bert_config.json`'s max_seq_length and tokenizer_config.json's "
              "`padding_side`; `--default-prompt-name` picks a prompt of `config_sentence_transformers.json`.", ""]
    L += ["NVIDIA Triton (onnxruntime backend): `embcc package DIR --layout triton --out REPO` writes "
          "`REPO/<name>/config.pbtxt` and `REPO/<name>/1/model.onnx` (the `model.onnx/` directory form when the "
          "graph has external data)" + ("; kept adapters: `task_id` is an input, one task per request "
                                        "(max_batch_size 0, no dynamic batching)." if "task_id" in io["inputs"] else
                                        "."), ""]
    return L


def _gguf_clients(where: Path, spec: ModelSpec) -> list[str]:
    pool = LLAMA_POOLING[spec.pooling]
    exact = " --type_k 0 --type_v 0" if spec.precision == "f32" else ""
    L = ["## Clients", "", f"- `{GGUF_FILE}`: llama.cpp (`jina-bert-*`, `qwen3`, `eurobert` architectures); "
         "tokenisation happens inside llama.cpp from the GGUF's vocabulary.", ""]
    L += ["llama.cpp's server:", "", "```sh",
          f"llama-server -m {GGUF_FILE} --embedding --pooling {pool} -c {spec.max_length} -ub {spec.max_length}"
          + (" --flash-attn off -ctk f32 -ctv f32" if exact else "")
          + (" --lora lora-TASK.gguf" if spec.lora == "keep" else ""),
          "curl -s localhost:8080/v1/embeddings -d '{\"input\": [\"PREFIX + text\"]}'", "```", "",
          "llama-cpp-python's OpenAI-compatible server:", "", "```sh",
          f"python -m llama_cpp.server --model {GGUF_FILE} --embedding true --n_ctx {spec.max_length}{exact}"
          + (" --lora_path lora-TASK.gguf" if spec.lora == "keep" else ""), "```", "",
          "Both return the pooled vector unnormalised: L2-normalise it."
          + (" For f32 parity keep llama.cpp's attention in f32 (F32 KV cache as above, no flash attention)."
             if exact else ""), ""]
    if spec.lora == "keep":
        files = ", ".join(f"`{adapter_file(t.name)}` ({t.name})" for t in spec.tasks)
        L += ["### Choosing the task (kept adapters)", "",
              f"`{GGUF_FILE}` is the base model; each task is an adapter: {files}. llama.cpp applies adapter scales "
              "to the whole server, never per request, so pick one:", "",
              "- one server per task: `--lora lora-TASK.gguf` (llama-cpp-python: `--lora_path`), with that task's "
              "prefix on every text;",
              "- one server, switched globally: `llama-server --lora lora-A.gguf --lora lora-B.gguf ... "
              "--lora-init-without-apply`, then `POST /lora-adapters` with `[{\"id\": I, \"scale\": 1.0}]` (ids "
              "in the order of the --lora flags, every other adapter at scale 0) before a batch of that task; the "
              "switch applies to every request the server runs, so send one task's requests at a time;",
              "- merged per-task files instead (`embcc export --format gguf --lora merge`), what Jina publishes "
              "for v4/v5.", ""]
    L += ["Texts that start with a space tokenise differently in llama.cpp for SentencePiece vocabularies, and "
          "llama.cpp's byte-level BPE applies no NFC normaliser; embcc's own llama.cpp runtime corrects both.", ""]
    return L


def _index_readme(root: Path, dirs: list[Path], bundle: Bundle, plan: Plan, source: dict) -> str:
    spec = bundle.spec
    L = [f"# {spec.family}: one artifact per task ({plan.format})", "",
         "Each subdirectory is a self-contained artifact with one task's adapter merged in (its own README.md "
         "says how to call it):", ""]
    for d in dirs:
        s = ModelSpec.read(d)
        t = _merged_task(s)
        if t is None:  # a model part (jina-clip-v2's text / vision / combined), or kept adapters
            L.append(f"- `{d.name}/`: the {s.part} part" + (", every task kept" if s.lora == "keep" else ""))
            continue
        L.append(f"- `{d.name}/`: task `{t.name}` (task_id {t.id} in kept-adapter artifacts), prefix "
                 f"`{json.dumps(t.prefix_for(s.role))}`")
    copied = [f.name for f in sorted(root.iterdir()) if f.is_file() and (LICENSE_NAMES.match(f.name) or f.name == MODEL_CARD)]
    L += ["", "## Provenance and license", ""] + _provenance(source) + _license_lines(copied) + [""]
    return "\n".join(L)
