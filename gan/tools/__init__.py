"""What the programs do with a trained generator: loading (loading, hub), sampling, export,
the app's logic (app, explore) and sweep reports (report*).
"""
