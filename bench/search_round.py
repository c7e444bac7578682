"""Search-by-example and `fit` figures (issue 22). Prints numbers; asserts nothing.

    python bench/search_round.py [--windows 1000000] [--dim 768] [--hours 1000]

1. seconds per search over N stored windows (synthetic float16 embeddings of `dim`, brute force, best of 3);
2. store growth per recorder-hour (bytes a window in the table x windows an hour at the hop);
3. time of `fit` (Newton/IRLS) on 2,000 labelled windows, and of a rescore of `hours` recorder-hours of stored
   embeddings with the head (the matmul and sigmoid; the SQLite reads and event merging are not in it);
4. with a trained run (`--run`, e.g. the demo's hootwatch-demo/run), exported with its embedding output: precision
   at 20 and 100 of owl calls among the windows ranked by 3 example calls on an unseen synthetic night (recorder
   A), one round there (<= 100 reviewed items, export/search_round.py), then precision / recall / false positives
   per hour on recorder B (another unseen night) before and after `fit`, B rescored from its stored embeddings.
   The synthetic nights use the demo's call and confuser kinds; `--new-confusers N` mixes N calls per recording
   of kinds the demo's training never used (barking owl, dog, frog, cattle: crude synthetic ones, bench only).
5. `--layers`: which transformer layer to embed from, measured on the run's clips: for each layer, the mean over
   frames of its hidden states (PyTorch), a `fit` head trained on the train split and its average precision on
   the validation split, and the precision at 20 of a search of the validation clips by 3 train-split owl clips.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np



def timed(f) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): on a shared, loaded machine the CPU time is the steadier one."""
    w, c = time.perf_counter(), time.process_time()
    f()
    return time.perf_counter() - w, time.process_time() - c


def search_speed(n: int, dim: int) -> tuple[float, float]:
    from hootwatch.edge.review.search import EmbeddingIndex
    rng = np.random.default_rng(0)
    vectors = np.empty((n, dim), np.float16)
    for i in range(0, n, 100_000):
        vectors[i:i + 100_000] = rng.standard_normal((min(100_000, n - i), dim)).astype(np.float16)
    index = EmbeddingIndex("m", "", 16000, 80000, ["f"], np.zeros(n, np.int32), np.arange(n, dtype=np.int64) * 40000,
                           vectors)
    q = rng.standard_normal((3, dim)).astype(np.float32)
    return min((timed(lambda: index.rank(q, top=200)) for _ in range(3)), key=lambda t: t[0])


def fit_and_rescore(dim: int, hours: float, hop_s: float = 2.5) -> tuple[tuple, tuple]:
    from hootwatch.edge.review.fit import fit_logistic
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, dim)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.standard_normal(2000) > 1.5).astype(int)
    heads = []
    t_fit = timed(lambda: heads.append(fit_logistic(x, y)[0]))
    n = int(hours * 3600 / hop_s)
    chunk = rng.standard_normal((100_000, dim)).astype(np.float16)

    def rescore():
        for i in range(0, n, len(chunk)):
            heads[0].score(chunk[:min(len(chunk), n - i)].astype(np.float32))
    return t_fit, timed(rescore)


NEW_CONFUSERS = ("barking_owl", "dog", "frog", "cattle")   # kinds the demo's training never saw (bench only)


