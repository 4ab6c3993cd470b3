"""Per-epoch progress bars that a person at the driver's terminal actually sees.

Inside a Ray worker a plain tqdm bar redraws with carriage returns, and Ray forwards worker output
line by line, so the bar would only appear when it closes. `ray.experimental.tqdm_ray` sends the
bar's state to the driver, which draws a real tqdm bar; it has no postfix, so loss, accuracy and
samples/s go into the description. Outside Ray (tests, local debugging) plain tqdm is used.
"""

from __future__ import annotations


class EpochProgress:
    """update(n) per batch, show(**figures) to refresh the figures, close() at the epoch's end."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.desc = desc
        self.bar = None
        if not enabled:
            return
        if _inside_ray_worker():
            from ray.experimental.tqdm_ray import tqdm as ray_tqdm

            self.bar = ray_tqdm(total=total, desc=desc, unit="batch")
            self._ray = True
        else:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="batch", dynamic_ncols=True)
            self._ray = False

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def show(self, **figures: str) -> None:
        if self.bar is None:
            return
        if self._ray:
            self.bar.set_description(self.desc + " " + " ".join(f"{k}={v}" for k, v in figures.items()))
        else:
            self.bar.set_postfix(figures, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _inside_ray_worker() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE
