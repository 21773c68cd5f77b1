"""Shared by the make_*_corpus.py scripts that build their seeds in memory."""

import hashlib
import os


def write_seeds(out_dir, seeds):
    """Writes each seed (bytes) to OUT_DIR under the SHA-1 of its content, so running a
    script again changes nothing and files already there (inputs a fuzzer found) stay."""
    os.makedirs(out_dir, exist_ok=True)
    for s in seeds:
        with open(os.path.join(out_dir, hashlib.sha1(s).hexdigest()), "wb") as f:
            f.write(s)
    print(f"{len(seeds)} seeds in {out_dir}")
