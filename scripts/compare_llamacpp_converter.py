"""embcc's GGUF export against llama.cpp's own convert_hf_to_gguf.py, both run in llama.cpp, side by side.

    python scripts/compare_llamacpp_converter.py [--work DIR] [--llama-cpp-src DIR]

The converter comes from the llama-cpp-python source distribution of the installed version
(`pip download --no-deps --no-binary :all: llama-cpp-python==X` into the work dir, unpacked there; it is
vendor/llama.cpp/convert_hf_to_gguf.py). Nothing of llama.cpp is copied into this repository.

Checkpoints (random-weight fixtures in the published layouts):
- v2-small: JinaBERT with a fixture WordPiece vocabulary;
- v3: original layout, tokenizer as transformers' converter writes it (Strip + Replace normalizers) plus
  sentencepiece.bpe.model;
- v3-published-tokenizer: the same weights with tokenizer.json only and a plain Precompiled normalizer, as Jina
  publishes it.
For each: parity against the torch fp32 reference (embcc.reference: transformers + PEFT from the checkpoint's
files, or JinaBERT's independent re-implementation; not embcc's export-side graph) on the probe set (min cosine over tasks, max_length 512),
token agreement with the HF tokenizer (llama.cpp's tokenize alone, probe texts), and GGUF bytes (all files).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from embcc.core.spec import SPEC_FILE
from embcc.families import load
from embcc.fixtures import write_fixture
from embcc.fixtures.tokenizers import as_published_v3
from embcc.pipeline import export
from embcc.probes import PROBES
from embcc.reference import reference_for
from embcc.verify import compare

MAX_LEN = 512


def converter_source(work: Path, given: Path | None) -> Path:
    if given is not None:
        return given
    import llama_cpp

    dl = work / "sdist"
    dl.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                    f"llama-cpp-python=={llama_cpp.__version__}", "-d", str(dl)], check=True)
    (archive,) = dl.glob("llama_cpp_python-*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(dl, filter="data")
    (src,) = (p for p in dl.iterdir() if p.is_dir())
    return src / "vendor" / "llama.cpp"


def fixtures(work: Path) -> dict[str, Path]:
    out = {"v2-small": write_fixture("jina-v2-small", work / "v2-small"),
           "v3": write_fixture("jina-v3", work / "v3", layout="original")}
    pub = shutil.copytree(out["v3"], work / "v3-published-tokenizer")
    (pub / "sentencepiece.bpe.model").unlink()
    as_published_v3(pub / "tokenizer.json")
    out["v3-published-tokenizer"] = pub
    return out


def run_converter(src: Path, ckpt: Path, out: Path) -> tuple[Path | None, str]:
    out.mkdir()
    r = subprocess.run([sys.executable, str(src / "convert_hf_to_gguf.py"), str(ckpt), "--outfile", str(out / "model.gguf"),
                        "--outtype", "f32"], capture_output=True, text=True)
    if r.returncode != 0:
        last = [x for x in r.stderr.strip().splitlines() if x.strip()][-1]
        return None, last.split(":", 1)[-1].strip()
    for f in out.glob("lora-*-model.gguf"):  # the converter's adapter names -> the artifact's
        f.rename(out / (f.name.removesuffix("-model.gguf") + ".gguf"))
    return out, ""


def wrap(gguf_dir: Path, ckpt: Path, keep: bool) -> Path:
    """Give a converter GGUF what embcc's llama.cpp Embedder reads beside it (spec, tokenizer.json)."""
    bundle = load(ckpt)
    spec = dataclasses.replace(bundle.spec, lora="keep" if keep else None, precision="f32", max_length=MAX_LEN)
    (gguf_dir / SPEC_FILE).write_text(spec.to_json())
    shutil.copyfile(ckpt / "tokenizer.json", gguf_dir / "tokenizer.json")
    return gguf_dir


def measure(art_dirs: list[Path], ckpt: Path) -> dict:
    from embcc.runtimes.llamacpp import LlamaCppEmbedder  # llama-cpp-python: only where the table is made

    ref = reference_for(ckpt)
    worst, agree, agree_rt, n = 1.0, 0, 0, 0
    for art in art_dirs:
        emb = LlamaCppEmbedder(art, max_length=MAX_LEN)
        tasks = [emb.spec.task] if emb.spec.lora == "merge" else [t.name for t in emb.spec.tasks] or [None]
        for task in tasks:
            want = ref.encode(PROBES, task=task, max_length=MAX_LEN)
            worst = min(worst, compare(want, emb.encode(PROBES, task=task), {})["min_cosine"])
        if n == 0:
            for t in PROBES:
                hf = emb.tokenizer.encode(t).ids
                if len(hf) < MAX_LEN:
                    n += 1
                    agree += emb.llm.tokenize(t.encode(), add_bos=True, special=False) == hf
                    agree_rt += emb.llama_tokens(t) == hf
        emb.close()
    ref.close()
    size = sum(f.stat().st_size for a in art_dirs for f in a.glob("*.gguf"))
    return {"min_cos": worst, "tokens": f"{agree}/{n} ({agree_rt}/{n})", "bytes": size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--llama-cpp-src", type=Path, default=None, help="an unpacked vendor/llama.cpp (skips the download)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="embcc-vs-convert-"))
    work.mkdir(parents=True, exist_ok=True)
    src = converter_source(work, args.llama_cpp_src)
    rows = []
    for key, ckpt in fixtures(work).items():
        has_tasks = key.startswith("v3")
        conv, why = run_converter(src, ckpt, work / f"conv-{key}")
        if conv is None:
            rows.append((key, "llama.cpp converter", "-", f"refuses: {why}", "", ""))
        else:
            m = measure([wrap(conv, ckpt, keep=has_tasks)], ckpt)
            rows.append((key, "llama.cpp converter", "keep" if has_tasks else "-", f"{m['min_cos']:.6f}", m["tokens"], f"{m['bytes']:,}"))
        if has_tasks:
            rows.append((key, "llama.cpp converter", "merge", "cannot: no merged per-task output", "", ""))
        for mode in (["keep", "merge"] if has_tasks else [None]):
            art = export(ckpt, work / f"embcc-{key}-{mode}", fmt="gguf", lora=mode, max_length=MAX_LEN)
            dirs = sorted(p.parent for p in art.rglob("model.gguf"))
            m = measure(dirs, ckpt)
            rows.append((key, "embcc", mode or "-", f"{m['min_cos']:.6f}", m["tokens"], f"{m['bytes']:,}"))
    head = ("checkpoint", "exporter", "LoRA", "min cos vs torch (f32, all tasks)",
            "tokens = HF: llama.cpp tokenize (with embcc's runtime)", "GGUF bytes")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\n(work dir: {work})")


if __name__ == "__main__":
    main()
