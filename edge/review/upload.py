"""A recording uploaded to POST /api/analyze, read as a stream (FastAPI's UploadFile would spool the whole body to
/tmp before the route runs): refused from its Content-Length before a byte is read when too big, stopped at the
cap otherwise, its one file written to a temporary folder of its own (removed afterwards), and its audio header
checked before anything decodes it. python-multipart's streaming parser reads the form (Starlette's own parser)."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from hootwatch.edge.contract.audio import AudioInfo, probe
from hootwatch.edge.core.errors import HootwatchError

from .guard import Refused

ENVELOPE = 1 << 16  # room for the multipart boundaries, part headers and small fields around the file
MAX_PARTS = 8
MAX_FIELD = 1024
RATES_HZ = (1000, 768_000)  # a recorder samples at 1-768 kHz; a header outside says something else
FORM_FIX = "send the recording as the multipart/form-data field `file` (and the time zone as `tz`)"
# the form in the OpenAPI schema (the route reads the stream itself, so FastAPI cannot describe it)
ANALYZE_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "the recording (WAV, FLAC, ...)"},
        "tz": {"type": "string", "description": "the recorder's time zone, e.g. Australia/Sydney"}}}}}}}


@dataclass(frozen=True)
class Upload:
    path: Path              # the uploaded file, under its own (cleaned) name: the scanner reads time from it
    fields: dict[str, str]  # the form's other fields


@asynccontextmanager
async def received(request, max_mb: float) -> AsyncIterator[Upload]:
    """The request's uploaded file, while the `async with` lasts; Refused (413, 415, 400, 422) when it is too big
    or not a form with one file."""
    limit = int(max_mb * (1 << 20)) + ENVELOPE
    too_big = Refused(413, f"the upload is larger than this server's {max_mb:g} MB limit",
                      "scan long recordings with `hootwatch scan`, or start the app with a larger --max-upload-mb")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise Refused(415, f"the upload is {ctype.decode('latin-1') or 'of no type'}, not multipart/form-data",
                      FORM_FIX)
    folder = Path(tempfile.mkdtemp(prefix="hootwatch-analyze-"))
    form = _Form(folder)
    try:
        parser = MultipartParser(params[b"boundary"], form.callbacks())
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            parser.write(chunk)
        parser.finalize()
        yield form.upload()
    except MultipartParseError as exc:
        raise Refused(400, f"the upload is not a well-formed form ({exc})", FORM_FIX) from None
    finally:
        form.close()
        shutil.rmtree(folder, ignore_errors=True)


def plausible_audio(path: Path, max_s: float) -> AudioInfo:
    """The file's header (nothing decoded yet), refused when it cannot be audio from a recorder or holds more
    than `max_s` seconds: the CPU one request may take."""
    try:
        info = probe(path)
    except HootwatchError as exc:
        raise Refused(400, exc.message.replace(str(path), path.name), exc.hint) from None
    lo, hi = RATES_HZ
    if not lo <= info.sample_rate <= hi:
        raise Refused(422, f"{path.name}: its header says {info.sample_rate} Hz; a recording is sampled at "
                           f"{lo // 1000}-{hi // 1000} kHz", "the header is damaged or this is not a recording")
    if info.duration_s > max_s:
        raise Refused(422, f"{path.name} holds {info.duration_s:.0f} s of audio; this server analyses at most "
                           f"{max_s:g} s per upload", "scan long recordings with `hootwatch scan OUTDIR FILE`, or "
                                                      "start the app with a larger --max-analyze-s")
    return info


def clean_name(name: str) -> str:
    """An uploaded file's name, safe as a file name here; its ending and recorder time stay."""
    base = re.sub(r"[^\w.\- ]", "_", re.split(r"[\\/]", name)[-1])[-120:].strip(" .")
    return base or "upload.wav"


class _Form:
    """python-multipart's callbacks: the `file` part's data to a file, other fields (capped) to strings."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.fields, self.path, self.parts = folder, {}, None, 0
        self._out = None
        self._name: str | None = None
        self._header, self._value, self._data = bytearray(), bytearray(), bytearray()
        self._headers: dict[bytes, bytes] = {}

    def callbacks(self) -> dict:
        return {f"on_{k}": getattr(self, k) for k in ("part_begin", "header_field", "header_value", "header_end",
                                                      "headers_finished", "part_data", "part_end")}

    def part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise Refused(422, f"the upload has more than {MAX_PARTS} parts", FORM_FIX)
        self._headers, self._name, self._data = {}, None, bytearray()

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def header_end(self) -> None:
        self._headers[bytes(self._header).lower()] = bytes(self._value)
        self._header.clear()
        self._value.clear()

    def headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if self._name == "file" and filename is not None:
            if self.path is not None:
                raise Refused(422, "the upload holds more than one file", FORM_FIX)
            self.path = self.folder / clean_name(filename.decode("utf-8", "replace"))
            self._out = open(self.path, "wb")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self._out is not None:
            self._out.write(data[start:end])
            return
        self._data += data[start:end]
        if len(self._data) > MAX_FIELD:
            raise Refused(422, f"the form field {self._name!r} is longer than {MAX_FIELD} bytes", FORM_FIX)

    def part_end(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        elif self._name:
            self.fields[self._name] = self._data.decode("utf-8", "replace")

    def upload(self) -> Upload:
        if self.path is None:
            raise Refused(422, "the upload holds no file", FORM_FIX)
        return Upload(self.path, dict(self.fields))

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
