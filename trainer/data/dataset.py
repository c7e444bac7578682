"""ClipRefs as a torch Dataset: cut by `ClipRef.cut` (random position in training, centred otherwise),
augmented in training, normalised by the edge's `Normalisation` in numpy, exactly as the field detector does.
"""

from __future__ import annotations

import numpy as np
import torch

from hootwatch.edge.contract.clips import ClipRef
from hootwatch.edge.contract.preprocess import Normalisation

from ..augment import AugmentOptions, augment


EVAL_CACHE_MAX = 2000  # evaluation windows kept in memory only for splits this small (about 0.6 GB at 16 kHz)


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
        x = clip.cut(self.sample_rate, self.window_s, rng)
        if self.augment_opts is not None and self.augment_opts.enabled:
            bg = None
            if self.backgrounds and self.augment_opts.mix_probability > 0:
                other = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
                bg = other.cut(self.sample_rate, self.window_s, rng)
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
