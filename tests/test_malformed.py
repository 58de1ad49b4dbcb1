"""Malformed checkpoints and artifacts, each through the CLI: one line `embcc: error: <problem>; <fix>`, exit 2,
and nothing written (no --out, no staging directory, no lock file beside it).

Every case damages a copy of a tiny fixture the way a real download, conversion or hand edit goes wrong."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from embcc.cli import main
from embcc.core.errors import EmbccError


def one_line_error(capsys, argv: list[str], *words: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(err) == 1 and err[0].startswith("embcc: error: "), err
    print(err[0])
    assert "; " in err[0], err[0]  # problem; fix
    for w in words:
        assert w in err[0], (w, err[0])
    return err[0]


def nothing_written(out: Path) -> None:
    assert not out.exists()
    left = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]
    assert not left, left  # no staging directory, no .out.lock


def export_fails(capsys, ckpt: Path, out: Path, *words: str, extra: tuple[str, ...] = ()) -> str:
    line = one_line_error(capsys, ["export", str(ckpt), "--out", str(out), *extra], *words)
    nothing_written(out)
    return line


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    return tmp_path


def clone(src: Path, work: Path, name: str = "ck") -> Path:
    return Path(shutil.copytree(src, work / name, symlinks=True))


def edit_config(ckpt: Path, edit) -> None:
    cfg = json.loads((ckpt / "config.json").read_text())
    edit(cfg)
    (ckpt / "config.json").write_text(json.dumps(cfg))


def edit_weights(ckpt: Path, edit, file: str = "model.safetensors") -> None:
    w = load_file(str(ckpt / file))
    edit(w)
    save_file(w, str(ckpt / file), metadata={"format": "pt"})


def rewrite_header(f: Path, edit) -> None:
    """Edit a safetensors file's JSON header in place (8-byte little-endian length, the JSON, then the data)."""
    raw = f.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-(len(text)) % 8)
    f.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])


# ---- weights ---------------------------------------------------------------------------------------------------


