"""Exceptions raised by ShelfSense, each carrying the HTTP status and error code the web layer answers with.

ShelfSenseError
├── ConfigError          configuration file or value is wrong (startup)
├── ModelError           model file missing, unreadable or of an unsupported shape
├── BadImageError        400: body is not a whole JPEG/PNG, or of a size the camera does not take
├── RequestTimeoutError  408: the body did not arrive within server.body_timeout_s
├── UnsupportedMediaError 415: content type we do not take
├── PayloadTooLargeError 413: body over server.max_body_bytes
├── UnknownCameraError   404: camera id not configured
├── ShelfStateOffError   404: shelf state is off ([shelf] enabled = false)
├── NoFrameYetError      404: no frame of this camera yet (its snapshot)
├── BadQueryError        400: a query parameter out of range (/v1/events)
├── AuthError            401/403: camera or read token missing or wrong
└── OverloadedError      503: inference queue full, retry later
"""

from __future__ import annotations


class ShelfSenseError(Exception):
    status: int = 500
    code: str = "internal_error"


class ConfigError(ShelfSenseError):
    code = "config_error"


class ModelError(ShelfSenseError):
    status = 503
    code = "model_error"


class BadImageError(ShelfSenseError):
    status = 400
    code = "bad_image"


class RequestTimeoutError(ShelfSenseError):
    status = 408
    code = "request_timeout"


class UnsupportedMediaError(ShelfSenseError):
    status = 415
    code = "unsupported_media_type"


class PayloadTooLargeError(ShelfSenseError):
    status = 413
    code = "payload_too_large"


class UnknownCameraError(ShelfSenseError):
    status = 404
    code = "unknown_camera"


class ShelfStateOffError(ShelfSenseError):
    status = 404
    code = "shelf_state_off"


class NoFrameYetError(ShelfSenseError):
    status = 404
    code = "no_frame_yet"


class BadQueryError(ShelfSenseError):
    status = 400
    code = "bad_query"


class AuthError(ShelfSenseError):
    status = 401
    code = "unauthorized"

    def __init__(self, detail: str, *, forbidden: bool = False) -> None:
        super().__init__(detail)
        if forbidden:
            self.status = 403
            self.code = "forbidden"


class OverloadedError(ShelfSenseError):
    status = 503
    code = "overloaded"

    def __init__(self, detail: str, retry_after_s: int = 1) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class SourceError(ShelfSenseError):
    """A capture source that cannot be opened or that stopped delivering frames."""

    status = 503
    code = "source_error"


class MissingTrainExtraError(ShelfSenseError):
    code = "train_extra_missing"
