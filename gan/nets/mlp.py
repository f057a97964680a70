"""Vanilla fully connected GAN for 28x28 MNIST, after the TensorFlow GAN tutorial.

G: z -> Linear(hidden) -> LeakyReLU -> Linear(784) -> tanh -> (B, 1, 28, 28).
D: image -> flatten -> Linear(hidden) -> LeakyReLU -> Linear(1) -> logit.
Glorot-uniform weights and zero biases, TensorFlow's defaults for dense layers.
"""

from torch import Tensor, nn

from gan.nets import BaseDiscriminator, BaseGenerator, check_positive, init_xavier_weights

NAME = "mlp"


class Generator(BaseGenerator):
    def __init__(
        self,
        latent_dim: int = 100,
        hidden: int = 128,  # the tutorial's single hidden layer width
        negative_slope: float = 0.01,  # the tutorial's LeakyReLU slope (TF's default is 0.2)
    ) -> None:
        super().__init__(latent_dim)
        check_positive(NAME, "hidden", hidden)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden),  # (B, hidden)
            nn.LeakyReLU(negative_slope),
            nn.Linear(hidden, self.img_size * self.img_size),  # (B, 784)
            nn.Tanh(),
        )
        init_xavier_weights(self)  # tf.layers.dense's glorot_uniform

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(-1, 1, self.img_size, self.img_size)  # (B, 1, 28, 28)


class Discriminator(BaseDiscriminator):
    family = NAME

    def __init__(self, hidden: int = 128, negative_slope: float = 0.01) -> None:
        super().__init__()
        check_positive(NAME, "hidden", hidden)
        self.net = nn.Sequential(
            nn.Flatten(),  # (B, 784)
            nn.Linear(self.img_size * self.img_size, hidden),  # (B, hidden)
            nn.LeakyReLU(negative_slope),
            nn.Linear(hidden, 1),  # (B, 1)
        )
        init_xavier_weights(self)
