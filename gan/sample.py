"""Draw images from a trained generator, rebuilt from its checkpoint alone. `python -m gan.sample --help` says how."""

from gan.tools.sample import main

if __name__ == "__main__":
    main()
