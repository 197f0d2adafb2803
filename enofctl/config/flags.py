"""The command-line option behind a config field: the one map from field names to flags, read by the CLI
(a validation error's location) and by the stages (a resumed run's changed settings). No torch."""

from __future__ import annotations

# fields whose option is not simply --field-name, by their dotted path inside the config
_FLAG_OF = {"alpha": "--surrogate-alpha", "neuron.alpha": "--surrogate-alpha",
            "act_reg_weights": "--act-reg-weight", "act.kind": "--act", "act.levels": "--levels",
            "model_kwargs.width": "--width", "model_kwargs": "--model-arg",
            "frames.T": "--frames", "frames.bins": "--bins", "frames.size": "--event-size"}
# nested configs whose fields are options themselves, and the tags of a union (convert's --method)
_NESTED = ("train", "surrogate", "cq", "neuron")


def flag_of(field: str | tuple) -> str:
    """The option of a config field, given as a dotted path (``"neuron.v_th"``) or a pydantic error location
    (``("train", "neuron", "v_th")``): ``--v-th``. ``input:NAME`` (an input file's field) is ``--NAME
    (another file)``; ``model_kwargs.KEY`` is ``--model-arg KEY``."""
    if isinstance(field, str) and field.startswith("input:"):
        return f"--{field.split(':', 1)[1]} (another file)"
    names = field.split(".") if isinstance(field, str) else [str(x) for x in field if isinstance(x, str)]
    while len(names) > 1 and names[0] in _NESTED and ".".join(names[:2]) not in _FLAG_OF:
        names = names[1:]
    if not names:
        return "?"
    if (key := ".".join(names)) in _FLAG_OF:
        return _FLAG_OF[key]
    if names[0] == "model_kwargs" and len(names) > 1:
        return f"--model-arg {names[1]}"
    for i in range(len(names) - 1, 0, -1):  # e.g. act_reg_weights.<layer>
        if (key := ".".join(names[:i])) in _FLAG_OF:
            return _FLAG_OF[key]
    return "--" + names[-1].replace("_", "-")
