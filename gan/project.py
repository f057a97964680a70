"""Find a drawn digit in a trained generator: its latent (and class). `python -m gan.project --help` says how."""

from gan.tools.project import main

if __name__ == "__main__":
    main()
