"""Expose Kokoro's predicted durations (frames per token) as a second output of the ONNX graph.

The v1.0 exports return only the waveform, but the graph computes
``round(sum(sigmoid(duration)) / speed).clip(min=1).long()`` before it expands the text features
to frames. That int64 tensor is made an extra graph output here, in memory, so word timings come
from what the model really used, after ``speed``. No weights change and the audio is the same.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("voxgate.engine.kokoro")

DURATION_OUTPUT = "durations"


def _find_durations(graph) -> str | None:  # noqa: ANN001 - onnx.GraphProto
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in graph.node:
        if node.op_type != "Round":
            continue
        clips = [n for n in consumers.get(node.output[0], []) if n.op_type == "Clip"]
        for clip in clips:
            casts = [n for n in consumers.get(clip.output[0], []) if n.op_type == "Cast"]
            if casts:
                return casts[0].output[0]
    return None


def with_duration_output(model: Path) -> tuple[bytes | str, bool]:
    """The model to load (bytes with the extra output, or the path unchanged) and whether it has durations."""
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError:  # pragma: no cover - onnx is in the kokoro extra
        log.warning("onnx is not installed: Kokoro word timings are off")
        return str(model), False
    proto = onnx.load(str(model))
    graph = proto.graph
    if any(o.name == DURATION_OUTPUT for o in graph.output):
        return proto.SerializeToString(), True
    name = _find_durations(graph)
    if name is None:
        log.warning("no duration tensor found in %s: Kokoro word timings are off", model)
        return str(model), False
    graph.output.append(helper.make_tensor_value_info(name, TensorProto.INT64, None))
    return proto.SerializeToString(), True
