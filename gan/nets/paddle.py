"""The PaddlePaddle book's DCGAN for 28x28 MNIST (chapter 9, "Generative Adversarial
Networks"): fully connected layers into two 5x5 transposed convs; conv + max-pool D.

G: z -> fc 2048 -> fc 2ch*7*7 -> (B, 2ch, 7, 7) -> 14x14 -> 28x28, tanh.
D: 28x28 -> conv + pool 14x14 -> conv + pool 7x7 -> fc 1024 -> logit.
`base_channels=64` gives the book's widths (64 and 128 channels).
"""

from torch import Tensor, nn

from gan.nets import check_images, check_latent_dim, check_positive

NAME = "paddle"


class Generator(nn.Module):
    img_size: int = 28
    output: str = "tanh"

    def __init__(
        self,
        latent_dim: int = 100,
        base_channels: int = 64,
        hidden: int = 2048,  # the book's first fc width
    ) -> None:
        super().__init__()
        check_latent_dim(latent_dim)
        check_positive(NAME, "base_channels", base_channels)
        check_positive(NAME, "hidden", hidden)
        self.latent_dim = latent_dim
        ch = base_channels
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, hidden, bias=False),  # (B, hidden); bias=False: BN follows
            nn.BatchNorm1d(hidden),
            nn.ReLU(True),
            nn.Linear(hidden, 2 * ch * 7 * 7, bias=False),  # (B, 2ch*7*7)
            nn.BatchNorm1d(2 * ch * 7 * 7),
            nn.ReLU(True),
            nn.Unflatten(1, (2 * ch, 7, 7)),  # (B, 2ch, 7, 7)
        )
        # padding=2, output_padding=1: a 5x5 stride-2 transposed conv exactly doubles the size
        self.conv = nn.Sequential(
            nn.ConvTranspose2d(
                2 * ch, ch, 5, 2, 2, output_padding=1, bias=False
            ),  # (B, ch, 14, 14)
            nn.BatchNorm2d(ch),
            nn.ReLU(True),
            nn.ConvTranspose2d(ch, 1, 5, 2, 2, output_padding=1),  # (B, 1, 28, 28)
            nn.Tanh(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.conv(self.fc(z))  # (B, 1, 28, 28)


class Discriminator(nn.Module):
    img_size: int = 28

    def __init__(
        self,
        base_channels: int = 64,
        hidden: int = 1024,  # the book's fc width before the logit
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        check_positive(NAME, "base_channels", base_channels)
        check_positive(NAME, "hidden", hidden)
        ch = base_channels
        self.net = nn.Sequential(
            nn.Conv2d(1, ch, 5, 1, 2),  # (B, ch, 28, 28); padding=2 keeps the size
            nn.LeakyReLU(negative_slope),
            nn.MaxPool2d(2),  # (B, ch, 14, 14)
            nn.Conv2d(ch, 2 * ch, 5, 1, 2, bias=False),  # (B, 2ch, 14, 14)
            nn.BatchNorm2d(2 * ch),
            nn.LeakyReLU(negative_slope),
            nn.MaxPool2d(2),  # (B, 2ch, 7, 7)
            nn.Flatten(),  # (B, 2ch*7*7)
            nn.Linear(2 * ch * 7 * 7, hidden, bias=False),  # (B, hidden)
            nn.BatchNorm1d(hidden),
            nn.LeakyReLU(negative_slope),
            nn.Linear(hidden, 1),  # (B, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.img_size, NAME)
        return self.net(x).view(-1)  # (B,) logits