def test_truncated_safetensors(capsys, ckpts, work):
    ck = clone(ckpts["v3"], work)
    data = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(data[: len(data) // 2])
    export_fails(capsys, ck, work / "out", "model.safetensors is not a readable safetensors file", "re-download")


def test_header_longer_than_the_file(capsys, ckpts, work):
    ck = clone(ckpts["v2-small"], work)
    f = ck / "model.safetensors"
    raw = f.read_bytes()
    f.write_bytes(struct.pack("<Q", len(raw) * 4) + raw[8:])  # the length field claims more bytes than there are
    export_fails(capsys, ck, work / "out", "not a readable safetensors file")


def test_tensor_offsets_past_the_end_of_the_file(capsys, ckpts, work):
    ck = clone(ckpts["v3"], work)

    def edit(h):
        last = max((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][1])
        h[last]["data_offsets"][1] += 4096  # claims bytes the file does not have

    rewrite_header(ck / "model.safetensors", edit)
    export_fails(capsys, ck, work / "out", "not a readable safetensors file")


@pytest.mark.parametrize("dtype,name", [(torch.int64, "int64"), (torch.complex64, "complex64"),
                                        (torch.float8_e4m3fn, "float8_e4m3fn")])
def test_weights_of_a_non_float_dtype(capsys, ckpts, work, dtype, name):
    ck = clone(ckpts["v3"], work)
    key = "roberta.encoder.layers.0.mlp.fc1.bias"
    edit_weights(ck, lambda w: w.__setitem__(key, w[key].to(dtype)))
    export_fails(capsys, ck, work / "out", f"is stored as {name}", "layers.0.mlp.fc1.bias")


@pytest.mark.parametrize("fixture,key", [("v3", "roberta.encoder.layers.1.mlp.fc2.bias"),
                                         ("v2-small", "encoder.layer.0.mlp.wo.bias")])
def test_missing_tensor(capsys, ckpts, work, fixture, key):
    ck = clone(ckpts[fixture], work)
    edit_weights(ck, lambda w: w.pop(key))
    export_fails(capsys, ck, work / "out", "is missing tensor")


def test_missing_tensor_v5(capsys, v5_ckpts, work):
    ck = clone(v5_ckpts["nano"], work)
    edit_weights(ck, lambda w: w.pop(next(k for k in w if k.endswith("layers.0.mlp.up_proj.weight"))))
    export_fails(capsys, ck, work / "out", "is missing tensor", "layers.0.mlp.up_proj.weight")


def test_extra_tensor(capsys, ckpts, v5_ckpts, work):
    ck = clone(v5_ckpts["nano"], work)
    edit_weights(ck, lambda w: w.__setitem__("layers.0.self_attn.extra.weight", torch.zeros(4, 4, dtype=torch.bfloat16)))
    export_fails(capsys, ck, work / "out", "unexpected tensor", "layers.0.self_attn.extra.weight")


def test_tensor_of_the_wrong_shape(capsys, ckpts, work):
    ck = clone(ckpts["v3-hf"], work)
    key = next(k for k in load_file(str(ckpts["v3-hf"] / "model.safetensors")) if k.endswith("layers.1.mlp.fc1.bias"))
    edit_weights(ck, lambda w: w.__setitem__(key, torch.zeros(w[key].shape[0] + 1, dtype=torch.bfloat16)))
    export_fails(capsys, ck, work / "out", "has shape", "config.json implies")


def test_shard_missing_from_a_sharded_checkpoint(capsys, ckpts, work):
    ck = clone(ckpts["v2-small"], work)
    w = load_file(str(ck / "model.safetensors"))
    (ck / "model.safetensors").unlink()
    keys = sorted(w)
    save_file({k: w[k] for k in keys[::2]}, str(ck / "model-00001-of-00002.safetensors"))
    index = {"metadata": {}, "weight_map": {k: f"model-0000{1 + i % 2}-of-00002.safetensors" for i, k in enumerate(keys)}}
    (ck / "model.safetensors.index.json").write_text(json.dumps(index))
    export_fails(capsys, ck, work / "out", "lacks weight shard model-00002-of-00002.safetensors")


def test_shard_index_pointing_outside(capsys, ckpts, work):
    ck = clone(ckpts["v2-small"], work)
    w = load_file(str(ck / "model.safetensors"))
    (ck / "model.safetensors").rename(work / "elsewhere.safetensors")
    (ck / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {k: "../elsewhere.safetensors" for k in w}}))
    export_fails(capsys, ck, work / "out", "not a file in the checkpoint directory")


@pytest.mark.parametrize("text", ["[1, 2]", '{"weight_map": 3}', "{"])
def test_broken_shard_index(capsys, ckpts, work, text):
    ck = clone(ckpts["v2-small"], work)
    (ck / "model.safetensors").unlink()
    (ck / "model.safetensors.index.json").write_text(text)
    export_fails(capsys, ck, work / "out", "model.safetensors.index.json")


def test_pickle_only_weights(capsys, ckpts, work):
    ck = clone(ckpts["v3"], work)
    (ck / "model.safetensors").unlink()
    (ck / "pytorch_model.bin").write_bytes(b"\x80\x04not unpickled")
    export_fails(capsys, ck, work / "out", "never unpickles")


def test_pickle_only_adapter(capsys, v5_ckpts, work):
    ck = clone(v5_ckpts["nano"], work)
    folder = ck / "adapters" / "retrieval"
    (folder / "adapter_model.safetensors").unlink()
    (folder / "adapter_model.bin").write_bytes(b"\x80\x04not unpickled")
    export_fails(capsys, ck, work / "out", "never unpickles")


