"""The bundled seed corpus (``seed_corpus.jsonl``) and the script that writes it (``tools/make_seed.py``, run from a clone)."""
