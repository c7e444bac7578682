"""What is being exported: a training run directory or a bare Hugging Face audio-classification checkpoint.

Both resolve to one `ExportSource`: where the weights are, the labels and the positive label, the audio
contract (sample rate, window, hop, normalisation), the decision threshold, the metrics the trainer measured,
and the clips the parity check runs on.

    RUN/model/                 save_pretrained of the model + feature extractor
    RUN/model/hootwatch.json   the audio contract and threshold (hootwatch.trainer.run_folder.RunMeta)
    RUN/metrics.json           {"test": {...}, "validation": {...}, "threshold": t, "positive_label": ...}
    RUN/splits/validation.csv  clips (hootwatch.edge.contract.clips.read_clip_csv)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from hootwatch.edge.contract import audio
from hootwatch.edge.contract.clips import ClipRef, read_clip_csv
from hootwatch.edge.core.errors import AudioReadError, ConfigError
from hootwatch.edge.contract.preprocess import FEATURE_EXTRACTOR_KEY, Normalisation
from hootwatch.trainer.run_folder import (META_FILE, MODEL_DIR, RunMeta, checked_normalisation,
                                          checked_sample_rate, read_json)

DEFAULT_WINDOW_S = 5.0
DEFAULT_HOP_S = 2.5
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class ExportSource:
    """What is exported: the model folder, the audio contract and threshold it carries (a run's RunMeta, or a bare
    checkpoint's defaults in the same record), and the clips its export is checked on."""
    model_dir: Path
    kind: str                        # "run" or "checkpoint"
    meta: RunMeta                    # labels and backbone always filled in here
    run_metrics: dict = field(default_factory=dict)
    clips: tuple[ClipRef, ...] = ()  # parity clips; label "" when unlabelled
    clips_origin: str = ""           # where the clips came from, for the report

    @property
    def labelled(self) -> bool:
        return bool(self.clips) and all(c.label for c in self.clips)


def _labels(config: dict, path: Path) -> tuple[str, ...]:
    id2label = config.get("id2label") or {}
    if not id2label:
        raise ConfigError(f"{path}: config.json has no id2label", "save the model with its label names (id2label)")
    return tuple(str(id2label[k]) for k in sorted(id2label, key=int))


def _is_checkpoint(d: Path) -> bool:
    return (d / "config.json").is_file() and (d / "preprocessor_config.json").is_file()


def audio_dir_clips(audio_dir: Path, window_s: float) -> tuple[ClipRef, ...]:
    """Clips from `--audio DIR`: a folder per label (labelled) or audio files directly inside (unlabelled).

    Each file gives one window at its centre, the same cut as the validation clips.
    """
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise ConfigError(f"{audio_dir}: no such folder", "pass --audio a folder of recordings (optionally one sub-folder per label)")
    entries = []
    for sub in sorted(p for p in audio_dir.iterdir() if p.is_dir()):
        entries += [(f, sub.name) for f in sorted(sub.rglob("*")) if f.is_file() and audio.is_audio_file(f)]
    entries += [(f, "") for f in sorted(audio_dir.iterdir()) if f.is_file() and audio.is_audio_file(f)]
    clips = []
    for f, label in entries:
        try:
            duration = audio.probe(f).duration_s
        except AudioReadError:
            continue  # unreadable files are skipped, not fatal: parity needs a sample, not every file
        clips.append(ClipRef(str(f), 0.0, duration, label, f.stem))
    if not clips:
        raise ConfigError(f"{audio_dir}: no readable audio files", "put WAV/FLAC files there, one sub-folder per label if you know them")
    if any(c.label for c in clips) and not all(c.label for c in clips):
        raise ConfigError(f"{audio_dir}: mixes files in label folders with loose files",
                          "put every file in a label folder, or none of them")
    return tuple(clips)


def resolve_source(path: str | Path, positive_label: str | None = None, threshold: float | None = None,
                   audio_dir: str | Path | None = None) -> ExportSource:
    p = Path(path)
    if (p / MODEL_DIR / META_FILE).is_file():
        return _from_run(p, p / MODEL_DIR, positive_label, threshold, audio_dir)
    if (p / META_FILE).is_file():  # RUN/model given directly
        return _from_run(p.parent, p, positive_label, threshold, audio_dir)
    if _is_checkpoint(p):
        return _from_checkpoint(p, positive_label, threshold, audio_dir)
    raise ConfigError(
        f"{p}: not a training run (no model/{META_FILE}) nor a Hugging Face checkpoint "
        "(config.json + preprocessor_config.json)",
        "pass the folder `hootwatch train` wrote, or a folder saved with save_pretrained of the model and its feature extractor",
    )


def _from_run(run: Path, model_dir: Path, positive_label, threshold, audio_dir) -> ExportSource:
    labels = _labels(read_json(model_dir / "config.json"), model_dir)
    meta = RunMeta.read(model_dir / META_FILE, labels)
    metrics_path = run / "metrics.json"
    metrics = read_json(metrics_path) if metrics_path.is_file() else {}
    window_s = meta.window_s
    if audio_dir is not None:
        clips, origin = audio_dir_clips(Path(audio_dir), window_s), str(audio_dir)
    else:
        val = run / "splits" / "validation.csv"
        if not val.is_file():
            raise ConfigError(f"{run}: no validation clips at {val}", "pass --audio DIR with recordings to check the exported model on")
        clips, origin = tuple(read_clip_csv(val)), str(val)
        if not clips:
            raise ConfigError(f"{val}: lists no clips", "pass --audio DIR with recordings to check the exported model on")
    meta = replace(meta, labels=labels, positive_label=positive_label or meta.positive_label,
                   threshold=float(threshold if threshold is not None else meta.threshold), backbone=meta.backbone or "")
    return ExportSource(model_dir=model_dir, kind="run", meta=meta, run_metrics=metrics, clips=clips,
                        clips_origin=origin)


def _from_checkpoint(d: Path, positive_label, threshold, audio_dir) -> ExportSource:
    config = read_json(d / "config.json")
    fe = read_json(d / "preprocessor_config.json")
    labels = _labels(config, d)
    if positive_label is None:
        if "owl" not in labels:
            raise ConfigError(f"{d}: labels are {list(labels)}; none is 'owl'",
                              "say which label is the owl with --positive-label LABEL")
        positive_label = "owl"
    if positive_label not in labels:
        raise ConfigError(f"--positive-label {positive_label!r} is not among the labels {list(labels)}",
                          "pick one of the model's labels")
    if audio_dir is None:
        raise ConfigError(f"{d}: a bare checkpoint has no validation clips to check the export on",
                          "pass --audio DIR (a folder per label, or unlabelled recordings)")
    meta = RunMeta(
        positive_label=positive_label,
        sample_rate=checked_sample_rate(fe.get("sampling_rate"), d / "preprocessor_config.json", "sampling_rate"),
        window_s=DEFAULT_WINDOW_S, hop_s=DEFAULT_HOP_S,
        threshold=float(DEFAULT_THRESHOLD if threshold is None else threshold),
        # a hootwatch run's checkpoint carries its band limit; any other checkpoint is plain wav2vec2 input
        normalisation=(checked_normalisation(fe[FEATURE_EXTRACTOR_KEY], d / "preprocessor_config.json")
                       if FEATURE_EXTRACTOR_KEY in fe
                       else Normalisation.from_feature_extractor(bool(fe.get("do_normalize", True)))),
        backbone=str(config.get("_name_or_path") or config.get("model_type", "")), labels=labels)
    return ExportSource(model_dir=d, kind="checkpoint", meta=meta,
                        clips=audio_dir_clips(Path(audio_dir), DEFAULT_WINDOW_S), clips_origin=str(audio_dir))
