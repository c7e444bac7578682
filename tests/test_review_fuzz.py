"""Every endpoint of the review app's own OpenAPI schema, fuzzed by Schemathesis: no request may get a 5xx.

Requests carry what the page sends (a loopback Host, the CSRF token), so they reach the routes past the guard;
every other one names a recording of the store (every fourth a span inside it) and every other upload is a real
WAV, so the fuzzed numbers reach the span checks, the audio and the model, not only the 404 of an unknown key.
The default run is short; `-m slow` runs 200 examples per endpoint; both print how many requests got a 5xx.
"""

import io
import math
from collections import Counter

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from hootwatch.edge.review.app import create_app  # noqa: E402

from review_helpers import scanned_store  # noqa: E402
from review_server import CSRF_HEADER  # noqa: E402
from tiny_bundles import tone_signal  # noqa: E402

SEEN: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def fuzz_counts(request):
    """Says, after the file's tests, how many requests the fuzz sent and how many got a 5xx."""
    yield
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if SEEN and capture is not None:
        with capture.global_and_fixture_disabled():
            print(f"\nreview fuzz: {sum(SEEN.values())} requests, {SEEN['5xx']} answered 5xx")


@pytest.fixture(scope="module")
def review_app(tmp_path_factory):
    bundle, _, out = scanned_store(tmp_path_factory.mktemp("fuzz"))
    return create_app(out, bundle=bundle, max_upload_mb=0.5, max_analyze_s=30)


@pytest.fixture(scope="module")
def real(review_app):
    import soundfile as sf
    key = review_app.state.store.ledger_rows()[0].file_key
    wav = io.BytesIO()
    sf.write(wav, tone_signal(6.0, 8000, [(1, 4)]), 8000, format="WAV")
    return {"file_key": key, "wav": wav.getvalue()}


def _own_schema() -> dict:
    """The app's own OpenAPI document (it is the same over any store; schemathesis' from_fixture fails on pytest 9,
    so the schema is read at import, from an app over an empty store, and the calls go to the fixture's app)."""
    import tempfile
    from pathlib import Path

    from hootwatch.edge.store.database import STORE_NAME, DetectionStore
    with tempfile.TemporaryDirectory() as d:
        DetectionStore(Path(d) / STORE_NAME).close()
        app = create_app(d)
        try:
            return app.openapi()
        finally:
            app.state.store.close()


schema = schemathesis.openapi.from_dict(_own_schema())


class _Lasting:
    """The app without its lifespan: Schemathesis starts and stops a test client (so the app) for every call, and
    stopping closes the app's store."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


def _fuzz(case, review_app, real) -> None:
    n = sum(SEEN.values())
    if n % 2:  # every other request names a real recording (mostly a span inside it) / uploads a real WAV
        for part in (case.query, case.body):
            if isinstance(part, dict) and "file_key" in part:
                part["file_key"] = real["file_key"]
                a, b = part.get("start_s"), part.get("end_s")
                if n % 4 == 1 and all(isinstance(x, (int, float)) and math.isfinite(x) for x in (a, b)):
                    part["start_s"] = abs(a) % 50
                    part["end_s"] = part["start_s"] + abs(b) % 10
        if isinstance(case.body, dict) and "file" in case.body:
            case.body["file"] = real["wav"]
    try:
        response = case.call(app=_Lasting(review_app), base_url="http://127.0.0.1:8765",
                             headers={CSRF_HEADER: review_app.state.csrf_token})
    except Exception:  # the test client raises what the app did not answer: a 500 to a browser
        SEEN["5xx"] += 1
        raise
    SEEN["5xx" if response.status_code >= 500 else "other"] += 1
    case.validate_response(response, checks=[not_a_server_error])


@schema.parametrize()
@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case, review_app, real):
    _fuzz(case, review_app, real)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_of_many_gets_a_server_error(case, review_app, real):
    _fuzz(case, review_app, real)
