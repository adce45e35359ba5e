"""Frame admission and decoding: what a posted body is, how big it says it is, and its pixels cut into slot crops.

The format is sniffed from the magic bytes and the size read from the header (JPEG SOF, PNG IHDR) before any
pixel is decoded, so a 4 KB file that claims 30000x30000 pixels costs microseconds, not gigabytes. Only JPEG and
PNG are taken, whatever the Content-Type says (OpenCV would decode TIFF, WebP, JPEG 2000, ... as well). JPEGs are
decoded by libjpeg-turbo through simplejpeg in strict mode: data that libjpeg only warns about (a zeroed or
truncated stretch decodes to grey garbage) is refused instead of being classified and cached.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np
import simplejpeg

from shelfsense.config import CameraConfig, slot_boxes
from shelfsense.errors import BadImageError, ConfigError, UnsupportedMediaError
from shelfsense.recognition.slots import crop
from shelfsense.types import Box

__all__ = ["FrameHeader", "decode_frame", "frame_boxes", "read_header", "slot_crops", "sniff_format"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Formats we refuse, named so that the 415 says what was sent. Checked in order; prefixes of the file.
_OTHER_FORMATS: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"#?RADIANCE", "Radiance HDR"),
    (b"#?RGBE", "Radiance HDR"),
    (b"\x76\x2f\x31\x01", "OpenEXR"),
    (b"8BPS", "Photoshop PSD"),
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x1f\x8b", "gzip"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"<?xml", "XML/SVG"),
    (b"<svg", "SVG"),
)
_PNM = {b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"P7", b"Pf", b"PF"}


@dataclass(frozen=True, slots=True)
class FrameHeader:
    format: str  # "jpeg" | "png"
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def content_type(self) -> str:
        return f"image/{self.format}"


def sniff_format(image: bytes) -> str:
    """'jpeg' or 'png' from the magic bytes; UnsupportedMediaError naming another image format, BadImageError else."""
    if image[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if image[:8] == PNG_MAGIC:
        return "png"
    head = image[:16]
    for magic, name in _OTHER_FORMATS:
        if head.startswith(magic):
            raise UnsupportedMediaError(f"The frame is a {name} file: send JPEG or PNG")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        raise UnsupportedMediaError("The frame is a WebP file: send JPEG or PNG")
    if head[4:8] == b"ftyp":
        raise UnsupportedMediaError("The frame is an ISO media file (HEIF/AVIF/MP4): send JPEG or PNG")
    if head[:2] in _PNM and head[2:3].isspace():
        raise UnsupportedMediaError("The frame is a Netpbm (PBM/PGM/PPM/PFM) file: send JPEG or PNG")
    # Not an image format we know of at all: a broken body rather than a format choice.
    raise BadImageError(f"The frame ({len(image)} bytes) is not a JPEG or PNG image (starts {head[:8].hex()})")


def read_header(image: bytes) -> FrameHeader:
    """Format and declared size, from the header alone. BadImageError for an empty body or a broken header."""
    if not image:
        raise BadImageError("The frame is empty (0 bytes)")
    kind = sniff_format(image)
    if kind == "png":
        # IHDR is the first chunk: length (13), type, then width and height as big-endian uint32.
        if len(image) < 33 or image[12:16] != b"IHDR":
            raise BadImageError(f"The frame ({len(image)} bytes) is not a decodable PNG: no IHDR header")
        width, height = struct.unpack(">II", image[16:24])
    else:
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(image)
        except ValueError as exc:
            raise BadImageError(f"The frame ({len(image)} bytes) is not a decodable JPEG: header ({exc})") from None
    if width < 1 or height < 1:
        raise BadImageError(f"The frame declares {width}x{height} pixels")
    return FrameHeader(kind, int(width), int(height))


def check_size(header: FrameHeader, camera: CameraConfig, max_pixels: int) -> None:
    """Refuse, before decoding, frames over the pixel budget or of another size than the camera declares."""
    if header.pixels > max_pixels:
        raise BadImageError(
            f"The frame declares {header.width}x{header.height} = {header.pixels} pixels, "
            f"over server.max_frame_pixels ({max_pixels})"
        )
    if camera.width and camera.height and (header.width, header.height) != (camera.width, camera.height):
        raise BadImageError(
            f"The frame is {header.width}x{header.height}; camera '{camera.id}' is configured for "
            f"{camera.width}x{camera.height} frames"
        )


def decode_frame(image: bytes, header: FrameHeader | None = None, reduce: int = 1) -> np.ndarray:
    """The frame as a BGR array; BadImageError when it is not a whole, uncorrupted JPEG or PNG.

    With reduce > 1 (2, 4 or 8), the frame at 1/reduce of its size (rounded up): libjpeg-turbo scales in the
    inverse DCT, which skips most of the decode after the entropy decoding (~0.78 of a full decode at 1/2 here),
    and every coefficient is still read, so corrupt data is refused as at full size. A PNG is decoded whole and
    area-averaged down.
    """
    if reduce not in (1, 2, 4, 8):  # libjpeg scales by n/8: only these give every side rounded up alike
        raise ValueError(f"reduce must be 1, 2, 4 or 8, not {reduce}")
    header = header or read_header(image)
    size = (-(-header.height // reduce), -(-header.width // reduce))
    if header.format == "jpeg":
        # min_width/min_height pick libjpeg's scale: the smallest of n/8 that gives at least `size`, here 8/reduce.
        scaled = {"min_height": size[0], "min_width": size[1]} if reduce > 1 else {}
        try:
            frame = simplejpeg.decode_jpeg(image, colorspace="BGR", strict=True, **scaled)
        except ValueError as exc:
            raise BadImageError(
                f"The frame ({len(image)} bytes) is not a decodable JPEG: corrupt data ({exc})"
            ) from None
    else:
        frame = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
        if frame is None:
            raise BadImageError(f"The frame ({len(image)} bytes) is not a decodable PNG: corrupt or truncated")
        if reduce > 1 and frame.shape[:2] == (header.height, header.width):
            frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    if frame.shape[:2] != size:
        raise BadImageError(f"The frame decoded to {frame.shape[1]}x{frame.shape[0]}, not its declared size")
    return frame


def frame_boxes(camera: CameraConfig, width: int, height: int) -> tuple[Box, ...]:
    """The camera's slot boxes for a `width` x `height` frame; BadImageError when they do not fit."""
    try:
        return slot_boxes(camera, width, height)
    except ConfigError as exc:
        raise BadImageError(f"Frame size does not fit the camera's slots: {exc}") from None


def slot_crops(
    frame: np.ndarray, camera: CameraConfig, *, copy: bool = True
) -> tuple[tuple[Box, ...], list[np.ndarray]]:
    """The camera's slot boxes for this frame's size and each slot's pixels: a contiguous copy, or with
    copy=False a view into the frame.

    Copies by default, so that a crop that outlives the frame (waiting in the inference queue) does not pin the
    whole frame in memory. The Recognizer takes views, which its keys and cues read as they are, and copies only
    the crops it hands to work that outlives the frame (docs/benchmarks.md, "Hit path").
    """
    height, width = frame.shape[:2]
    boxes = frame_boxes(camera, width, height)
    if not copy:
        return boxes, [crop(frame, box) for box in boxes]
    return boxes, [np.ascontiguousarray(crop(frame, box)) for box in boxes]
