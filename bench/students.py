"""Other first stages for bench/cascade_limits.py, distilled from a judge's scores on a whole synthetic night.

Experiments to measure the limit, not shipped: each `fit_*(windows, target, seed)` returns a function from a
`cascade_limits.Windows` to first-stage scores in [0, 1].
"""

from __future__ import annotations

import warnings

import numpy as np

N_FFT, HOP, N_MELS, F_MIN, F_MAX = 512, 320, 40, 100.0, 4000.0   # 32 ms frames every 20 ms, at 16 kHz


def _mel_filters(sample_rate: int) -> np.ndarray:
    def mel(f):
        return 2595 * np.log10(1 + f / 700)

    pts = 700 * (10 ** (np.linspace(mel(F_MIN), mel(F_MAX), N_MELS + 2) / 2595) - 1)
    freqs = np.fft.rfftfreq(N_FFT, 1 / sample_rate)
    return np.stack([np.clip(np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), 0, None)
                     for lo, c, hi in zip(pts, pts[1:], pts[2:])]).astype(np.float32)


def logmel(windows: np.ndarray, sample_rate: int) -> np.ndarray:
    """(n, samples) -> (n, mels, frames): dB above each band's median over the window (gain and steady noise
    removed), clipped to [-20, 40] dB and scaled by 1/10."""
    w = np.atleast_2d(windows).astype(np.float32)
    w = w - w.mean(-1, keepdims=True)
    frames = np.lib.stride_tricks.sliding_window_view(w, N_FFT, axis=-1)[:, ::HOP]
    spec = np.fft.rfft(frames * np.hanning(N_FFT).astype(np.float32), axis=-1)
    power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
    db = 10 * np.log10(np.einsum("ntf,mf->nmt", power, _mel_filters(sample_rate)) + 1e-10)
    return (np.clip(db - np.median(db, axis=2, keepdims=True), -20, 40) / 10).astype(np.float32)


def _standardiser(x: np.ndarray):
    mean, scale = x.mean(0), x.std(0) + 1e-6
    return lambda f: (f - mean) / scale


def fit_mlp(train, target: np.ndarray, seed: int):
    from sklearn.neural_network import MLPClassifier
    z = _standardiser(train.feats)
    y = target
    reps = max(1, int(round((~y).sum() / max(y.sum(), 1))))   # balanced, as hootwatch.trainer.first_stage
    idx = np.concatenate([np.flatnonzero(~y)] + [np.flatnonzero(y)] * reps)
    clf = MLPClassifier(hidden_layer_sizes=(32,), alpha=1e-3, max_iter=600, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(z(train.feats[idx]), y[idx])
    return lambda w: clf.predict_proba(z(w.feats))[:, 1]


def fit_trees(train, target: np.ndarray, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier
    clf = HistGradientBoostingClassifier(max_iter=300, class_weight="balanced", random_state=seed)
    clf.fit(train.feats, target)
    return lambda w: clf.predict_proba(w.feats)[:, 1]


def fit_cnn(train, target: np.ndarray, seed: int, epochs: int = 15):
    """Three 3x3 conv blocks (16-32-32 channels, max-pooling), max over time, a linear layer: ~20 M MACs a window."""
    import torch
    from torch import nn
    torch.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self, c: int = 16) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.head = nn.Linear(2 * c * (N_MELS // 8), 1)

        def forward(self, x):
            return self.head(self.body(x.unsqueeze(1)).amax(dim=3).flatten(1))[:, 0]

    net = Net()
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-3)
    x = torch.tensor(train.logmel)
    y = torch.tensor(target.astype(np.float32))
    pos_weight = (1 - y.mean()) / y.mean().clamp(min=1e-3)
    for _ in range(epochs):
        for b in torch.randperm(len(x)).split(64):
            loss = nn.functional.binary_cross_entropy_with_logits(net(x[b]), y[b], pos_weight=pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()

    def score(w):
        with torch.no_grad():
            return torch.sigmoid(torch.cat([net(torch.tensor(w.logmel[i:i + 256]))
                                            for i in range(0, len(w.logmel), 256)])).numpy()
    return score
