"""Datasets: the registry of what enofctl can train and evaluate on (`registry`, no torch), the splits held in
memory and the data a run is fed (`tensors`), image folders streamed through torchvision (`folder`), the image
loaders (`images`) and loading by name (`load`). Event datasets are read by `enofctl.events`.

This package's ``__init__`` imports nothing, so ``enofctl.datasets.registry`` stays free of torch.
"""
