"""hootwatch.edge: the field side. Runs a model bundle with ONNX Runtime; never imports torch or transformers.

It also holds the contract every stage shares (contract/: audio decoding, windowing, normalisation, the bundle
format), so training and inference prepare audio identically, and what every package shares (core/: errors, durable
writes). Its packages keep to layers, highest first: commands, daemon | cluster, review, scan, store, tables,
contract, core (pyproject.toml's import-linter contracts; tests/test_layout.py checks them).
"""

__version__ = "0.1.0"
