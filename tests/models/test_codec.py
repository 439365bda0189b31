import torch

from hiresflow.models.base import VaeCodec, parse_size


def test_tiled_codec_matches_untiled_shapes_and_roughly_values(tiny_flux_dir):
    from hiresflow.models.tiny import load_tiny_pipeline

    vae = load_tiny_pipeline(tiny_flux_dir).vae  # own copy: tiling flags are module state
    img = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    plain = VaeCodec(vae, tile_above=None)
    tiled = VaeCodec(vae, tile_above=64)
    vae.tile_sample_min_size, vae.tile_latent_min_size = 64, 8  # small tiles for a small model
    z0, z1 = plain.encode(img), tiled.encode(img)
    assert z0.shape == z1.shape == (1, 16, 32, 32)
    assert vae.use_tiling
    d0, d1 = plain.decode(z0), tiled.decode(z0)
    assert d0.shape == d1.shape == (1, 3, 256, 256)
    assert float((d0 - d1).abs().mean()) < 0.1  # blended tiles stay close to the untiled decode
    tiled.decode(z0[..., :4, :4])  # a small input switches tiling off again
    assert not vae.use_tiling


def test_parse_size():
    assert parse_size("2048x1024") == (1024, 2048)
    assert parse_size("512") == (512, 512)
    import pytest

    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        parse_size("big")
