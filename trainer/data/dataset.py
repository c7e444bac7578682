"""ClipRefs as a torch Dataset: cut by `ClipRef.cut` (random position in training, centred otherwise),
augmented in training, normalised by the edge's `Normalisation` in numpy, exactly as the field detector does.
"""

from __future__ import annotations

import numpy as np
import torch

from hootwatch.edge.contract import audio
from hootwatch.edge.contract.clips import ClipRef
from hootwatch.edge.contract.preprocess import Normalisation
from hootwatch.edge.contract.windows import fit_length
from hootwatch.edge.core.errors import AudioReadError

from ..augment import AugmentOptions, augment


EVAL_CACHE_MAX = 2000  # evaluation windows kept in memory only for splits this small (about 0.6 GB at 16 kHz)
FILE_CACHE_BYTES = 1 << 30   # short training files kept decoded, at most this much (1 GiB: ~4.6 h at 16 kHz)
FILE_CACHE_MAX_S = 60.0      # longer recordings (annotated nights) are cut from disk each time


class DecodedFiles:
    """Short files decoded once, at the analysis rate: each epoch cuts a clip's random window (and a background's)
    from memory instead of decoding and resampling it again. On 2 CPUs decoding was over half of an epoch; files
    longer than FILE_CACHE_MAX_S, or past FILE_CACHE_BYTES in all, are cut from disk as before. A window cut here
    may differ from one decoded on its own in the resampler's last bits (soxr started mid-file), never in timing."""

    def __init__(self, sample_rate: int, max_bytes: int = FILE_CACHE_BYTES, max_s: float = FILE_CACHE_MAX_S) -> None:
        self.sample_rate, self.max_bytes, self.max_s = int(sample_rate), int(max_bytes), float(max_s)
        self._files: dict[str, np.ndarray] = {}
        self._from_disk: set[str] = set()
        self.bytes = 0

    def _decoded(self, source: str) -> np.ndarray | None:
        x = self._files.get(source)
        if x is not None or source in self._from_disk:
            return x
        try:
            info = audio.probe(source)
        except AudioReadError:
            info = None   # cut from disk, where the error names the file as it always did
        need = None if info is None else int(info.duration_s * self.sample_rate * 4)
        if info is None or info.duration_s > self.max_s or self.bytes + need > self.max_bytes:
            self._from_disk.add(source)
            return None
        x = audio.load(source, self.sample_rate)
        self._files[source] = x
        self.bytes += x.nbytes
        return x

    def cut(self, clip: ClipRef, window_s: float, rng: np.random.Generator) -> np.ndarray:
        """`clip.cut(sample_rate, window_s, rng)`: the same window position from the same draw of `rng`."""
        start = clip.window_start(window_s, rng)
        n = int(round(window_s * self.sample_rate))
        x = self._decoded(clip.source)
        if x is None:
            return fit_length(audio.load(clip.source, self.sample_rate, start_s=start, duration_s=window_s), n)
        i = int(round(start * self.sample_rate))
        return np.array(fit_length(x[i:i + n], n), np.float32)   # a copy: augmentation must not touch the cache


class ClipDataset(torch.utils.data.Dataset):
    def __init__(self, clips: list[ClipRef], label2id: dict[str, int], sample_rate: int, window_s: float,
                 normalisation: Normalisation, train: bool = False, augment_opts: AugmentOptions | None = None,
                 backgrounds: list[ClipRef] | None = None, seed: int = 0) -> None:
        self.clips = list(clips)
        self.label2id = label2id
        self.sample_rate = int(sample_rate)
        self.window_s = float(window_s)
        self.normalisation = normalisation
        self.train = train
        self.augment_opts = augment_opts if train else None
        self.backgrounds = list(backgrounds or [])
        self.seed = seed
        self.epoch = 0
        self._eval_cache: dict[int, np.ndarray] = {}
        self._files = DecodedFiles(self.sample_rate)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)

    def raw(self, i: int) -> np.ndarray:
        """The window of raw audio for item i (deterministic per seed, epoch and index)."""
        clip = self.clips[i]
        if not self.train:
            if len(self.clips) >= EVAL_CACHE_MAX:
                return clip.cut(self.sample_rate, self.window_s)
            if i not in self._eval_cache:
                self._eval_cache[i] = clip.cut(self.sample_rate, self.window_s)
            return self._eval_cache[i]
        rng = np.random.default_rng((self.seed, self.epoch, i))
        x = self._files.cut(clip, self.window_s, rng)
        if self.augment_opts is not None and self.augment_opts.enabled:
            bg = None
            if self.backgrounds and self.augment_opts.mix_probability > 0:
                other = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
                bg = self._files.cut(other, self.window_s, rng)
            x = augment(x, rng, self.augment_opts, bg)
        return x

    def __getitem__(self, i: int) -> dict:
        x = self.normalisation.apply(self.raw(i), self.sample_rate)
        return {"input_values": torch.from_numpy(x), "labels": self.label2id[self.clips[i].label]}


class EpochShuffle(torch.utils.data.Sampler):
    """A new order each epoch drawn from (seed, epoch) alone, so a resumed run sees the order the uninterrupted
    run would have seen (a generator seeded once would restart at epoch 0's order)."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(np.random.default_rng((self.seed, self.epoch, 7919)).permutation(self.n).tolist())


def class_weights(clips: list[ClipRef], label2id: dict[str, int]) -> torch.Tensor:
    """Inverse-frequency weights (mean 1 over clips): each class counts as much as the others in the loss."""
    counts = np.bincount([label2id[c.label] for c in clips], minlength=len(label2id)).astype(np.float64)
    w = len(clips) / (len(label2id) * np.maximum(counts, 1))
    return torch.tensor(w, dtype=torch.float32)