# ---- config.json ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "not_json", "list", "string", "latin1", "empty"])
def test_config_that_does_not_read_as_an_object(capsys, ckpts, work, damage):
    ck = clone(ckpts["v3"], work)
    f = ck / "config.json"
    text = f.read_text()
    f.write_bytes({
        "truncated": text[: len(text) // 2].encode(),
        "not_json": b"model_type = xlm-roberta\n",
        "list": b"[1, 2, 3]",
        "string": b'"xlm-roberta"',
        "latin1": json.dumps({"model_type": "xlm-roberta", "note": "caf\u00e9"}, ensure_ascii=False).encode("latin-1"),
        "empty": b"",
    }[damage])
    words = {"list": "not an object", "string": "not an object", "latin1": "not UTF-8"}.get(damage, "not valid JSON")
    export_fails(capsys, ck, work / "out", "config.json", words)


@pytest.mark.parametrize("fixture,edit,words", [
    ("v3", lambda c: c.__setitem__("hidden_size", "large"), "config.json"),
    ("v3", lambda c: c.__setitem__("num_hidden_layers", None), "config.json"),
    ("v3", lambda c: c.__setitem__("num_attention_heads", 7), "config.json"),
    ("v3", lambda c: c.__setitem__("lora_adaptations", "retrieval.query"), "lora_adaptations"),
    ("v3", lambda c: c.pop("num_hidden_layers"), ""),
    ("v3", lambda c: c.__setitem__("max_position_embeddings", "long"), "config.json"),
    ("v3", lambda c: c.__setitem__("task_instructions", ["x"]), "task_instructions"),
    ("v3", lambda c: c.__setitem__("lora_rank", 0), "config.json"),
    ("v3-hf", lambda c: c.__setitem__("intermediate_size", -1), "config.json"),
    ("v2-small", lambda c: c.__setitem__("num_attention_heads", 0), "config.json"),
    ("v2-small", lambda c: c.__setitem__("vocab_size", 1.5), "config.json"),
])
def test_config_with_wrong_values(capsys, ckpts, work, fixture, edit, words):
    ck = clone(ckpts[fixture], work)
    edit_config(ck, edit)
    export_fails(capsys, ck, work / "out", words)


def test_partial_v5_config(capsys, v5_ckpts, work):
    ck = clone(v5_ckpts["nano"], work)
    edit_config(ck, lambda c: [c.pop(k) for k in ("hidden_size", "intermediate_size")])
    export_fails(capsys, ck, work / "out")


def test_v5_task_names_not_a_list(capsys, v5_ckpts, work):
    ck = clone(v5_ckpts["nano"], work)
    edit_config(ck, lambda c: c.__setitem__("task_names", "retrieval"))
    export_fails(capsys, ck, work / "out", "task_names")


# ---- vocabulary, tokenizer ---------------------------------------------------------------------------------------


def test_config_vocab_size_differs_from_the_embedding_table(capsys, ckpts, work):
    ck = clone(ckpts["v3"], work)
    edit_config(ck, lambda c: c.__setitem__("vocab_size", c["vocab_size"] + 8))
    export_fails(capsys, ck, work / "out", "word_embeddings.weight", "has shape")


def test_tokenizer_larger_than_the_embedding_table(capsys, ckpts, work):
    """The tokenizer of a bigger vocabulary beside a smaller table: ids past the table would fail at run time."""
    ck = clone(ckpts["v2-small"], work)
    rows = json.loads((ck / "config.json").read_text())["vocab_size"]
    edit_weights(ck, lambda w: w.__setitem__("embeddings.word_embeddings.weight",
                                             w["embeddings.word_embeddings.weight"][: rows - 50].clone()))
    edit_config(ck, lambda c: c.__setitem__("vocab_size", rows - 50))
    export_fails(capsys, ck, work / "out", "token ids up to", f"{rows - 50} rows")


@pytest.mark.parametrize("text", [b"{not json", b"[]", b'{"model": {"type": "Nope"}}', b"\xff\xfe\x00"])
def test_tokenizer_json_that_does_not_parse(capsys, ckpts, work, text):
    ck = clone(ckpts["v3"], work)
    (ck / "tokenizer.json").write_bytes(text)
    export_fails(capsys, ck, work / "out", "tokenizer.json does not parse")


def test_missing_tokenizer(capsys, ckpts, work):
    ck = clone(ckpts["v2-small"], work)
    (ck / "tokenizer.json").unlink()
    export_fails(capsys, ck, work / "out", "has no tokenizer.json")


# ---- adapters ------------------------------------------------------------------------------------------------------


def test_v5_adapters_of_another_base(capsys, v5_ckpts, work):
    ck = clone(v5_ckpts["nano"], work)
    shutil.rmtree(ck / "adapters")
    shutil.copytree(v5_ckpts["small"] / "adapters", ck / "adapters")
    export_fails(capsys, ck, work / "out", "adapter")


def test_v3_hf_adapters_of_another_base(capsys, ckpts, work, tmp_path_factory):
    from embcc.fixtures import write_fixture

    other = write_fixture("jina-v3", tmp_path_factory.mktemp("o") / "v3-256", size="tiny256", layout="hf")
    ck = clone(ckpts["v3-hf"], work)
    for d in ("retrieval_query", "retrieval_passage", "separation", "classification", "text_matching"):
        shutil.rmtree(ck / d)
        shutil.copytree(other / d, ck / d)
    export_fails(capsys, ck, work / "out", "do not fit", "trained for a different base model")


def test_v5_adapter_folder_for_a_task_the_config_lacks(capsys, v5_ckpts, work):
    ck = clone(v5_ckpts["nano"], work)
    shutil.copytree(ck / "adapters" / "retrieval", ck / "adapters" / "summarization")
    export_fails(capsys, ck, work / "out", "'summarization'", "task_names")


def test_v3_hf_adapter_folder_for_a_task_the_config_lacks(capsys, ckpts, work):
    ck = clone(ckpts["v3-hf"], work)
    shutil.copytree(ck / "separation", ck / "summarization")
    export_fails(capsys, ck, work / "out", "'summarization'", "lora_adaptations")


def test_v5_config_names_a_task_without_adapter(capsys, v5_ckpts, work):
    ck = clone(v5_ckpts["nano"], work)
    edit_config(ck, lambda c: c.__setitem__("task_names", [*c["task_names"], "summarization"]))
    export_fails(capsys, ck, work / "out", "summarization")


def test_v3_hf_config_names_a_task_without_adapter(capsys, ckpts, work):
    ck = clone(ckpts["v3-hf"], work)
    edit_config(ck, lambda c: c.__setitem__("lora_adaptations", [*c["lora_adaptations"], "summarization"]))
    export_fails(capsys, ck, work / "out", "summarization")


def test_broken_adapter_config(capsys, v5_ckpts, work):
    ck = clone(v5_ckpts["nano"], work)
    (ck / "adapters" / "clustering" / "adapter_config.json").write_text("[1, 2, 3]")
    export_fails(capsys, ck, work / "out", "adapter_config.json")


def test_truncated_adapter_weights(capsys, ckpts, work):
    ck = clone(ckpts["v3-hf"], work)
    f = ck / "classification" / "adapter_model.safetensors"
    f.write_bytes(f.read_bytes()[:100])
    export_fails(capsys, ck, work / "out", "adapter_model.safetensors")


# ---- what the checkpoint directory may contain -----------------------------------------------------------------------


@pytest.mark.parametrize("what", ["model.safetensors", "tokenizer.json", "adapters"])
def test_symlink_out_of_the_checkpoint_is_refused(capsys, v5_ckpts, work, what):
    ck = clone(v5_ckpts["nano"], work)
    outside = work / "outside"
    outside.mkdir()
    (ck / what).rename(outside / what)
    (ck / what).symlink_to(outside / what)
    export_fails(capsys, ck, work / "out", "outside the checkpoint directory", what)


def test_symlink_inside_the_checkpoint_and_hub_cache_layout_are_accepted(ckpts, work):
    """Links that stay inside (and huggingface_hub's snapshots -> ../../blobs links) are not 'outside'."""
    from embcc.families.base import check_contained

    ck = clone(ckpts["v2-small"], work)
    (ck / "sub").mkdir()
    (ck / "vocab.txt").rename(ck / "sub" / "vocab.txt")
    (ck / "vocab.txt").symlink_to("sub/vocab.txt")
    check_contained(ck)
    repo = work / "models--jinaai--jina-embeddings-v2-small-en"
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for f in ck.iterdir():
        if f.is_file() and not f.is_symlink():
            shutil.copy(f, repo / "blobs" / f.name)
            (snap / f.name).symlink_to(os.path.relpath(repo / "blobs" / f.name, snap))
    check_contained(snap)
    (snap / "evil.json").symlink_to(work / "ck" / "config.json")
    with pytest.raises(EmbccError, match="outside the checkpoint directory"):
        check_contained(snap)


def test_dangling_symlink(capsys, ckpts, work):
    ck = clone(ckpts["v2-small"], work)
    (ck / "vocab.txt").unlink()
    (ck / "vocab.txt").symlink_to(ck / "gone.txt")
    export_fails(capsys, ck, work / "out", "dangling symlink")


def test_checkpoint_is_a_file(capsys, ckpts, work):
    f = work / "model.safetensors"
    shutil.copy(ckpts["v2-small"] / "model.safetensors", f)
    export_fails(capsys, f, work / "out", "is not a directory")


# ---- the output location ---------------------------------------------------------------------------------------------


def test_out_whose_parent_is_a_file(capsys, ckpts, work):
    (work / "file").write_text("x")
    one_line_error(capsys, ["export", str(ckpts["v2-small"]), "--out", str(work / "file" / "out")], "is a file")
    one_line_error(capsys, ["export", str(ckpts["v2-small"]), "--out", str(work / "file" / "a" / "out")], "is a file")
    assert (work / "file").read_text() == "x"
    assert [p.name for p in work.iterdir()] == ["file"]


def test_out_in_a_read_only_directory(capsys, ckpts, work):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    ro = work / "ro"
    ro.mkdir(mode=0o555)
    one_line_error(capsys, ["export", str(ckpts["v2-small"]), "--out", str(ro / "out")], "writable")


# ---- malformed artifacts: verify and open_artifact ----------------------------------------------------------------


@pytest.fixture(scope="module")
def artifacts(ckpts, tmp_path_factory) -> dict[str, Path]:
    from embcc.pipeline import export

    root = tmp_path_factory.mktemp("malformed-art")
    return {"onnx": export(ckpts["v2-small"], root / "onnx", max_length=64),
            "gguf": export(ckpts["v2-small"], root / "gguf", fmt="gguf", max_length=64)}


def damage(art: Path, how: str) -> None:
    if how == "no embcc.json":
        (art / "embcc.json").unlink()
    elif how == "garbled embcc.json":
        (art / "embcc.json").write_bytes(b'{"family": "jina-v2", "dim": ')
    elif how == "embcc.json a list":
        (art / "embcc.json").write_text("[1, 2, 3]")
    elif how == "embcc.json of another version":
        spec = json.loads((art / "embcc.json").read_text())
        spec["flavour"] = "new"
        spec.pop("dim")
        (art / "embcc.json").write_text(json.dumps(spec))
    elif how == "garbled manifest.json":
        (art / "manifest.json").write_text("{")
    elif how == "truncated model":
        f = art / ("model.onnx" if (art / "model.onnx").is_file() else "model.gguf")
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    elif how == "model file emptied":
        f = art / ("model.onnx" if (art / "model.onnx").is_file() else "model.gguf")
        f.write_bytes(b"")
    else:
        raise AssertionError(how)


HOW = ["no embcc.json", "garbled embcc.json", "embcc.json a list", "embcc.json of another version",
       "garbled manifest.json", "truncated model", "model file emptied"]


@pytest.mark.parametrize("kind", ["onnx", "gguf"])
@pytest.mark.parametrize("how", HOW)
def test_verify_a_malformed_artifact(capsys, ckpts, artifacts, work, kind, how):
    art = Path(shutil.copytree(artifacts[kind], work / "art"))
    damage(art, how)
    one_line_error(capsys, ["verify", str(art), "--reference", str(ckpts["v2-small"])])
    assert not (art / "parity.json").exists()


@pytest.mark.parametrize("kind", ["onnx", "gguf"])
@pytest.mark.parametrize("how", [h for h in HOW if "manifest" not in h])
def test_open_a_malformed_artifact(artifacts, work, kind, how):
    from embcc.runtimes import open_artifact

    art = Path(shutil.copytree(artifacts[kind], work / "art"))
    damage(art, how)
    with pytest.raises(EmbccError) as e:
        open_artifact(art).encode(["hello"])
    assert "\n" not in str(e.value)
