"""The structured-config schema: dataclasses registered in Hydra's ConfigStore.

`conf/train.yaml` starts its defaults list with `train_schema`, so every group option
is merged onto these typed nodes while the config is composed. A typo in a key, or a
value of the wrong type (`step_ratio.d_steps=two`), fails right there, naming the key.
Value ranges (`optimizer.lr=-1`, `data.batch_size=0`) are checked by
`gan.training.validate.validate`, which `gan.train` calls before anything is built.

Trainer, callbacks and loggers are Lightning's own classes; their nodes carry a
`_target_` and are built with `hydra.utils.instantiate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import II, DictConfig, OmegaConf


@dataclass
class ModelConfig:
    """The networks: a family of gan/nets/ and its arguments (`model=<family>` picks one;
    its option file states only how it differs from this, DCGAN-28)."""

    name: str = "dcgan"  # the family in gan/nets/
    img_size: int = 28  # what G makes and D eats; the DataModule resizes MNIST to it
    output: str = "tanh"  # G's output activation: "tanh" -> [-1, 1], "sigmoid" -> [0, 1]
    channels: int = 1  # image channels: follows data.channels in training runs
    # Each built through gan.nets.registry() from `_target_` and the other keys; G's latent
    # size is noise.dim's, stated there only.
    generator: dict[str, Any] = field(
        default_factory=lambda: {
            "_target_": "gan.nets.dcgan.Generator",
            "latent_dim": II("noise.dim"),
        }
    )
    discriminator: dict[str, Any] = field(
        default_factory=lambda: {"_target_": "gan.nets.dcgan.Discriminator"}
    )


@dataclass
class ConditionConfig:
    """Class conditioning (gan.nets.base): none | concat | projection | acgan | tacgan."""

    name: str = "none"
    num_classes: int = 10  # the data's classes: follows data.num_classes in training runs
    embed_dim: int = 10  # the label embedding: appended to z in G; D's extra input planes (concat)
    aux_weight: float = 1.0  # acgan, tacgan: weight of the class heads' cross-entropies


@dataclass
class OptimSpec:
    """One network's optimizer. `lr=None` takes `optimizer.lr` (scaled for D)."""

    name: str = "adam"  # a key of gan.core.optim.OPTIMIZERS
    lr: float | None = None
    betas: list[float] = field(
        default_factory=lambda: [0.5, 0.999]
    )  # DCGAN: beta1 0.5 tames oscillation
    momentum: float = 0.0  # sgd and rmsprop
    alpha: float = 0.99  # rmsprop smoothing, torch's default
    eps: float = 1e-8
    weight_decay: float = 0.0


@dataclass
class OptimizerConfig:
    name: str = "adam"
    lr: float = 1e-3  # 5x the DCGAN paper's 2e-4; the one knob `-m optimizer.lr=...` sweeps
    d_lr_scale: float = 1.0  # D's lr = lr * d_lr_scale unless d.lr is set (TTUR uses 4)
    g: OptimSpec = field(default_factory=OptimSpec)
    d: OptimSpec = field(default_factory=OptimSpec)
    clip_value: float | None = None  # clamp each grad to [-v, v] (the Keras recipe: 1.0)
    clip_norm: float | None = None  # rescale grads to this total norm
    # Both lrs over the run: constant | linear | cosine, stepped every iteration. A decay
    # holds the full lr for `decay_start` of the run's iterations (trainer.max_epochs),
    # then falls to lr * final_lr_scale at the end (CycleGAN: half, then linear to 0).
    schedule: str = "constant"
    decay_start: float = 0.5
    final_lr_scale: float = 0.0


@dataclass
class LossConfig:
    name: str = "bce"  # a key of gan.core.losses.LOSSES
    gp_weight: float = 10.0  # WGAN-GP's lambda, from Gulrajani et al. (2017)


@dataclass
class LabelSmoothingConfig:
    name: str = "none"  # one of gan.core.losses.SMOOTHING
    real: float = 1.0  # D's target for real images
    fake: float = 0.0  # D's target for generated images
    noise: float = 0.0  # noisy: real ~ U[real - noise, real], fake ~ U[fake, fake + noise]
    flip_prob: float = 0.0  # noisy: chance that a target is swapped for the other class's


@dataclass
class StepRatioConfig:
    name: str = "d1g2"
    d_steps: int = 1  # D updates per iteration, each on a fresh real batch
    g_steps: int = 2  # G updates per iteration, each on fresh noise


@dataclass
class NoiseConfig:
    name: str = "normal"
    dist: str = "normal"  # normal: N(0, 1); uniform: U[-1, 1]
    dim: int = 8  # the latent size, set here only (DCGAN's is 100); G reads it as noise.dim


