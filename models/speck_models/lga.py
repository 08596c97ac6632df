"""Local-Global Attention (Shao et al., repo ziyueqingwan/LocalGlobalAttention), re-implemented
from the module's description (RESEARCH.md section 1).

variant='reference' reproduces the released forward, including its degenerate second einsum
('bhqk,bhvd->bhqd' sums the value channels of each head; Q and K have no effect).
variant='paper' uses the attention the paper describes ('bhqk,bhkd->bhqd').
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _dw_pw(c, k, cout, stride=1, groups=1):
    return nn.Sequential(nn.Conv2d(c, c, k, stride, k // 2, groups=c),
                         nn.Conv2d(c, cout, 1, groups=groups))


class LocalGlobalAttention(nn.Module):
    def __init__(self, embed_dim, num_heads, local_kernel_sizes=(3, 5, 7), global_kernel_size=11,
                 height=14, width=14, num_scales=3, variant="reference"):
        super().__init__()
        assert embed_dim % num_heads == 0
        assert variant in ("reference", "paper")
        self.variant = variant
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.num_scales = num_scales
        self.multi_scale_convs = nn.ModuleList(
            [_dw_pw(embed_dim, 3, embed_dim, stride=2 ** i) for i in range(num_scales)])
        self.local_convs = nn.ModuleList(
            [_dw_pw(embed_dim, k, 3 * embed_dim, groups=num_heads) for k in local_kernel_sizes])
        self.global_conv = _dw_pw(embed_dim, global_kernel_size, 3 * embed_dim, groups=num_heads)
        self.position_encoding = nn.Parameter(torch.randn(1, embed_dim, height, width))
        self.out_conv = nn.Conv2d(embed_dim, embed_dim, 1)
        self.scale_attention = nn.Conv2d(embed_dim, num_scales + 1, 1)
        self.alpha_local = nn.Parameter(torch.tensor(0.5))
        self.alpha_global = nn.Parameter(torch.tensor(0.5))

    def _attend(self, qkv, x):
        b, c, h, w = x.shape
        q, k, v = qkv.chunk(3, dim=1)
        q = q.reshape(b, self.num_heads, self.head_dim, h * w)
        k = k.reshape(b, self.num_heads, self.head_dim, h * w)
        v = v.reshape(b, self.num_heads, self.head_dim, h * w)
        energy = torch.einsum("bhqd,bhkd->bhqk", q, k) * self.scale
        attn = torch.softmax(energy, dim=-1)
        if self.variant == "reference":
            out = torch.einsum("bhqk,bhvd->bhqd", attn, v)
        else:
            out = torch.einsum("bhqk,bhkd->bhqd", attn, v)
        return out.reshape(b, c, h, w) + x

    def forward(self, x):
        b, c, h, w = x.shape
        pe = F.interpolate(self.position_encoding, size=(h, w), mode="nearest")
        feats = [x]
        for conv in self.multi_scale_convs:
            feats.append(F.interpolate(conv(x), size=(h, w), mode="nearest") + x)
        sw = torch.softmax(self.scale_attention(x), dim=1)
        x_ms = sum(sw[:, i:i + 1] * feats[i] for i in range(self.num_scales + 1))
        xin = x_ms + pe
        local = sum(self._attend(conv(xin), x) for conv in self.local_convs) / len(self.local_convs)
        glob = self._attend(self.global_conv(xin), x)
        return self.out_conv(self.alpha_local * local + self.alpha_global * glob)
