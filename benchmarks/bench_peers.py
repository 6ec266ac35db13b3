"""asv: the layers of ``fastconv compare --peers`` through fastconv and every peer.

``asv continuous`` then tracks fastconv against TensorFlow, PyTorch, ONNX Runtime and JAX on
the issue's suite. A peer that is not installed in asv's environment (its matrix has
TensorFlow only; add ``torch``, ``onnxruntime``/``onnx`` or ``jax`` to ``asv.conf.json``'s
``req`` to track them) and a layout a peer does not run are skipped. asv runs each benchmark
in its own process, so one peer's spinning thread pool is never charged to another.
"""

from fastconv import compare_peers, config

config.COMPILE = "sync"  # time the kernels, never the NumPy tier of first calls

LAYOUTS = ["NHWC", "NCHW"]
BACKENDS = ["fastconv", *compare_peers.PEERS]


class Peers:
    """One layer, one layout, one library: fastconv's plain call or the peer's (prepared once:
    tensors made, ONNX sessions built, JAX functions compiled in ``setup``)."""

    params = [[layer.name for layer in compare_peers.LAYERS], LAYOUTS, BACKENDS]
    param_names = ["layer", "layout", "backend"]
    timeout = 300

    def setup(self, layer, layout, backend):
        spec = next(x for x in compare_peers.LAYERS if x.name == layer)
        data = compare_peers.arrays(spec)
        if backend == "fastconv":
            self.call = compare_peers.fastconv_call(spec, data, layout)
        else:
            layouts, make = compare_peers.PEERS[backend]
            if layout not in layouts:
                raise NotImplementedError(f"{backend} runs {' and '.join(layouts)} only")
            if not compare_peers.available(backend):
                raise NotImplementedError(f"{compare_peers.PEER_MODULES[backend]} is not "
                                          f"installed")
            made = make(spec, data, layout)
            self.call = made[0] if isinstance(made, tuple) else made
        self.call()  # compile, build the session, warm up: outside the timings

    def time_layer(self, layer, layout, backend):
        self.call()