@dataclass
class EmaConfig:
    enabled: bool = True  # keep an exponential moving average of G's weights (G only)
    decay: float = 0.999  # ~ an average over the last 1,000 G updates
    every_n_steps: int = 1  # update the average after every n-th G update
    # Ramp the decay up as min(decay, (1 + n) / (10 + n)) after n averaging steps, as
    # TensorFlow's ExponentialMovingAverage(num_updates=n) does: without it, 0.999^700
    # leaves half of the random initial weights in the average after 700 updates.
    warmup: bool = True
    # BatchNorm running statistics of the EMA G, recomputed from the averaged weights
    # (forward passes of this many batches of 256 fresh latents) before it draws samples;
    # 0: average the statistics like weights, which need not match the averaged weights.
    bn_batches: int = 8


@dataclass
class StabilizeConfig:
    """Stabilisers, each one flag, for any model, loss and D:G ratio (gan.core.step, gan.core.augment)."""

    spectral_norm: bool = False  # spectral normalisation of D's conv and linear layers
    r1: float = 0.0  # gamma of R1 = gamma/2 E||grad D(real)||^2 (Mescheder et al. 2018)
    r2: float = 0.0  # gamma of R2, the same on fakes (R3GAN uses both)
    # Lazy regularisation (StyleGAN2): R1/R2 every n-th D update, scaled by n; 16 saves
    # most of their cost
    reg_every: int = 1
    # DiffAugment policy (Zhao et al. 2020), applied to every image D sees, in both
    # updates: [] (off), or any of translation, cutout, color
    diffaug: list[str] = field(default_factory=list)
    # Top-k training (Sinha et al. 2020): G's loss averages over only the share `topk` of
    # its fakes that D scores highest, so the worst fakes stop pulling G; 1.0 is off
    topk: float = 1.0
    # ADA (Karras et al. 2020): every image D sees gets each op of `diffaug` (or, when that
    # is empty, translation and cutout, plus color for 3-channel data) with probability p,
    # drawn per image; p starts at ada_p0 and moves every `ada_interval` D updates by
    # sign(r_t - ada_target) * (images in them) / (ada_kimg * 1000), where
    # r_t = E[sign(D(real))] over them: up while D overfits its reals, down while it does not
    ada: bool = False
    ada_p0: float = 0.0  # the paper starts at 0: no augmentation until D overfits
    ada_target: float = 0.6  # the paper's r_t target
    ada_interval: int = 4  # D updates between adjustments (the paper's 4)
    # Images D must see for p to cross [0, 1]. The paper's 500 (2% of a 25M-image run) would
    # leave p near 0 here: the default run sees ~90k reals (10 epochs of 9,000), so 10 lets
    # p cross in ~1/9 of it (~310 D updates at batch 32), a fast enough reaction to a small
    # data.limit within a short budget, and still many adjustments (78) per crossing.
    ada_kimg: float = 10.0
    # PacGAN (Lin et al. 2018): D scores `pack` images at a time, stacked along the channels
    # (its first layer takes pack * channels), so it sees a batch's variety and can punish a
    # G that repeats itself. Unconditional runs only; data.batch_size must be a multiple.
    pack: int = 1


@dataclass
class GuardConfig:
    check_every_n: int = 1  # check losses for NaN/Inf every n iterations (0: never)
    on_nonfinite: str = "stop"  # stop | rollback (reload last.ckpt, lower the lr)
    lr_factor: float = 0.5  # rollback multiplies both learning rates by this
    max_rollbacks: int = 3  # then stop


@dataclass
class MetricsConfig:
    enabled: bool = True  # val/fid, val/kid, val/mnist_score, val/coverage at each validation
    num_samples: int = 1000  # fakes per check, against the data.val_size held-out reals
    seed: int = 1234  # the fakes' noise is fixed, so scores compare across epochs
    classifier_epochs: int = 5  # when no cached classifier exists, training one takes this
    root: str = II("data.root")  # the classifier trains on the same data as the GAN
    split: str = II("data.split")
    download: bool = II("data.download")
    dataset: str = II("data.dataset")  # its own classifier (stacked_mnist: MNIST's, per channel)


@dataclass
class PerfConfig:
    channels_last: bool = False  # NHWC conv layouts; pays off with bf16 on CPU, on GPUs
    compile: bool = False  # torch.compile G and D: slower start (tens of s), faster steps on GPU
    # torch.compile's mode: default | reduce-overhead (CUDA graphs: fewer kernel launches on a
    # GPU, where tiny MNIST nets are launch-bound) | max-autotune | max-autotune-no-cudagraphs
    compile_mode: str = "default"
    reuse_fake: bool = True  # G's update reuses the last D update's fakes (PyTorch's DCGAN
    # example does): one G forward less per iteration


