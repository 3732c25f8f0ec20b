"""Switching a Python plug-in on in kritarc, as Settings > Python Plugin Manager does
(`enable_NAME=true` in the [python] section), by editing only that one line: the rest of
the user's settings stay byte for byte as they were."""

from __future__ import annotations

from pathlib import Path

from glaze.engine.storage import atomic_path

SECTION = "[python]"


def load(path: Path) -> str:
    """kritarc's text ("" when there is none yet). Qt writes it as UTF-8."""
    return path.read_bytes().decode("utf-8") if path.exists() else ""


def save(path: Path, text: str) -> None:
    """Write kritarc atomically, in UTF-8, with the line endings `text` has."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(text.encode("utf-8"))


def _section_span(lines: list[str]) -> tuple[int, int] | None:
    """(header index, end index) of the [python] section."""
    for start, line in enumerate(lines):
        if line.strip() == SECTION:
            end = start + 1
            while end < len(lines) and not lines[end].lstrip().startswith("["):
                end += 1
            return start, end
    return None


def read_value(text: str, name: str) -> str | None:
    """The value of enable_NAME in the [python] section, None if absent."""
    lines = text.splitlines()
    span = _section_span(lines)
    if span is None:
        return None
    key = f"enable_{name}"
    for line in lines[span[0] + 1:span[1]]:
        if line.split("=", 1)[0].strip() == key:
            return line.split("=", 1)[1].strip() if "=" in line else ""
    return None


def set_value(text: str, name: str, value: str | None) -> str:
    """`text` with enable_NAME set to `value` (None removes the line, and the [python]
    header too when nothing else is left under it)."""
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines()
    key = f"enable_{name}"
    span = _section_span(lines)
    if span is None:
        if value is None:
            return text
        prefix = [*lines, ""] if lines and lines[-1].strip() else lines
        return newline.join([*prefix, SECTION, f"{key}={value}"]) + newline
    start, end = span
    body = [line for line in lines[start + 1:end] if line.split("=", 1)[0].strip() != key]
    if value is not None:
        last = max((i for i, line in enumerate(body) if line.strip()), default=-1)
        body.insert(last + 1, f"{key}={value}")
    if value is None and not any(line.strip() for line in body):
        before = lines[:start]
        while before and not before[-1].strip():
            before.pop()
        lines = before + lines[end:]
    else:
        lines = lines[:start + 1] + body + lines[end:]
    return newline.join(lines) + newline if lines else ""
