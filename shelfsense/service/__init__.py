"""The HTTP service: app factory, handlers, stats, metrics and device telemetry."""
