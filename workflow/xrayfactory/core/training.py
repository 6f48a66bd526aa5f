"""The training engine every trainer uses (detector, synth2d, synth3d's two models).

A run is a number of optimisation steps. Its resumable state (the `states` it is given:
network, optimiser, schedulers, EMA) is saved to `<out>.last.pt` every `checkpoint_every`
steps, at the end, and when SIGTERM arrives (pre-emption, `scancel`, a time limit), after which
the job exits with PREEMPTED_EXIT. A rerun resumes from that state when its key (a digest of the
settings and the data's identity) matches, so that an interrupted and resumed run ends with the
same weights as an uninterrupted one: each step draws its randomness from its own step index.
Progress is logged with rate and ETA.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch

from xrayfactory.core.checkpoints import (
    PREEMPTED_EXIT,
    SigtermFlag,
    load_checkpoint,
    save_checkpoint,
)
from xrayfactory.core.progress import Progress

log = logging.getLogger("xrayfactory")


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> object: ...


class TrainingRun:
    """`total` steps towards the final checkpoint `out`, resumable from `out`.last.pt."""

    def __init__(
        self,
        out: Path,
        key: dict,
        what: str,
        total: int,
        checkpoint_every: int,
        states: dict[str, Stateful],
    ):
        self.out, self.key, self.what, self.total = out, key, what, total
        self.every = max(1, checkpoint_every)
        self.states = states
        self.last = out.with_name(out.name + ".last.pt")
        self.step = 0
        if self.last.exists():
            saved = load_checkpoint(self.last, "resumable")
            if saved.get("key") == key:
                for name, obj in states.items():
                    obj.load_state_dict(saved["states"][name])
                self.step = int(saved["step"])
                log.info("resuming %s from %s at step %d", what, self.last, self.step)
            else:
                log.info("ignoring %s: it was made with other settings or data", self.last)

    def _save(self) -> None:
        states = {name: obj.state_dict() for name, obj in self.states.items()}
        save_checkpoint(self.last, {"states": states, "step": self.step, "key": self.key})

    def fit(self, net: torch.nn.Module, step_fn: Callable[[int], torch.Tensor]) -> None:
        """Run `step_fn(step)` (one optimisation step; it returns the loss) up to `total`."""
        stop = SigtermFlag()
        progress = Progress(self.total, self.what, unit="steps")
        progress.done = self.step
        net.train()
        try:
            while self.step < self.total:
                loss = step_fn(self.step)
                self.step += 1
                progress.update()
                if stop.requested:
                    self._save()
                    raise SystemExit(PREEMPTED_EXIT)
                if self.step % self.every == 0 or self.step == self.total:
                    self._save()
                    log.info(
                        "%s step %d/%d loss %.4f", self.what, self.step, self.total, float(loss)
                    )
        finally:
            stop.restore()
        net.eval()

    def finish(self, final: dict) -> None:
        """Write the final checkpoint and drop the resumable state."""
        save_checkpoint(self.out, final)
        self.last.unlink(missing_ok=True)


def optimiser_step(
    opt: torch.optim.Optimizer, loss: torch.Tensor, *schedules: object
) -> torch.Tensor:
    """Backpropagate `loss`, step the optimiser and the learning-rate schedules; the loss,
    detached (read only when it is logged, so that a GPU step does not wait for it)."""
    opt.zero_grad()
    loss.backward()
    opt.step()
    for schedule in schedules:
        schedule.step()  # type: ignore[attr-defined]
    return loss.detach()
