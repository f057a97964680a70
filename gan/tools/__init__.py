"""What the programs do with a trained generator: sampling (sample), projection (project, the
command; projector, the search), export, the app's logic (app, explore) and sweep reports
(report*).
"""
