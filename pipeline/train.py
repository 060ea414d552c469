"""Training of a population of masked MLPs: a re-export of the `pipeline.engine` package, kept so
that `from pipeline.train import …` (benchmarks, users' scripts) goes on working. The names are
engine's own list (`pipeline.engine.__all__`), so the two cannot drift apart."""
from pipeline import engine
from pipeline.engine import *  # noqa: F403 (the re-export is the point of this module)

__all__ = engine.__all__
