"""`export --verify`'s failure line: a reader that could not read the file says so and why; only readers that
ran are said to differ."""

from __future__ import annotations

from pathlib import Path

from enofctl.cli.export import verify_failure
from enofctl.stages.export import ReaderCheck, VerifyResult


def _result(*readers: ReaderCheck) -> VerifyResult:
    return VerifyResult(graph="s.nir", student="s.safetensors", samples=4, T=2, dt=1e-4, top1=0.5, spikes=10,
                        readers=list(readers))


def test_a_reader_that_could_not_read_the_file_is_not_said_to_differ() -> None:
    unread = ReaderCheck(reader="snntorch", error="KeyError: 'tau_mem'")
    line = verify_failure(Path("s.nir"), _result(unread))
    assert line == "s.nir: snntorch could not read it (KeyError: 'tau_mem')" and "differ" not in line
    ran = ReaderCheck(reader="norse", agreement=0.75, spikes_equal=False)
    both = verify_failure(Path("s.nir"), _result(unread, ran))
    assert both.startswith("s.nir: snntorch could not read it") and both.endswith("read back by norse, the "
                                                                                 "predictions or spike counts "
                                                                                 "differ from enofctl's")
    assert "\n" not in both
