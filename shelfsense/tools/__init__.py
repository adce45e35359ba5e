"""Offline tools above the service: camera agent, replay, recording and model tooling."""
