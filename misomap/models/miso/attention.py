"""Swin-V2 window attention through `torch.nn.functional.scaled_dot_product_attention`.

torchvision's `shifted_window_attention` (0.29) forms the attention matrix with explicit matmuls and
a softmax. The same cosine attention is an SDPA call: the queries and keys L2-normalised, the
per-head logit scale folded into the queries (scale 1), and the continuous relative position bias
plus the shifted windows' mask as an additive float mask. Windows are folded into the head
dimension, so the mask (windows × heads, L, L) broadcasts over the batch without being copied, and
on a GPU the fused (memory-efficient) kernel runs. Same parameters, same state dict; equal to
torchvision's result to float rounding (tested).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.swin_transformer import ShiftedWindowAttentionV2


def _shift_mask(pad_h: int, pad_w: int, window: list[int], shift: list[int], device: torch.device) -> Tensor:
    """torchvision's shifted-window mask, (windows, L, L): 0 within a region, -100 across regions."""
    mask = torch.zeros((pad_h, pad_w), device=device)
    h_slices = ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None))
    w_slices = ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None))
    count = 0
    for h in h_slices:
        for w in w_slices:
            mask[h[0]:h[1], w[0]:w[1]] = count
            count += 1
    mask = mask.view(pad_h // window[0], window[0], pad_w // window[1], window[1])
    mask = mask.permute(0, 2, 1, 3).reshape(-1, window[0] * window[1])
    mask = mask.unsqueeze(1) - mask.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


def sdpa_window_attention(block: ShiftedWindowAttentionV2, x: Tensor) -> Tensor:
    """`block`'s forward (x: (B, H, W, C)) with its attention as one SDPA call (eval, no dropout)."""
    window, heads = list(block.window_size), block.num_heads
    b, h, w, c = x.shape
    pad_r, pad_b = (window[1] - w % window[1]) % window[1], (window[0] - h % window[0]) % window[0]
    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    _, pad_h, pad_w, _ = x.shape
    shift = list(block.shift_size)
    if window[0] >= pad_h:
        shift[0] = 0
    if window[1] >= pad_w:
        shift[1] = 0
    if sum(shift) > 0:
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    n_win = (pad_h // window[0]) * (pad_w // window[1])
    length = window[0] * window[1]
    x = x.view(b, pad_h // window[0], window[0], pad_w // window[1], window[1], c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b * n_win, length, c)
    qkv_bias = block.qkv.bias
    if qkv_bias is not None:  # Swin-V2 has no key bias
        qkv_bias = qkv_bias.clone()
        qkv_bias[c:2 * c].zero_()
    qkv = F.linear(x, block.qkv.weight, qkv_bias)
    qkv = qkv.reshape(b, n_win, length, 3, heads, c // heads).permute(3, 0, 1, 4, 2, 5)  # 3, B, nW, nH, L, d
    scale = torch.clamp(block.logit_scale, max=math.log(100.0)).exp()  # (nH, 1, 1)
    q = F.normalize(qkv[0], dim=-1) * scale.to(qkv.dtype)
    k = F.normalize(qkv[1], dim=-1)
    bias = block.get_relative_position_bias()  # (1, nH, L, L)
    if sum(shift) > 0:
        bias = bias + _shift_mask(pad_h, pad_w, window, shift, x.device).unsqueeze(1)  # (nW, nH, L, L)
    bias = bias.expand(n_win, heads, length, length).reshape(1, n_win * heads, length, length).to(q.dtype)
    out = F.scaled_dot_product_attention(q.reshape(b, n_win * heads, length, -1),
                                         k.reshape(b, n_win * heads, length, -1),
                                         qkv[2].reshape(b, n_win * heads, length, -1), attn_mask=bias, scale=1.0)
    x = out.view(b * n_win, heads, length, c // heads).transpose(1, 2).reshape(b * n_win, length, c)
    x = F.linear(x, block.proj.weight, block.proj.bias)
    x = x.view(b, pad_h // window[0], pad_w // window[1], window[0], window[1], c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, pad_h, pad_w, c)
    if sum(shift) > 0:
        x = torch.roll(x, shifts=(shift[0], shift[1]), dims=(1, 2))
    return x[:, :h, :w, :].contiguous()


class _SdpaWindowAttentionV2(ShiftedWindowAttentionV2):
    """ShiftedWindowAttentionV2 whose inference forward is `sdpa_window_attention`."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return super().forward(x)
        return sdpa_window_attention(self, x)


def use_sdpa(model: nn.Module) -> int:
    """Switch every Swin-V2 window attention in `model` to the SDPA forward (inference); returns
    how many were switched. Parameters and state-dict keys are unchanged."""
    n = 0
    for module in model.modules():
        if type(module) is ShiftedWindowAttentionV2:
            module.__class__ = _SdpaWindowAttentionV2
            n += 1
    return n
