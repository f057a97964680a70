"""The data: MNIST and its family on disk (mnist), the Lightning DataModule (datamodule) and a
picture file prepared as MNIST's digits are (pictures)."""
