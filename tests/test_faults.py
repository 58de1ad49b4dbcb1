"""Faults during an export: killed (SIGKILL), interrupted (SIGINT to the process group, as Ctrl-C sends it) or
terminated (SIGTERM) at random points, two runs on one --out, a disk that fills up.

Invariants: an export leaves either nothing at --out or a complete artifact; a SIGINT/SIGTERM run also leaves no
staging directory and no lock file (a SIGKILLed run's staging directory is removed by the next run on that
--out); no half-written calibration cache entry exists (entries are renamed into place whole), and the next run
succeeds and writes the same bytes as a clean run.

Every export here runs `embcc export` in a child process. Kill points are drawn from a seeded RNG (printed):
a uniform delay after the run's staging directory appears, within the clean run's writing time. The default run
tries one signal per artifact kind; `-m heavy` (scripts/reliability.sh) tries EMBCC_FAULT_KILLS per kind
(default 6) with every signal.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from embcc.core.files import sha256_file

# The CLI in a child process, with the external-data threshold lowered so a tiny graph gets model.onnx_data.
PRELUDE = ("import sys, embcc.core.onnxfile as f; f.EXTERNAL_DATA_LIMIT = int(sys.argv.pop(1)); "
           "from embcc.cli import main; sys.exit(main(sys.argv[1:]))")
SEED = int(os.environ.get("EMBCC_FAULT_SEED", "20261201"))
HEAVY_KILLS = int(os.environ.get("EMBCC_FAULT_KILLS", "6"))
TIMEOUT = 600


def start(args: list[str], *, external_limit: int | None = None, env: dict | None = None) -> subprocess.Popen:
    limit = str(external_limit if external_limit is not None else 1 << 30)
    return subprocess.Popen([sys.executable, "-c", PRELUDE, limit, "export", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)


def staging(out: Path) -> list[Path]:
    return [p for p in out.parent.glob(f".{out.name}.*") if p.is_dir()]


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.glob(f".{out.name}*"))


def manifest(art: Path) -> dict:
    return json.loads((art / "manifest.json").read_text())


def complete(art: Path) -> bool:
    """Every file the manifest lists is there with its sha256 (in-place damage would show)."""
    m = manifest(art)
    return all(sha256_file(art / name) == digest for name, digest in m["files"].items())


def cache_is_whole(cache: Path) -> list[str]:
    """The cache's entries (dot-files are writers' private temporaries): every one parses as a whole JSON file."""
    entries = sorted(p for p in (cache / "calibration").glob("*") if p.is_file() and not p.name.startswith("."))
    for p in entries:
        json.loads(p.read_text())
    return [p.name for p in entries]


@dataclass
class Kind:
    name: str
    fixture: str
    args: list[str]
    external_limit: int | None = None
    cached: bool = False


KINDS = {
    # fp32 ONNX with its weights in model.onnx_data (the threshold lowered to 0 bytes in the child)
    "onnx-external": Kind("onnx-external", "v3", ["--task", "retrieval.query", "--max-length", "128"], external_limit=0),
    # K-quant GGUF: the F32 file, llama.cpp's quantizer and its load check both in child processes
    "gguf-q4_k_m": Kind("gguf-q4_k_m", "v2-small", ["--format", "gguf", "--type", "q4_k_m", "--max-length", "64"]),
    # int8 calibrated, with a calibration cache directory
    "int8-cache": Kind("int8-cache", "v3", ["--task", "retrieval.query", "--precision", "int8", "--max-length", "128",
                                            "--calibration-max-length", "64"], cached=True),
}


@dataclass
class Clean:
    art: Path
    stage_at: float  # seconds from start until the staging directory appeared
    seconds: float


def run_clean(kind: Kind, ckpt: Path, root: Path) -> Clean:
    out = root / f"clean-{kind.name}"
    args = [str(ckpt), "--out", str(out), *kind.args]
    if kind.cached:
        args += ["--cache-dir", str(root / f"cache-clean-{kind.name}")]
    t0 = time.monotonic()
    proc = start(args, external_limit=kind.external_limit)
    stage_at = None
    while proc.poll() is None:
        if stage_at is None and staging(out):
            stage_at = time.monotonic() - t0
        time.sleep(0.02)
    seconds = time.monotonic() - t0
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    if kind.external_limit == 0:
        assert any(p.name.endswith((".onnx.data", ".onnx_data")) for p in out.rglob("*")), list(out.rglob("*"))
    return Clean(out, stage_at or 0.0, seconds)


@pytest.fixture(scope="module")
def clean(ckpts, tmp_path_factory) -> dict[str, Clean]:
    root = tmp_path_factory.mktemp("faults-clean")
    return {name: run_clean(k, ckpts[k.fixture], root) for name, k in KINDS.items()}


def signal_run(kind: Kind, ckpt: Path, work: Path, clean_run: Clean, sig: signal.Signals, rng: random.Random) -> dict:
    """One export hit by `sig` at a random point of its writing phase; then the checks and a rerun."""
    out = work / "out"
    cache = work / "cache"
    args = [str(ckpt), "--out", str(out), *kind.args] + (["--cache-dir", str(cache)] if kind.cached else [])
    window = max(0.3, 0.9 * (clean_run.seconds - clean_run.stage_at))
    for _ in range(4):  # a draw past the end of this run (timings vary) is no fault: draw again
        delay = rng.uniform(0.0, window)
        proc = start(args, external_limit=kind.external_limit)
        while proc.poll() is None and not staging(out):
            time.sleep(0.01)
        time.sleep(delay)
        seen = sorted(str(p.relative_to(s)) for s in staging(out) for p in s.rglob("*")) if proc.poll() is None else None
        if seen is not None:
            break
        proc.communicate()
        shutil.rmtree(out, ignore_errors=True)
        window *= 0.5
    else:
        return {"signal": sig.name, "delay": round(delay, 2), "landed": "after the run finished (4 draws)"}
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl-C: the whole process group, llama.cpp's children included
    else:
        os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=TIMEOUT)
    lines = err.strip().splitlines()
    finished = out.exists()
    if finished:  # the signal came after the final rename: the artifact is whole and the clean one
        assert complete(out) and manifest(out) == manifest(clean_run.art)
    elif sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:  # interrupted: unwound, one line, nothing of its own left behind
        assert proc.returncode == 128 + sig, (proc.returncode, err)
        assert lines == [f"embcc: interrupted ({sig.name})"], err
        assert leftovers(out) == [], leftovers(out)
    if kind.cached:
        cache_is_whole(cache)
    shutil.rmtree(out, ignore_errors=True)
    rerun = start(args, external_limit=kind.external_limit)
    _, err = rerun.communicate(timeout=TIMEOUT)
    assert rerun.returncode == 0, err
    assert manifest(out) == manifest(clean_run.art)  # the same bytes as a clean run
    assert complete(out)
    assert leftovers(out) == [], leftovers(out)  # a dead run's staging dir was removed by the rerun
    entries = cache_is_whole(cache) if kind.cached else []
    landed = ("after the final rename" if finished else
              f"{len(seen)} staged files" + (f" ({', '.join(seen[:4])}...)" if seen else ""))
    return {"signal": sig.name, "delay": round(delay, 2), "rc": proc.returncode, "landed": landed,
            "cache_entries": len(entries)}


def _report(name: str, results: list[dict]) -> None:
    print(f"\n{name}: {len(results)} signalled runs (seed {SEED})")
    for r in results:
        print("  ", r)


@pytest.mark.parametrize("kind,sig", [("onnx-external", signal.SIGKILL), ("gguf-q4_k_m", signal.SIGINT),
                                      ("int8-cache", signal.SIGKILL)])
def test_a_signal_leaves_nothing_and_the_rerun_writes_clean_bytes(ckpts, clean, tmp_path, kind, sig):
    rng = random.Random(f"{SEED}-{kind}-{sig.name}")
    _report(kind, [signal_run(KINDS[kind], ckpts[KINDS[kind].fixture], tmp_path, clean[kind], sig, rng)])


@pytest.mark.heavy
@pytest.mark.parametrize("kind", list(KINDS))
def test_many_signals_at_random_points(ckpts, clean, tmp_path, kind):
    rng = random.Random(f"{SEED}-{kind}-heavy")
    sigs = [signal.SIGKILL, signal.SIGINT, signal.SIGTERM]
    results = []
    for i in range(HEAVY_KILLS):
        work = tmp_path / f"run{i}"
        work.mkdir()
        results.append(signal_run(KINDS[kind], ckpts[KINDS[kind].fixture], work, clean[kind], sigs[i % 3], rng))
    _report(kind, results)
    assert sum("staged files" in r["landed"] for r in results) >= HEAVY_KILLS // 2  # most landed mid-write


def test_sigterm_cleans_up_like_sigint(ckpts, tmp_path):
    out = tmp_path / "out"
    proc = start([str(ckpts["v3"]), "--out", str(out), "--task", "separation", "--max-length", "128"])
    while proc.poll() is None and not staging(out):
        time.sleep(0.01)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines() == ["embcc: interrupted (SIGTERM)"]
    assert not out.exists() and leftovers(out) == []


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, ValueError, IndexError):
                pass
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_export_takes_its_llama_cpp_child_with_it(ckpts, tmp_path):
    """SIGKILL cannot be handled, but the child asked the kernel to kill it when its parent dies."""
    out = tmp_path / "out"
    proc = start([str(ckpts["v2-small"]), "--out", str(out), "--format", "gguf", "--type", "q4_k_m", "--max-length", "64"])
    deadline = time.monotonic() + TIMEOUT
    kids: list[int] = []
    while proc.poll() is None and time.monotonic() < deadline:
        kids = [k for k in _children(proc.pid) if b"native_child" in Path(f"/proc/{k}/cmdline").read_bytes()]
        if kids:
            break
        time.sleep(0.005)
    if not kids:
        pytest.fail(f"the export finished (rc {proc.poll()}) before a llama.cpp child was seen")
    time.sleep(0.2)  # let it get going (and past its prctl)
    proc.kill()
    proc.communicate()
    for _ in range(500):
        if not any(_alive(k) for k in kids):
            break
        time.sleep(0.01)
    assert not any(_alive(k) for k in kids), kids
    assert not out.exists()


def test_two_exports_to_one_out_one_wins(ckpts, tmp_path):
    out = tmp_path / "out"
    args = [str(ckpts["v2-small"]), "--out", str(out), "--max-length", "64"]
    a, b = start(args), start(args)
    results = [(p.wait(timeout=TIMEOUT), p.communicate()[1]) for p in (a, b)]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    loser = next(err for rc, err in results if rc == 2).strip().splitlines()
    assert len(loser) == 1 and loser[0].startswith("embcc: error: "), loser
    assert "another embcc run is writing" in loser[0] or "already exists" in loser[0], loser
    print("\nthe second run:", loser[0])
    assert complete(out) and leftovers(out) == []


# ---- a full disk ---------------------------------------------------------------------------------------------------


@pytest.fixture()
def small_disk(tmp_path):
    """A tmpfs of `size` bytes mounted for the test (needs root / CAP_SYS_ADMIN: skips with the reason)."""
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        where = tmp_path / f"tmpfs{len(mounted)}"
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({(r.stderr or r.stdout).strip() or r.returncode})")
        mounted.append(where)
        return where

    yield mount
    for m in mounted:
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


def _size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


@pytest.mark.parametrize("fmt", ["onnx", "gguf"])
def test_a_full_disk_mid_write_fails_cleanly(ckpts, tmp_path, small_disk, fmt):
    from embcc.pipeline import export

    extra = {"fmt": "gguf", "gguf_type": "f32"} if fmt == "gguf" else {}
    need = _size(export(ckpts["v3"], tmp_path / "sized", task="separation", max_length=128, **extra))
    disk = small_disk(int(need * 0.6) // 4096 * 4096)  # room for the tokenizer files, not the model
    out = disk / "out"
    args = [str(ckpts["v3"]), "--out", str(out), "--task", "separation", "--max-length", "128"]
    if fmt == "gguf":
        args += ["--format", "gguf", "--type", "f32"]
    proc = start(args)
    _, err = proc.communicate(timeout=TIMEOUT)
    lines = err.strip().splitlines()
    assert proc.returncode == 2, err
    assert len(lines) == 1 and "is full (nothing was written)" in lines[0], err
    print("\n", lines[0])
    assert list(disk.iterdir()) == [], list(disk.iterdir())


def test_a_full_cache_disk_fails_cleanly(ckpts, tmp_path, small_disk):
    disk = small_disk(64 * 1024)
    out = tmp_path / "out"
    cache = disk / "cache"
    cache.mkdir()
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)  # fill the disk to the brim
    try:
        while True:
            os.write(fd, b"\0" * 512)
    except OSError:
        pass
    finally:
        os.close(fd)
    proc = start([str(ckpts["v2-small"]), "--out", str(out), "--precision", "int8", "--max-length", "64",
                  "--calibration-max-length", "32", "--cache-dir", str(cache)])
    _, err = proc.communicate(timeout=TIMEOUT)
    lines = err.strip().splitlines()
    assert proc.returncode == 2, err
    assert len(lines) == 1 and lines[0].startswith("embcc: error: "), err
    assert "cache" in lines[0] and ("full" in lines[0] or "No space" in lines[0]), lines[0]
    print("\n", lines[0])
    assert not out.exists() and leftovers(out) == []
    assert [p.name for p in (cache / "calibration").iterdir()] == []
