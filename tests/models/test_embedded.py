"""The embedded tiny-flux and tiny-sd load offline, generate with every recipe, and broken weights give clear
errors."""

import shutil

import pytest
import torch

from hiresflow.models.loading import EMBEDDED, EMBEDDED_DIR, load_model
from hiresflow.recipes import RECIPES, build_plan
from hiresflow.runner import run_plan

FAST = {"direct": dict(steps=4), "upscale": dict(steps=4), "sdedit": dict(steps=6), "imax": dict(steps=4, hires_steps=4),
        "hiflow": dict(base_steps=6, stage_steps=(3, 2)), "demofusion": dict(steps=3, view_batch=64),
        "freescale": dict(steps=5), "diffusehigh": dict(steps=5, dwt_steps=2), "hidiffusion": dict(steps=4),
        "cfm": dict(steps=4, nfe=1), "ultraimage": dict(steps=4, hires_steps=4), "dype": dict(steps=4),
        "dype+hiflow": dict(base_steps=6, stage_steps=(3, 2)), "anchored": dict(steps=5, dwt_steps=2)}
UNET_ONLY = {"hidiffusion"}
ROPE_ONLY = {"ultraimage", "dype", "dype+hiflow"}

CARDS = {"tiny-flux": ("flux", 4.0), "tiny-sd": ("sd", 5.0)}


def _present(name: str) -> bool:
    return (EMBEDDED_DIR / EMBEDDED.get(name, name) / "model_index.json").is_file()  # folder names: EMBEDDED


@pytest.fixture(scope="module", params=list(CARDS))
def embedded_model(request):
    if not _present(request.param):
        pytest.skip(f"embedded {request.param} not in this build")
    return load_model(request.param, device="cpu")


def test_card_and_native_generation(embedded_model):
    m = embedded_model
    family, guidance = CARDS[m.name]
    assert m.geometry.native == (64, 64) and m.family == family and m.default_guidance == guidance
    plan = build_plan("direct", m, scale=1, steps=4)
    img = run_plan(m, plan, "a red sun setting over snowy mountains by a lake", seed=0).image
    assert img.shape == (1, 3, 64, 64) and torch.isfinite(img).all() and float(img.std()) > 0.02


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_every_recipe_at_4x(embedded_model, recipe):
    if recipe in UNET_ONLY and embedded_model.family != "sd":
        with pytest.raises(ValueError, match="U-Net methods"):
            build_plan(recipe, embedded_model, scale=4, **FAST[recipe])
        return
    if recipe in ROPE_ONLY and embedded_model.family != "flux":
        with pytest.raises(ValueError, match="without a rotary position embedding"):
            build_plan(recipe, embedded_model, scale=4, **FAST[recipe])
        return
    plan = build_plan(recipe, embedded_model, scale=4, **FAST[recipe])
    img = run_plan(embedded_model, plan, "a white moon over a lake at night", seed=1).image
    assert img.shape == (1, 3, 256, 256) and torch.isfinite(img).all()


@pytest.mark.skipif(not _present("tiny-flux"), reason="embedded tiny-flux not in this build")
def test_missing_or_corrupt_weights_name_the_file(tmp_path):
    folder = tmp_path / "tf"
    shutil.copytree(EMBEDDED_DIR / "tiny-flux", folder)
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt weight file .*transformer.*diffusion_pytorch_model.safetensors") as e:
        load_model(str(folder), device="cpu")
    assert "\n" not in str(e.value)
    weights.unlink()
    with pytest.raises(ValueError, match="missing weights: .*transformer has no .safetensors"):
        load_model(str(folder), device="cpu")


def test_older_versions_share_the_defaults_component_files(tmp_path):
    """tiny-flux-v1 and tiny-sd-v1 hold only their denoiser: the VAE and text encoders they were trained with are
    byte-identical to the default model's and load from there (card field components_from); saved, each is a
    complete diffusers folder that plain `from_pretrained` reads."""
    import json

    from diffusers import DiffusionPipeline

    from hiresflow.models.loading import component_dir, load_pipeline

    for old, default, shared in (("tiny-flux-v1", "tiny-flux", ("vae", "text_encoder", "text_encoder_2")),
                                 ("tiny-sd-v1", "tiny-sd", ("vae", "text_encoder"))):
        if not (_present(old) and _present(default)):
            continue
        folder = EMBEDDED_DIR / EMBEDDED[old]
        card = json.loads((folder / "hiresflow.json").read_text())
        assert card["components_from"] == EMBEDDED[default]
        for name in shared:
            assert not (folder / name).exists() and component_dir(folder, name) == EMBEDDED_DIR / EMBEDDED[default] / name
        pipe, _ = load_pipeline(old, torch.float32)
        ref, _ = load_pipeline(default, torch.float32)
        for name in shared:
            a, b = getattr(pipe, name).state_dict(), getattr(ref, name).state_dict()
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        pipe.save_pretrained(tmp_path / old)
        again = DiffusionPipeline.from_pretrained(str(tmp_path / old))
        assert all(getattr(again, n) is not None for n in shared)


def test_a_shared_component_that_cannot_be_found_is_a_one_line_error(tmp_path):
    if not _present("tiny-sd-v1"):
        pytest.skip("embedded tiny-sd-v1 not in this build")
    import json

    folder = tmp_path / "sd-v1"
    shutil.copytree(EMBEDDED_DIR / EMBEDDED["tiny-sd-v1"], folder)
    card = json.loads((folder / "hiresflow.json").read_text())
    (folder / "hiresflow.json").write_text(json.dumps({**card, "components_from": "no-such-model"}))
    with pytest.raises(ValueError, match=r"component '\w+' is neither in the folder nor") as e:
        load_model(str(folder), device="cpu")
    assert "\n" not in str(e.value)
