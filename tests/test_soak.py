"""bench/soak.py, short: recordings in bursts, the microphone and the review app through a running daemon, and
its detections against a one-shot scan of the same audio (issue 24, item 4). The 72-hour run is slow-marked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[1] / "bench" / "soak.py"


def _soak(tmp_path, *args, timeout):
    out = subprocess.run([sys.executable, str(SOAK), "--dir", str(tmp_path / "soak"), "--json",
                          str(tmp_path / "soak.json"), *args], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    return json.loads((tmp_path / "soak.json").read_text()), out.stdout


def test_a_short_soak_loses_and_duplicates_nothing_and_samples_the_daemon(tmp_path):
    r, printed = _soak(tmp_path, "--hours", "0.1", "--file-min", "2", "--sample-s", "0.5", timeout=120)
    assert r["lost"] == r["duplicated"] == 0 and r["detections"] == r["reference_detections"] > 0
    assert r["exit_status"] == 0 and r["review_ok"] > 0 and r["review_5xx"] == 0
    assert r["labels_posted"] > 0 and r["review_refused"] == 0  # the page's requests, as the page sends them
    assert r["samples"] >= 2 and r["end"]["rss_mb"] > 0 and r["end"]["open_files"] > 0
    assert "growth" in printed and "bytes per recorder-hour" in printed


@pytest.mark.slow
@pytest.mark.timeout(0)
def test_72_hours_of_audio(tmp_path):
    r, printed = _soak(tmp_path, "--hours", "72", timeout=4 * 3600)
    print(printed)
    assert r["lost"] == r["duplicated"] == 0
