"""Compare the jobs of a sweep: one table, ranked by the best score each job reached. `python -m gan.report --help` says how."""

from gan.tools.report import main

if __name__ == "__main__":
    main()
