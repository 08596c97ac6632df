"""LDA-AQU upsampler (Du et al., repo duzw9311/LDA-AQU, `LDA_AQU` in fpn_lau.py), re-implemented
from the module's description (RESEARCH.md section 1), for ONNX opset 17:

* offsets and sampling grids are built with torch.stack/cat (no in-place index assignment, so no
  ScatterND in the exported graph);
* channel-last LayerNorm is permute -> F.layer_norm -> permute (exports as LayerNormalization);
* the 9 taps are sampled by ONE grid_sample per tensor on a grid stacked along the height axis
  (tap-major); grid_sample is per output location, so this equals the official layout exactly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor."""

    def __init__(self, c, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.eps = eps
        self.c = c

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, (self.c,), self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class LDAAQU(nn.Module):
    def __init__(self, in_channels, reduction_factor=4, nh=1, scale_factor=2, k_e=3, k_u=3,
                 n_groups=2, range_factor=11.0, rpb=True):
        super().__init__()
        self.C, self.nh, self.k_u, self.G = in_channels, nh, k_u, n_groups
        self.scale_factor = int(scale_factor)
        self.range_factor = float(range_factor)
        self.hidden = in_channels // reduction_factor
        assert self.hidden % n_groups == 0 and self.hidden % nh == 0 and in_channels % n_groups == 0
        self.attn_dim = self.hidden // nh
        self.scale = self.attn_dim ** -0.5
        self.layer_norm = ChannelLayerNorm(in_channels)
        self.proj_q = nn.Conv2d(in_channels, self.hidden, 1, bias=False)
        self.proj_k = nn.Conv2d(in_channels, self.hidden, 1, bias=False)
        gc = self.hidden // n_groups
        self.conv_offset = nn.Sequential(
            nn.Conv2d(gc, gc, 3, 1, 1, groups=gc, bias=False),
            ChannelLayerNorm(gc),
            nn.GELU(),  # exact (erf)
            nn.Conv2d(gc, 2 * k_u * k_u, k_e, 1, k_e // 2))
        p = (k_u - 1) // 2
        r = torch.arange(-p, p + 1, dtype=torch.float32)
        by, bx = r.repeat_interleave(k_u), r.repeat(k_u)  # row-major taps
        self.register_buffer("base_offset", torch.stack([by, bx], 1).reshape(1, -1, 1, 1), persistent=False)
        self.rpb = rpb
        if rpb:
            self.relative_position_bias_table = nn.Parameter(torch.zeros(1, nh, 1, k_u * k_u, self.attn_dim))
            nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.reset_parameters()

    def reset_parameters(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.zeros_(self.conv_offset[-1].weight)
        nn.init.zeros_(self.conv_offset[-1].bias)

    def offsets(self, q):
        """q: (B, hidden, Ho, Wo) -> offsets (B*G, 2*k_u^2, Ho, Wo), interleaved [dy, dx]."""
        B, _, Ho, Wo = q.shape
        qg = q.reshape(B * self.G, self.hidden // self.G, Ho, Wo)
        return torch.tanh(self.conv_offset(qg)) * self.range_factor + self.base_offset

    def sample(self, x, offset, Ho, Wo):
        """Samples x (B*G, c, H, W) at the 9 offset taps around each output pixel.
        Returns (B*G, c, k_u^2, Ho, Wo)."""
        n = self.k_u * self.k_u
        BG = offset.shape[0]
        off = offset.reshape(BG, n, 2, Ho, Wo)
        rows = torch.arange(Ho, dtype=offset.dtype, device=offset.device).reshape(1, 1, Ho, 1)
        cols = torch.arange(Wo, dtype=offset.dtype, device=offset.device).reshape(1, 1, 1, Wo)
        gy = (off[:, :, 0] + rows) * (2.0 / (Ho - 1)) - 1.0  # (BG, n, Ho, Wo)
        gx = (off[:, :, 1] + cols) * (2.0 / (Wo - 1)) - 1.0
        grid = torch.stack([gx, gy], dim=-1).reshape(BG, n * Ho, Wo, 2)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return out.reshape(BG, x.shape[1], n, Ho, Wo)

    def forward(self, x):
        B, C, H, W = x.shape
        Ho, Wo = H * self.scale_factor, W * self.scale_factor
        G, n, nh = self.G, self.k_u * self.k_u, self.nh
        v = x
        xn = self.layer_norm(x)
        q = F.interpolate(self.proj_q(xn), size=(Ho, Wo), mode="bilinear", align_corners=True)
        k = self.proj_k(xn)
        offset = self.offsets(q)
        ks = self.sample(k.reshape(B * G, self.hidden // G, H, W), offset, Ho, Wo)
        vs = self.sample(v.reshape(B * G, C // G, H, W), offset, Ho, Wo)
        ks = ks.reshape(B, nh, self.attn_dim, n, Ho, Wo)   # channel = g*cg + c, as official
        vs = vs.reshape(B, nh, C // nh, n, Ho, Wo)
        if self.rpb:
            # table (1, nh, 1, n, d) -> (1, nh, d, n, 1, 1)
            ks = ks + self.relative_position_bias_table.permute(0, 1, 4, 3, 2).unsqueeze(-1)
        qs = (q * self.scale).reshape(B, nh, self.attn_dim, 1, Ho, Wo)
        attn = torch.softmax((qs * ks).sum(2, keepdim=True), dim=3)  # (B, nh, 1, n, Ho, Wo)
        out = (attn * vs).sum(3)  # (B, nh, C/nh, Ho, Wo)
        return out.reshape(B, C, Ho, Wo)
