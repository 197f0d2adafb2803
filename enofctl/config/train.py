"""The training recipe shared by `teacher train` and `distill` (`TrainConfig`), without torch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from enofctl.datasets.workers import default_workers


class TrainConfig(BaseModel):
    """The training recipe shared by `teacher train` and `distill`. Every number must be finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = Field(True, description="SGD with Nesterov momentum (False: plain momentum, as the EnOF "
                           "authors' code)")
    weight_decay: float = Field(5e-4, ge=0, description="not applied to norm weights and biases")
    warmup_epochs: int = Field(0, ge=0)
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up over this many steps, added to "
                              "warmup_epochs' (a fine-tune from a good start: a fraction of an epoch)")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0)
    augment: bool = Field(True, description="random crop and horizontal flip (as the dataset allows)")
    autoaugment: bool = Field(False, description="torchvision's CIFAR-10 AutoAugment policy, per image (RGB data)")
    cutout: int = Field(0, ge=0, description="Cutout square side in pixels, filled with the mean (0 = off)")
    val_fraction: float = Field(0.0, ge=0, lt=1, description="hold out this fraction of the training set "
                                "(stratified, fixed by the seed); keep the best validation epoch's weights")
    amp: bool = Field(False, description="bfloat16 autocast for the training forward pass (CUDA only)")
    seed: int = Field(0, ge=0, lt=2**32, description="seeds Python, NumPy and torch (NumPy takes 32 bits)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    limit_train: int | None = Field(None, ge=1, description="train on one fixed, stratified subset of this many "
                                    "training samples, drawn once with the seed and the same every epoch (smoke "
                                    "runs; the manifest's data.train_subset records it)")
    limit_test: int | None = Field(None, ge=1, description="test on the first N test samples only (CPU-budget "
                                   "runs; the recorded accuracy then covers only those)")
    sync_bn: bool = Field(False, description="SyncBatchNorm across ranks under torchrun (CUDA)")
    eval_before: bool = Field(True, description="evaluate the untrained model before the first step: history "
                              "row 0 (a start for time-to-accuracy curves)")
    workers: int = Field(default_factory=default_workers, ge=0, description="processes that decode image "
                         "folders (0: the training process; in-memory datasets need none); default: the cores this "
                         "process may use but one, at most 8")
    bn_recompute: int = Field(32, ge=0, description="after each epoch, recompute BatchNorm's running statistics "
                              "as the exact average over this many batches of training samples, augmented as "
                              "in training ('precise BN'), so the network evaluated and saved is the one "
                              "trained; 0 = keep the moving averages (which still hold 0.9^steps of their "
                              "start after few steps)")
    log_every: int = Field(50, ge=1, description="read the summed loss back from the device (a synchronization) "
                           "every N steps and at the end of each epoch; a non-finite loss stops the run at the "
                           "next read, at most N - 1 steps late")
