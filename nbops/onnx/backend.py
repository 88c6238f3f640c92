"""onnx's backend interface (``onnx.backend.base``) over nbops.onnx, for onnx's conformance suite.

``NbopsBackend.prepare(model, device)`` loads the model; ``device`` 'CPU' feeds NumPy arrays (cpu kernels), 'CUDA'
feeds numba device arrays (cuda kernels, or the simulator under ``NUMBA_ENABLE_CUDASIM=1``) and copies the outputs
back to the host for comparison.
"""

import numpy as np
import onnx.backend.base

from .session import load


class NbopsRep(onnx.backend.base.BackendRep):
    def __init__(self, session, device):
        self.session, self.device = session, device

    def run(self, inputs, **kwargs):
        names = [vi.name for vi in self.session.get_inputs()]
        if isinstance(inputs, dict):
            feed = dict(inputs)
        else:
            feed = dict(zip(names, [inputs] if isinstance(inputs, np.ndarray) else inputs))
        if self.device == "CUDA":
            from numba import cuda

            feed = {k: cuda.to_device(np.asarray(v, order="C")) for k, v in feed.items()}
            return tuple(o.copy_to_host() for o in self.session.run(None, feed))
        return tuple(self.session.run(None, feed))


class NbopsBackend(onnx.backend.base.Backend):
    @classmethod
    def is_compatible(cls, model, device="CPU", **kwargs):
        return True

    @classmethod
    def prepare(cls, model, device="CPU", **kwargs):
        super().prepare(model, device, **kwargs)
        return NbopsRep(load(model), device.split(":")[0].upper())

    @classmethod
    def run_node(cls, node, inputs, device="CPU", outputs_info=None, **kwargs):
        raise NotImplementedError("nbops.onnx runs whole models; use prepare()")

    @classmethod
    def supports_device(cls, device):
        device = device.split(":")[0].upper()
        if device == "CPU":
            return True
        if device == "CUDA":
            from numba import cuda

            return cuda.is_available()
        return False
