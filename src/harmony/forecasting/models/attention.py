"""Hierarchical cascading attention over indicator levels (HARMONY stage 1), and its flat ablation.

Indicators carry a level (1 = service demand, 2 = compute/memory, 3 = I/O/network; lower numbers are
higher in the hierarchy). Attention runs level by level, highest first: in the stage of level l, the
tokens of level l attend to each other, to the tokens of higher levels (already updated by their own
stages, so higher levels condition lower ones) and to the calendar tokens. Every other key is excluded
with an additive -inf mask, so it gets exactly zero attention weight (zeroing a token instead would still
leave it a softmax share). Each stage has its own `layers_per_level` pre-norm transformer blocks.

`hierarchy=False` (the `--no-hierarchy` ablation) is plain self-attention over all tokens with the same
total number of blocks (levels x layers_per_level), so the comparison isolates the masking and cascade.
"""

from __future__ import annotations

import torch
from torch import nn


class AttentionBlock(nn.Module):
    """Pre-norm transformer block: x + MHA(LN(x), mask), then x + FFN(LN(x))."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_attention = nn.LayerNorm(d_model)
        self.attention = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(d_model)
        self.feed_forward = nn.Sequential(
            nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * d_model, d_model)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm_attention(x)
        attended, _ = self.attention(h, h, h, attn_mask=mask, need_weights=False)
        x = x + self.dropout(attended)
        return x + self.dropout(self.feed_forward(self.norm_ff(x)))


def level_masks(levels: tuple[int, ...], n_extra: int) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """Per level stage (highest first): the additive attention masks [stages, N, N] and the query rows that
    stage updates [stages, N] (bool), for N = indicators + n_extra (calendar) tokens.

    A query of level l sees keys of levels <= l and the extra tokens (0), everything else -inf. Rows that a
    stage does not update see only themselves, so no row is all -inf (which would give NaN)."""
    stages = sorted(set(levels))
    n = len(levels) + n_extra
    level_of = torch.tensor(list(levels) + [0] * n_extra)  # extra tokens rank above every level
    is_extra = torch.arange(n) >= len(levels)
    masks = torch.full((len(stages), n, n), float("-inf"))
    updates = torch.zeros((len(stages), n), dtype=torch.bool)
    for k, level in enumerate(stages):
        query = (level_of == level) & ~is_extra
        key = (level_of <= level) | is_extra
        allowed = query[:, None] & key[None, :]
        allowed |= torch.eye(n, dtype=torch.bool)
        masks[k] = torch.where(allowed, 0.0, float("-inf"))
        updates[k] = query
    return stages, masks, updates


class HierarchicalEncoder(nn.Module):
    """Tokens [batch, N, d_model] (indicators first, then `n_extra` calendar tokens) -> same shape."""

    def __init__(
        self,
        levels: tuple[int, ...],
        n_extra: int,
        d_model: int,
        n_heads: int,
        layers_per_level: int,
        dropout: float,
        hierarchy: bool = True,
    ) -> None:
        super().__init__()
        self.hierarchy = hierarchy
        stages, masks, updates = level_masks(levels, n_extra)
        self.register_buffer("masks", masks, persistent=False)
        self.register_buffer("updates", updates, persistent=False)
        n_stages = len(stages) if hierarchy else 1
        per_stage = layers_per_level if hierarchy else layers_per_level * len(stages)
        self.stages = nn.ModuleList(
            nn.ModuleList(AttentionBlock(d_model, n_heads, dropout) for _ in range(per_stage))
            for _ in range(n_stages)
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens
        if not self.hierarchy:
            for block in self.stages[0]:
                x = block(x)
            return self.norm(x)
        for k, blocks in enumerate(self.stages):
            update = self.updates[k][None, :, None]
            for block in blocks:
                # only this level's rows change; keys of higher levels stay as their own stage left them
                x = torch.where(update, block(x, self.masks[k]), x)
        return self.norm(x)
