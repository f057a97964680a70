"""Classification Accuracy Score of a conditional generator: a classifier trained on its digits, tested on real ones. `python -m gan.cas --help` says how."""

from gan.tools.cas import main

if __name__ == "__main__":
    main()
