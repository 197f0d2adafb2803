"""Models: the paper architectures registered in timm, and building a model from a manifest's spec."""

from enofctl.models import enof_resnet, vgg_plain  # noqa: F401  (registers resnet20, resnet19, vgg7 in timm)
from enofctl.models.build import build_model, feature_dim, forward_problem

__all__ = ["build_model", "feature_dim", "forward_problem"]
