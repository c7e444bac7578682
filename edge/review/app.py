"""The review web app and its JSON API (FastAPI), over one output folder's store.

    app = create_app(out_dir, token=None, bundle=None)   # then uvicorn.run(app, host="127.0.0.1", port=8765)

Pages: `/` (the reviewer, plain HTML/JS from static/, no build step). API (all JSON unless said):
    GET  /api/health                         status, store, counts, runs
    GET  /api/runs                           runs of the store, newest first
    GET  /api/detections?...                 the run's detections (filters below), with progress
    GET  /api/windows?queue=near|random&...  near misses / a uniform random sample of windows
    GET  /api/queue?queue=detections|near|random|uncertain|search&order=score|time&recorder=&night=&min_score=
                   &max_score=&n=&seed=    (each reply has the queue's `description`)
    GET  /api/queues                         the queues and what each is for
    GET  /api/like?file_key=&start_s=&end_s=&n=   "more like this": windows most similar to that span's
    GET  /api/labels                         current labels
    POST /api/labels {file_key,start_s,end_s,label,reviewer}   committed to SQLite before the reply;
                                             the reply's `previous` is the span's label before it
    GET  /api/clip.wav?file_key=&start_s=&end_s=&pad_s=        the span (+ context) as WAV
    GET  /api/spectrogram.png?(same)&view=full|band            its spectrogram (no axes; PX_PER_S columns a second)
    GET  /api/display                                          how to draw its axes: px/s, each view's frequency ticks
    GET  /api/calibration?run=                                 precision per score bin from the labels
    POST /api/analyze (multipart `file`, optional `tz`)        an uploaded recording's detections (needs a bundle)
    GET  /api/nights?run=                                      each recorder's nights (page: /static/night.html)
    GET  /api/night?recorder=&night=&max_hz=&run=              a night's overview: axes facts and marks (night.py)
    GET  /api/night.png?(same)                                 its false-colour spectrogram, one column per minute

Safety (docs/review-loop.md): review.guard checks every request first (the Host allow-list against DNS rebinding;
with a token, required off loopback, `?token=`, the `X-Hootwatch-Token` header or the cookie the first tokened page
sets; for anything that changes state, same origin and the CSRF token the page `/` carries). Every parameter is
bounded and finite, and a span must lie inside its recording (422 saying why). Audio is read only from
recordings in the store's ledger, looked up by content key (no path ever comes from a request). Uploads are read as
a stream (review.upload): refused from the Content-Length or at `max_upload_mb`, and from their audio header when
not a recorder's sample rate or longer than `max_analyze_s` (the CPU one request may take); one at a time.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations as real types
import io
import logging
import secrets
import threading
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from hootwatch.edge.core.errors import HootwatchError
from hootwatch.edge.store.labels import REVIEW_LABELS, LabelBook
from hootwatch.edge.store.database import DetectionStore, open_store
from hootwatch.edge.store.window_scores import file_window_s
from .access import LOOPBACK_NAMES
from .guard import Guard, Refused, fix_for, in_words, with_csrf_meta, with_meta
from .queues import DESCRIPTIONS, QUEUES, Filters, Queues, progress
from .upload import ANALYZE_FORM, plausible_audio, received

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_CLIP_S = 120.0
MAX_SPAN_S = 1e7  # 115 days, longer than any recording: each span is checked against its own below
SPAN_SLACK_S = 1e-3  # spans are stored to the millisecond
KEY_LENGTH = 4200  # a content key (name|size|hash), or `path:` and a path

FileKey = Annotated[str, Query(min_length=1, max_length=KEY_LENGTH)]
Seconds = Annotated[float, Query(ge=0.0, le=MAX_SPAN_S, allow_inf_nan=False)]
Padding = Annotated[float, Query(ge=0.0, le=MAX_CLIP_S / 2, allow_inf_nan=False)]
Score = Annotated[float, Query(ge=0.0, le=1.0, allow_inf_nan=False)]
Count = Annotated[int, Query(ge=1, le=100_000)]
Seed = Annotated[int, Query(ge=0, le=2 ** 32 - 1)]


class LabelIn(BaseModel):
    file_key: str = Field(min_length=1, max_length=KEY_LENGTH)
    start_s: float = Field(ge=0.0, le=MAX_SPAN_S, allow_inf_nan=False)
    end_s: float = Field(ge=0.0, le=MAX_SPAN_S, allow_inf_nan=False)
    label: str = Field(max_length=100)
    reviewer: str = Field("", max_length=100)


def create_app(out_dir: str | Path, token: str | None = None, bundle: str | Path | None = None,
               max_upload_mb: float = 200.0, reviewer: str = "", allow_hosts=(), max_analyze_s: float = 7200.0):
    """`allow_hosts`: Host names besides loopback (review.access.allowed_hosts: the bound address, a proxy's
    name); `max_analyze_s`: the most audio one upload may hold."""
    from hootwatch.edge.contract.bundle import DEFAULT_DISPLAY, load_bundle
    # the species' frequency range for the spectrograms: the bundle's, else the owl's default
    manifest = load_bundle(bundle, verify=False).manifest if bundle is not None else None
    display = manifest.display_spec if manifest is not None else DEFAULT_DISPLAY
    store = open_store(out_dir)
    book = LabelBook(store)
    lock = threading.Lock()  # one connection: requests take turns (a reviewer is one person)
    analysing = threading.Lock()  # one upload analysed at a time: the CPU all uploads may take together
    detector_cache: dict = {}
    app = FastAPI(title="hootwatch review", docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.state.store = store
    app.state.csrf_token = csrf = secrets.token_urlsafe(32)
    app.add_middleware(Guard, hosts=LOOPBACK_NAMES | {h.lower() for h in allow_hosts}, token=token, csrf=csrf)

    @app.exception_handler(HootwatchError)
    async def user_error(request: Request, exc: HootwatchError):
        return JSONResponse({"error": exc.message, "fix": exc.hint}, status_code=400)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError):
        return Refused(422, in_words(exc.errors()), fix_for(exc.errors())).response()

    @app.exception_handler(HTTPException)
    async def not_found(request: Request, exc: HTTPException):  # no such route, a method it does not take
        return Refused(exc.status_code, str(exc.detail), "see the API's routes at /api/docs").response()

    def _run(run: str | None) -> str:
        if not run and store.latest_run() is None:
            return ""  # nothing scanned yet: empty queues
        try:
            return store.resolve_run(run)
        except HootwatchError:  # its words are the CLI's (--run, the store's path): these are the page's
            raise Refused(404, f"no run {run!r} in this store", "the runs are at /api/runs") from None

    def _filters(recorder, night, min_score, max_score) -> Filters:
        return Filters(recorder or "", night or "", float(min_score), float(max_score))

    def _queue(queue, order, run, recorder, night, min_score, max_score, n, seed) -> dict:
        if queue not in QUEUES:
            raise Refused(400, f"unknown queue {queue!r}", f"use one of {', '.join(QUEUES)} (/api/queues)")
        if order not in ("score", "time"):
            raise Refused(400, f"unknown order {order!r}", "use order=score or order=time")
        with lock:
            rk = _run(run)
            items = Queues(store, rk).queue(queue, order, _filters(recorder, night, min_score, max_score), n, seed)
        return {"run": rk, "queue": queue, "items": [it.to_dict() for it in items], "progress": progress(items),
                "description": DESCRIPTIONS[queue]}

    @app.get("/", response_class=HTMLResponse)
    def index():
        page = with_csrf_meta((STATIC / "index.html").read_text(encoding="utf-8"), csrf)
        page = with_meta(page, "hootwatch-reviewer", reviewer)  # --reviewer: the name when the browser has none
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})  # a restarted server has a new token

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/health")
    def health():
        with lock:
            return {"status": "ok", "store": str(store.path), "detections": store.count(), "labels": book.count(),
                    "runs": store.runs(), "analyze": bundle is not None}

    @app.get("/api/runs")
    def list_runs():
        with lock:
            return {"runs": store.runs()}

    @app.get("/api/queue")
    def queue(queue: str = "detections", order: str = "score", run: str | None = None, recorder: str = "",
              night: str = "", min_score: Score = 0.0, max_score: Score = 1.0, n: Count = 200, seed: Seed = 0):
        return _queue(queue, order, run, recorder, night, min_score, max_score, n, seed)

    @app.get("/api/queues")
    def queues():
        return {"queues": [{"name": q, "description": DESCRIPTIONS[q]} for q in (*QUEUES, "like")]}

    @app.get("/api/like")
    def like(file_key: FileKey, start_s: Seconds, end_s: Seconds, run: str | None = None,
             n: int = Query(200, ge=1, le=10000)):
        with lock:
            _inside(file_key, start_s, end_s, store.recording_audio_s(file_key), _window_s(file_key))
            rk = _run(run)
            items = Queues(store, rk).like(file_key, start_s, end_s, n) if rk else []
        return {"run": rk, "queue": "like", "items": [it.to_dict() for it in items], "progress": progress(items),
                "description": DESCRIPTIONS["like"]}

    @app.get("/api/detections")
    def detections(order: str = "score", run: str | None = None, recorder: str = "", night: str = "",
                   min_score: Score = 0.0, max_score: Score = 1.0):
        return _queue("detections", order, run, recorder, night, min_score, max_score, 1, 0)

    @app.get("/api/windows")
    def windows(queue: str = "random", order: str = "score", run: str | None = None, recorder: str = "",
                night: str = "", min_score: Score = 0.0, max_score: Score = 1.0, n: Count = 200, seed: Seed = 0):
        if queue not in ("near", "random"):
            raise Refused(400, f"queue {queue!r} is no queue of windows", "use queue=near or queue=random")
        return _queue(queue, order, run, recorder, night, min_score, max_score, n, seed)

    @app.get("/api/filters")
    def filters(run: str | None = None):
        with lock:
            return Queues(store, _run(run)).filter_choices()

    @app.post("/api/labels")
    def post_label(body: LabelIn):
        with lock:
            # a label this span already had (an imported 'kookaburra') may come back: that is what undo posts
            had = {x.label for x in book.history(body.file_key, body.start_s, body.end_s)}
            if body.label not in (*REVIEW_LABELS, "") and body.label not in had:
                raise Refused(400, f"unknown label {body.label!r}",
                              f"use one of {', '.join(REVIEW_LABELS)} (or '' to clear)")
            path = _recording(body.file_key)
            _inside(body.file_key, body.start_s, body.end_s, store.recording_audio_s(body.file_key),
                    _window_s(body.file_key))
            saved = book.add(body.file_key, path, body.start_s, body.end_s, body.label,
                             reviewer=body.reviewer or reviewer)
            previous = book.get(saved.replaces).label if saved.replaces else ""
        # `previous`: what this very span held before ("" none), for undo
        return {"saved": True, "id": saved.id, "label": saved.label, "replaces": saved.replaces,
                "previous": previous}

    @app.get("/api/labels")
    def get_labels():
        with lock:
            return {"labels": [x.__dict__ for x in book.current()]}

    def _recording(file_key: str) -> str:
        path = store.recording_path(file_key)
        if path is None:
            raise Refused(404, "no such recording in this store",
                          "use a file_key of an item of a queue (/api/queue); this store has no other recordings")
        return path

    def _window_s(file_key: str) -> float:
        """The model's window for this recording (0: not known): the store's, else the bundle's."""
        win = file_window_s(store.conn, file_key)
        return win if win is not None else manifest.window_s if manifest is not None else 0.0

    def _inside(file_key: str, start_s: float, end_s: float, audio_s: float | None, window_s: float = 0.0) -> None:
        """A span (start_s < end_s) inside its recording of `audio_s` seconds (None: not known), or 422. A recording
        shorter than the model's window (`window_s`) is scored as one padded window: a span may end there."""
        if end_s <= start_s:
            raise Refused(422, f"end_s {end_s:g} is not after start_s {start_s:g}", "give a span with start_s < end_s")
        if audio_s is None:
            return
        last = max(audio_s, window_s)
        if start_s >= audio_s or end_s > last + SPAN_SLACK_S:
            padded = f"; scored as one {window_s:g} s window" if window_s > audio_s else ""
            raise Refused(422, f"the span {start_s:g}-{end_s:g} s runs past the end of {file_key.split('|')[0]} "
                               f"({audio_s:g} s long{padded})",
                          f"give a span that starts before {audio_s:g} s and ends by {last:g} s")

    def _audio(file_key: str, start_s: float, end_s: float, pad_s: float):
        from hootwatch.edge.contract.audio import load, probe
        _inside(file_key, start_s, end_s, None)
        if end_s - start_s + 2 * pad_s > MAX_CLIP_S:
            raise Refused(422, f"a clip of {end_s - start_s:g} s with {pad_s:g} s of padding each side is longer "
                               f"than {MAX_CLIP_S:g} s", "ask for a shorter span or less padding (pad_s)")
        with lock:
            path = _recording(file_key)
            window_s = _window_s(file_key)
        try:
            info = probe(path)
        except HootwatchError as exc:
            raise Refused(410, exc.message, "is the card still mounted? put the recording back where it was scanned "
                               "from") from None
        _inside(file_key, start_s, end_s, info.duration_s, window_s)
        a, b = max(0.0, start_s - pad_s), min(info.duration_s, end_s + pad_s)  # the padding stops at the file's ends
        try:
            return load(path, info.sample_rate, start_s=a, duration_s=b - a), info.sample_rate
        except HootwatchError as exc:
            raise Refused(410, exc.message, "is the card still mounted? put the recording back where it was scanned "
                               "from") from None

    @app.get("/api/clip.wav")
    def clip(file_key: FileKey, start_s: Seconds, end_s: Seconds, pad_s: Padding = 2.0):
        import soundfile as sf
        x, sr = _audio(file_key, start_s, end_s, pad_s)
        buf = io.BytesIO()
        sf.write(buf, x, sr, format="WAV", subtype="PCM_16")
        return Response(buf.getvalue(), media_type="audio/wav")

    @app.get("/api/spectrogram.png")
    def spectrogram(file_key: FileKey, start_s: Seconds, end_s: Seconds, pad_s: Padding = 2.0,
                    view: Literal["full", "band"] = "full"):
        from hootwatch.edge.scan.material import spectrogram_png_bytes, view_axis
        x, sr = _audio(file_key, start_s, end_s, pad_s)
        return Response(spectrogram_png_bytes(x, sr, view_axis(display, view)), media_type="image/png")

    @app.get("/api/display")
    def display_geometry():
        """The spectrogram's geometry: x = (t - clip start) * px_per_s, each view's frequency ticks (y from the top,
        as a fraction of the height), and the call's band."""
        from hootwatch.edge.scan.material import IMAGE_ROWS, PX_PER_S, VIEWS, axis_geometry
        return {"px_per_s": PX_PER_S, "rows": IMAGE_ROWS, "band_hz": list(display.band_hz),
                "views": {v: axis_geometry(display, v) for v in VIEWS}}

    @app.get("/api/calibration")
    def calibration(run: str | None = None, bins: int = Query(10, ge=2, le=50)):
        from .calibrate import precision_panel, reviewed_detections
        with lock:
            rk = _run(run)
            scores, truth = reviewed_detections(store, rk)
        return {"run": rk, **precision_panel(scores, truth, bins)}

    @app.post("/api/analyze", openapi_extra=ANALYZE_FORM)
    async def analyze(request: Request):
        if bundle is None:
            raise Refused(503, "no model loaded", "start `hootwatch review OUTDIR --model BUNDLE` to analyze")
        if not analysing.acquire(blocking=False):  # before reading: a second upload is not even stored
            raise Refused(429, "another upload is being analysed", "send this one when it has finished")
        try:
            async with received(request, max_upload_mb) as upload:
                plausible_audio(upload.path, max_analyze_s)  # from the header, before anything decodes it
                # decoding and scoring take seconds: off the event loop, so labels and pages are not held up
                from starlette.concurrency import run_in_threadpool
                return await run_in_threadpool(_analyze, upload.path, upload.fields.get("tz") or None)
        finally:
            analysing.release()

    def _analyze(path: Path, tz: str | None) -> dict:
        from hootwatch.edge.contract.cascade import load_detector
        from hootwatch.edge.scan.engine import ScanSettings, Scanner
        if "det" not in detector_cache:  # the bundle's scorer, as `scan` uses it (its cascade too)
            detector_cache["det"] = load_detector(bundle, threads=1)
        det = detector_cache["det"]
        with DetectionStore(path.parent / ".analyze.sqlite") as tmp_store:  # no upload is named so (clean_name)
            try:
                scanner = Scanner(det, tmp_store, ScanSettings(tz=tz, indices=False))  # no night overview here
                outcome = scanner.scan_file(path)
            except HootwatchError as exc:
                raise Refused(400, f"{path.name}: {exc.message}", exc.hint) from None
            if outcome.status != "done":
                raise Refused(400, f"{path.name}: {outcome.reason.removeprefix(f'{path}: ')}",
                              "send a recording the recorder made (WAV or FLAC)")
            rows = tmp_store.detections()
        keep = ("start_s", "end_s", "begin_utc", "end_utc", "begin_local", "end_local", "label", "max_score",
                "mean_score", "n_windows", "time_source", "model_id", "threshold", "min_hits")
        return {"file": path.name, "audio_s": outcome.audio_s,
                "detections": [{k: r[k] for k in keep} for r in rows]}

    def _night(run: str | None, recorder: str, night: str, max_hz: float | None):
        from .night import overview
        with lock:
            rk = _run(run)
            ov = overview(store, rk, recorder, night, max_hz) if rk else None
        if ov is None:
            raise Refused(404, f"no recording of recorder {recorder!r} on the night of {night} in this run",
                          "pick one of the nights /api/nights lists")
        return ov

    night_q = Query(..., pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD, the evening the night began")
    max_hz_q = Query(None, gt=0, le=400000, description="top of the frequency axis, Hz (default: the whole band)")

    @app.get("/api/nights")
    def list_nights(run: str | None = None):
        from .night import nights
        with lock:
            rk = _run(run)
            return {"run": rk, "nights": nights(store, rk) if rk else []}

    @app.get("/api/night")
    def night_overview(recorder: str, night: str = night_q, run: str | None = None, max_hz: float | None = max_hz_q):
        return _night(run, recorder, night, max_hz).to_dict()

    @app.get("/api/night.png")
    def night_png(recorder: str, night: str = night_q, run: str | None = None, max_hz: float | None = max_hz_q):
        from hootwatch.edge.scan.material import png_bytes
        ov = _night(run, recorder, night, max_hz)
        if ov.image is None:
            raise Refused(404, ov.message, "scan the night's recordings again")
        return Response(png_bytes(ov.image), media_type="image/png")

    @app.on_event("shutdown")
    def close_store():
        store.close()

    return app
