"""The offline benchmark (`shelfsense bench`): recorded footage through four result-reuse modes.

setup.py      which camera, slot boxes, model and truth a run uses
baselines.py  the strategies measured against the cache: exact bytes, motion gating
runner.py     each mode over the footage (the Recognizer, or a baseline over the same pool)
analysis.py   the report's figures: throughput, hits, agreement, accuracy, stability, frame cost
report.py     the report as text
benchmark.py  run_benchmark(): all of the above, in order
"""
