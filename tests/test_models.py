"""The registered paper models: timm's head contract, and the options they refuse instead of ignoring."""

from __future__ import annotations

import pytest
import torch
from clihelp import assert_one_error_line, run

from enofctl.errors import UsageError
from enofctl.models import build_model


@pytest.mark.parametrize("name", ["resnet20", "vgg7"])
def test_global_pool_avg_is_the_head(name: str) -> None:
    model = build_model(name, 3, 3, {"width": 0.0625, "global_pool": "avg"}).eval()
    x = torch.randn(2, 3, 16, 16)
    assert model(x).shape == (2, 3)
    feat = model.forward_head(model.forward_features(x), pre_logits=True)
    assert torch.equal(feat, model.forward_features(x).mean((2, 3)))
    model.reset_classifier(5, "avg")
    assert model(x).shape == (2, 5)


@pytest.mark.parametrize("name", ["resnet20", "vgg7"])
@pytest.mark.parametrize("pool", ["max", "avgmax", ""])
def test_other_global_pools_are_refused(name: str, pool: str) -> None:
    with pytest.raises(UsageError, match="global_pool"):
        build_model(name, 3, 3, {"width": 0.0625, "global_pool": pool})
    model = build_model(name, 3, 3, {"width": 0.0625})
    with pytest.raises(UsageError, match="global_pool"):
        model.reset_classifier(5, pool)


def test_cli_refuses_a_global_pool_it_would_ignore(tmp_path) -> None:
    out = tmp_path / "t.safetensors"
    assert_one_error_line(*run("teacher", "train", "--dataset", "synthetic", "--width", "0.125", "--epochs", "1",
                               "--model-arg", "global_pool=max", "--out", out), 2, "global_pool")
    assert not out.exists()
