"""Paged KV storage: one K and one V tensor per layer, indexed by RadixCache page ids."""

from __future__ import annotations

import torch

__all__ = ["KVPool"]


class KVPool:
    """Per-layer K/V tensors ``[num_pages, page_size, kv_heads, head_dim]``.

    The pool owns only storage; which page belongs to which sequence is decided by the
    :class:`o1search.RadixCache` that hands out the page ids (``0 .. num_pages - 1``).

    Parameters
    ----------
    num_layers, num_pages, page_size, kv_heads, head_dim : int
        Geometry; all must be >= 1.
    dtype : torch.dtype
        Storage dtype (usually the model's).
    device : torch.device or str
        Where the tensors live.

    Raises
    ------
    ValueError
        A non-positive size.
    """

    def __init__(self, num_layers: int, num_pages: int, page_size: int, kv_heads: int,
                 head_dim: int, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> None:
        for what, value in (("num_layers", num_layers), ("num_pages", num_pages),
                            ("page_size", page_size), ("kv_heads", kv_heads),
                            ("head_dim", head_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"KVPool: {what} must be a positive int, got {value!r}")
        self.num_layers = num_layers
        self.num_pages = num_pages
        self.page_size = page_size
        self.kv_heads = kv_heads
        self.head_dim = head_dim
        self.dtype = dtype
        self.device = torch.device(device)
        shape = (num_pages, page_size, kv_heads, head_dim)
        # zeros, not empty: a page read before it is written (a bug) then gives finite values
        # instead of NaNs that would spread through masked-out softmax lanes.
        self.k = [torch.zeros(shape, dtype=dtype, device=self.device) for _ in range(num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=self.device) for _ in range(num_layers)]

    @property
    def bytes(self) -> int:
        """Total storage in bytes."""
        return 2 * sum(t.numel() * t.element_size() for t in self.k)

    def slot_mapping(self, pages: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Flat slots ``page * page_size + offset`` of tokens.

        Parameters
        ----------
        pages : torch.Tensor
            ``[T]`` page id of each token.
        positions : torch.Tensor
            ``[T]`` token position in its sequence.

        Returns
        -------
        torch.Tensor
            ``[T]`` int64.
        """
        return pages.long() * self.page_size + positions.long() % self.page_size

    def __repr__(self) -> str:
        return (f"KVPool(layers={self.num_layers}, pages={self.num_pages}, "
                f"page_size={self.page_size}, kv_heads={self.kv_heads}, "
                f"head_dim={self.head_dim}, dtype={self.dtype}, device={self.device})")
