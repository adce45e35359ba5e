"""ShelfSense: edge recognition for retail shelves.

The path of one frame, one module per step::

    app.py / handlers.py   HTTP (aiohttp)
    recognizer.py          decode -> slots -> key -> cache -> inference -> result
    slots.py               shelf slot boxes per camera
    hashing.py             perceptual key (pHash family + colour signature)
    index.py               near-duplicate Hamming index
    cache.py               memory LRU tier + diskcache tier
    coalesce.py            single flight of concurrent misses
    runtime.py             TFLite interpreter (LiteRT / tflite-runtime) and worker pool
    stats.py               sliding-window latency and hit-rate statistics
"""

__version__ = "0.1.0"
