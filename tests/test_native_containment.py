"""Native code cannot take embcc down: llama.cpp's load check and quantizer run in a child process, a crash there
is one line and exit 2 with nothing left on disk; a llama.cpp compiled with AMX is refused at import; an output
directory has one writer at a time, and a dead writer's staging directory is removed by the next run."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys

import pytest

from embcc.cli import main
from embcc.core.errors import EmbccError
from embcc.runtimes import llamacpp, native


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("embcc: error: "), err
    return err[0]


def nothing_left(out) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], list(out.parent.iterdir())


@pytest.mark.parametrize("sig", ["SIGSEGV", "SIGILL"])
def test_crash_in_the_load_check_is_one_line_and_leaves_nothing(ckpts, tmp_path, capsys, monkeypatch, sig):
    # The child is replaced by a program that dies the way llama.cpp does on an AMX host: the real export runs,
    # the real GGUF is written, and its load check crashes.
    monkeypatch.setattr(native, "CHILD", [sys.executable, "-c",
                                          f"import os, signal; os.kill(os.getpid(), signal.{sig})", "--"])
    out = tmp_path / "out"
    code = main(["export", str(ckpts["v2-small"]), "--out", str(out), "--format", "gguf", "--type", "q8_0"])
    line = one_line(capsys)
    assert code == 2
    assert f"llama.cpp crashed ({sig}" in line and "loading model.gguf" in line and "scripts/install" in line
    nothing_left(out)


def test_child_error_is_the_childs_message(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 60)  # a header and nothing else
    with pytest.raises(EmbccError, match="llama.cpp refuses to load model.gguf"):
        llamacpp.load_check(bad, [])


def test_real_load_check_in_a_child_passes(ckpts, tmp_path):
    from embcc.pipeline import export

    art = export(ckpts["v2-small"], tmp_path / "a", fmt="gguf", gguf_type="q4_k_m", max_length=64)
    llamacpp.load_check(art / "model.gguf", [])  # the quantizer and the check both ran in children


def test_amx_build_is_refused(monkeypatch):
    monkeypatch.delenv(llamacpp.NATIVE_OK, raising=False)
    with pytest.raises(EmbccError, match="compiled natively with AMX_INT8.*scripts/install"):
        llamacpp.check_build({"AVX2": "1", "AMX_INT8": "1"})
    monkeypatch.setenv(llamacpp.NATIVE_OK, "1")
    llamacpp.check_build({"AVX2": "1", "AMX_INT8": "1"})


def test_installed_build_runs_on_this_cpu():
    """What scripts/install built: no AMX, and no feature this CPU lacks (checked against /proc/cpuinfo)."""
    import llama_cpp

    features = llamacpp.build_features(llama_cpp)
    assert features.get("AVX2") == "1", features
    assert not [k for k in features if k.startswith("AMX")], features
    llamacpp.check_build(features)


def test_build_for_another_cpu_is_refused():
    host = {"pni", "ssse3", "avx", "avx2", "f16c", "fma", "bmi2"}  # an AVX2 machine without AVX-512
    llamacpp.check_build({"AVX2": "1", "FMA": "1"}, host)
    with pytest.raises(EmbccError, match="compiled for AVX512.*lacks.*SIGILL"):
        llamacpp.check_build({"AVX2": "1", "AVX512": "1"}, host)


def test_parse_system_info():
    class Fake:
        @staticmethod
        def llama_print_system_info() -> bytes:
            return b"CPU : SSE3 = 1 | AVX2 = 1 | AMX_INT8 = 1 | REPACK = 1 | "

    assert llamacpp.build_features(Fake) == {"SSE3": "1", "AVX2": "1", "AMX_INT8": "1", "REPACK": "1"}


def test_dead_writers_staging_dir_is_removed(ckpts, tmp_path):
    from embcc.pipeline import export

    out = tmp_path / "out"
    stale = tmp_path / ".out.abc123.tmp"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"half")
    (tmp_path / ".out.lock").write_text("999999")  # its owner is gone: the lock is free
    export(ckpts["v2-small"], out, max_length=64)
    assert not stale.exists() and not (tmp_path / ".out.lock").exists()
    assert (out / "model.onnx").is_file()


def test_live_writer_makes_a_second_run_fail_cleanly(ckpts, tmp_path, capsys):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode()); print('held', flush=True); "
        "time.sleep(60)"), str(tmp_path / ".out.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code = main(["export", str(ckpts["v2-small"]), "--out", str(out), "--max-length", "64"])
        line = one_line(capsys)
        assert code == 2 and "another embcc run is writing" in line and f"pid {holder.pid}" in line
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    fd = os.open(tmp_path / ".out.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the holder died: the lock is free again
    os.close(fd)


def test_out_whose_parent_is_a_file(ckpts, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code = main(["export", str(ckpts["v2-small"]), "--out", str(tmp_path / "file" / "out")])
    assert code == 2 and "is a file" in one_line(capsys)


def test_artifacts_get_the_users_umask(ckpts, tmp_path):
    from embcc.pipeline import export

    old = os.umask(0o022)
    try:
        art = export(ckpts["v2-small"], tmp_path / "a", max_length=64)
    finally:
        os.umask(old)
    assert (art.stat().st_mode & 0o777) == 0o755
    assert ((art / "model.onnx").stat().st_mode & 0o777) == 0o644
