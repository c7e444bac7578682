"""The backbone: any `AutoModelForAudioClassification` (wav2vec2, HuBERT, WavLM) with labels from the data.

`--tiny` builds a small random-init Wav2Vec2 that trains on a CPU in minutes. Its first convolution is a long
learnable filterbank (400-sample kernel, 160-sample hop: 25 ms / 10 ms at 16 kHz) instead of wav2vec2's
10-sample kernel, which a randomly initialised model cannot make frequency-selective from a few hundred clips
(measured: with the wav2vec2-style stack a tiny model did not even fit 64 training clips in 60 steps; with the
filterbank it did in 160). Then two small convolutions (total stride 640: 125 frames per 5 s at 16 kHz),
width 96 (48 Gabor pairs), two transformer layers, mean pooling over frames (Wav2Vec2ForSequenceClassification);
width 96 instead of 64 lifted clip-level test F1 on held-out synthetic recordings from 0.945 to 0.969.

Three choices get it off the loss plateau (loss stuck at ln 2 for 200-500 steps otherwise), measured on a
600-clip synthetic set, 20 epochs: test PR-AUC 0.89-0.91 instead of a model still at chance after 7 epochs:
- the filterbank starts as mel-spaced Gabor filters (cos/sin pairs, 150 Hz - 4 kHz; still learnable), so the
  model is frequency-selective from the first step;
- `feat_extract_norm="layer"` normalises each frame across channels, keeping the spectral shape of every frame
  ("group" normalises each channel over the whole window and so throws away which bands hold energy);
- `use_weighted_layer_sum` lets the classifier read the projected features directly, before the randomly
  initialised transformer layers have learnt anything.
All three are plain Wav2Vec2Config options and weights, so export and the edge treat the tiny model like any
other wav2vec2.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from hootwatch.edge.core.errors import ConfigError, HootwatchError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backbone:
    model: object                 # a transformers PreTrainedModel for audio classification
    feature_extractor: object     # its (Wav2Vec2-style) feature extractor
    name: str                     # hub id, local path, or "tiny-wav2vec2"
    sample_rate: int


def tiny_config(label2id: dict[str, int]):
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=96, num_hidden_layers=2, num_attention_heads=4, intermediate_size=192,
        conv_dim=(96, 96, 96), conv_kernel=(400, 3, 3), conv_stride=(160, 2, 2), num_feat_extract_layers=3,
        feat_extract_norm="layer", conv_bias=True,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        # no dropout and no SpecAugment time masking: with a few hundred clips they slowed learning more than
        # they regularised (5 seeds: test PR-AUC 0.71-0.97 with them, 0.91-0.996 without, same steps)
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
        final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0,
        classifier_proj_size=96, use_weighted_layer_sum=True,
        num_labels=len(label2id), label2id=dict(label2id), id2label={i: lab for lab, i in label2id.items()},
    )


def gabor_init(conv, sample_rate: int, fmin: float = 150.0, fmax: float = 4000.0) -> None:
    """Set a Conv1d(1 -> C, k) to C/2 Hann-windowed cos/sin pairs at mel-spaced frequencies (below Nyquist)."""
    import numpy as np
    import torch

    out, _, k = conv.weight.shape
    fmax = min(fmax, 0.45 * sample_rate)
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    centres = 700 * (10 ** (np.linspace(mel(fmin), mel(fmax), (out + 1) // 2) / 2595) - 1)
    t = (np.arange(k) - (k - 1) / 2) / sample_rate
    win = np.hanning(k)
    filters = np.stack([f(2 * np.pi * fc * t) * win for fc in centres for f in (np.cos, np.sin)])[:out]
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(filters / np.sqrt(k / 2.67), dtype=conv.weight.dtype).unsqueeze(1))


HUB_PROBE_S = 3.0  # an online hub answers in well under a second; offline, transformers retries for a minute


def hub_offline(timeout_s: float = HUB_PROBE_S) -> str | None:
    """Why the Hugging Face hub cannot be reached (None: it answered), found out within `timeout_s`.

    HF_HUB_OFFLINE=1 says so at once; otherwise one HEAD request to the endpoint, in a thread so that a DNS
    lookup with no answer cannot hold us longer than the timeout either.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    answer: list[str | None] = []

    def probe() -> None:
        import requests

        try:
            requests.head(constants.ENDPOINT, timeout=timeout_s, allow_redirects=False)
            answer.append(None)
        except Exception as exc:  # ConnectionError, Timeout, SSLError...
            answer.append(f"{type(exc).__name__}")

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout_s + 0.5)
    if not answer:
        return f"no answer from {constants.ENDPOINT} within {timeout_s:g} s"
    return None if answer[0] is None else f"cannot reach {constants.ENDPOINT} ({answer[0]})"


