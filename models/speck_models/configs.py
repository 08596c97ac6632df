"""Named model + training configurations."""
from __future__ import annotations

import copy

CONFIGS = {
    # The default shipped model: trained on 2 CPU cores within ~45 minutes.
    "cpu-small": dict(
        model=dict(backbone="mobilenetv3_small", width=1.0, lga="reference", lga_heads=4,
                   lga_at="c5", upsampler="lda-aqu", neck=32, out_stride=4, nc=1,
                   lda=dict(reduction_factor=4, n_groups=2, range_factor=11.0)),
        input_size=384, batch=16, lr=3e-3, weight_decay=1e-4, warmup=100,
        minutes=45.0, max_iters=100000, threads=2, workers=0, scale_aug=(0.8, 1.25),
    ),
    # Larger model for a GPU (not trained here).
    "gpu-large": dict(
        model=dict(backbone="mobilenetv3_large", width=1.0, lga="reference", lga_heads=8,
                   lga_at="c5", upsampler="lda-aqu", neck=64, out_stride=4, nc=1,
                   lda=dict(reduction_factor=4, n_groups=2, range_factor=11.0)),
        input_size=640, batch=32, lr=2e-3, weight_decay=5e-4, warmup=500,
        minutes=None, max_iters=60000, threads=8, workers=8, scale_aug=(0.7, 1.4),
    ),
}


def get_config(name, **over):
    cfg = copy.deepcopy(CONFIGS[name])
    for k, v in over.items():
        if v is None:
            continue
        if k in cfg["model"]:
            cfg["model"][k] = v
        else:
            cfg[k] = v
    return cfg
