"""The lowest layer: one-line user errors and the checkpoint reader (errors), file writes that
cannot be redirected (files), and the key=value option parser of the programs (options).
"""
