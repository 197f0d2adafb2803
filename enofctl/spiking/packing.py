"""Spikes kept as bits while autograd holds them for backward.

A convolution saves its input to compute its weight gradient. In a spiking network that input is a spike
tensor: every element 0 or 1, stored as a 32-bit float. Inside ``SpikePacker`` (entered by ``SpikingNet``
for a training forward), every spiking neuron announces its output, and when autograd saves such a tensor
(or any view of it) the hook stores its storage as 1 bit per element instead; backward unpacks it. Two
layers that save the same spikes (a block's conv and its downsample shortcut) share one packed copy.

The identity test is by storage, under a weak reference: a freed spike tensor whose memory is reused by
another tensor is never mistaken for spikes.
"""

from __future__ import annotations

import weakref
from contextvars import ContextVar

import torch

_ACTIVE: ContextVar[SpikePacker | None] = ContextVar("enofctl_spike_packer", default=None)
_SHIFTS: dict[torch.device, torch.Tensor] = {}


def active_packer() -> SpikePacker | None:
    """The packer of the forward pass in progress, if any."""
    return _ACTIVE.get()


def pack_bits(flat: torch.Tensor) -> torch.Tensor:
    """A 1-D tensor of zeros and ones -> uint8, 8 elements per byte (element i is bit i % 8 of byte i // 8)."""
    b = flat.ne(0).view(torch.uint8)
    pad = (-b.numel()) % 8
    if pad:
        b = torch.nn.functional.pad(b, (0, pad))
    b = b.view(-1, 8)
    out = b[:, 0].clone()
    for i in range(1, 8):
        out.bitwise_or_(b[:, i] << i)
    return out


def unpack_bits(packed: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """Inverse of ``pack_bits``: the first ``n`` elements, as ``dtype`` zeros and ones."""
    shifts = _SHIFTS.get(packed.device)
    if shifts is None:
        shifts = _SHIFTS[packed.device] = torch.arange(8, dtype=torch.uint8, device=packed.device)
    return packed.unsqueeze(1).bitwise_right_shift(shifts).bitwise_and_(1).view(-1)[:n].to(dtype)


class _Packed:
    """One saved view of a packed spike storage: the bits of the whole storage and how to view them."""

    __slots__ = ("bits", "numel", "dtype", "size", "stride", "offset")

    def __init__(self, bits: torch.Tensor, numel: int, t: torch.Tensor):
        self.bits, self.numel, self.dtype = bits, numel, t.dtype
        self.size, self.stride, self.offset = t.size(), t.stride(), t.storage_offset()


class SpikePacker(torch.autograd.graph.saved_tensors_hooks):
    """Context manager: spike tensors saved for backward inside it are kept as bits (see module doc)."""

    def __init__(self) -> None:
        self._spikes: dict[int, weakref.ref] = {}  # storage address -> the spike tensor owning it
        self._bits: dict[int, tuple[torch.Tensor, int]] = {}  # storage address -> (bits, elements)
        self._token = None
        super().__init__(self._pack, self._unpack)

    def mark(self, spk: torch.Tensor) -> None:
        """Announce ``spk`` (a freshly allocated, dense tensor of zeros and ones) as spikes."""
        if spk.layout == torch.strided and spk.storage_offset() == 0:
            key = spk.untyped_storage().data_ptr()
            self._spikes[key] = weakref.ref(spk)
            self._bits.pop(key, None)  # bits of an earlier, freed spike tensor at the same address

    def _pack(self, t: torch.Tensor):
        if t.layout != torch.strided or not self._spikes:
            return t
        key = t.untyped_storage().data_ptr()
        ref = self._spikes.get(key)
        spk = ref() if ref is not None else None
        if spk is None or t.dtype != spk.dtype:
            return t
        if key not in self._bits:
            flat = spk.as_strided((spk.numel(),), (1,), 0)  # the storage in memory order
            self._bits[key] = (pack_bits(flat), spk.numel())
        bits, numel = self._bits[key]
        return _Packed(bits, numel, t)

    @staticmethod
    def _unpack(obj):
        if not isinstance(obj, _Packed):
            return obj
        flat = unpack_bits(obj.bits, obj.numel, obj.dtype)
        return flat.as_strided(obj.size, obj.stride, obj.offset)

    def __enter__(self) -> SpikePacker:
        super().__enter__()
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.reset(self._token)
        self._spikes.clear()
        self._bits.clear()  # the graph holds the packed copies it needs
        super().__exit__(*exc)
