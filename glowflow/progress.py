"""The training progress bar: against the step budget, or against the time budget."""

from __future__ import annotations

from typing import Any, Callable, Iterable

from tqdm.auto import tqdm


def progress_bar(desc: str) -> Callable[[Iterable, int], Iterable]:
    """A function that wraps an iterable of ``n`` items in a progress bar named ``desc``."""

    def bar(it: Iterable, n: int) -> Iterable:
        return tqdm(it, total=n, desc=desc, leave=False)

    return bar


class TrainingProgress:
    """A tqdm bar for the training loop (nothing at all when ``enabled`` is False).

    With a step budget the bar counts steps. With only a time budget (``--max-time``) it counts
    the seconds of the budget, so it fills as the time goes and shows the time left; the step
    count then sits beside the loss and bits/dim.
    """

    def __init__(
        self,
        enabled: bool,
        total_steps: int | None,
        budget_s: float | None,
        step: int = 0,
        elapsed: float = 0.0,
    ) -> None:
        self.bar: Any = None
        self.by_time = total_steps is None and budget_s is not None
        self.postfix: dict[str, str] = {}
        if not enabled:
            return
        if self.by_time:
            self.bar = tqdm(
                total=round(budget_s),
                initial=min(round(elapsed), round(budget_s)),
                desc="train",
                unit="s",
                dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n}/{total} s of the budget [{remaining} left{postfix}]",
            )
        else:
            self.bar = tqdm(
                total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True
            )

    def update(self, step: int, elapsed: float) -> None:
        if self.bar is None:
            return
        if self.by_time:
            now = min(round(elapsed), self.bar.total)
            if now > self.bar.n:
                self.bar.update(now - self.bar.n)
            self.postfix["step"] = str(step)
            self.bar.set_postfix(self.postfix, refresh=False)
        else:
            self.bar.update(step - self.bar.n)

    def show(self, loss: float, bpd: float) -> None:
        if self.bar is None:
            return
        self.postfix.update(loss=f"{loss:.3f}", bpd=f"{bpd:.3f}")
        self.bar.set_postfix(self.postfix)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
