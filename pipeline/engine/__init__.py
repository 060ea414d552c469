"""The training engine (docs/science.md §4), one short module per part:

- loss.py     the task losses and their analytic gradient wrt the logits (TaskLoss);
- kernels.py  dense batched forward / hand-written backward of K MLPs of one layout;
- live.py     kernels that follow the live weights: dead inputs dropped, per-layer dense or
    sparse (CSR) products, parameters packed per network;
- dense.py    the batched dense population (canonical compact layouts);
- optim.py    Adam/SGD on flat parameters, the per-network early stopper, the curve log;
- loop.py     train_population and the epoch loop shared by both paths;
- device.py   train.device → torch device (imported by loop and live, so neither imports the other).
"""
from pipeline.engine.kernels import backward, forward_acts, loss_and_grad, step_views
from pipeline.engine.loop import (
    Evaluation,
    Split,
    TrainResult,
    evaluate,
    load_splits,
    resolve_device,
    train_population,
)
from pipeline.engine.loss import Labels, TaskLoss, per_network_rows
from pipeline.engine.optim import ADAM_BETAS, ADAM_EPS, STOP_REASONS, CurveLog, Optimizer, Stopper

__all__ = ["ADAM_BETAS", "ADAM_EPS", "STOP_REASONS", "CurveLog", "Evaluation", "Labels",
           "Optimizer", "Split", "Stopper", "TaskLoss", "TrainResult", "backward", "evaluate",
           "forward_acts", "load_splits", "loss_and_grad", "per_network_rows", "resolve_device",
           "step_views", "train_population"]
