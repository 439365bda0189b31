"""`hiresflow generate --from` treats a record as untrusted data: schema-checked with one-line errors naming the
field, and allowed to load only the embedded models unless the user names the model or trusts the record."""

import copy
import json

import pytest
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from hiresflow.cli import app
from hiresflow.output import check_record
from hiresflow.plan import Plan, check_json_shape

runner = CliRunner()


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    out = tmp_path_factory.mktemp("rec")
    res = runner.invoke(app, ["generate", "a lake", "--model", "random-tiny-flux", "--scale", "2", "--out", str(out),
                              "--set", "base_steps=2", "--set", "stage_steps=[1]", "--quiet"])
    assert res.exit_code == 0, res.output
    return json.loads(next(out.glob("*.json")).read_text())


def _run(tmp_path, rec, *extra, as_png=False):
    if as_png:
        path = tmp_path / "in.png"
        info = PngImagePlugin.PngInfo()
        info.add_text("hiresflow", rec if isinstance(rec, str) else json.dumps(rec))
        Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    else:
        path = tmp_path / "in.json"
        path.write_text(rec if isinstance(rec, str) else json.dumps(rec))
    res = runner.invoke(app, ["generate", "--from", str(path), "--out", str(tmp_path / "out"), "--quiet", *extra],
                        env={"HF_HUB_OFFLINE": "1"})
    return res


def _error(res) -> str:
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), res.output
    return lines[0]


def _edit(rec, fn):
    rec = copy.deepcopy(rec)
    fn(rec)
    return rec


MALFORMED = [
    ("start as a string", lambda r: r["plan"]["stages"][0]["schedule"].update(start="5"),
     "plan.stages[0].schedule.start: must be an integer, got '5'"),
    ("steps as a string", lambda r: r["plan"]["stages"][1]["schedule"].update(steps="30"),
     "plan.stages[1].schedule.steps: must be an integer"),
    ("empty stages", lambda r: r["plan"].update(stages=[]), "plan.stages: a plan needs at least one stage"),
    ("stages not a list", lambda r: r["plan"].update(stages={"a": 1}), "plan.stages: must be a list"),
    ("size of three values", lambda r: r["plan"]["stages"][0].update(size=[64, 64, 1]),
     "plan.stages[0].size: must be 2 values"),
    ("negative size", lambda r: r["plan"]["stages"][0].update(size=[-64, 64]), "plan.stages[0].size: sides must be"),
    ("size off the latent grid", lambda r: r["plan"]["stages"][0].update(size=[60, 64]),
     "plan.stages[0].size: size 64x60 is not a positive multiple"),
    ("unknown Literal", lambda r: r["plan"]["stages"][1]["init"].update(space="warp"),
     "plan.stages[1].init.space: must be one of 'pixel', 'latent'"),
    ("a Stage where a guide goes", lambda r: r["plan"]["stages"][1]["guides"].append({"type": "Stage"}),
     "plan.stages[1].guides[1]: a Stage cannot stand where a GuideConfig goes"),
    ("unknown component", lambda r: r["plan"]["stages"][1]["guides"].append({"type": "EvilConfig"}),
     "unknown plan component 'EvilConfig'"),
    ("unknown field", lambda r: r["plan"]["stages"][0]["schedule"].update(command="rm -rf /"),
     "ScheduleSpec has no field 'command'"),
    ("missing field", lambda r: r["plan"]["stages"][0].pop("size"), "plan.stages[0]: Stage needs 'size'"),
    ("boolean as an integer", lambda r: r["plan"]["stages"][0]["schedule"].update(steps=True),
     "plan.stages[0].schedule.steps: must be an integer, got True"),
    ("validator inside a component", lambda r: r["plan"]["stages"][0]["schedule"].update(start=999),
     "plan.stages[0].schedule: start index 999 must lie"),
    ("seed as a string", lambda r: r.update(seed="7"), "field 'seed' must be an integer"),
    ("seed out of range", lambda r: r.update(seed=2**64), "field 'seed' must be an integer in 0…2**64-1"),
    ("prompt as a number", lambda r: r.update(prompt=5), "field 'prompt' must be a string"),
    ("model as a string", lambda r: r.update(model="tiny-flux"), "field 'model' must be an object"),
    ("plan as a list", lambda r: r.update(plan=[]), "field 'plan' must be an object"),
    ("upscale as a string", lambda r: r.update(upscale="x"), "field 'upscale' must be an object"),
    ("deep nesting in an extra field", lambda r: r.update(extra=json.loads("[" * 40 + "]" * 40)),
     "nested deeper than 16 levels"),
    ("a huge list", lambda r: r["plan"]["stages"][1].update(guides=[{}] * 5000), "5000 items, more than 1024"),
]


