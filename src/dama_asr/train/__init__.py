"""Training on accelerate: config and recipes, data, encoder-output cache, the loop, checkpoints.

    from dama_asr.train import load_recipe, train
    summary = train(load_recipe("recipes/dama-whisper-base.yaml", {"train": "train.jsonl", "dev": "dev.jsonl"}))

config.py: TrainConfig (+ OptimConfig, EvalConfig) and YAML recipes.  data.py: labels, batches.
encoder_cache.py: float16 encoder outputs on disk.  setup.py: model, optimizer, schedule, cache.
loop.py: the Trainer.  checkpoint.py: atomic, verified checkpoints.  metrics_log.py: jsonl/TensorBoard.
"""

from dama_asr.train.checkpoint import CheckpointError
from dama_asr.train.config import EvalConfig, OptimConfig, TrainConfig, TrainConfigError, load_recipe
from dama_asr.train.data import TrainDataError
from dama_asr.train.loop import Trainer, TrainingDiverged, train

__all__ = [
    "CheckpointError",
    "EvalConfig",
    "OptimConfig",
    "TrainConfig",
    "TrainConfigError",
    "TrainDataError",
    "Trainer",
    "TrainingDiverged",
    "train",
    "load_recipe",
]
