"""The pipeline from Python: every stage is a function that takes a config object.

    python examples/library.py [OUT_DIR]

Runs teacher -> distill (which converts the teacher) -> eval on the bundled digits data with a short budget
and prints the figures. About a minute on a 2-core CPU.
"""

import sys
from pathlib import Path

from enofctl.stages import DistillConfig, EvalConfig, TeacherConfig, distill, evaluate, train_teacher


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    teacher = train_teacher(TeacherConfig(dataset="digits", epochs=10), out / "teacher.safetensors")
    print("teacher top-1", teacher.manifest.metrics.top1)
    student = distill(DistillConfig(T=4, epochs=10, laf_lambda=0.1, laf_tau=20.0), teacher=teacher.path,
                      out=out / "student.safetensors")
    result = evaluate(student.path, EvalConfig(T=[1, 2, 4]))
    for run in result.runs:
        print(f"T={run.T}: top-1 {run.top1:.3f}, spikes/img {run.spikes_per_sample:,.0f}, "
              f"energy {run.energy_pj / 1e6:.3f} uJ ({run.energy_ratio:.2f}x the ANN)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/example"))
