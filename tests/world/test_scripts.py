from PIL import Image

from hiresflow.world import preview, speed


def test_preview_writes_grid(tmp_path):
    out = tmp_path / "grid.png"
    preview.main([str(out), "--n", "2", "--size", "32"])
    assert Image.open(out).size[0] > 0
    preview.main([str(tmp_path / "v.png"), "--n", "2", "--size", "32", "--views"])


def test_speed_runs(capsys):
    speed.main(["--n64", "3", "--n512", "1", "--batch", "4"])
    out = capsys.readouterr().out
    assert "64x64" in out and "512x512" in out
