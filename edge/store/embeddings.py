"""Every window's pooled embedding, kept in the store for search by example and `hootwatch fit`.

Table `window_embeddings` (created by the store's migrations, database.py): one row per (file, backbone, hop),
written by `DetectionStore.commit_file` inside the SAME transaction as the file's window scores, detections and
ledger row. Keyed on the backbone (the bundle's ONNX graph, `Manifest.backbone_id`), not on the run: every run
of one graph at one hop has the same windows and the same embeddings, so a rebuild at another threshold or a
fitted head (`hootwatch detections --bundle`) finds them without decoding audio.

Compact: float16, 2 bytes a dimension (1.5 kB a window for wav2vec2-base's 768 dimensions: 2.2 MB per
recorder-hour at a 2.5 s hop). Not int8 with a per-vector scale (half the size): its rounding is relative to the
vector's largest component, and a head fitted on standardised embeddings leans on small components too; on the
tests' tone embedding int8 moved the head's scores by up to 0.19 and flipped decisions, float16 (relative
rounding of 0.05 % on every component) does not.
Windows a cascade's first stage rejected have no embedding (the full model never ran on them): only the windows
that have one are stored, with their start samples.
"""

from __future__ import annotations

import sqlite3
import zlib
from dataclasses import dataclass

import numpy as np

TABLE = """
CREATE TABLE IF NOT EXISTS window_embeddings (
    file_key TEXT NOT NULL,
    model_id TEXT NOT NULL,
    hop_samples INTEGER NOT NULL,
    layer INTEGER NOT NULL,
    dim INTEGER NOT NULL,
    sample_rate INTEGER NOT NULL,
    window_samples INTEGER NOT NULL,
    n_windows INTEGER NOT NULL,
    starts BLOB NOT NULL,
    vectors BLOB NOT NULL,
    bundle TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (file_key, model_id, hop_samples)
)"""


@dataclass(frozen=True)
class WindowEmbeddings:
    """The embedded windows of one file: start sample (at `sample_rate`) and float16 vector of each."""
    starts: np.ndarray          # (n,) int64
    vectors: np.ndarray         # (n, dim) float16
    model_id: str               # Manifest.backbone_id of the graph that made them
    layer: int
    sample_rate: int
    window_samples: int
    hop_samples: int
    bundle: str = ""            # where the bundle was when they were made (search embeds its examples with it)
    file_key: str = ""          # filled in when read back

    @classmethod
    def of(cls, starts: np.ndarray, embeddings: np.ndarray, manifest, hop_samples: int,
           bundle: str = "") -> "WindowEmbeddings":
        """From a scan's windows: rows of NaN (no embedding: a cascade's rejected windows) are left out."""
        emb = np.asarray(embeddings, np.float32).reshape(len(starts), -1)
        keep = ~np.isnan(emb).any(axis=1)
        return cls(np.asarray(starts, np.int64)[keep], emb[keep].astype(np.float16), manifest.backbone_id,
                   int(manifest.embedding.get("layer", -1)), manifest.sample_rate,
                   manifest.window_spec.window_samples, int(hop_samples), bundle)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def floats(self) -> np.ndarray:
        return self.vectors.astype(np.float32)

    def write(self, cur: sqlite3.Cursor, file_key: str) -> None:
        """Called by DetectionStore.commit_file inside its transaction."""
        deltas = np.diff(np.asarray(self.starts, np.int64), prepend=0).astype(np.int32)
        cur.execute("INSERT OR REPLACE INTO window_embeddings (file_key, model_id, hop_samples, layer, dim,"
                    " sample_rate, window_samples, n_windows, starts, vectors, bundle)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (file_key, self.model_id, int(self.hop_samples), int(self.layer), self.dim,
                     int(self.sample_rate), int(self.window_samples), len(self.starts),
                     zlib.compress(deltas.tobytes(), 6),
                     np.ascontiguousarray(self.vectors, np.float16).tobytes(), self.bundle))


def _decode(row) -> WindowEmbeddings:
    n, dim = row["n_windows"], row["dim"]
    starts = np.cumsum(np.frombuffer(zlib.decompress(row["starts"]), np.int32).astype(np.int64))
    vectors = np.frombuffer(row["vectors"], np.float16).reshape(n, dim)
    return WindowEmbeddings(starts, vectors, row["model_id"], row["layer"], row["sample_rate"],
                            row["window_samples"], row["hop_samples"], row["bundle"], row["file_key"])


def read_embeddings(conn: sqlite3.Connection, model_id: str | None = None, file_key: str | None = None,
                    hop_samples: int | None = None) -> list[WindowEmbeddings]:
    """Stored embeddings, by file, optionally of one backbone / one file / one hop."""
    sql, args = "SELECT * FROM window_embeddings WHERE 1=1", []
    for col, val in (("model_id", model_id), ("file_key", file_key), ("hop_samples", hop_samples)):
        if val is not None:
            sql, args = sql + f" AND {col}=?", args + [val]
    return [_decode(r) for r in conn.execute(sql + " ORDER BY file_key", args)]


def embedding_models(conn: sqlite3.Connection) -> list[dict]:
    """Backbones with stored embeddings: model_id, hop_samples, dim, layer, files, windows, bundle (newest name)."""
    rows = conn.execute("SELECT model_id, hop_samples, dim, layer, COUNT(*) AS files, SUM(n_windows) AS windows,"
                        " MAX(bundle) AS bundle, SUM(LENGTH(vectors) + LENGTH(starts)) AS bytes"
                        " FROM window_embeddings GROUP BY model_id, hop_samples ORDER BY windows DESC").fetchall()
    return [dict(r) for r in rows]
