"""A training run: the typed config (config) and its checks (validate), the LightningModule
(module), the one builder (build), callbacks, faults and health, loggers, resume, the
console, and the run itself (run), which `python -m gan.train` calls.
"""
