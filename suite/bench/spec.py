"""What one benchmark worker measures; serialised to JSON to cross the process boundary."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

IMPLEMENTATIONS = ("suite", "spikingjelly")
MODES = ("train", "infer")
AMP_MODES = ("off", "bf16")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class BenchSpec:
    impl: str  # "suite" (this package's fast paths) or "spikingjelly" (its own spikformer)
    model: str
    task: str
    mode: str  # "train": forward + backward + AdamW step; "infer": forward under inference_mode
    batch_size: int
    amp: str = "off"  # "bf16": autocast on the device for both implementations alike
    time_steps: int | None = None  # None: the task recipe's T
    steps: int = 5  # timed steps; the median is reported
    warmup: int = 2  # untimed steps first (allocator, oneDNN primitive cache, torch.compile)
    threads: int = 0  # torch intra-op threads; 0: torch's default for this machine
    fold_bn: bool = True  # suite inference: fold BatchNorm into the preceding conv/linear
    channels_last: bool = True  # suite: channels-last convolution weights and activations
    device: str = "cpu"  # "cuda": model and batch on the GPU, steps timed with CUDA events

    def __post_init__(self) -> None:
        checks = [
            (self.impl in IMPLEMENTATIONS, f"impl {self.impl!r} not in {IMPLEMENTATIONS}"),
            (self.mode in MODES, f"mode {self.mode!r} not in {MODES}"),
            (self.amp in AMP_MODES, f"amp {self.amp!r} not in {AMP_MODES}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.warmup >= 0, f"warmup must be >= 0, got {self.warmup}"),
            (self.threads >= 0, f"threads must be >= 0, got {self.threads}"),
            (self.device in DEVICES, f"device {self.device!r} not in {DEVICES}"),
        ]
        problems = [msg for ok, msg in checks if not ok]
        if problems:
            raise ValueError("; ".join(problems))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "BenchSpec":
        return cls(**json.loads(text))
