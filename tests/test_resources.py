"""The resource guard: estimates that grow with the plan, refusals with one-line errors, and an override."""

import pytest

from hiresflow.models.loading import wrap_pipeline
from hiresflow.recipes import build_plan
from hiresflow.resources import check_resources, estimate_resources


@pytest.fixture(scope="module", params=["flux", "sd"])
def model(request, tiny_flux, tiny_sd):
    return wrap_pipeline({"flux": tiny_flux, "sd": tiny_sd}[request.param], request.param, native=64)


def test_estimates_grow_with_size_and_steps(model):
    small = estimate_resources(build_plan("direct", model, scale=2), model)
    large = estimate_resources(build_plan("direct", model, scale=8), model)
    assert 0 < small.peak_bytes < large.peak_bytes and small.model_calls == large.model_calls
    more = estimate_resources(build_plan("direct", model, scale=2, steps=60), model)
    assert more.model_calls == 60 and more.peak_bytes >= small.peak_bytes


def test_demofusion_counts_its_views(model):
    plan = build_plan("demofusion", model, scale=3, steps=2)
    est = estimate_resources(plan, model)
    direct = estimate_resources(build_plan("direct", model, scale=3, steps=2), model)
    assert est.model_calls > 3 * direct.model_calls


def test_refusals_are_one_line_and_overridable(model):
    huge = build_plan("direct", model, size=(65536, 65536))
    with pytest.raises(ValueError, match="GiB .* free.*--allow-large") as e:
        check_resources(huge, model, timed=False)
    assert "\n" not in str(e.value)
    assert check_resources(huge, model, allow=True, timed=False).peak_bytes > 2**35
    plan = build_plan("hiflow", model, scale=2, base_steps=4, stage_steps=[2])
    with pytest.raises(ValueError, match="model time.*on this machine.*--allow-large"):
        check_resources(plan, model, max_seconds=1e-9)
    est = check_resources(plan, model)  # a small plan passes and reports a time
    assert est.model_seconds is not None and est.model_seconds > 0
