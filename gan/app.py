"""A local web app to explore a trained generator: sample grids, latent walks, a collapse gauge. `python -m gan.app --help` says how."""

from gan.tools.app import main

if __name__ == "__main__":
    main()
