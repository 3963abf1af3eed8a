"""A small multipart/form-data parser for /v1/files/upload.

Why: aiohttp's own `request.post()` sometimes calls its deprecated
`StreamReader.unread_data()` (depending on how TCP chunks happen to split a
boundary), which raises DeprecationWarning; under the project's pytest
setting `filterwarnings = error` that warning becomes an exception in the
emulator thread and the upload fails with HTTP 500 at random. Parsing the
already-read body here is deterministic and binary-safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser

__all__ = ["FormPart", "parse_form"]


@dataclass(frozen=True)
class FormPart:
    """One form field: its name, file name (None for plain fields) and bytes."""

    name: str
    filename: str | None
    data: bytes


def _boundary(content_type: str) -> bytes:
    message = Message()
    message["Content-Type"] = content_type
    boundary = message.get_param("boundary")
    if message.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise ValueError("expected multipart/form-data with a boundary")
    return boundary.encode("latin-1")


def _unescape(filename: str) -> str:
    """Undo the HTML5 form escaping of a file name (raw UTF-8, %22 for a quote)."""
    for escaped, char in (("%22", '"'), ("%0D", "\r"), ("%0A", "\n")):
        filename = filename.replace(escaped, char)
    return filename


def _part(raw: bytes) -> FormPart | None:
    head, separator, data = raw.partition(b"\r\n\r\n")
    if not separator:
        return None
    headers = HeaderParser().parsestr(head.decode("utf-8", "replace") + "\r\n\r\n")
    name = headers.get_param("name", header="content-disposition")
    if not isinstance(name, str):
        return None
    filename = headers.get_filename()
    return FormPart(name, _unescape(filename) if filename is not None else None, data)


def parse_form(body: bytes, content_type: str) -> dict[str, FormPart]:
    """Fields of a multipart/form-data body by name (first one wins); ValueError if not one."""
    delimiter = b"\r\n--" + _boundary(content_type)
    fields: dict[str, FormPart] = {}
    for raw in (b"\r\n" + body).split(delimiter)[1:]:
        if raw.startswith(b"--"):
            break
        part = _part(raw.removeprefix(b"\r\n"))
        if part is not None:
            fields.setdefault(part.name, part)
    return fields
