"""Reading a competition's images: decoding, header checks (channels, depth, truncation) and multi-file samples."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from solver.base.errors import SolverError


def read_image(path: Path) -> np.ndarray:
    """HxWxC uint8 in RGB(A) order; grayscale becomes HxWx1. A file cut short is refused, not decoded."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        data = None
    if data is not None and data.size:
        _check_complete(path, data[:16].tobytes(), data[-16:].tobytes(), data.tobytes)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data is not None and data.size else None
    if image is None:
        reason = "file is missing" if not path.exists() else "not a readable image"
        raise SolverError(f"cannot read image {path}: {reason}")
    _check_dtype(path, image.dtype)
    if image.ndim == 2:
        return image[:, :, None]
    if image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def _check_dtype(path: Path, dtype) -> None:
    if np.dtype(dtype) != np.uint8:
        raise SolverError(f"image {path} has dtype {np.dtype(dtype)}; only 8-bit images are supported (convert it to 8 bits per channel)")


_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


def _ends_early(head: bytes, tail: bytes) -> bool:
    """A JPEG without its end-of-image marker or a PNG without its IEND chunk at the end of the file."""
    tail = tail.rstrip(b"\x00")  # some writers pad after the end marker
    if head.startswith(_JPEG_START):
        return not tail.endswith(_JPEG_END)
    if head.startswith(_PNG_START):
        return not tail.endswith(_PNG_END)
    return False


def _check_complete(path: Path, head: bytes, tail: bytes, content: Callable[[], bytes]) -> None:
    """Refuse a JPEG or PNG cut short (a download or a copy that stopped): OpenCV decodes a truncated JPEG
    without an error and fills the missing rows grey. The end marker is checked first; only a file without one
    is decoded strictly (Pillow raises on missing data), so files with bytes after the marker still pass."""
    if not _ends_early(head, tail):
        return
    try:
        with Image.open(io.BytesIO(content())) as image:
            image.load()
    except UnidentifiedImageError:  # not an image at all past its first bytes: no truncation, the decoder says so
        raise SolverError(f"cannot read image {path}: not a readable image") from None
    except (OSError, SyntaxError, ValueError) as err:  # Pillow: "image file is truncated", "broken data stream" ...
        raise SolverError(f"cannot read image {path}: the file is truncated ({err}); download or copy it again") from None


def _jpeg_shape(head: bytes) -> tuple[int, int, int] | None:
    """(height, width, channels) from an 8-bit JPEG's frame header (SOFn) with 1 or 3 components, else None."""
    i = 2
    while i + 10 <= len(head) and head[i] == 0xFF:
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOF0..SOF15, not DHT / JPG / DAC
            precision, components = head[i + 4], head[i + 9]
            height, width = int.from_bytes(head[i + 5 : i + 7], "big"), int.from_bytes(head[i + 7 : i + 9], "big")
            return (height, width, components) if precision == 8 and components in (1, 3) and height else None
        if marker == 0xDA:  # the scan starts before any frame header
            return None
        i += 2 + int.from_bytes(head[i + 2 : i + 4], "big")
    return None


_PNG_CHANNELS = {0: 1, 2: 3, 6: 4}  # colour type -> channels, for 8-bit files without a tRNS chunk


def _png_shape(head: bytes) -> tuple[int, int, int] | None:
    """(height, width, channels) from an 8-bit grey / RGB / RGBA PNG's IHDR chunk, else None. A tRNS chunk (which
    makes OpenCV add an alpha channel) is looked for up to the first image data."""
    if len(head) < 33 or head[12:16] != b"IHDR" or head[24] != 8 or head[25] not in _PNG_CHANNELS:
        return None
    i = 8
    while i + 8 <= len(head):
        kind = head[i + 4 : i + 8]
        if kind == b"IDAT":
            return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big"), _PNG_CHANNELS[head[25]]
        if kind == b"tRNS":
            return None
        i += 12 + int.from_bytes(head[i : i + 4], "big")
    return None


