"""The data: MNIST and its family on disk (mnist), the Lightning DataModule (datamodule), how
it serves and splits its images (batches) and a picture file prepared as MNIST's digits
(pictures)."""
