"""The OpenAPI 3.1 description of the HTTP API, served at /openapi.json and kept true by a schemathesis run
against the live service (tests/test_openapi.py). docs/api.md is the prose; this is the contract machines read."""

from __future__ import annotations

from typing import Any

from shelfsense import __version__
from shelfsense.service.thermal import NEXT_FRAME_HEADER

__all__ = ["openapi"]

_ERROR = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "a stable code, e.g. bad_image, overloaded"},
        "detail": {"type": "string", "description": "one sentence for a person"},
        "error_id": {"type": "string", "description": "with internal_error: the id in the service's log line"},
    },
}
_NUMBER_OR_NULL = {"type": ["number", "null"]}
_PERCENTILES = {
    "type": "object",
    "properties": {
        "p50": _NUMBER_OR_NULL,
        "p90": _NUMBER_OR_NULL,
        "p99": _NUMBER_OR_NULL,
        "count": {"type": "integer"},
    },
}
_SLOT = {
    "type": "object",
    "required": ["slot", "box", "label", "score", "cache", "distance", "top_k"],
    "properties": {
        "slot": {"type": "integer", "minimum": 0},
        "state": {"enum": ["product", "empty", "occluded", "unknown"]},
        "box": {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4},
        "label": {"type": ["string", "null"]},
        "score": {"type": "number"},
        "cache": {"enum": ["memory", "disk", "miss", "coalesced"]},
        "distance": {"type": ["integer", "null"]},
        "top_k": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["label", "score"],
                "properties": {"label": {"type": "string"}, "score": {"type": "number"}},
            },
        },
    },
}
_FRAME_RESULT = {
    "type": "object",
    "required": ["camera", "frame", "latency_ms", "model", "size", "timing_ms", "slots", "next_frame_after_ms"],
    "properties": {
        "camera": {"type": "string"},
        "frame": {"type": "integer", "minimum": 1},
        "latency_ms": {"type": "number"},
        "model": {"type": "string"},
        "size": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
        "timing_ms": {"type": "object", "additionalProperties": {"type": "number"}},
        "slots": {"type": "array", "items": _SLOT},
        "next_frame_after_ms": {
            "type": "integer",
            "minimum": 0,
            "description": "wait at least this long before this camera's next frame (0: no request to slow down)",
        },
    },
}
_FRAME_HEADERS = {
    NEXT_FRAME_HEADER: {
        "description": "while the device sheds work (thermal step 3): next_frame_after_ms, repeated",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_STATS = {
    "type": "object",
    "required": ["uptime_s", "window_s", "cache", "latency_ms", "inference_ms", "frames", "cameras", "errors", "model"],
    "properties": {
        "uptime_s": {"type": "number"},
        "window_s": {"type": "number"},
        "cache": {"type": "object", "properties": {"hit_rate": _NUMBER_OR_NULL, "hit_rate_window": _NUMBER_OR_NULL}},
        "latency_ms": {
            "type": "object",
            "properties": {"hit": _PERCENTILES, "miss": _PERCENTILES, "frame": _PERCENTILES},
        },
        "inference_ms": {"type": "object"},
        "throughput_fps": {"type": "number"},
        "frames": {"type": "integer"},
        "queue_depth": {"type": "integer"},
        "frames_in_flight": {"type": "integer"},
        "cameras": {"type": "object", "additionalProperties": {"type": "object"}},
        "errors": {"type": "object", "additionalProperties": {"type": "integer"}},
        "model": {"type": "object"},
        "device": {"type": ["object", "null"]},
        "thermal": {
            "type": "object",
            "required": ["step", "state", "reasons", "under_voltage", "seconds_in_step", "next_frame_after_ms"],
            "properties": {
                "step": {"type": "integer", "minimum": 0, "maximum": 3},
                "state": {"enum": ["normal", "pause_background", "fewer_threads", "slow_cameras"]},
                "reasons": {"type": "object", "additionalProperties": {"type": "string"}},
                "under_voltage": {"type": ["boolean", "null"]},
                "seconds_in_step": {"type": "object", "additionalProperties": {"type": "number"}},
                "next_frame_after_ms": {"type": "integer", "minimum": 0},
            },
        },
    },
}


# Shelf state and events (docs/api.md). /v1/events/stream (Server-Sent Events) is left out: it never ends, so a
# schema-driven client would wait on it forever.
_SHELF_SLOT = {
    "type": "object",
    "required": ["slot", "state", "label", "since", "expected", "misplaced"],
    "properties": {
        "slot": {"type": "integer", "minimum": 0},
        "state": {"enum": ["product", "empty", "unknown", None]},
        "label": {"type": ["string", "null"]},
        "last_label": {"type": ["string", "null"]},
        "score": _NUMBER_OR_NULL,
        "since": _NUMBER_OR_NULL,
        "seconds": _NUMBER_OR_NULL,
        "expected": {"type": ["string", "null"]},
        "misplaced": {"type": "boolean"},
    },
}
_SHELF_CAMERA = {
    "type": "object",
    "required": ["camera", "frames", "slots", "out_of_stock", "blocked"],
    "properties": {"slots": {"type": "array", "items": _SHELF_SLOT}, "out_of_stock": {"type": "array"}},
}
_SHELVES = {
    "type": "object",
    "required": ["cameras", "out_of_stock", "compliance", "events"],
    "properties": {"cameras": {"type": "array", "items": _SHELF_CAMERA}, "out_of_stock": {"type": "integer"}},
}
_EVENTS = {
    "type": "object",
    "required": ["events", "next", "last_id", "oldest_id", "gap"],
    "properties": {"events": {"type": "array", "items": {"type": "object"}}, "next": {"type": "integer"}},
}
_CURSOR = [
    {"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 2**62}},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "bad image, malformed camera id, unparseable body",
        401: "token missing",
        403: "token wrong",
        404: "unknown camera or endpoint",
        405: "method not allowed",
        408: "body slower than server.body_timeout_s",
        413: "body over server.max_body_bytes",
        415: "not JPEG, PNG or multipart",
        500: "unexpected failure, with an error id",
        503: "overloaded (Retry-After) or model not loaded",
    }
    return {str(s): _json({"$ref": "#/components/schemas/Error"}, reasons[s]) for s in statuses}


def _get(summary: str, ok: dict[str, Any], *errors: int, secured: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": ok, **_errors(*errors, 405, 500)}}
    if secured:
        op["security"] = [{}, {"bearer": []}]
    return {"get": op}


def _frame_operation() -> dict[str, Any]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "summary": "Recognise the products on one camera frame",
        "parameters": [
            {
                "name": "camera",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$"},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "image/jpeg": binary,
                "image/png": binary,
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": {"frame": {"type": "string", "format": "binary"}}}
                },
            },
        },
        "security": [{}, {"bearer": []}],
        "responses": {
            "200": {**_json(_FRAME_RESULT, "the frame's slots with their products"), "headers": _FRAME_HEADERS},
            **_errors(400, 401, 403, 404, 405, 408, 413, 415, 500, 503),
        },
    }


def openapi() -> dict[str, Any]:
    text = {"text/plain": {"schema": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "ShelfSense", "version": __version__, "description": "Edge recognition for retail shelves"},
        "paths": {
            "/v1/frames/{camera}": {"post": _frame_operation()},
            "/v1/stats": _get("Counters and window figures", _json(_STATS, "statistics"), 401, 403, secured=True),
            "/metrics": _get(
                "Prometheus exposition", {"description": "metrics", "content": text}, 401, 403, secured=True
            ),
            "/v1/shelves": _get("Shelf state of every camera", _json(_SHELVES, "shelves"), 401, 403, 404, secured=True),
            "/v1/shelves/{camera}": {
                "get": {
                    **_get(
                        "Shelf state of one camera", _json(_SHELF_CAMERA, "one camera"), 401, 403, 404, secured=True
                    )["get"],
                    "parameters": [{"name": "camera", "in": "path", "required": True, "schema": {"type": "string"}}],
                }
            },
            "/v1/events": {
                "get": {
                    **_get("Events after a cursor", _json(_EVENTS, "events"), 400, 401, 403, 404, secured=True)["get"],
                    "parameters": _CURSOR,
                }
            },
            "/v1/stats/history": _get(
                "The last hour of figures", _json({"type": "object"}, "samples"), 401, 403, 404, secured=True
            ),
            "/healthz": _get("Liveness", _json({"type": "object"}, "the process runs")),
            "/readyz": _get("Readiness", _json({"type": "object"}, "model loaded, cache open"), 503),
            "/openapi.json": _get("This description", _json({"type": "object"}, "OpenAPI 3.1")),
            "/": _get(
                "The store dashboard",
                {"description": "one offline HTML page", "content": {"text/html": {"schema": {"type": "string"}}}},
                401,
                403,
                secured=True,
            ),
        },
        "components": {
            "schemas": {"Error": _ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
