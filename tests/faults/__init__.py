"""Fault tolerance end to end: kill and resume bit-exactly, torn saves, NaNs, bad inputs.

    test_kill_resume.py   SIGKILL / SIGTERM of a real `python -m gan.train`, resumed (slow)
    test_crash_resume.py  the same in-process: crashes and SIGTERM at every kind of save point
    test_saves.py         a kill during a checkpoint save
    test_nan.py           a NaN loss: stop, roll back, one error line
    test_bad_inputs.py    every bad input (`CASES`) and the table of docs/troubleshooting.md
    test_checks.py        the checks themselves, called directly

The slow tests (`-m slow`) drive the real command line in subprocesses; the fast ones run
in-process on conftest's tiny data. Shared fixtures are in conftest.py, helpers in
tests/helpers.py; pause_launcher.py starts a run that pauses at a chosen iteration.
"""
