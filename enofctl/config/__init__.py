"""The stages' configs, without torch: what the CLI reads its options' defaults and choices from (so that
``--help``, ``--version`` and a usage error never load torch). Each stage module re-exports its config, so
``enofctl.stages.DistillConfig`` is this ``DistillConfig``.

Only pydantic, the standard library, `enofctl.schema` and `enofctl.errors` are imported here; a check that
needs torch (a teacher's model kwargs) imports it inside the validator."""

from enofctl.config.ablate import AblateConfig
from enofctl.config.convert import CQ_NEURON, ConvertConfig, CQConvertConfig, SurrogateConvertConfig, convert_config
from enofctl.config.distill import RECIPES, DistillConfig, with_recipe
from enofctl.config.evaluate import EvalConfig
from enofctl.config.export import ExportConfig
from enofctl.config.teacher import DEFAULT_MODELS, MAX_WIDTH, FetchConfig, TeacherConfig
from enofctl.config.train import TrainConfig, default_workers

__all__ = [
    "CQ_NEURON", "DEFAULT_MODELS", "MAX_WIDTH", "RECIPES", "AblateConfig", "CQConvertConfig", "ConvertConfig",
    "DistillConfig", "EvalConfig", "ExportConfig", "FetchConfig", "SurrogateConvertConfig", "TeacherConfig",
    "TrainConfig", "convert_config", "default_workers", "with_recipe",
]
