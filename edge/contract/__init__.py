"""The one audio and model contract every stage shares: decoding, clock time, window timing, normalisation, the
bundle format, the model at inference (one stage or a cascade) and the window -> score -> event loop.

Training (trainer), export and the field all prepare audio and read scores through these modules alone."""
