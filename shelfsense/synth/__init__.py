"""Synthetic fixed-camera shelf footage with ground truth (`shelfsense footage synth`).

layout.py      slot boxes, the empty shelf's picture, camera.toml and the output folder
products.py    the products' sprites: drawn tiny products or photos of a labelled folder
simulation.py  stocking and the arms that take, restock or look
rendering.py   the frames: the scene, arms over it, the camera's shake, exposure, noise and JPEG
synth.py       synthesize(): all of the above, frame by frame, into a recording and its truth
"""