def confuser(kind: str, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A crude synthetic call of a kind the demo's training never used, unit peak."""
    def tone(f0, dur, harmonics=4, slide=0.0):
        t = np.arange(int(dur * sr)) / sr
        f = f0 + slide * t / max(dur, 1e-9)
        phase = 2 * np.pi * np.cumsum(f) / sr
        x = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
        return x * np.hanning(len(t))
    gap = lambda d: np.zeros(int(d * sr))  # noqa: E731
    if kind == "barking_owl":   # "wook-wook", repeated: inside the owl's band
        f0 = rng.uniform(350, 450)
        x = np.concatenate([np.concatenate([tone(f0, 0.12), gap(0.12), tone(f0 * 0.95, 0.14), gap(0.5)])
                            for _ in range(rng.integers(3, 6))])
    elif kind == "dog":         # barks: short broadband bursts with a harmonic core
        x = np.concatenate([np.concatenate([tone(rng.uniform(450, 700), 0.15, 8)
                                            + 0.5 * rng.standard_normal(int(0.15 * sr)) * np.hanning(int(0.15 * sr)),
                                            gap(rng.uniform(0.2, 0.5))]) for _ in range(rng.integers(2, 5))])
    elif kind == "frog":        # a pulsed trill
        f0, dur = rng.uniform(1200, 2000), rng.uniform(1.0, 2.0)
        t = np.arange(int(dur * sr)) / sr
        x = np.sin(2 * np.pi * f0 * t) * (np.sin(2 * np.pi * rng.uniform(15, 25) * t) > 0.3) * np.hanning(len(t))
    else:                       # cattle: a long low moo, sliding up
        x = tone(rng.uniform(120, 170), rng.uniform(1.2, 2.0), 10, slide=rng.uniform(30, 60))
    return (x / np.abs(x).max()).astype(np.float32)


def add_new_confusers(night: Path, per_file: int, seed: int) -> int:
    """Mix NEW_CONFUSERS into every recording of a synthetic night, away from its labelled sounds, at 0-15 dB
    over the file's RMS, and add them to its ground truth. Returns how many were added."""
    import csv
    import soundfile as sf
    from hootwatch.edge.tables.label_tables import read_truth_csv

    rng = np.random.default_rng(seed)
    truth = read_truth_csv(night / "ground_truth.csv")
    rows = []
    for path in sorted(p for p in night.rglob("*") if p.suffix.upper() in (".WAV", ".FLAC")):
        rel = path.relative_to(night).as_posix()
        busy = [(t.start_s - 1, t.end_s + 1) for t in truth if t.file == rel]
        x, sr = sf.read(path, dtype="float32")
        info = sf.info(path)
        rms = float(np.sqrt(np.mean(x ** 2))) or 1e-3
        for _ in range(per_file):
            kind = NEW_CONFUSERS[rng.integers(len(NEW_CONFUSERS))]
            call = confuser(kind, sr, rng)
            dur = len(call) / sr
            for _ in range(20):
                a = float(rng.uniform(0.5, len(x) / sr - dur - 0.5))
                if not any(a < e and s < a + dur for s, e in busy):
                    break
            else:
                continue
            snr = float(rng.uniform(0, 15))
            i = int(a * sr)
            x[i:i + len(call)] += call * rms * 10 ** (snr / 20) * np.sqrt(2)
            busy.append((a - 1, a + dur + 1))
            rows.append([rel, round(a, 3), round(a + dur, 3), kind, round(snr, 2)])
        sf.write(path, np.clip(x, -1, 1), sr, subtype=info.subtype)
    with open(night / "ground_truth.csv", "a", newline="") as f:
        csv.writer(f).writerows(rows)
    return len(rows)


def train_round(run: Path, results_a: Path, bundle: Path, night_b: Path, work: Path, threads: int,
                epochs: int) -> tuple[object, float]:
    """The fine-tune beside `fit`: recorder A's labels as a training set (`hootwatch dataset`), `train --init-from
    RUN` on the CPU, export, scan recorder B; (B's event metrics, seconds of training)."""
    from hootwatch.edge.contract.bundle import load_bundle
    from hootwatch.edge.contract.cascade import load_detector
    from hootwatch.edge.review.dataset import write_dataset
    from hootwatch.edge.scan.engine import ScanSettings, scan_into
    from hootwatch.edge.store.database import open_store
    from hootwatch.edge.tables.evaluate import audio_hours, event_metrics, load_detections
    from hootwatch.edge.tables.label_tables import read_truth_csv
    from hootwatch.export.core import ExportOptions, export_bundle
    from hootwatch.trainer.args import make_args
    from hootwatch.trainer.train import run as train

    model_id = load_bundle(bundle).manifest.model_id
    with open_store(results_a) as store:
        scanned = next(r["run_key"] for r in store.runs() if r["run_key"].startswith(model_id + "|"))
        write_dataset(store, scanned, work / "dataA")
    t = time.perf_counter()
    train(make_args(data=str(work / "dataA"), out=str(work / "run2"), init_from=str(run), epochs=epochs,
                    device="cpu", threads=threads, progress=False))
    train_s = time.perf_counter() - t
    export_bundle(ExportOptions(source=work / "run2", out=work / "bundle2", speed_repeats=0, threads=threads))
    _, paths = scan_into([night_b], load_detector(work / "bundle2", threads=threads), work / "resultsB2",
                         ScanSettings(tz="Australia/Sydney"))
    truth = read_truth_csv(night_b / "ground_truth.csv")
    return event_metrics(load_detections(paths["csv"]), truth, audio_hours(night_b), root=night_b), train_s


def model_round(run: Path, hours: float, threads: int, work: Path, train_epochs: int = 0,
                new_confusers: int = 0) -> dict:
    """Recorders A and B: synthetic nights no model saw (seeds 5001, 5002); one round on A (export/search_round.py:
    3 example calls from the run's training owl clips, 60 search hits + 40 uncertain windows labelled from the
    ground truth, fit, rescore); then B's detections before (the bundle) and after (the head, rescored from B's
    stored embeddings), scored event by event against B's ground truth."""
    from hootwatch.edge.contract.cascade import load_detector
    from hootwatch.edge.contract.bundle import load_bundle
    from hootwatch.edge.scan.engine import ScanSettings, scan_into
    from hootwatch.edge.scan.rescore import rescore
    from hootwatch.edge.store.database import open_store
    from hootwatch.edge.store.exports import write_exports
    from hootwatch.edge.tables.evaluate import audio_hours, event_metrics, load_detections
    from hootwatch.edge.contract.clips import read_clip_csv
    from hootwatch.edge.tables.label_tables import read_truth_csv
    from hootwatch.export.core import ExportOptions, export_bundle
    from hootwatch.export.search_round import one_round
    from hootwatch.trainer.synth.backgrounds import default_background_dir
    from hootwatch.trainer.synth.dump import DumpConfig, write_dump

    tz = "Australia/Sydney"
    bundle = work / "bundle"
    t = time.perf_counter()
    export_bundle(ExportOptions(source=run, out=bundle, speed_repeats=0, threads=threads, overwrite=True))
    print(f"  exported {run} with its embedding output in {time.perf_counter() - t:.0f} s", flush=True)
    nights = {}
    for name, seed in (("A", 5001), ("B", 5002)):
        night = work / f"night{name}"
        write_dump(night, DumpConfig(hours=hours, seed=seed, backgrounds=default_background_dir(), tz=tz))
        if new_confusers:
            n = add_new_confusers(night, new_confusers, seed)
            print(f"  recorder {name}: {n} calls of kinds the training never saw ({', '.join(NEW_CONFUSERS)})")
        t = time.perf_counter()
        summary, paths = scan_into([night], load_detector(bundle, threads=threads), work / f"results{name}",
                                   ScanSettings(tz=tz))
        nights[name] = (night, paths["csv"], read_truth_csv(night / "ground_truth.csv"))
        print(f"  recorder {name}: {summary.audio_s / 3600:.2f} h scanned in {time.perf_counter() - t:.0f} s",
              flush=True)
    owl_clips = [c.source for c in read_clip_csv(run / "splits" / "train.csv") if c.label == "owl"]
    examples = [Path(p) if Path(p).is_absolute() else run / "splits" / p for p in owl_clips[:3]]
    night_a, _, truth_a = nights["A"]
    r = one_round(work / "resultsA", night_a, truth_a, bundle, examples, work / "roundA", threads)
    night_b, csv_b, truth_b = nights["B"]
    hours_b = audio_hours(night_b)
    before = event_metrics(load_detections(csv_b), truth_b, hours_b, root=night_b)
    with open_store(work / "resultsB") as store:
        t = time.perf_counter()
        new = rescore(store, store.scored_run(None), load_bundle(r.bundle))
        rescore_b_s = time.perf_counter() - t
        after_csv = write_exports(store, new.run_key, work / "roundB", 8000.0)["csv"]
    after = event_metrics(load_detections(after_csv), truth_b, hours_b, root=night_b)
    out = {"p@20": r.precision_at_20, "p@100": r.precision_at_100, "labels": r.labels, "fit_s": r.fit_s,
           "rescore_A_s": r.rescore_s, "rescore_B_s": rescore_b_s, "hours_B": hours_b, "before": before,
           "after": after, "layer": load_bundle(bundle).manifest.embedding}
    if train_epochs:
        out["trained"], out["train_s"] = train_round(run, work / "resultsA", bundle, night_b, work, threads,
                                                     train_epochs)
    return out


def average_precision(scores: np.ndarray, y: np.ndarray) -> float:
    order = np.argsort(-scores, kind="stable")
    hits = y[order] == 1
    return float((np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)).mean()) if hits.any() else float("nan")


