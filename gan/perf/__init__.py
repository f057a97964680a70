"""Speed: the plain-loop floor, timing, and `python -m gan.bench`'s harness (bench)."""
