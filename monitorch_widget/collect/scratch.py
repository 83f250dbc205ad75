"""A mask buffer shared by the hooks of one lens (no allocation per hook call)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .modes import monitor_mode

if TYPE_CHECKING:
    from .hooks import Site

class ScratchPool:
    """One flat mask buffer per (device, dtype), shared by a lens' sites, handed out as views.

    Sites write a 0/1 mask into their view and reduce it right away; hooks run one after another and
    kernels on one stream run in order, so one buffer serves every site. It saves an allocation (page
    faults on CPU) per hook call for the cost of one buffer as large as the largest hooked tensor, up to
    ``cap`` elements (bigger tensors use temporaries).
    """

    def __init__(self, cap: int = 1 << 22) -> None:
        self.cap = cap
        self.buffers: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self.users: list[Site] = []

    @monitor_mode
    def view(self, site: Site, like: torch.Tensor) -> torch.Tensor | None:
        numel = like.numel()
        if numel > self.cap:
            return None
        key = (like.device, like.dtype)
        buf = self.buffers.get(key)
        if buf is None or buf.numel() < numel:
            self.buffers[key] = buf = torch.empty(max(numel, 1024), dtype=like.dtype, device=like.device)
            for user in self.users:  # views of the old buffer would keep it alive
                user.scratch = None
            self.users = []
        self.users.append(site)
        return buf[:numel].view(like.shape)

    def clear(self) -> None:
        self.buffers = {}
        self.users = []