def layer_probe(run: Path, threads: int) -> list[dict]:
    import torch
    import transformers

    from hootwatch.edge.contract.clips import read_clip_csv
    from hootwatch.edge.review.fit import fit_logistic
    from hootwatch.edge.review.search import EmbeddingIndex
    from hootwatch.edge.store.embeddings import WindowEmbeddings
    from hootwatch.export.source import resolve_source
    from hootwatch.export.parity import cut_windows

    torch.set_num_threads(threads)
    meta = resolve_source(run).meta
    model = transformers.AutoModelForAudioClassification.from_pretrained(str(run / "model")).eval()
    splits = {}
    for split in ("train", "validation"):
        clips = read_clip_csv(run / "splits" / f"{split}.csv")
        x = meta.normalisation.apply(cut_windows(clips, meta.sample_rate, meta.window_s), meta.sample_rate)
        hidden = []
        with torch.no_grad():
            for i in range(0, len(x), 32):
                out = model(torch.from_numpy(x[i:i + 32]), output_hidden_states=True).hidden_states
                hidden.append(np.stack([h.mean(dim=1).numpy() for h in out]))
        splits[split] = (np.concatenate(hidden, axis=1), np.array([c.label == "owl" for c in clips], int))
    (htr, ytr), (hva, yva) = splits["train"], splits["validation"]
    rows = []
    for layer in range(htr.shape[0]):
        head, _ = fit_logistic(htr[layer], ytr)
        ap = average_precision(head.score(hva[layer]), yva)
        n = len(yva)
        index = EmbeddingIndex.of([WindowEmbeddings(np.arange(n), hva[layer].astype(np.float16), "m", layer, 1, 1, 1)],
                                  "m")
        hits = index.rank(htr[layer][np.flatnonzero(ytr == 1)[:3]], top=20)
        p20 = float(np.mean([yva[int(h.start_s)] for h in hits]))
        rows.append({"layer": layer, "val_ap": ap, "search_p@20": p20})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--hours", type=float, default=1000.0)
    ap.add_argument("--hop", type=float, default=2.5)
    ap.add_argument("--run", type=Path, default=None, help="a training run for the round on recorders A and B")
    ap.add_argument("--night-hours", type=float, default=0.5, help="length of each recorder's night (default 0.5)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", action="store_true", help="only the per-layer probe of --run (item 5)")
    ap.add_argument("--new-confusers", type=int, default=0, metavar="N",
                    help="mix N calls per recording of kinds the demo never trained on (barking owl, dog, frog, "
                         "cattle) into each night")
    ap.add_argument("--train-epochs", type=int, default=0,
                    help="also `train --init-from RUN` on recorder A's labels for this many epochs (CPU) and scan B")
    a = ap.parse_args()
    if a.layers:
        print(f"per-layer probe of {a.run} (train split -> validation split):")
        for r in layer_probe(a.run, a.threads):
            print(f"  layer {r['layer']}: head average precision {r['val_ap']:.3f}, search precision at 20 "
                  f"{r['search_p@20']:.2f}")
        return
    import os
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: wall / CPU seconds)")
    wall, cpu = search_speed(a.windows, a.dim)
    print(f"search: {wall:.2f} s wall, {cpu:.2f} s CPU over {a.windows:,} windows of {a.dim} dims (float16, brute "
          f"force, 3 examples)")
    per_window = 2 * a.dim + 4   # float16 vector + ~4 B of start delta before zlib
    print(f"store growth: {per_window * 3600 / a.hop / 1e6:.2f} MB per recorder-hour of embeddings at hop {a.hop:g} s "
          f"({per_window} B a window; window scores and detections come on top, as before)")
    t_fit, t_rescore = fit_and_rescore(a.dim, a.hours, a.hop)
    print(f"fit: {t_fit[0]:.2f} s wall, {t_fit[1]:.2f} s CPU on 2,000 labelled windows of {a.dim} dims; rescore of "
          f"{a.hours:g} h ({int(a.hours * 3600 / a.hop):,} windows): {t_rescore[0]:.1f} s wall, {t_rescore[1]:.1f} s "
          "CPU (the head only: reading the store and merging events come on top)")
    if a.run is None:
        return
    r = model_round(a.run, a.night_hours, a.threads, Path(tempfile.mkdtemp(prefix="search-round-")), a.train_epochs,
                    a.new_confusers)
    e = r["layer"]
    print(f"model {a.run}: embedding = layer {e['layer']} of {e['layers']} ({e['dim']} dims)")
    print(f"recorder A: search by 3 example calls: precision at 20 {r['p@20']:.2f}, at 100 {r['p@100']:.2f}; "
          f"labelled {r['labels']}; fit {r['fit_s']:.2f} s; rescore {r['rescore_A_s']:.2f} s")
    for name in ("before", "after", "trained"):
        if name not in r:
            continue
        m = r[name]
        print(f"recorder B ({r['hours_B']:.2f} h) {name:6s}: precision {m.precision:.3f} recall {m.recall:.3f} "
              f"FP/hour {m.fp_per_hour:.1f} ({m.n_found}/{m.n_true} calls, {m.n_detections} detections; false "
              f"positives by what they overlapped: {m.by_confuser})")
    print(f"  (after: `fit` on A's labels, B rescored from its stored embeddings in {r['rescore_B_s']:.2f} s"
          + (f"; trained: `train --init-from` on them, {r['train_s']:.0f} s on the CPU, exported, B scanned)"
             if "trained" in r else ")"))


if __name__ == "__main__":
    main()
