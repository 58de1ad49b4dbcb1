"""The parity report people read: verify's report dict as Markdown and as one self-contained HTML page, with a
cosine histogram and a per-length error plot per artifact (PNG, matplotlib's Agg canvas).

Written beside the JSON under the same name (parity.json -> parity.md, parity.html, parity-<artifact>-*.png;
parity-<sha12>.json -> parity-<sha12>.md ...). The HTML embeds its plots as data URIs, so it opens anywhere
without the PNG files or a network. Plots are deterministic (no software/date metadata in the PNGs); without
matplotlib the pages are still written, saying that the plots are missing and why.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

# bar key -> (label, comparison as the bar reads)
BAR_KEYS = {"min_cosine": ("min cos", ">="), "mean_cosine": ("mean cos", ">="),
            "max_abs_diff": ("max |d|", "<="), "ranking_agreement": ("rank@10", ">=")}
FIGSIZE = (8.0, 3.2)
DPI = 100


def label(row: dict) -> str:
    """An artifact's name in the report: its directory, and its graph where it ships several."""
    return row["artifact"] + (f" [{row['graph']}]" if row.get("graph") else "")


def groups(report: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in report["results"]:
        out.setdefault(label(r), []).append(r)
    return out


def tokens_cell(row: dict) -> str:
    """The longest input a row's artifact saw, in tokens ("-" for images)."""
    return str(max(row.get("tokens") or [0]) or "-")


def seconds_cell(row: dict, key: str) -> str:
    """A row's reference_s or artifact_s ("-" where verify did not time the row)."""
    return f"{row[key]:.1f}" if row.get(key) else "-"


def bar_text(bar: dict) -> str:
    if not bar:
        return "none (reported, not gated)"
    return ", ".join(f"{BAR_KEYS.get(k, (k, '>='))[0]} {BAR_KEYS.get(k, (k, '>='))[1]} {v:g}" for k, v in bar.items())


def failure_reasons(row: dict) -> list[str]:
    """Why a row failed, each missed bar entry with the value it got."""
    out = []
    for key in row.get("failed") or []:
        if key == "finite":
            out.append("the artifact's output holds NaN or infinite values")
            continue
        name, op = BAR_KEYS.get(key, (key, ">="))
        got = row.get(key)
        want = (row.get("bar") or {}).get(key)
        if got is None or want is None:
            out.append(f"{name} missed its bar")
        else:
            out.append(f"{name} {got:.7g} is not {op} {want:g}")
    return out or (["failed"] if not row.get("passed", True) else [])


def _slug(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._]+", "_", name).strip("_.")
    return s or "artifact"


def _verdict(report: dict) -> str:
    if report["passed"] and not report.get("gated_rows", 1):
        return "REPORTED (no bar applies to this precision; nothing gated)"
    return "PASSED" if report["passed"] else "FAILED"


def _reference_line(report: dict) -> str:
    ref = report.get("reference_model") or {}
    if not isinstance(ref, dict):
        return str(ref)
    return f"{ref.get('class', '?')} ({ref.get('library', '?')}; adapters: {ref.get('adapters', '-')})"


# ---- plots ------------------------------------------------------------------------------------------------


def _distance(cosines: list[float]):
    import numpy as np

    return np.maximum(1.0 - np.asarray(cosines, dtype=np.float64), 1e-16)


def _save(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})


