"""nbops.onnx: run ONNX models on nbops' kernels, NumPy or CUDA arrays in, without torch or onnxruntime.

    import nbops.onnx
    sess = nbops.onnx.load("model.onnx")
    (y,) = sess.run(None, {"input": x})      # x: NumPy (cpu kernels) or a CUDA array (cuda kernels)

The API has onnxruntime's shape: ``load`` returns a :class:`Session` with ``run``, ``get_inputs`` and
``get_outputs``. Needs the ``onnx`` package (``pip install nbops[onnx]``); ``import nbops`` alone never imports it.
The operators it runs and the conformance counts are in docs/onnx.md.
"""

from .converters import claimed
from .session import Session, UnsupportedModelError, ValueInfo, load

__all__ = ["Session", "UnsupportedModelError", "ValueInfo", "claimed", "load"]
