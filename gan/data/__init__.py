"""The data: MNIST and its family on disk (mnist) and the Lightning DataModule (datamodule)."""
