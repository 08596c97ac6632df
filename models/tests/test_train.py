import torch

from speck_models.data.datasets import SynthDataset
from speck_models.data.synth import write_dataset
from speck_models.train import main as train_main


def test_preload_decodes_every_frame_once(tmp_path):
    write_dataset(str(tmp_path), 3, 4, (320, 180))
    ds = SynthDataset(str(tmp_path / "annotations.json"), 96)
    ds.preload(threads=2)
    assert sorted(ds.cache) == [0, 1, 2] and ds.cache[0].shape == (180, 320, 3)
    img, t = ds[0]
    assert img.shape == (3, 96, 96) and t["hm"].shape[-1] == 24


def test_trains_with_loader_workers_and_resumes(tmp_path):
    data, out = tmp_path / "d", tmp_path / "run"
    write_dataset(str(data), 3, 4, (320, 180))
    args = ["--config", "cpu-small", "--data", str(data), "--out", str(out), "--input-size", "96",
            "--batch", "2", "--workers", "1", "--threads", "1", "--device", "cpu", "--minutes", "5"]
    train_main(args + ["--max-iters", "2"])
    ck = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert ck["iter"] == 2 and ck["cfg"]["workers"] == 1
    train_main(args + ["--max-iters", "3", "--resume"])
    ck = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert ck["iter"] == 3
