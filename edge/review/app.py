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
    GET  /api/spectrogram.png?(same)                           its spectrogram
    GET  /api/calibration?run=                                 precision per score bin from the labels
    POST /api/analyze (multipart `file`, optional `tz`)        an uploaded recording's detections (needs a bundle)

Safety: audio is read only from recordings in the store's ledger, looked up by content key (no path ever comes
from a request); uploads stop at `max_upload_mb`; with a token (required off loopback) every request needs
`?token=`, the `X-Hootwatch-Token` header or the cookie the first tokened page sets.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations as real types
import io
import logging
import secrets
import shutil
import tempfile
import threading
from pathlib import Path

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from hootwatch.edge.core.errors import HootwatchError
from hootwatch.edge.store.labels import REVIEW_LABELS, LabelBook
from hootwatch.edge.store.database import DetectionStore, open_store
from .queues import DESCRIPTIONS, QUEUES, Filters, Queues, progress

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_CLIP_S = 120.0
TOKEN_COOKIE = "hootwatch_token"


class LabelIn(BaseModel):
    file_key: str
    start_s: float
    end_s: float
    label: str
    reviewer: str = ""


def create_app(out_dir: str | Path, token: str | None = None, bundle: str | Path | None = None,
               max_upload_mb: float = 200.0, reviewer: str = ""):
    store = open_store(out_dir)
    book = LabelBook(store)
    lock = threading.Lock()  # one connection: requests take turns (a reviewer is one person)
    detector_cache: dict = {}
    app = FastAPI(title="hootwatch review", docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.state.store = store

    @app.middleware("http")
    async def check_token(request: Request, call_next):
        if token:
            given = (request.query_params.get("token") or request.headers.get("x-hootwatch-token")
                     or request.cookies.get(TOKEN_COOKIE))
            if not given or not secrets.compare_digest(given, token):
                return JSONResponse({"error": "this server needs its token",
                                     "fix": "open the address with ?token=... that `hootwatch review` printed"},
                                    status_code=403)
        response = await call_next(request)
        if token and request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.exception_handler(HootwatchError)
    async def user_error(request: Request, exc: HootwatchError):
        return JSONResponse({"error": exc.message, "fix": exc.hint}, status_code=400)

    def _run(run: str | None) -> str:
        if not run and store.latest_run() is None:
            return ""  # nothing scanned yet: empty queues
        return store.resolve_run(run)

    def _filters(recorder, night, min_score, max_score) -> Filters:
        return Filters(recorder or "", night or "", float(min_score), float(max_score))

    def _queue(queue, order, run, recorder, night, min_score, max_score, n, seed) -> dict:
        if queue not in QUEUES:
            raise HTTPException(400, f"unknown queue {queue!r}; known: {', '.join(QUEUES)}")
        if order not in ("score", "time"):
            raise HTTPException(400, "order is score or time")
        with lock:
            rk = _run(run)
            items = Queues(store, rk).queue(queue, order, _filters(recorder, night, min_score, max_score), n, seed)
        return {"run": rk, "queue": queue, "items": [it.to_dict() for it in items], "progress": progress(items),
                "description": DESCRIPTIONS[queue]}

    @app.get("/")
    def index():
        return FileResponse(STATIC / "index.html")

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
              night: str = "", min_score: float = 0.0, max_score: float = 1.0, n: int = Query(200, ge=1, le=100000),
              seed: int = 0):
        return _queue(queue, order, run, recorder, night, min_score, max_score, n, seed)

    @app.get("/api/queues")
    def queues():
        return {"queues": [{"name": q, "description": DESCRIPTIONS[q]} for q in (*QUEUES, "like")]}

    @app.get("/api/like")
    def like(file_key: str, start_s: float, end_s: float, run: str | None = None,
             n: int = Query(200, ge=1, le=10000)):
        with lock:
            rk = _run(run)
            items = Queues(store, rk).like(file_key, start_s, end_s, n) if rk else []
        return {"run": rk, "queue": "like", "items": [it.to_dict() for it in items], "progress": progress(items),
                "description": DESCRIPTIONS["like"]}

    @app.get("/api/detections")
    def detections(order: str = "score", run: str | None = None, recorder: str = "", night: str = "",
                   min_score: float = 0.0, max_score: float = 1.0):
        return _queue("detections", order, run, recorder, night, min_score, max_score, 1, 0)

    @app.get("/api/windows")
    def windows(queue: str = "random", order: str = "score", run: str | None = None, recorder: str = "",
                night: str = "", min_score: float = 0.0, max_score: float = 1.0,
                n: int = Query(200, ge=1, le=100000), seed: int = 0):
        if queue not in ("near", "random"):
            raise HTTPException(400, "queue is near or random")
        return _queue(queue, order, run, recorder, night, min_score, max_score, n, seed)

    @app.get("/api/filters")
    def filters(run: str | None = None):
        with lock:
            items = Queues(store, _run(run)).windows()
        return {"recorders": sorted({it.recorder for it in items}), "nights": sorted({it.night for it in items})}

    @app.post("/api/labels")
    def post_label(body: LabelIn):
        with lock:
            # a label this span already had (an imported 'kookaburra') may come back: that is what undo posts
            had = {x.label for x in book.history(body.file_key, body.start_s, body.end_s)}
            if body.label not in (*REVIEW_LABELS, "") and body.label not in had:
                raise HTTPException(400, f"label {body.label!r}: use one of {', '.join(REVIEW_LABELS)} (or '' to "
                                         "clear)")
            path = _recording(body.file_key)
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
            raise HTTPException(404, "no such recording in this store")
        return path

    def _audio(file_key: str, start_s: float, end_s: float, pad_s: float):
        from hootwatch.edge.contract.audio import load, probe
        if not (0 <= start_s < end_s) or end_s - start_s + 2 * pad_s > MAX_CLIP_S or pad_s < 0:
            raise HTTPException(400, f"a clip is 0 <= start < end, at most {MAX_CLIP_S:g} s with its padding")
        with lock:
            path = _recording(file_key)
        try:
            sr = probe(path).sample_rate
            a = max(0.0, start_s - pad_s)
            return load(path, sr, start_s=a, duration_s=end_s + pad_s - a), sr
        except HootwatchError as exc:
            raise HTTPException(410, f"{exc.message} (is the card still mounted?)") from None

    @app.get("/api/clip.wav")
    def clip(file_key: str, start_s: float, end_s: float, pad_s: float = 2.0):
        import soundfile as sf
        x, sr = _audio(file_key, start_s, end_s, pad_s)
        buf = io.BytesIO()
        sf.write(buf, x, sr, format="WAV", subtype="PCM_16")
        return Response(buf.getvalue(), media_type="audio/wav")

    @app.get("/api/spectrogram.png")
    def spectrogram(file_key: str, start_s: float, end_s: float, pad_s: float = 2.0, max_hz: float = 4000.0):
        from hootwatch.edge.scan.material import png_bytes, spectrogram_image
        x, sr = _audio(file_key, start_s, end_s, pad_s)
        return Response(png_bytes(spectrogram_image(x, sr, min(max_hz, sr / 2))), media_type="image/png")

    @app.get("/api/calibration")
    def calibration(run: str | None = None, bins: int = Query(10, ge=2, le=50)):
        from .calibrate import reviewed_detections, score_bins
        with lock:
            rk = _run(run)
            scores, truth = reviewed_detections(store, rk)
        return {"run": rk, "labelled": len(scores), "bins": score_bins(scores, truth, bins)}

    @app.post("/api/analyze")
    async def analyze(request: Request, file: UploadFile = File(...), tz: str = Form("")):
        if bundle is None:
            raise HTTPException(503, "no model loaded: start `hootwatch review OUTDIR --model BUNDLE` to analyze")
        limit = int(max_upload_mb * (1 << 20))
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit + (1 << 16):
            raise HTTPException(413, f"upload larger than the {max_upload_mb:g} MB limit (--max-upload-mb)")
        name = Path(file.filename or "upload.wav").name or "upload.wav"
        tmp = Path(tempfile.mkdtemp(prefix="hootwatch-analyze-"))
        try:
            dest, size = tmp / name, 0
            with open(dest, "wb") as f:
                while chunk := await file.read(1 << 20):
                    size += len(chunk)
                    if size > limit:
                        raise HTTPException(413, f"{name}: larger than the {max_upload_mb:g} MB limit (--max-upload-mb)")
                    f.write(chunk)
            # decoding and scoring take seconds: off the event loop, so labels and pages are not held up
            from starlette.concurrency import run_in_threadpool
            return await run_in_threadpool(_analyze, dest, tz or None)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _analyze(path: Path, tz: str | None) -> dict:
        from hootwatch.edge.contract.cascade import load_detector
        from hootwatch.edge.scan.engine import ScanSettings, Scanner
        if "det" not in detector_cache:  # the bundle's scorer, as `scan` uses it (its cascade too)
            detector_cache["det"] = load_detector(bundle, threads=1)
        det = detector_cache["det"]
        with DetectionStore(path.parent / "analyze.sqlite") as tmp_store:
            try:
                scanner = Scanner(det, tmp_store, ScanSettings(tz=tz))
                outcome = scanner.scan_file(path)
            except HootwatchError as exc:
                raise HTTPException(400, f"{path.name}: {exc.message} ({exc.hint})") from None
            if outcome.status != "done":
                raise HTTPException(400, f"{path.name}: {outcome.reason.removeprefix(f'{path}: ')}")
            rows = tmp_store.detections()
        keep = ("start_s", "end_s", "begin_utc", "end_utc", "begin_local", "end_local", "label", "max_score",
                "mean_score", "n_windows", "time_source", "model_id", "threshold", "min_hits")
        return {"file": path.name, "audio_s": outcome.audio_s,
                "detections": [{k: r[k] for k in keep} for r in rows]}

    @app.on_event("shutdown")
    def close_store():
        store.close()

    return app
