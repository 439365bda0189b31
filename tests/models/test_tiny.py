"""Tiny offline pipelines and word-level tokenizers (hiresflow.models.tiny / .tokenizers)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import (
    DiffusionPipeline,
    FluxPipeline,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
)
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from hiresflow.models.tiny import (
    KINDS,
    PIPELINE_CLASSES,
    count_parameters,
    load_tiny_pipeline,
    pipeline_state_dict,
    save_tiny_pipeline,
    tiny_configs,
    tiny_flux_pipeline,
    tiny_pipeline,
    tiny_sd3_pipeline,
    tiny_sd_pipeline,
    tiny_sdxl_pipeline,
)
from hiresflow.models.tokenizers import DEFAULT_VOCAB, build_word_tokenizers, normalize_vocab

PROMPT = "a snowy mountain over the lake at sunset, close-up of a red house by the pine trees"


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The tiny models are far too small to gain from intra-op threads, and on a loaded 2-core machine OpenMP
    spin-waiting makes 2 threads 10-50x slower than 1 (seconds instead of ~50 ms per pipeline call)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _equal_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------------------------- tokenizers


@pytest.fixture(scope="module")
def toks():
    return build_word_tokenizers()


def test_default_vocab_has_landscape_words():
    for w in ["sun", "moon", "mountains", "lake", "tree", "pine", "house", "red", "snowy", "night", "sunset",
              "close-up", "of", "a", "the", "over", "with", "by", ","]:
        assert w in DEFAULT_VOCAB
    assert 200 <= len(DEFAULT_VOCAB) == len(set(DEFAULT_VOCAB))


def test_clip_tokenizer_layout_and_roundtrip(toks):
    clip = toks.clip
    n = len(DEFAULT_VOCAB)
    assert len(clip) == n + 3
    assert (clip.unk_token_id, clip.bos_token_id, clip.eos_token_id, clip.pad_token_id) == (0, n + 1, n + 2, n + 2)
    assert clip.model_max_length == 77
    words = list(DEFAULT_VOCAB)
    ids = clip(" ".join(words)).input_ids
    assert ids[0] == clip.bos_token_id and ids[-1] == clip.eos_token_id
    assert ids[1:-1] == list(range(1, n + 1))  # every word is one token with its own id, in vocab order
    assert clip.decode(ids, skip_special_tokens=True) == " ".join(words)
    # lowercase normaliser, punctuation split off, unknown words -> <unk>
    assert clip.tokenize("The SUN, zebra!") == ["the", "sun", ",", "<unk>", "!"]
    assert clip("quokka xylophone").input_ids[1:-1] == [clip.unk_token_id] * 2


def test_t5_tokenizer_layout_and_roundtrip(toks):
    t5 = toks.t5
    n = len(DEFAULT_VOCAB)
    assert len(t5) == n + 3
    assert (t5.pad_token_id, t5.eos_token_id, t5.unk_token_id, t5.bos_token_id) == (0, 1, 2, None)
    assert t5.model_max_length == 512
    ids = t5("Sunset over the lake quokka").input_ids
    assert ids[-1] == t5.eos_token_id and ids[-2] == t5.unk_token_id
    assert t5.convert_ids_to_tokens(ids[:-2]) == ["sunset", "over", "the", "lake"]
    assert t5.decode(ids[:-1]) == "sunset over the lake <unk>"


def test_tokenizers_pipeline_style_calls(toks):
    """The exact call pattern of the diffusers pipelines: max_length padding + truncation keeps the eos."""
    clip, t5 = toks
    long = " ".join(["mountain"] * 100)
    enc = clip([PROMPT, long], padding="max_length", max_length=77, truncation=True,
               return_overflowing_tokens=False, return_length=False, return_tensors="pt")
    assert enc.input_ids.shape == (2, 77)
    assert enc.input_ids[1, -1] == clip.eos_token_id and enc.input_ids[1, 0] == clip.bos_token_id
    first_pad = int(enc.attention_mask[0].sum())
    assert (enc.input_ids[0, first_pad - 1:] == clip.eos_token_id).all()
    untruncated = clip([long], padding="longest", return_tensors="pt").input_ids
    assert untruncated.shape[-1] == 102
    assert clip.batch_decode(untruncated[:, 76:-1]) == [" ".join(["mountain"] * 25)]
    enc = t5([PROMPT], padding="max_length", max_length=32, truncation=True, return_tensors="pt")
    assert enc.input_ids.shape == (1, 32) and enc.input_ids[0, -1] == t5.pad_token_id


def test_tokenizers_custom_vocab_and_save_reload(tmp_path):
    clip, t5 = build_word_tokenizers(["Sun", "Moon", "sun", "over", "close-up"], tmp_path, clip_max_length=16,
                                     t5_max_length=8)
    assert len(clip) == 4 + 3 and len(t5) == 4 + 3
    assert clip.model_max_length == 16 and t5.model_max_length == 8
    for sub, tok in (("clip", clip), ("t5", t5)):
        config = json.loads((tmp_path / sub / "tokenizer_config.json").read_text())
        assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
        for cls in (PreTrainedTokenizerFast, AutoTokenizer):
            again = cls.from_pretrained(tmp_path / sub)
            assert again.get_vocab() == tok.get_vocab()
            assert again.model_max_length == tok.model_max_length
            text = ["Moon over the sun, close-up", "sun"]
            kw = dict(padding="max_length", max_length=8, truncation=True)
            assert again(text, **kw).input_ids == tok(text, **kw).input_ids


def test_normalize_vocab_rejects_unreachable_words():
    assert normalize_vocab([" Lake ", "lake", "LAKE", "pine"]) == ["lake", "pine"]
    with pytest.raises(ValueError):
        normalize_vocab(["two words"])
    with pytest.raises(ValueError):
        normalize_vocab(["..."])
    with pytest.raises(ValueError):
        normalize_vocab(["<|endoftext|>"], reserved=["<|endoftext|>"])
    with pytest.raises(TypeError):
        normalize_vocab("sun moon")


def test_clip_pools_at_eos(tiny_flux):
    """CLIPTextModel's pooled output is read at the eos position (the eos id is the config's eos_token_id and the
    highest id, so both transformers pooling rules agree), not at a padding or <unk> position."""
    tok, enc = tiny_flux.tokenizer, tiny_flux.text_encoder
    assert enc.config.eos_token_id == tok.eos_token_id == len(tok) - 1
    ids = tok(["sun quokka lake", "moon"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        out = enc(ids)
    eos_pos = (ids == tok.eos_token_id).int().argmax(-1)
    assert eos_pos.tolist() == [4, 2]
    assert torch.equal(out.pooler_output, out.last_hidden_state[torch.arange(2), eos_pos])


# ----------------------------------------------------------------------------------------------- building


@pytest.mark.parametrize("kind", KINDS)
def test_build_is_deterministic_and_leaves_global_rng_alone(kind):
    state = torch.random.get_rng_state()
    a = tiny_pipeline(kind, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = tiny_pipeline(kind, seed=0)
    c = tiny_pipeline(kind, seed=1)
    sa, sb, sc = pipeline_state_dict(a), pipeline_state_dict(b), pipeline_state_dict(c)
    assert _equal_state(sa, sb)
    params = {f"{n}.{k}" for n, m in a.components.items() if isinstance(m, torch.nn.Module)
              for k, _ in m.named_parameters()}
    # randomly initialised parameters (not norm weights / zero biases, nor buffers such as sin-cos pos embeds)
    random = [k for k in params if sa[k].numel() > 1 and sa[k].std() > 0]
    assert len(random) > len(params) // 3
    assert not any(torch.equal(sa[k], sc[k]) for k in random)
    assert isinstance(a, PIPELINE_CLASSES[kind])
    assert all(not m.training for m in a.components.values() if isinstance(m, torch.nn.Module))


def test_named_builders_and_component_wiring():
    flux = tiny_flux_pipeline()
    assert isinstance(flux, FluxPipeline) and flux.vae_scale_factor == 8
    t = flux.transformer.config
    assert t.in_channels == 4 * flux.vae.config.latent_channels == 64 and t.guidance_embeds
    assert t.joint_attention_dim == flux.text_encoder_2.config.d_model
    assert t.pooled_projection_dim == flux.text_encoder.config.hidden_size
    assert sum(t.axes_dims_rope) == t.attention_head_dim
    assert flux.scheduler.config.use_dynamic_shifting and flux.scheduler.config.max_image_seq_len == 4096

    sd = tiny_sd_pipeline()
    assert isinstance(sd, StableDiffusionPipeline) and sd.safety_checker is None and sd.vae_scale_factor == 8
    assert sd.unet.config.cross_attention_dim == sd.text_encoder.config.hidden_size
    assert sd.vae.config.scaling_factor == 0.18215 and sd.scheduler.config.steps_offset == 1

    xl = tiny_sdxl_pipeline()
    assert isinstance(xl, StableDiffusionXLPipeline) and xl.vae_scale_factor == 8
    u = xl.unet.config
    assert u.cross_attention_dim == xl.text_encoder.config.hidden_size + xl.text_encoder_2.config.hidden_size
    assert u.projection_class_embeddings_input_dim == (
        xl.text_encoder_2.config.projection_dim + 6 * u.addition_time_embed_dim)

    sd3 = tiny_sd3_pipeline()
    assert isinstance(sd3, StableDiffusion3Pipeline) and sd3.vae_scale_factor == 8
    t = sd3.transformer.config
    assert t.joint_attention_dim == sd3.text_encoder_3.config.d_model
    assert t.pooled_projection_dim == (sd3.text_encoder.config.projection_dim
                                       + sd3.text_encoder_2.config.projection_dim)
    assert sd3.vae.config.shift_factor == 0.0609

    for pipe in (flux, sd, xl, sd3):
        counts = count_parameters(pipe)
        assert counts["total"] < 2_000_000


def test_overrides_change_only_their_component():
    base = tiny_flux_pipeline()
    big = tiny_flux_pipeline(transformer={"num_layers": 2}, tokenizer={"model_max_length": 32})
    assert big.transformer.config.num_layers == 2
    assert big.tokenizer.model_max_length == 32 == big.text_encoder.config.max_position_embeddings
    sa, sb = pipeline_state_dict(base), pipeline_state_dict(big)
    for comp in ("vae", "text_encoder_2"):
        assert _equal_state({k: v for k, v in sa.items() if k.startswith(comp + ".")},
                            {k: v for k, v in sb.items() if k.startswith(comp + ".")})
    # derived widths follow overridden text encoders
    cfg = tiny_configs("sdxl", text_encoder_2={"hidden_size": 48, "projection_dim": 24})
    assert cfg["unet"]["cross_attention_dim"] == 32 + 48
    assert cfg["unet"]["projection_class_embeddings_input_dim"] == 24 + 6 * 8
    with pytest.raises(TypeError):
        tiny_flux_pipeline(unet={})
    with pytest.raises(ValueError):
        tiny_flux_pipeline(transformer={"axes_dims_rope": (4, 4, 4)})


def test_custom_vocab_sets_text_encoder_vocab():
    pipe = tiny_sd3_pipeline(vocab=["sun", "moon", "lake"])
    assert pipe.text_encoder.config.vocab_size == len(pipe.tokenizer) == 6
    assert pipe.text_encoder_3.config.vocab_size == len(pipe.tokenizer_3) == 6


# ----------------------------------------------------------------------------------------------- save / reload / run


@pytest.mark.parametrize("kind", KINDS)
def test_saved_folder_reloads_bit_identically(kind, request):
    path = request.getfixturevalue(f"tiny_{kind}_dir")
    loaded = request.getfixturevalue(f"tiny_{kind}")
    index = json.loads((path / "model_index.json").read_text())
    assert index["_class_name"] == PIPELINE_CLASSES[kind].__name__
    assert index["tokenizer"] == ["transformers", "PreTrainedTokenizerFast"]
    assert type(loaded) is PIPELINE_CLASSES[kind]
    fresh = tiny_pipeline(kind, seed=0)
    assert _equal_state(pipeline_state_dict(loaded), pipeline_state_dict(fresh))
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.scheduler.config) == public(fresh.scheduler.config)
    for name, comp in fresh.components.items():
        if name.startswith("tokenizer"):
            again = getattr(loaded, name)
            assert again.get_vocab() == comp.get_vocab() and again.model_max_length == comp.model_max_length
            assert again(PROMPT).input_ids == comp(PROMPT).input_ids
    # the specific class reloads it too, strictly offline
    direct = PIPELINE_CLASSES[kind].from_pretrained(path, local_files_only=True)
    assert _equal_state(pipeline_state_dict(direct), pipeline_state_dict(fresh))


def test_save_tiny_pipeline_verify(tmp_path):
    out = save_tiny_pipeline("sd", tmp_path / "sd", vocab=["sun", "lake"], seed=3, verify=True,
                             unet={"layers_per_block": 2})
    pipe = DiffusionPipeline.from_pretrained(out)
    assert pipe.unet.config.layers_per_block == 2 and len(pipe.tokenizer) == 5
    assert _equal_state(pipeline_state_dict(pipe),
                        pipeline_state_dict(tiny_sd_pipeline(["sun", "lake"], 3, unet={"layers_per_block": 2})))
    assert load_tiny_pipeline(out, "sd").__class__ is StableDiffusionPipeline


def _run(pipe, seed: int, **kw) -> np.ndarray:
    kw.setdefault("prompt", PROMPT)
    if isinstance(pipe, (FluxPipeline, StableDiffusion3Pipeline)):
        kw.setdefault("max_sequence_length", 64)
    out = pipe(height=64, width=64, num_inference_steps=2, output_type="np",
               generator=torch.Generator().manual_seed(seed), **kw)
    return out.images


@pytest.mark.parametrize("kind", KINDS)
def test_pipeline_runs_two_steps_deterministically(kind, request):
    pipe = request.getfixturevalue(f"tiny_{kind}")
    a = _run(pipe, 0)
    b = _run(pipe, 0)
    c = _run(pipe, 1)
    assert a.shape == (1, 64, 64, 3) and a.dtype == np.float32
    assert np.isfinite(a).all() and 0.0 <= a.min() and a.max() <= 1.0
    assert a.std() > 1e-3  # not a constant / fully clipped image
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_long_prompts_are_truncated_not_fatal(tiny_sd3):
    long = " ".join(["mountain", "lake"] * 60)
    embeds, neg, pooled, neg_pooled = tiny_sd3.encode_prompt(long, long, long, device="cpu",
                                                             do_classifier_free_guidance=True,
                                                             max_sequence_length=16)
    d = tiny_sd3.transformer.config.joint_attention_dim
    assert embeds.shape == neg.shape == (1, 77 + 16, d)
    assert pooled.shape == (1, tiny_sd3.transformer.config.pooled_projection_dim)
