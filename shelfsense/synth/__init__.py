"""Synthetic fixed-camera shelf footage with ground truth (shelfsense footage synth)."""
