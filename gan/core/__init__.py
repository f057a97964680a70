"""The GAN update itself, independent of Lightning: losses, DiffAugment, noise and drawing
(sampling), the one update step (step), optimizers and schedules (optim), the image range.
"""