def _pretrained(loader, base: str, **kw):
    """`loader.from_pretrained(base)` from the local cache if it is there, else from the hub if it answers;
    offline, the clear message at once instead of a minute of retry warnings."""
    try:
        return loader.from_pretrained(base, local_files_only=True, **kw)
    except OSError:
        if Path(base).expanduser().is_dir():
            raise  # a local folder: nothing to download
    why = hub_offline()
    if why is not None:
        raise HootwatchError(
            f"cannot download {base}: the machine is offline ({why}) and it is not in the local cache",
            "download it where there is internet (`huggingface-cli download facebook/wav2vec2-base --local-dir "
            "DIR`) and pass that folder to --base, or use --tiny")
    return loader.from_pretrained(base, **kw)


def _cannot_download(name: str, exc: BaseException) -> HootwatchError:
    return HootwatchError(
        f"cannot download {name} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
        "pass a local checkpoint path with --base (a folder with config.json and the weights) or use --tiny",
    )


def kept_layers(layers: int | None, config, name: str) -> str:
    """Keep the first `layers` transformer layers of `config` (set num_hidden_layers before the model is built, so
    only those are created and loaded; the saved config.json then reloads the same model, and a weighted layer
    sum gets one weight per kept layer). Returns the suffix the backbone's name gets ("" when all are kept);
    a count outside 1..the backbone's own is a ConfigError naming --layers."""
    if layers is None:
        return ""
    total = int(config.num_hidden_layers)
    if not 1 <= layers <= total:
        raise ConfigError(f"--layers {layers}: {name} has {total} transformer layer(s)",
                          f"pass --layers between 1 and {total}, or leave it out for all of them")
    if layers == total:
        return ""
    config.num_hidden_layers = int(layers)
    return f" (first {layers} of {total} layers)"


def build_backbone(base: str, tiny: bool, label2id: dict[str, int], sample_rate: int | None = None,
                   layers: int | None = None) -> Backbone:
    """Model + feature extractor with our labels; the feature extractor's rate becomes the analysis rate.
    `layers`: keep only the first that many transformer layers (`kept_layers`); None keeps them all."""
    from transformers import (AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification,
                              Wav2Vec2FeatureExtractor)

    id2label = {i: lab for lab, i in label2id.items()}
    if tiny:
        fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=sample_rate or 16000, padding_value=0.0,
                                      do_normalize=True, return_attention_mask=False)
        config = tiny_config(label2id)
        suffix = kept_layers(layers, config, "--tiny")
        model = AutoModelForAudioClassification.from_config(config)
        gabor_init(model.wav2vec2.feature_extractor.conv_layers[0].conv, int(fe.sampling_rate))
        return Backbone(model, fe, "tiny-wav2vec2" + suffix, int(fe.sampling_rate))
    local = Path(base).expanduser()
    if not local.exists() and (base.startswith((".", "/", "~")) or base.count("/") > 1):
        raise HootwatchError(f"{base}: no such checkpoint folder", "pass an existing local folder or a hub id")
    if local.is_dir():
        missing = [f for f in ("config.json", "preprocessor_config.json") if not (local / f).is_file()]
        if missing:
            raise HootwatchError(f"{local}: not a complete checkpoint folder (missing {', '.join(missing)})",
                                 "download the whole checkpoint (e.g. `huggingface-cli download facebook/wav2vec2-base "
                                 "--local-dir DIR`) and pass that folder to --base")
    suffix = ""
    try:
        fe = _pretrained(AutoFeatureExtractor, base)
        if layers is None:
            model = _pretrained(AutoModelForAudioClassification, base, num_labels=len(label2id),
                                label2id=dict(label2id), id2label=id2label, ignore_mismatched_sizes=True)
        else:
            config = _pretrained(AutoConfig, base, num_labels=len(label2id), label2id=dict(label2id),
                                 id2label=id2label)
            suffix = kept_layers(layers, config, base)
            model = _pretrained(AutoModelForAudioClassification, base, config=config, ignore_mismatched_sizes=True)
    except OSError as exc:
        raise _cannot_download(base, exc) from None
    except ValueError as exc:  # e.g. a checkpoint of a family without audio classification
        raise HootwatchError(f"{base}: cannot be used for audio classification ({exc})",
                             "use a wav2vec2, HuBERT or WavLM checkpoint") from None
    if sample_rate and sample_rate != fe.sampling_rate:
        log.warning("analysis rate %d Hz differs from the rate %s was pretrained at (%d Hz)",
                    sample_rate, base, fe.sampling_rate)
        fe.sampling_rate = int(sample_rate)
    if suffix:
        log.info("kept the first %d of %s's transformer layers; the later ones are not loaded", layers, base)
    return Backbone(model, fe, base + suffix, int(fe.sampling_rate))


def backbone_rate(base: str, tiny: bool, sample_rate: int | None) -> int:
    """The analysis sample rate before the model is built (data are loaded at this rate)."""
    if sample_rate:
        return int(sample_rate)
    if tiny:
        return 16000
    from transformers import AutoFeatureExtractor

    try:
        return int(_pretrained(AutoFeatureExtractor, base).sampling_rate)
    except OSError as exc:
        raise _cannot_download(base, exc) from None
