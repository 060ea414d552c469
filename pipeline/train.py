"""Training of a population of masked MLPs: a re-export of the `pipeline.engine` package, kept so
that `from pipeline.train import …` (stages, benchmarks, users' scripts) goes on working."""
from pipeline.engine import (
    ADAM_BETAS,
    ADAM_EPS,
    STOP_REASONS,
    CurveLog,
    Evaluation,
    Labels,
    Optimizer,
    Split,
    Stopper,
    TaskLoss,
    TrainResult,
    backward,
    evaluate,
    forward_acts,
    load_splits,
    loss_and_grad,
    per_network_rows,
    resolve_device,
    step_views,
    train_population,
)

__all__ = ["ADAM_BETAS", "ADAM_EPS", "STOP_REASONS", "CurveLog", "Evaluation", "Labels",
           "Optimizer", "Split", "Stopper", "TaskLoss", "TrainResult", "backward", "evaluate",
           "forward_acts", "load_splits", "loss_and_grad", "per_network_rows", "resolve_device",
           "step_views", "train_population"]