@pytest.mark.parametrize("what,edit,message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_record_is_one_line_naming_the_field(record, tmp_path, what, edit, message):
    line = _error(_run(tmp_path, _edit(record, edit)))
    assert message in line, line
    assert not (tmp_path / "out").exists()


def test_malformed_json_text(record, tmp_path):
    deep = '{"prompt": "x", "plan": ' + "[" * 200000 + "]" * 200000 + "}"
    assert "nests too deeply" in _error(_run(tmp_path, deep))
    assert "nests too deeply" in _error(_run(tmp_path, deep, as_png=True))
    assert "no valid JSON record" in _error(_run(tmp_path, '{"seed": ' + "9" * 5000 + "}"))
    assert "no valid JSON record" in _error(_run(tmp_path, "{not json"))
    nan = json.dumps(record).replace('"shift": null', '"shift": NaN', 1)
    assert "must be a finite number, got nan" in _error(_run(tmp_path, nan))


@pytest.mark.parametrize("name", ["../../../etc/evil", "/tmp/some/folder", "black-forest-labs/FLUX.1-dev"])
def test_a_record_alone_loads_only_embedded_models(record, tmp_path, monkeypatch, name):
    def no_load(*args, **kwargs):
        raise AssertionError("a model loaded")

    monkeypatch.setattr("hiresflow.models.loading.load_model", no_load)
    line = _error(_run(tmp_path, _edit(record, lambda r: r["model"].update(name=name))))
    assert f"asks for model {name!r}" in line and "--model" in line and "--trust-paths" in line
    for extra in (["--trust-paths"], ["--model", "random-tiny-flux"]):  # the user's choice gets past the check
        res = _run(tmp_path, _edit(record, lambda r: r["model"].update(name=name)), *extra)
        assert "a model loaded" in repr(res.exception), res.output


def test_a_record_alone_loads_only_embedded_upsamplers(record, tmp_path):
    def with_upsampler(r):
        r["plan"]["stages"][1]["init"].update(start_from="upsampled", upsampler={
            "type": "CfmUpsampleSpec", "model": "/tmp/evil-upsampler", "solver": "euler", "nfe": 2})

    line = _error(_run(tmp_path, _edit(record, with_upsampler), as_png=True))
    assert "plan.stages[1].init.upsampler.model asks for '/tmp/evil-upsampler'" in line and "--trust-paths" in line
    plan = Plan.from_dict(_edit(record, with_upsampler)["plan"])
    assert plan.named_files() == [("plan.stages[1].init.upsampler.model", "/tmp/evil-upsampler")]


def test_the_embedded_model_of_a_record_still_reruns(record, tmp_path):
    res = _run(tmp_path, record)
    assert res.exit_code == 0, res.output
    assert "--trust-paths applies to --from" in _error(runner.invoke(app, ["generate", "x", "--trust-paths"]))


def test_shape_and_record_checks_are_plain_functions():
    with pytest.raises(ValueError, match=r"record\.a\[0\]\[0\]: nested deeper than 3"):
        check_json_shape({"a": [[1]]}, "record", max_depth=3)
    with pytest.raises(ValueError, match="keys must be strings"):
        check_json_shape({1: 2})
    with pytest.raises(ValueError, match="no hiresflow run record"):
        check_record({"prompt": "x"})