HEADER_BYTES = 1 << 16  # the headers of JPEG and PNG files (EXIF included) fit in the first 64 KiB


def read_header(path: Path) -> tuple[int, int, int]:
    """(height, width, channels) of read_image(path) without decoding the pixels, with read_image's errors.

    The header settles it for 8-bit JPEG (grey or colour) and 8-bit grey / RGB / RGBA PNG files, the common case,
    and the file's last bytes show a truncation; any other file (palette, CMYK, TIFF, ...) is decoded in full,
    which is exact. About 0.1 ms of CPU a file (a 256x256 JPEG's decode takes several times that).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16))
            tail = f.read()
    except OSError:  # missing or not a file: read_image names it
        return read_image(path).shape
    if head.startswith(_PNG_START) and len(head) > 24 and head[24] == 16:  # IHDR bit depth
        _check_dtype(path, np.uint16)
    shape = _jpeg_shape(head) if head.startswith(_JPEG_START) else _png_shape(head) if head.startswith(_PNG_START) else None
    if shape is None:
        return read_image(path).shape
    _check_complete(path, head, tail, path.read_bytes)
    return shape


def read_sample(paths: Path | Sequence[Path]) -> np.ndarray:
    """One sample as HxWxC uint8: one image file as read_image reads it, or grayscale channel files stacked in order."""
    paths = sample_files(paths)
    if len(paths) == 1:
        return read_image(paths[0])
    planes = [read_image(path) for path in paths]
    _check_channel_files(paths, [plane.shape for plane in planes])
    return np.ascontiguousarray(np.stack([plane[:, :, 0] for plane in planes], axis=2))


def read_sample_header(paths: Path | Sequence[Path]) -> tuple[int, int, int]:
    """read_sample's shape and errors from the files' headers (read_header)."""
    paths = sample_files(paths)
    shapes = [read_header(path) for path in paths]
    if len(paths) == 1:
        return shapes[0]
    _check_channel_files(paths, shapes)
    return shapes[0][0], shapes[0][1], len(paths)


def _check_channel_files(paths: list[Path], shapes: list[tuple[int, ...]]) -> None:
    """Each file listed in image_channels is one grayscale channel, all of one size."""
    for path, shape in zip(paths, shapes):
        if shape[2] != 1:
            raise SolverError(f"channel file {path} has {shape[2]} channels; each file listed in image_channels must be one grayscale channel")
        if shape[:2] != shapes[0][:2]:
            raise SolverError(
                f"channel file {path} is {shape[0]}x{shape[1]} (HxW) but {paths[0]} is "
                f"{shapes[0][0]}x{shapes[0][1]}; every channel of a sample must have one size"
            )


def sample_files(item: Path | Sequence[Path]) -> list[Path]:
    """A dataset item's files: [the image] or the channel files of a multi-file sample."""
    return [Path(item)] if isinstance(item, str | Path) else [Path(p) for p in item]


def check_images_exist(paths: Sequence[Path | Sequence[Path]], csv_path: Path, ids: Sequence[str] | None = None) -> None:
    """Fail before training when an image (or a channel file) listed in a CSV is missing; name it, its id, and count the rest."""
    missing = [(i, p) for i, item in enumerate(paths) for p in sample_files(item) if not p.is_file()]
    if missing:
        row, path = missing[0]
        sample = f" (id {ids[row]!r})" if ids is not None else ""
        raise SolverError(f"{csv_path}: {len(missing)} listed image(s) not found, e.g. {path}{sample}")


def load_images(paths: Sequence[Path | Sequence[Path]], desc: str) -> list[np.ndarray]:
    """Decode every image once (cache for small data sets); an unreadable file fails here, named."""
    return [read_sample(sample_files(p)) for p in tqdm(paths, desc=desc, leave=False, mininterval=1)]
