"""A check both network families' training tests share: the loss on one fixed batch falls."""

from __future__ import annotations

import torch


def fixed_batch_loss(trainer, steps: int) -> tuple[float, float]:
    """The loss on step 0's samples and click plan, before and after ``steps`` training steps.

    The trainer is closed afterwards.
    """
    samples, _ = trainer.step_plan(0)

    def loss_now() -> float:
        _, plan = trainer.step_plan(0)
        with torch.no_grad():
            loss, _ = trainer.model(*trainer._tensors(samples), plan)
        return float(loss)

    before = loss_now()
    for _ in range(steps):
        trainer.train_step()
    after = loss_now()
    trainer.close()
    return before, after
