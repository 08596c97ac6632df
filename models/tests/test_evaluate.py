import numpy as np

from speck_models.evaluate import average_precision, nms


def test_ap_perfect_and_ignore():
    gts = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)]
    igns = [np.array([[100, 100, 200, 200]], np.float32)]
    dets = [np.array([[0, 0, 10, 10, 0.9], [20, 20, 30, 30, 0.8], [110, 110, 120, 120, 0.95]], np.float32)]
    ap, n = average_precision(dets, gts, igns)
    assert n == 2 and abs(ap - 1.0) < 1e-9  # the detection inside the ignore region is absorbed
    ap2, _ = average_precision(dets, gts, [np.zeros((0, 4), np.float32)])
    assert ap2 < 0.7  # now it is a false positive ranked first


def test_ap_half():
    gts = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)]
    dets = [np.array([[0, 0, 10, 10, 0.9]], np.float32)]
    ap, _ = average_precision(dets, gts, [np.zeros((0, 4))])
    assert abs(ap - 51 / 101) < 1e-9


def test_nms():
    d = np.array([[0, 0, 10, 10, 0.9, 0], [1, 1, 10, 10, 0.8, 0], [50, 50, 60, 60, 0.7, 0]], np.float32)
    assert len(nms(d, 0.5)) == 2
