"""Golden outputs: sha256 of what a fixed list of tiny runs writes (see README.md)."""
