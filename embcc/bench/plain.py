"""The plain path a user gets without embcc: torch.onnx.export(dynamo=True) of the reference model, run by ONNX
Runtime; for an int8 artifact, onnxruntime.quantization.quantize_dynamic of that plain graph.

The exported module is the reference itself (embcc.reference: transformers + PEFT with the task's adapter active,
unmerged, as a user holds it), returning token states; pooling runs outside the graph, the same numpy pooling for
every side. A family whose reference does not export this way gives a reason, not a crash (PlainFailed).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch


class PlainFailed(Exception):
    """The plain export did not produce a graph: the reason is the message (one line)."""


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    return f"{type(e).__name__}: {first[:240]}"


class _States(torch.nn.Module):
    def __init__(self, ref, task: str | None):
        super().__init__()
        self.ref, self.task = ref, task
        model = getattr(ref, "model", None)
        if isinstance(model, torch.nn.Module):
            self.model = model  # registered, so torch.export sees the weights as parameters

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.ref._states(input_ids, attention_mask, self.task)


def _fixed_dims(path: Path) -> list[str]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return [f"{i.name} dim {k} at {d.dim_value}" for i in m.graph.input
            for k, d in enumerate(i.type.tensor_type.shape.dim) if not d.dim_param]


def export_plain(ref, task: str | None, out: Path, *, max_length: int, int8: bool = False) -> Path:
    """`out` (model.onnx, or model.int8.onnx beside it with `int8`): the plain graph of `ref` for `task`."""
    if not hasattr(ref, "_states"):
        raise PlainFailed(f"the {type(ref).__name__} reference has no token-state forward to export")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.is_file():
        ids = torch.randint(5, 100, (2, 16))
        mask = torch.ones_like(ids)
        batch = torch.export.Dim("batch", min=1, max=1024)
        seq = torch.export.Dim("seq", min=2, max=max(16, max_length))
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.inference_mode(False):
                warnings.simplefilter("ignore")
                torch.onnx.export(_States(ref, task).eval(), (ids, mask), str(out), dynamo=True,
                                  input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                                  dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}), optimize=True,
                                  verbose=False)
        except Exception as e:  # torch.export / onnxscript raise many types; the reason is what the row reports
            out.unlink(missing_ok=True)
            raise PlainFailed(_one_line(e)) from e
        fixed = _fixed_dims(out)
        if fixed:  # torch.onnx falls back to other export strategies, which may specialise a dynamic dim silently
            out.unlink()
            raise PlainFailed(f"the exported graph fixed {', '.join(fixed)} (torch.export specialised the "
                              "dynamic shape; the graph runs only the example's shape)")
    if not int8:
        return out
    q = out.with_name(out.stem + ".int8.onnx")
    if not q.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        try:
            quantize_dynamic(str(out), str(q), weight_type=QuantType.QInt8)
        except Exception as e:
            q.unlink(missing_ok=True)
            raise PlainFailed(f"quantize_dynamic: {_one_line(e)}") from e
    return q
