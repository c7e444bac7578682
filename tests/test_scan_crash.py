"""kill -9 in the middle of a folder, then restart: every detection exactly once.

The scan runs in a child that says on stdout which file it starts; on its fifth file it says "holding" and waits,
half-way through the file, past the tone (the detection is found but not committed), so the kill always lands
mid-scan and mid-file. The test then checks it did: killed by SIGKILL, four files done, the rest not.
"""

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tiny_bundles import tone_bundle, write_tone

SCAN = """
import sys, time
from hootwatch.edge.contract.detector import Detector
from hootwatch.edge.scan.engine import Progress, Scanner, ScanSettings
from hootwatch.edge.store.database import DetectionStore

class Tell(Progress):
    def __init__(self, hold):
        self.hold, self.name, self.audio_s = hold, None, 0.0
    def file_started(self, path, duration_s):
        self.name, self.audio_s = path.name, 0.0
        print("started", path.name, flush=True)
    def advance(self, audio_s):
        self.audio_s += audio_s
        if self.name == self.hold and self.audio_s >= 150:
            print("holding", self.name, flush=True)
            time.sleep(600)

det = Detector.load(sys.argv[1], threads=1)
with DetectionStore(sys.argv[3]) as st:
    Scanner(det, st, ScanSettings(block_s=5.0)).scan_paths([sys.argv[2]], Tell(sys.argv[4]))
"""


def done_files(db: Path) -> set[str]:
    con = sqlite3.connect(db)
    return {Path(p).name for (p,) in con.execute("SELECT path FROM files WHERE status='done'")}


def detections(db: Path) -> list[tuple]:
    return sqlite3.connect(db).execute("SELECT * FROM detections ORDER BY id").fetchall()


def started(stdout: str) -> list[str]:
    return [line.split()[1] for line in stdout.splitlines() if line.startswith("started ")]


def test_kill_9_mid_folder_then_restart_gives_each_detection_once(tmp_path):
    bundle = tone_bundle(tmp_path / "b")
    rec = tmp_path / "rec"
    n = 12
    names = [f"202401{i + 1:02d}_220000.wav" for i in range(n)]
    for i, name in enumerate(names):  # not contiguous (a day apart), one tone each
        write_tone(rec / name, 240, 8000, tones=[(100, 103)], seed=i)
    db = tmp_path / "out" / "d.sqlite"
    hold = names[4]
    cmd = [sys.executable, "-c", SCAN, str(bundle), str(rec), str(db)]

    proc = subprocess.Popen(cmd + [hold], stdout=subprocess.PIPE, text=True)
    said = []
    for line in proc.stdout:  # ends at "holding", or at EOF if the child never got there
        said.append(line)
        if line.startswith("holding "):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.stdout.close()
    # the kill landed mid-scan: the child died of it, inside the held file, with the files before it committed
    assert proc.wait(timeout=60) == -signal.SIGKILL, "".join(said)
    assert said[-1:] == [f"holding {hold}\n"] and started("".join(said)) == names[:5]
    assert done_files(db) == set(names[:4])
    before = detections(db)
    assert sorted(Path(r[2]).name for r in before) == names[:4]

    # the restart scans exactly the files not done and keeps the committed rows as they were
    again = subprocess.run(cmd + ["-"], stdout=subprocess.PIPE, text=True)
    assert again.returncode == 0
    assert started(again.stdout) == names[4:]
    rows = detections(db)
    assert rows[:len(before)] == before
    assert sorted(Path(r[2]).name for r in rows) == names  # each file's detection once: none lost, none twice
    assert {r[3] for r in rows} == {int(97.5 * 8000)}  # windows [97.5, 102.5] and [100, 105]
    assert done_files(db) == set(names)