def plot_group(name: str, rows: list[dict], root: Path, stem: str) -> list[tuple[str, Path]]:
    """(caption, PNG path) for one artifact: the histogram of its probes' cosines, and the error per length."""
    from matplotlib.figure import Figure

    out = []
    slug = _slug(name)
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot(1, 1, 1)
    import numpy as np

    for r in rows:
        if r.get("cosines"):
            d = _distance(r["cosines"])
            lo, hi = np.log10(d.min()), np.log10(d.max())
            bins = np.logspace(lo - 0.1, hi + 0.1, 30) if hi > lo else np.logspace(lo - 0.5, lo + 0.5, 3)
            ax.hist(d, bins=bins, histtype="step", linewidth=1.5, label=str(r["task"] or "-"))
    bars = sorted({r["bar"]["min_cosine"] for r in rows if "min_cosine" in (r.get("bar") or {})})
    for b in bars:
        ax.axvline(1.0 - b, color="red", linestyle="--", linewidth=1, label=f"bar: min cos {b:g}")
    ax.set_xscale("log")
    ax.set_xlabel("1 - cosine to the reference (per probe, log scale)")
    ax.set_ylabel("probes")
    ax.set_title(f"{name}: cosine histogram", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = root / f"{stem}-{slug}-cosines.png"
    _save(fig, path)
    out.append(("cosine histogram", path))

    with_tokens = [r for r in rows if r.get("tokens") and len(r["tokens"]) == len(r.get("cosines") or [])]
    if with_tokens:
        fig = Figure(figsize=FIGSIZE)
        a1, a2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        for r in with_tokens:
            a1.scatter(r["tokens"], _distance(r["cosines"]), s=10, label=str(r["task"] or "-"))
            a2.scatter(r["tokens"], np.maximum(np.asarray(r["abs_diffs"], dtype=np.float64), 1e-16), s=10)
        for b in bars:
            a1.axhline(1.0 - b, color="red", linestyle="--", linewidth=1)
        for b in sorted({r["bar"]["max_abs_diff"] for r in with_tokens if "max_abs_diff" in (r.get("bar") or {})}):
            a2.axhline(b, color="red", linestyle="--", linewidth=1)
        from matplotlib.ticker import NullFormatter

        for a, what in ((a1, "1 - cosine"), (a2, "max |diff|")):
            a.set_xscale("log")
            a.xaxis.set_minor_formatter(NullFormatter())  # 3x10^1 4x10^1 ... would overlap
            a.set_yscale("log")
            a.set_xlabel("tokens the artifact saw")
            a.set_ylabel(what)
        a1.legend(fontsize=7, loc="best")
        fig.suptitle(f"{name}: error per input length", fontsize=10)
        fig.tight_layout()
        path = root / f"{stem}-{slug}-lengths.png"
        _save(fig, path)
        out.append(("error per input length", path))
    return out


def plots(report: dict, root: Path, stem: str) -> tuple[dict[str, list[tuple[str, Path]]], str | None]:
    """Every artifact's plots, or ({}, why there are none)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        return {}, f"no plots: matplotlib is not installed ({e})"
    out, failed = {}, []
    for name, rows in groups(report).items():
        try:  # a plot that cannot be drawn must not cost the verdict: the tables and the reasons still get written
            out[name] = plot_group(name, rows, root, stem)
        except Exception as e:  # noqa: BLE001
            failed.append(f"{name}: {type(e).__name__}: {e}")
    return out, ("plots not drawn for " + "; ".join(failed)) if failed else None


# ---- pages ------------------------------------------------------------------------------------------------


def _header(report: dict) -> list[tuple[str, str]]:
    source = ("yes: the checkpoint this artifact was exported from" if report.get("reference_is_source", True)
              else "NO: another checkpoint than the artifact's source (sha256 differs); the artifact's own "
                   "parity.json is left as it was")
    return [
        ("verdict", _verdict(report)),
        ("artifact", report.get("artifact", "")),
        ("runtime", ", ".join(report.get("runtimes", [])) or "?"),
        ("reference", _reference_line(report)),
        ("reference checkpoint", f"{report['reference']} (sha256 {report.get('reference_sha256', '?')[:12]})"),
        ("reference is the artifact's source", source),
        ("probes", f"{report['probe_texts']} texts per task, up to {report['probe_max_tokens']} tokens"),
        ("embcc", str(report.get("embcc_version", "?"))),
    ]


COLUMNS = ["artifact", "graph", "task", "tokens", "min cos", "mean cos", "max |d|", "rank@10", "bar", "result",
           "ref s", "artifact s"]


def _cells(r: dict) -> list[str]:
    result = r.get("result") or ("pass" if r["passed"] else "FAIL")
    return [r["artifact"], r.get("graph") or "-", str(r["task"] or "-"), tokens_cell(r),
            f"{r['min_cosine']:.7f}", f"{r['mean_cosine']:.7f}", f"{r['max_abs_diff']:.2e}",
            f"{r['ranking_agreement']:.3f}", bar_text(r.get("bar") or {}),
            result + (f" ({', '.join(r['failed'])})" if r.get("failed") else ""), seconds_cell(r, "reference_s"),
            seconds_cell(r, "artifact_s")]


def _failures(report: dict) -> list[tuple[str, list[str]]]:
    out = []
    for r in report["results"]:
        if not r["passed"]:
            out.append((f"{label(r)} task {r['task'] or '-'}", failure_reasons(r)))
    return out


def markdown(report: dict, figures: dict[str, list[tuple[str, Path]]], note: str | None) -> str:
    md = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = [f"# embcc parity: {_verdict(report)}", ""]
    lines += [f"- **{k}**: {md(v)}" for k, v in _header(report)]
    lines += ["", "## Results", "", "| " + " | ".join(md(c) for c in COLUMNS) + " |",
              "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(md(c) for c in _cells(r)) + " |" for r in report["results"]]
    fails = _failures(report)
    lines += ["", "## Failures", ""]
    if fails:
        for what, why in fails:
            lines.append(f"- **FAIL** {md(what)}: {'; '.join(why)}")
    else:
        lines.append("none")
    diagnosis = report.get("diagnosis") or {}
    if diagnosis:
        lines += ["", "## Diagnosis", ""]
        for art, notes in diagnosis.items():
            lines += [f"- {art}: {n}" for n in notes]
    lines += ["", "## Plots", ""]
    if note:
        lines.append(note)
    for name, figs in figures.items():
        lines += [f"### {name}", ""]
        lines += [f"![{name}: {caption}]({path.name})" for caption, path in figs]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


CSS = """body{font-family:sans-serif;margin:24px;color:#222;background:#fff}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #bbb;padding:4px 8px;font-size:13px}
th{background:#e8e8e8;text-align:left}td.num{text-align:right;font-family:monospace}
tr.fail td{background:#fbd5d5}tr.pass td.result{background:#d5f5d9}
h1.FAILED{color:#b00}h1.PASSED{color:#070}dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px}
dt{font-weight:bold}dd{margin:0}img{display:block;margin:8px 0;border:1px solid #ddd;max-width:100%}"""


def page(report: dict, figures: dict[str, list[tuple[str, Path]]], note: str | None) -> str:
    e = html.escape
    verdict = _verdict(report)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>embcc parity: {e(verdict)}</title><style>{CSS}</style></head><body>",
           f'<h1 class="{e(verdict.split()[0])}">embcc parity: {e(verdict)}</h1>', "<dl>"]
    out += [f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in _header(report)]
    out += ["</dl>", "<h2>Results</h2>", "<table><thead><tr>"]
    out += [f"<th>{e(c)}</th>" for c in COLUMNS]
    out.append("</tr></thead><tbody>")
    numeric = {"tokens", "min cos", "mean cos", "max |d|", "rank@10", "ref s", "artifact s"}
    for r in report["results"]:
        out.append(f'<tr class="{"pass" if r["passed"] else "fail"}">')
        for c, v in zip(COLUMNS, _cells(r)):
            cls = "num" if c in numeric else ("result" if c == "result" else "")
            out.append(f'<td class="{cls}">{e(v)}</td>' if cls else f"<td>{e(v)}</td>")
        out.append("</tr>")
    out += ["</tbody></table>", "<h2>Failures</h2>"]
    fails = _failures(report)
    if fails:
        out.append("<ul>")
        out += [f"<li><b>FAIL</b> {e(what)}: {e('; '.join(why))}</li>" for what, why in fails]
        out.append("</ul>")
    else:
        out.append("<p>none</p>")
    diagnosis = report.get("diagnosis") or {}
    if diagnosis:
        out += ["<h2>Diagnosis</h2>", "<ul>"]
        out += [f"<li>{e(art)}: {e(n)}</li>" for art, notes in diagnosis.items() for n in notes]
        out.append("</ul>")
    out.append("<h2>Plots</h2>")
    if note:
        out.append(f"<p>{e(note)}</p>")
    for name, figs in figures.items():
        out.append(f"<h3>{e(name)}</h3>")
        for caption, path in figs:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            out.append(f'<img alt="{e(name)}: {e(caption)}" src="data:image/png;base64,{data}">')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(report: dict, json_path: str | Path) -> list[Path]:
    """parity.md, parity.html and the PNG plots beside `json_path` (named after its stem); returns the paths."""
    json_path = Path(json_path)
    root, stem = json_path.parent, json_path.stem
    figures, note = plots(report, root, stem)
    md_path, html_path = root / f"{stem}.md", root / f"{stem}.html"
    md_path.write_text(markdown(report, figures, note))
    html_path.write_text(page(report, figures, note))
    return [md_path, html_path, *[p for figs in figures.values() for _, p in figs]]
