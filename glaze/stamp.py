"""The record of what made an output (engine/provenance.py), put into an image file that is
already encoded, without decoding or re-encoding it: a PNG text chunk before the image
data, a JPEG comment segment after the application segments, or for WebP and TIFF a sidecar
file NAME.EXT.glaze.json that names the output's own hash (so a stale sidecar never
describes a newer image).

`glaze cloak` and both plug-ins' Export Glazed write the record through this module, so a
file Krita or GIMP encodes carries the same record as one the command line writes.
Standard library only: the plug-ins' client carries it.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import secrets
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from .processes import pid_alive

RECORD_KEY = "glaze"  # the PNG text chunk holding the record
SIDECAR_SUFFIX = ".glaze.json"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_START = b"\xff\xd8"
JPEG_COMMENT = b"\xff\xfe"
MAX_JPEG_COMMENT = 65533  # a segment's length field counts itself in 16 bits


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_stale_parts(path: Path) -> None:
    """Remove the temporary files an earlier, killed write of `path` left beside it
    (.NAME.PID.HEX.part, with NAME's suffix after it for an image, whose process is gone)."""
    for part in path.parent.glob(f".{glob.escape(path.name)}.*.part*"):
        pid = part.name[len(path.name) + 2:].split(".")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            part.unlink(missing_ok=True)


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def record_text(record: dict) -> str:
    """The record as a file carries it: JSON in ASCII (PNG's tEXt is Latin-1)."""
    return json.dumps(record)


def holds_records(path: str | Path) -> str | None:
    """"PNG" or "JPEG" where the file at `path` carries a record itself (by its signature),
    None for a format that keeps it in a sidecar."""
    with open(path, "rb") as file:
        head = file.read(len(PNG_SIGNATURE))
    return "PNG" if head == PNG_SIGNATURE else "JPEG" if head.startswith(JPEG_START) else None


def embed(path: str | Path, record: dict) -> bool:
    """Put `record` into the PNG or JPEG file at `path` (the file is rewritten beside itself
    and renamed over; its pixels are not touched). False for another format, which keeps
    its record in a sidecar (`write_sidecar`)."""
    kind = holds_records(path)
    with open(path, "rb") as file:
        text = record_text(record)
        if kind == "PNG":
            data = RECORD_KEY.encode("ascii") + b"\0" + text.encode("ascii")
            chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(
                ">I", zlib.crc32(b"tEXt" + data))
            at = _png_data_start(file)
        elif kind == "JPEG":
            data = text.encode("ascii")
            if len(data) > MAX_JPEG_COMMENT:
                raise ValueError(f"a record of {len(data)} bytes does not fit a JPEG comment")
            chunk = JPEG_COMMENT + struct.pack(">H", len(data) + 2) + data
            at = _jpeg_after_application_segments(file)
        else:
            return False
    _insert(Path(path), at, chunk)
    return True


def _png_data_start(file) -> int:
    """The offset of the first IDAT chunk: text before it is read without the pixels."""
    at = len(PNG_SIGNATURE)
    while True:
        file.seek(at)
        header = file.read(8)
        if len(header) < 8:
            raise ValueError("a PNG file without image data")
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IDAT":
            return at
        at += 12 + length  # length, type, data, CRC


def _jpeg_after_application_segments(file) -> int:
    """The offset after SOI and the APPn segments (JFIF, EXIF, ICC) that must lead."""
    at = len(JPEG_START)
    while True:
        file.seek(at)
        marker = file.read(4)
        if len(marker) < 4 or marker[0] != 0xFF or not 0xE0 <= marker[1] <= 0xEF:
            return at
        at += 2 + struct.unpack(">H", marker[2:])[0]


def _insert(path: Path, at: int, data: bytes) -> None:
    part = path.with_name(f".{path.name}.{os.getpid()}.stamp.part")
    try:
        with open(path, "rb") as source, open(part, "wb") as out:
            out.write(source.read(at))
            out.write(data)
            shutil.copyfileobj(source, out, 1 << 20)
        shutil.copymode(path, part)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


def write_sidecar(path: str | Path, record: dict) -> None:
    """The record beside `path`, with the hash of the file it describes."""
    sidecar = sidecar_path(path)
    part = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.part")
    try:
        part.write_text(json.dumps({**record, "output_sha256": file_sha256(path)}, indent=2))
        os.replace(part, sidecar)
    finally:
        part.unlink(missing_ok=True)


@contextlib.contextmanager
def published(path: str | Path, record: dict | None,
              embedded: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`, with its suffix (exporters go by it), to write
    an output to. When the block succeeds, the file moves over `path` carrying `record`;
    when it fails, nothing is left. A reader sees the old file or the whole new one with its
    record, and no sidecar of the old file ever describes the new one. `embedded`: the
    writer put `record_text(record)` in a PNG or JPEG itself (Pillow's text chunk or
    comment), which saves rewriting the file; a sidecar format still gets its sidecar."""
    path = Path(path)
    remove_stale_parts(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part"
                               f"{path.suffix}")
    try:
        yield temporary
        sidecar_path(path).unlink(missing_ok=True)
        in_file = record is None or (embedded and holds_records(temporary) is not None) \
            or embed(temporary, record)
        os.replace(temporary, path)
        if not in_file:
            write_sidecar(path, record)
    finally:
        temporary.unlink(missing_ok=True)


def read_text_record(text: str | bytes | None) -> dict | None:
    """A record from the text a file carries (a PNG chunk, a JPEG comment), None if it is
    not one."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        found = json.loads(text) if text else None
    except ValueError:
        return None
    return found if isinstance(found, dict) else None
