"""One map from config fields to command-line options (`enofctl.config.flags`), shared by the CLI's
validation errors and a resumed run's changed-settings message."""

from __future__ import annotations

import pytest

from enofctl.config.flags import flag_of


@pytest.mark.parametrize("field, flag", [
    ("lr", "--lr"), ("T", "--T"), ("limit_train", "--limit-train"),
    ("neuron.v_th", "--v-th"), ("neuron.alpha", "--surrogate-alpha"), (("neuron", "alpha"), "--surrogate-alpha"),
    (("train", "neuron", "v_th"), "--v-th"), (("surrogate", "percentile"), "--percentile"),
    ("act.kind", "--act"), ("act.levels", "--levels"), ("model_kwargs.width", "--width"),
    ("model_kwargs.depth", "--model-arg depth"), (("model_kwargs",), "--model-arg"),
    ("act_reg_weights", "--act-reg-weight"), (("act_reg_weights", "layer1.0"), "--act-reg-weight"),
    (("seeds", 2), "--seeds"), ("frames.T", "--frames"), ("input:student", "--student (another file)"),
    ((), "?"),
])
def test_flag_of(field, flag: str) -> None:
    assert flag_of(field) == flag
