"""speck's LGA / LDA-AQU reproduce outputs recorded from the official forwards
(ziyueqingwan/LocalGlobalAttention @6c8f0e7, duzw9311/LDA-AQU @0b027ba) run with the same weights."""
import glob
import os

import numpy as np
import pytest
import torch

from speck_models.lda_aqu import LDAAQU
from speck_models.lga import LocalGlobalAttention

VEC = os.path.join(os.path.dirname(__file__), "vectors")


def _load(path):
    d = np.load(path)
    return d["x"], d["y"], {k[2:]: torch.from_numpy(d[k]) for k in d.files if k.startswith("p:")}


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(VEC, "lga_*.npz"))))
def test_lga_matches_official(path):
    x, y, sd = _load(path)
    C = x.shape[1]
    h = C // sd["local_convs.0.1.weight"].shape[1] * 1  # groups = C / (in per group)
    m = LocalGlobalAttention(C, h, variant="reference")
    m.load_state_dict(sd)
    with torch.no_grad():
        out = m(torch.from_numpy(x)).numpy()
    assert np.abs(out - y).max() < 1e-5


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(VEC, "lda_*.npz"))))
def test_lda_aqu_matches_official(path):
    x, y, sd = _load(path)
    m = LDAAQU(x.shape[1])
    m.load_state_dict(sd)
    with torch.no_grad():
        out = m(torch.from_numpy(x)).numpy()
    assert np.abs(out - y).max() < 1e-4
