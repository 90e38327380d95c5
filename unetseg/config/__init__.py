"""Run configs: pydantic models of the YAML files in ``configs/``, ``--set`` overrides, one-line errors."""
from .base import apply_overrides
from .data import AugmentConfig, ClassSpec, DataConfig, WeightMapConfig, parse_data_config
from .run import LossConfig, ModelConfig, RunConfig, TrainConfig, config_to_yaml, load_config, validate_config

__all__ = [
    "AugmentConfig", "ClassSpec", "DataConfig", "LossConfig", "ModelConfig", "RunConfig", "TrainConfig",
    "WeightMapConfig", "apply_overrides", "config_to_yaml", "load_config", "parse_data_config", "validate_config",
]
