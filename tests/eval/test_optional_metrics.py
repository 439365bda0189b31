"""IS and CLIP-score maths with tiny local networks; 'not computed' without weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hiresflow.eval.clip_score import ClipScorer, load_clip_scorer
from hiresflow.eval.inception_score import ISClassifier, inception_score_from_logits, load_is_classifier
from hiresflow.eval.score import MetricUnavailable


def test_inception_score_known_values():
    # identical predictions for every image: p(y|x) = p(y), KL = 0, IS = 1
    same = np.tile(np.array([[2.0, 0.5, -1.0]]), (30, 1))
    assert inception_score_from_logits(same, splits=3)[0] == pytest.approx(1.0)
    # confident and evenly spread over C classes: IS = C
    c = 5
    onehot = np.full((100, c), -50.0)
    onehot[np.arange(100), np.arange(100) % c] = 50.0
    mean, std, k = inception_score_from_logits(onehot, splits=1)
    assert mean == pytest.approx(c, rel=1e-6) and k == 1
    assert inception_score_from_logits(onehot[:3], splits=10)[2] == 3  # splits clipped to n


def test_inception_score_matches_a_direct_formula_with_a_tiny_classifier():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 10))

    def fn(arrays):
        x = torch.stack([torch.from_numpy(a).permute(2, 0, 1).float() / 255 for a in arrays])
        return net(x)

    clf = ISClassifier(fn, "tiny", batch_size=3)
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(8)]
    logits = clf(imgs)
    assert logits.shape == (8, 10)
    p = torch.softmax(torch.from_numpy(logits), 1).numpy()
    direct = np.exp((p * (np.log(p) - np.log(p.mean(0)))).sum(1).mean())
    assert inception_score_from_logits(logits, splits=1)[0] == pytest.approx(direct, rel=1e-9)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_is_classifier_from_torchscript_env(tmp_path, monkeypatch):
    net = torch.jit.script(torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                               torch.nn.Linear(3, 7)))
    path = tmp_path / "logits.pt"
    net.save(str(path))
    monkeypatch.setenv("HIRESFLOW_IS_TORCHSCRIPT", str(path))
    clf = load_is_classifier("cpu")
    out = clf([np.zeros((20, 30, 3), np.uint8), np.full((20, 30, 3), 255, np.uint8)])
    assert out.shape == (2, 7)


def test_is_not_computed_message_names_the_weights(monkeypatch, tmp_path):
    monkeypatch.delenv("HIRESFLOW_IS_TORCHSCRIPT", raising=False)
    monkeypatch.setenv("HIRESFLOW_IS_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(MetricUnavailable, match="weights-inception-2015-12-05-6726825d.pth"):
        load_is_classifier("cpu")


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from hiresflow.models.tokenizers import build_clip_word_tokenizer

    tok = build_clip_word_tokenizer()
    torch.manual_seed(1)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, eos_token_id=tok.eos_token_id,
                         bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    d = tmp_path_factory.mktemp("tiny_clip")
    CLIPModel(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(d)
    return d


def test_clip_score_equals_clamped_cosine(tiny_clip_dir):
    scorer = load_clip_scorer("cpu", str(tiny_clip_dir))
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(4)]
    prompts = ["a red sun over mountains", "a moon at night", "sun", "mountains " * 120]  # last one > 77 tokens
    got = scorer(imgs, prompts)
    with torch.no_grad():
        pv = scorer.processor(images=imgs, return_tensors="pt")["pixel_values"]
        cos = []
        for i, p in enumerate(prompts):
            ids = scorer.tokenizer([p], truncation=True, max_length=77, return_tensors="pt")
            o = scorer.model(pixel_values=pv[i:i + 1], **ids)
            cos.append(float(torch.nn.functional.cosine_similarity(o.image_embeds, o.text_embeds)))
    expect = 100 * np.maximum(np.array(cos), 0)
    assert got == pytest.approx(expect, abs=1e-4)
    assert (got >= 0).all() and (got <= 100).all()


def test_clip_not_computed_without_local_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("HIRESFLOW_CLIP_MODEL", str(tmp_path / "no-such-clip"))
    with pytest.raises(MetricUnavailable, match="HIRESFLOW_CLIP_MODEL"):
        load_clip_scorer("cpu")
    assert isinstance(ClipScorer, type)
