"""extend_vocabulary: a warm-started run keeps every old caption's encoding and gains the source's new words."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import standin
import torch

from hiresflow.models.tiny import tiny_pipeline
from hiresflow.train.pipelines import load_pipeline_folder, save_pipeline
from hiresflow.train.vocab import extend_vocabulary, pipeline_words

OLD = ["a", "red", "sun", "over", "snowy", "mountains", "by", "lake"]
NEW = ["crimson", "peaks", "tiny", "cottage", "three"]
CAPTION = "a red sun over snowy mountains by a lake"


def _encode(pipe, caption):
    """Every tensor the pipeline's text side produces for ``caption``."""
    if hasattr(pipe, "text_encoder_2"):
        pe, pooled, _ = pipe.encode_prompt(caption, caption, device="cpu", num_images_per_prompt=1,
                                           max_sequence_length=16)
        return [pe, pooled]
    return [pipe.encode_prompt(caption, "cpu", 1, False)[0]]


@pytest.mark.parametrize("kind", ["flux", "sd"])
def test_old_captions_encode_the_same_and_new_words_are_known(kind, tmp_path):
    pipe = tiny_pipeline(kind, OLD, seed=0)
    before = _encode(pipe, CAPTION)
    old_eos = pipe.tokenizer.eos_token_id
    ext = extend_vocabulary(pipe, OLD + NEW, seed=0)
    assert ext.added == tuple(NEW)
    assert set(ext.encoders) == ({"text_encoder", "text_encoder_2"} if kind == "flux" else {"text_encoder"})
    assert pipeline_words(pipe) == OLD + NEW
    after = _encode(pipe, CAPTION)
    # CLIP: exact; T5: equal up to float rounding (the same maths on a larger embedding table, ≤ 1.2e-6 measured)
    assert torch.equal(after[-1], before[-1]) if kind == "flux" else torch.equal(after[0], before[0])
    for a, b in zip(after, before):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    # CLIP's end-of-text token moved behind the new words, and the encoder pools at its new id
    assert pipe.tokenizer.eos_token_id == old_eos + len(NEW) == pipe.text_encoder.config.eos_token_id
    for tok_name in ("tokenizer", "tokenizer_2"):
        tok = getattr(pipe, tok_name, None)
        if tok is not None:
            assert tok.unk_token_id not in tok("tiny cottage crimson peaks").input_ids
    assert extend_vocabulary(pipe, OLD + NEW).added == ()  # nothing missing: nothing changes
    save_pipeline(pipe, tmp_path / "p", native_size=32)
    again = load_pipeline_folder(tmp_path / "p")
    for a, b in zip(_encode(again, "tiny crimson cottage"), _encode(pipe, "tiny crimson cottage")):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_new_rows_follow_the_seed():
    rows = []
    for seed in (0, 0, 1):
        pipe = tiny_pipeline("sd", OLD, seed=0)
        extend_vocabulary(pipe, OLD + NEW, seed=seed)
        rows.append(pipe.text_encoder.get_input_embeddings().weight[len(OLD) + 1: len(OLD) + 1 + len(NEW)].clone())
    assert torch.equal(rows[0], rows[1]) and not torch.equal(rows[0], rows[2])


@pytest.mark.slow
def test_warm_start_adds_the_sources_new_words(tmp_path):
    """--init-from with a source that has words the start model lacks: the skeleton knows them and says so."""
    from test_train import _opts, _spec

    from hiresflow.train.diffusion import DiffusionOptions, train_diffusion
    from hiresflow.train.export import export_run

    train_diffusion(_spec(tmp_path, "base", steps=2), _opts("flux"), standin)
    export_run(tmp_path / "base", tmp_path / "base-export", dtype="fp32", compare=False, version=1)
    wider = SimpleNamespace(vocabulary=lambda: standin.vocabulary() + ["huge", "cottage"],
                            dataset_batch=standin.dataset_batch)
    opts = DiffusionOptions(kind="flux", vae=None, cache_n=8, size=32, preview_steps=2,
                            init_from=str(tmp_path / "base-export"))
    res = train_diffusion(_spec(tmp_path, "warm", steps=2), opts, wider)
    assert res["step"] == 2
    skel = tmp_path / "warm" / "skeleton"
    assert json.loads((skel / "hiresflow.json").read_text())["added_words"] == ["huge", "cottage"]
    assert pipeline_words(load_pipeline_folder(skel))[-2:] == ["huge", "cottage"]
