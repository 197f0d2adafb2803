"""The pipeline's stages. Each takes a config object and explicit inputs, returns a result, reports progress
through an optional callback, and never prints or exits.

Each training stage has a core that takes loaded artifacts and data and returns a `Trained` (model and
manifest, nothing written: `teach`, `distill_student`; `measure_artifact` for `eval`), and a file-level
function that reads its inputs, calls the core and writes the artifact (`train_teacher`, `distill`,
`evaluate`). A training run's set-up (device, ranks, the checked recipe, the placed data) is one
`RunContext`, built at the edge and passed to the core and the epoch loop."""

from enofctl.stages.common import TrainConfig
from enofctl.stages.context import RunContext
from enofctl.stages.convert import (
    ConvertConfig,
    CQConvertConfig,
    SurrogateConvertConfig,
    convert,
    convert_config,
    convert_teacher,
)
from enofctl.stages.distill import DistillConfig, distill, distill_student
from enofctl.stages.evaluate import EvalConfig, EvalResult, evaluate, measure_artifact
from enofctl.stages.inputs import DistillInputs, FrozenTeacher
from enofctl.stages.progress import ProgressEvent, ProgressFn, StageWarning, log_progress
from enofctl.stages.results import StageResult, Trained
from enofctl.stages.teacher import FetchConfig, TeacherConfig, fetch_teacher, teach, train_teacher

__all__ = [
    "CQConvertConfig", "ConvertConfig", "DistillConfig", "DistillInputs", "EvalConfig", "EvalResult", "FetchConfig",
    "FrozenTeacher", "ProgressEvent", "ProgressFn", "RunContext", "StageResult", "StageWarning",
    "SurrogateConvertConfig", "TeacherConfig", "TrainConfig", "Trained", "convert", "convert_config",
    "convert_teacher", "distill", "distill_student", "evaluate", "fetch_teacher", "log_progress", "measure_artifact",
    "teach", "train_teacher",
]
