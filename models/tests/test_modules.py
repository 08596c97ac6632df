import numpy as np
import pytest
import torch
import torch.nn.functional as F

from speck_models.backbone import MobileNetV3
from speck_models.configs import get_config
from speck_models.detector import build_model
from speck_models.fpn import FPN
from speck_models.lda_aqu import LDAAQU
from speck_models.lga import LocalGlobalAttention

torch.set_num_threads(1)


@pytest.mark.parametrize("arch,width,chans", [("small", 1.0, [16, 24, 48, 96]),
                                              ("large", 1.0, [24, 40, 112, 160]),
                                              ("small", 0.5, [8, 16, 24, 48])])
def test_backbone_strides(arch, width, chans):
    m = MobileNetV3(arch, width).eval()
    feats = m(torch.zeros(1, 3, 96, 128))
    assert [f.shape[1] for f in feats] == chans == m.out_channels
    assert [(f.shape[2], f.shape[3]) for f in feats] == [(96 // s, 128 // s) for s in (4, 8, 16, 32)]


def test_backbone_matches_torchvision_param_count():
    tv = pytest.importorskip("torchvision")
    for arch, fn in (("small", tv.models.mobilenet_v3_small), ("large", tv.models.mobilenet_v3_large)):
        ours = sum(p.numel() for p in MobileNetV3(arch).parameters())
        ref = fn().features[:-1]  # minus the final 1x1 conv of the classifier trunk
        assert ours == sum(p.numel() for p in ref.parameters())


def test_lga_shape_and_variants():
    x = torch.randn(2, 24, 10, 7)
    for v in ("reference", "paper"):
        m = LocalGlobalAttention(24, 6, variant=v)
        assert m(x).shape == x.shape


def test_lga_reference_is_per_head_channel_sum():
    """The released second einsum sums each head's value channels: rewrite and compare."""
    torch.manual_seed(0)
    C, h = 24, 6
    m = LocalGlobalAttention(C, h, variant="reference").eval()
    x = torch.randn(2, C, 9, 11)

    def attend_rewrite(qkv, x):
        b, c, H, W = x.shape
        v = qkv.chunk(3, dim=1)[2].reshape(b, h, c // h, H * W)
        out = v.sum(2, keepdim=True).expand(b, h, c // h, H * W)
        return out.reshape(b, c, H, W) + x

    with torch.no_grad():
        ref = m(x)
        m._attend = attend_rewrite
        alt = m(x)
    assert torch.allclose(ref, alt, atol=1e-5), float((ref - alt).abs().max())


def test_lda_aqu_shape_and_param_count():
    m = LDAAQU(256)
    assert sum(p.numel() for p in m.parameters()) == 39410  # as the official C=256 instance
    assert m(torch.randn(1, 256, 5, 6)).shape == (1, 256, 10, 12)


def test_lda_aqu_centre_tap_is_align_corners_bilinear():
    """Zero offsets + attention forced onto the centre tap == bilinear(align_corners=True)."""
    torch.manual_seed(0)
    C = 32
    m = LDAAQU(C).eval()
    with torch.no_grad():
        m.layer_norm.weight.zero_(); m.layer_norm.bias.fill_(1.0)   # normalised input == 1
        m.proj_q.weight.fill_(1.0 / C)                               # q == 1
        m.proj_k.weight.zero_()                                      # k == 0
        m.relative_position_bias_table.zero_()
        m.relative_position_bias_table[..., 4, :] = 100.0            # centre tap wins
        assert m.conv_offset[-1].weight.abs().sum() == 0             # zero-initialised offsets
    x = torch.randn(2, C, 7, 9)
    with torch.no_grad():
        y = m(x)
    ref = F.interpolate(x, size=(14, 18), mode="bilinear", align_corners=True)
    assert torch.allclose(y, ref, atol=1e-5), float((y - ref).abs().max())


def test_lda_aqu_zero_offset_centre_sample():
    m = LDAAQU(16)
    x = torch.randn(1, 16, 5, 4)
    off = m.base_offset.expand(1, 18, 10, 8)
    s = m.sample(x, off, 10, 8)
    ref = F.interpolate(x, size=(10, 8), mode="bilinear", align_corners=True)
    assert torch.allclose(s[:, :, 4], ref, atol=1e-6)


@pytest.mark.parametrize("ups", ["nearest", "bilinear", "lda-aqu"])
def test_fpn_crops_to_lateral(ups):
    chans = [16, 24, 48, 96]
    fpn = FPN(chans, 16, ups)
    # odd input sizes: upsampled maps are larger than the laterals and get cropped
    feats = [torch.randn(1, c, s0, s1) for c, (s0, s1) in zip(chans, [(25, 33), (13, 17), (7, 9), (4, 5)])]
    assert fpn(feats).shape == (1, 16, 25, 33)


def test_detector_contract_outputs():
    cfg = get_config("cpu-small")
    m = build_model(cfg["model"]).eval()
    with torch.no_grad():
        heat, box = m(torch.randn(1, 3, 128, 128))
    assert heat.shape == (1, 1, 32, 32) and box.shape == (1, 4, 32, 32)
    assert heat.min() >= 0 and heat.max() <= 1
    assert box[:, :2].min() >= 0 and box[:, :2].max() <= 1 and box[:, 2:].min() > 0


def test_targets_roundtrip():
    from speck_models.head import build_targets, decode
    boxes = np.array([[10, 20, 14, 30], [50.5, 60.2, 58.0, 75.9]], np.float32)
    t = build_targets(boxes, np.array([[80, 80, 100, 100]], np.float32), 32, 32, 4)
    heat = t["hm"] * (t["hm"] == 1)
    box = np.zeros((4, 32, 32), np.float32)
    for k in range(2):
        i = t["ind"][k]
        box[:, i // 32, i % 32] = [*t["off"][k], *t["wh"][k]]
    d = decode(heat, box, 4, 0.5)
    d = d[np.argsort(d[:, 0])]
    assert np.allclose(d[:, :4], boxes, atol=1e-4)
    assert t["hm_mask"][0, 21, 21] == 0 and t["hm_mask"][0, 0, 0] == 1
