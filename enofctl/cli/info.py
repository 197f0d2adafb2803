"""`enofctl inspect` and `enofctl datasets`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from enofctl.cli import options as o
from enofctl.cli.display import print_table


def _row(t: Table, name: str, value: str) -> None:
    t.add_row(name, escape(value))  # paths and configs are text, never rich markup ("[events]")


def inspect(
    artifact: Annotated[Path, typer.Argument(help="Artifact to describe.")],
    deep: Annotated[bool, typer.Option("--deep", help="Also load the tensors into the model the manifest "
                                       "describes and run it on its input size, as every stage that loads the "
                                       "artifact does (loads torch).")] = False,
    json_: o.Json = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only validate: print nothing, exit 0 if the "
                                        "artifact is sound.")] = False,
) -> None:
    """Print an artifact's manifest after validating the file: header, manifest and the tensors' bytes against
    its sha256 (no torch); --deep: the model they build too."""
    if deep:
        from enofctl import artifacts

        art = artifacts.verify(artifact)
        m, sha256 = art.manifest, art.sha256
    else:
        from enofctl.artifact_file import check_stored, file_sha256, read_manifest

        m = read_manifest(artifact)
        check_stored(artifact, m)
        sha256 = file_sha256(artifact)
    if quiet:
        return
    data = {"path": str(artifact), "sha256": sha256, "manifest": m.model_dump(mode="json")}
    if json_:
        print(json.dumps(data))
        return
    t = Table(title=escape(f"{artifact} ({m.kind}, schema {m.schema_version})"), show_header=False,
              title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    _row(t, "sha256", sha256)
    _row(t, "stage", f"{m.stage}  ({m.created})")
    _row(t, "model", f"{m.model.name} {json.dumps(m.model.kwargs)}  input {list(m.model.input_size)}, "
                       f"{m.model.num_classes} classes")
    _row(t, "data", m.data.dataset)
    if m.spiking:
        n = m.spiking.neuron
        _row(t, "spiking", f"T={m.spiking.T}  repact={m.spiking.repact}  {n.kind} decay={n.decay} "
                             f"v_th={n.v_th} reset={n.reset} surrogate={n.surrogate}")
    _row(t, "metrics", json.dumps(m.metrics.model_dump()))
    for p in m.parents:
        _row(t, "parent", f"{p.kind} {p.sha256[:16]}… {p.path}")
    _row(t, "versions", f"enofctl {m.versions.enofctl}, torch {m.versions.torch}, timm {m.versions.timm}")
    _row(t, "config", json.dumps(m.config))
    print_table(t)


def datasets(
    json_: o.Json = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the names of the datasets available "
                                        "here, one per line.")] = False,
) -> None:
    """List the datasets and whether each is available here without a download."""
    from enofctl.data import availability

    rows = availability()
    if quiet and not json_:
        print("\n".join(n for n, ok, _ in rows if ok))
        return
    if json_:
        print(json.dumps([{"name": n, "available": a, "description": d} for n, a, d in rows]))
        return
    t = Table(title="Datasets")
    for col in ("name", "here", "description"):
        t.add_column(col)
    for n, a, d in rows:
        t.add_row(escape(n), "yes" if a else "no", escape(d))  # "enofctl[events]" is not markup
    print_table(t)


def register(app: typer.Typer) -> None:
    app.command("inspect", cls=o.Command)(inspect)
    app.command("datasets", cls=o.Command)(datasets)
