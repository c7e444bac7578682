"""Neither `import hootwatch.edge` nor a whole scan imports torch or transformers (or optimum, onnx)."""

import subprocess
import sys

from tiny_bundles import tone_bundle, write_tone

BLOCKER = """
import importlib.abc, sys
BLOCKED = {"torch", "transformers", "optimum", "onnx", "matplotlib"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked in this test: {name}")
        return None
sys.meta_path.insert(0, Block())
"""

SCAN = BLOCKER + """
import hootwatch.edge, hootwatch.edge.scan.engine, hootwatch.edge.store.exports, hootwatch.edge.scan.material
import hootwatch.edge.store.database
from hootwatch.edge.commands.main import main
rc = main(["scan", sys.argv[1], "--model", sys.argv[2], "--out", sys.argv[3], "--clips", "--quiet", "--threads", "1"])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print("HEAVY", heavy)
sys.exit(rc)
"""


def test_blocker_really_blocks():
    r = subprocess.run([sys.executable, "-c", BLOCKER + "import torch"], capture_output=True, text=True)
    assert r.returncode != 0 and "blocked in this test" in r.stderr


def test_edge_import_and_full_scan_without_torch(tmp_path):
    bundle = tone_bundle(tmp_path / "b")
    write_tone(tmp_path / "rec" / "20240101_220000.wav", 30, 8000, tones=[(10, 13)])
    r = subprocess.run([sys.executable, "-c", SCAN, str(tmp_path / "rec"), str(bundle), str(tmp_path / "out")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout
    assert (tmp_path / "out" / "detections.csv").read_text().count("\n") == 2
    assert list((tmp_path / "out" / "clips").glob("*.png"))


WITHOUT_REVIEW_EXTRA = BLOCKER.replace('"matplotlib"}', '"matplotlib", "fastapi", "uvicorn", "starlette", "multipart"}') + """
from hootwatch.edge.commands.main import main
out = sys.argv[1]
rc = [main(["scan", sys.argv[2], "--model", sys.argv[3], "--out", out, "--quiet", "--threads", "1"]),
      main(["detections", out, "--threshold", "0.5"]),
      main(["labels", out, "--export", out + "/labels.csv"]),
      main(["review", out, "--no-browser"])]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print("RC", rc, "HEAVY", heavy)
"""


def test_edge_without_the_review_extra_scans_labels_and_names_the_extra(tmp_path):
    bundle = tone_bundle(tmp_path / "b")
    write_tone(tmp_path / "rec" / "20240101_220000.wav", 30, 8000, tones=[(10, 13)])
    r = subprocess.run([sys.executable, "-c", WITHOUT_REVIEW_EXTRA, str(tmp_path / "out"), str(tmp_path / "rec"),
                        str(bundle)], capture_output=True, text=True)
    assert "RC [0, 0, 0, 2] HEAVY []" in r.stdout, r.stdout + r.stderr
    assert "pip install 'hootwatch[review]'" in r.stderr
