"""Benchmark: our full Lightning training step against a plain PyTorch loop, in one process. `python -m gan.bench --help` says how."""

from gan.perf.bench import main

if __name__ == "__main__":
    main()
