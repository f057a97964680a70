"""The benchmark scripts: run each as a module from the repository root.

    python -m bench.default_vs_plain      # or bench.study, bench.recipes, bench.conditional, ...

Each writes its results under `bench/results/<name>/` unless `--out` says otherwise (its
training runs under `<out>/runs/`, ignored by git). What the scripts share is stated once,
in `bench.common`.
"""
