"""hootwatch.edge: the field side. Runs a model bundle with ONNX Runtime; never imports torch or transformers.

It also holds the contract every stage shares (audio decoding, windowing, normalisation, the bundle format),
so training and inference prepare audio identically.
"""

__version__ = "0.1.0"
