"""Model profiles: the small, fast ``demo`` setup and the report's ``yfcc`` setup."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Profile:
    name: str
    backbone: str          # "small_cnn" or a keras.applications name, e.g. "ResNet101V2"
    input_size: int        # square side fed to the network
    batch_size: int
    epochs: int
    learning_rate: float   # the peak, after the warm-up
    schedule: str          # "cosine" (warm-up, then cosine decay) or "constant"
    warmup_epochs: float
    partitionings: str     # Spec.parse format, coarse to fine
    weights: str | None    # "imagenet" (needs a download), a local weights file, or None

    def with_overrides(self, **kw) -> "Profile":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})

    def as_dict(self) -> dict:
        return asdict(self)


PROFILES = {
    "demo": Profile("demo", "small_cnn", 64, 32, 14, 2e-3, "cosine", 1.0, "coarse:5:200,medium:5:80,fine:5:30", None),
    # The report: ResNet101V2, 224x224, ImageNet weights, tau_min 5 and tau_max 500/200/100; fine-tuning a
    # pretrained network with Adam wants a smaller peak than training from scratch.
    "yfcc": Profile("yfcc", "ResNet101V2", 224, 64, 15, 3e-4, "cosine", 1.0, "coarse:5:500,medium:5:200,fine:5:100",
                    "imagenet"),
}


def get(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose from {sorted(PROFILES)}")
    return PROFILES[name]
