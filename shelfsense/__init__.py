"""ShelfSense: edge recognition for retail shelves.

Layers, imports flowing downward only (docs/architecture.md)::

    cli/                               the `shelfsense` command
    tools/ synth/ bench/ client.py     offline tools over the service and recognition
    service/                           HTTP: socket guard, handlers, admission, stats, metrics
    recognition/  footage/             decode -> slots -> key -> memory -> disk -> inference -> result | footage files
    errors types locations config      the core
"""

__version__ = "0.1.0"
