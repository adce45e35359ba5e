"""ShelfSense: edge recognition for retail shelves.

Layers, imports flowing downward only (docs/architecture.md)::

    cli/                               the `shelfsense` command
    tools/ synth/ bench/ client.py     offline tools over the service and recognition
    service/                           HTTP: socket guard, handlers, admission, stats, metrics
    recognition/  footage/             decode -> slots -> key -> memory -> disk -> inference -> result | footage files
    errors types locations config      the core
"""

__version__ = "0.1.0"

import os

# numpy's OpenBLAS starts a thread per core for matrix products as small as a pHash's LANCZOS resize (186x136 by
# 136x32), and those threads spin on after each product, charging CPU to the frames that follow: one BLAS thread
# cut the all-hit frames of `shelfsense bench` by ~0.1 ms (docs/benchmarks.md, "Hit path", fourth round). The
# service sizes its own pools (inference, frame preparation) for the box's cores, so BLAS gets one thread unless the
# environment says otherwise. It must be set before numpy loads OpenBLAS, hence here.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