@dataclass
class ModuleConfig:
    """The GAN module's part of the config: its constructor arguments, saved in checkpoints.

    The defaults are the default run's (`python -m gan.train`): `GAN()` builds the module
    it trains, less the metrics, which a module built by hand has no data for. Training
    runs pass every node from the composed config.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    label_smoothing: LabelSmoothingConfig = field(default_factory=LabelSmoothingConfig)
    step_ratio: StepRatioConfig = field(default_factory=StepRatioConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)  # read by gan.training.health.NanGuard
    metrics: MetricsConfig = field(
        default_factory=lambda: MetricsConfig(
            enabled=False, root="data", split="train", download=False, dataset="mnist"
        )
    )
    perf: PerfConfig = field(default_factory=PerfConfig)
    condition: ConditionConfig = field(default_factory=ConditionConfig)
    stabilize: StabilizeConfig = field(default_factory=StabilizeConfig)


MODULE_GROUPS = tuple(f.name for f in fields(ModuleConfig))


def module_config(**groups: Any) -> DictConfig:
    """The module's config from plain dicts (a checkpoint's hyperparameters), typed and checked."""
    return OmegaConf.merge(
        OmegaConf.structured(ModuleConfig), {k: v for k, v in groups.items() if v is not None}
    )  # type: ignore[return-value]


@dataclass
class DataConfig:
    _target_: str = "gan.data.datamodule.MNISTDataModule"
    root: str = "data"  # holds MNIST/raw/* (FashionMNIST/, KMNIST/, EMNIST/); relative to launch
    download: bool = True  # torchvision's mirrors; set false to train on files already there
    split: str = "train"  # train | test | all (all = the 70,000 images GAN papers use)
    val_size: int = 1000  # held-out real images for the metrics
    batch_size: int = 32
    num_workers: int = 0  # batches are one tensor index each: worker processes only add IPC
    pin_memory: bool = False
    on_device: bool = False  # keep the whole split on the accelerator (47 MB for MNIST train)
    val_batch_size: int = 500
    img_size: int = II("model.img_size")
    value_range: str = II("model.output")
    d_steps: int = II("step_ratio.d_steps")
    seed: int = II("seed")  # also draws stacked_mnist's fixed digit triples
    # mnist | fashion_mnist | kmnist | emnist_letters | stacked_mnist (gan.data.mnist.DATASETS);
    # pick with data=<name>: its option file sets channels and num_classes to match
    dataset: str = "mnist"
    channels: int = 1  # 3 for stacked_mnist
    num_classes: int = 10  # 26 for emnist_letters, 1000 for stacked_mnist
    # Train on a class-balanced subset of this many training images (null: all of them):
    # limit // num_classes of each class, one more for the first limit % num_classes classes
    # (class order 0, 1, ...). Drawn from the images left after the held-out set (the
    # scores still use all of it), kept in checkpoints and checked on resume.
    limit: int | None = None
    # The subset's draw. It follows data.seed (the run's seed), so a study's seeds also
    # average over subsets, while runs of one seed (a method comparison) share one subset.
    limit_seed: int = II("data.seed")


@dataclass
class TrainerConfig:
    """The Lightning Trainer arguments we use; add others with `+trainer.key=value`."""

    _target_: str = "lightning.Trainer"
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: Any = "auto"
    num_nodes: int = 1
    precision: Any = "32-true"
    max_epochs: int = 20
    max_steps: int = -1  # counts optimizer steps: (d_steps + g_steps) per batch
    max_time: Any = None
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    val_check_interval: Any = None
    check_val_every_n_epoch: int | None = 1
    num_sanity_val_steps: int = 0  # the metrics need a trained G; nothing to sanity-check
    log_every_n_steps: int = 50
    fast_dev_run: Any = False
    deterministic: Any = False
    benchmark: bool | None = None
    enable_progress_bar: bool = True
    enable_model_summary: bool = False  # the layer table (its FLOPs read 0): verbose=true
    enable_checkpointing: bool = True
    use_distributed_sampler: bool = False  # the DataModule's sampler shards by rank itself
    detect_anomaly: bool = False
    profiler: Any = None
    default_root_dir: str = II("paths.output_dir")


@dataclass
class PathsConfig:
    output_dir: str = II("hydra:runtime.output_dir")  # the run folder: everything lands here


@dataclass
class TrainConfig(ModuleConfig):
    # The data decides the image channels and the classes the networks are built for.
    model: ModelConfig = field(default_factory=lambda: ModelConfig(channels=II("data.channels")))
    condition: ConditionConfig = field(
        default_factory=lambda: ConditionConfig(num_classes=II("data.num_classes"))
    )
    metrics: MetricsConfig = field(default_factory=MetricsConfig)  # on, on the data's split
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    callbacks: dict[str, Any] = field(default_factory=dict)  # name -> {_target_: ..., ...}
    logger: dict[str, Any] = field(default_factory=dict)  # name -> {_target_: ..., ...}
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 42
    ckpt_path: str | None = None  # resume from this checkpoint
    # Build a network outside gan.nets' registry (model.generator._target_=my.Net): imports
    # and runs the code the config names. Never needed for the project's own models.
    trust_code: bool = False
    verbose: bool = False  # Lightning's info lines, third-party warnings, the layer table
    overwrite: bool = False  # true: a run into a folder that holds a run replaces that run
    task_name: str = "train"
    tags: list[str] = field(default_factory=list)
    optimized_metric: str = "val/fid"  # what a sweep's job returns to the sweeper


def register() -> None:
    """Put the schema in Hydra's ConfigStore as `train_schema`."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


def to_dict(node: Any) -> dict[str, Any]:
    """A resolved plain-dict copy of a config node (for checkpoints and loggers)."""
    return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
