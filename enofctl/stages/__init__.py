"""The pipeline's stages. Each takes a config object and explicit inputs, returns a result, reports progress
through an optional callback, and never prints or exits."""

from enofctl.stages.common import Progress, TrainConfig
from enofctl.stages.convert import (
    ConvertConfig,
    CQConvertConfig,
    SurrogateConvertConfig,
    convert,
    convert_config,
    convert_teacher,
)
from enofctl.stages.distill import DistillConfig, distill
from enofctl.stages.evaluate import EvalConfig, EvalResult, evaluate
from enofctl.stages.teacher import FetchConfig, StageResult, TeacherConfig, fetch_teacher, train_teacher

__all__ = [
    "CQConvertConfig", "ConvertConfig", "DistillConfig", "SurrogateConvertConfig", "convert_config", "EvalConfig", "EvalResult", "FetchConfig", "Progress", "StageResult",
    "TeacherConfig", "TrainConfig", "convert", "convert_teacher", "distill", "evaluate", "fetch_teacher",
    "train_teacher",
]
