"""Where the image datasets' files are looked for (no torch: `enofctl datasets` checks them)."""

from __future__ import annotations

import os
from pathlib import Path

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

IDX_STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def default_data_dir() -> Path:
    return Path(os.environ.get("ENOFCTL_DATA", Path.home() / ".cache" / "enofctl" / "data"))


def find_idx(folder: Path) -> dict[str, Path] | None:
    """The four IDX files of an MNIST-like dataset in ``folder`` (gzipped or not), keyed ``train0`` (images),
    ``train1`` (labels), ``test0``, ``test1``; None when one is missing."""
    found = {}
    for split, stems in IDX_STEMS.items():
        for i, stem in enumerate(stems):
            hits = [folder / (stem + ext) for ext in ("", ".gz") if (folder / (stem + ext)).is_file()]
            if not hits:
                return None
            found[f"{split}{i}"] = hits[0]
    return found


def mnist_candidates(name: str, root: Path | None) -> list[Path]:
    """The folders an MNIST-like dataset ``name`` is looked for in, in order."""
    tv_name = "FashionMNIST" if name == "fashion-mnist" else "MNIST"
    bases = [root] if root else [default_data_dir()]
    out = []
    for b in bases:
        out += [b, b / name, b / tv_name / "raw"]
    if name == "fashion-mnist" and root is None:  # a --data-dir is the only place looked in
        out.append(DEBIAN_FASHION_MNIST)
    return out
