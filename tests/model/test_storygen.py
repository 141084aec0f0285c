"""The StoryGen model: loading, image cross-attention processors, context features, loss."""

from __future__ import annotations

import pytest
import torch

from model.config import ModelConfig, StoryGenConfig
from model.storygen import (
    ImageCrossAttnProcessor,
    StoryGen,
    load_components,
    masked_mse,
    set_trainable,
)
from model.weights import (
    is_image_attention,
    is_self_attention,
    load_storygen_weights,
    save_storygen_weights,
)
from pipeline.errors import ModelLoadError

pytestmark = pytest.mark.usefixtures("torch_one_thread")

RES = 32


@pytest.fixture
def model(tiny_sd):
    return StoryGen.from_config(ModelConfig(pretrained=str(tiny_sd)))


def transformer_blocks(unet):
    return [name for name, _ in unet.named_modules() if name.endswith(tuple(f"transformer_blocks.{i}" for i in range(8)))]


def story_inputs(model, b=2, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    valid = torch.tensor([[True, True, False], [True, False, False]])[:b, :n]
    frames = torch.rand(int(valid.sum()), 3, RES, RES, generator=g) * 2 - 1
    ctx_latents = model.encode_images(frames, generator=g)
    ctx_text = model.encode_prompts([f"earlier frame {i}" for i in range(int(valid.sum()))])
    timesteps = torch.tensor([999, 420])[:b]
    story = model.context_features(ctx_latents, ctx_text, valid, timesteps, gate=torch.ones(b), generator=g)
    latents = torch.randn(b, 4, RES // model.vae_factor, RES // model.vae_factor, generator=g)
    text = model.encode_prompts(["a fox in the snow", "a fox asleep"][:b])
    return latents, timesteps, text, story


def test_every_transformer_block_gets_an_image_cross_attention(model):
    blocks = transformer_blocks(model.unet)
    assert len(blocks) == len(model.image_attention) == 4
    assert {p.removesuffix(".attn2") for p in model.image_attention} == set(blocks)
    for path, proc in model.image_attention.items():
        assert dict(model.unet.named_modules())[path].processor is proc  # attached, not a forked UNet
        assert proc.to_out.weight.abs().sum() == 0 and proc.to_out.bias.abs().sum() == 0
        self_attn = dict(model.unet.named_modules())[path.removesuffix("attn2") + "attn1"]
        assert torch.equal(proc.to_k.weight, self_attn.to_k.weight)  # initialised from self-attention
    assert type(model.unet).__module__.startswith("diffusers.")


def test_step0_prediction_equals_the_base_unet(model, tiny_sd):
    base = load_components(ModelConfig(pretrained=str(tiny_sd))).unet.eval()
    model.unet.eval()
    latents, timesteps, text, story = story_inputs(model)
    assert all(f.abs().sum() > 0 for f in story.features.values())
    with torch.no_grad():
        ours = model.predict(model.unet, latents, timesteps, text, story)
        plain = base(latents, timesteps, encoder_hidden_states=text).sample
    assert torch.allclose(ours, plain, atol=0, rtol=0)

    for proc in model.image_attention.values():  # once trained, the context changes the prediction
        torch.nn.init.normal_(proc.to_out.weight, std=0.05)
    with torch.no_grad():
        conditioned = model.predict(model.unet, latents, timesteps, text, story)
        story.gate = torch.tensor([1.0, 0.0])  # classifier-free: sample 1 drops its context
        dropped = model.predict(model.unet, latents, timesteps, text, story)
    assert not torch.allclose(conditioned[0], plain[0], atol=1e-4)
    assert torch.allclose(dropped[1], plain[1], atol=1e-6) and torch.allclose(dropped[0], conditioned[0])


def test_context_features_are_hidden_states_after_self_attention(model):
    """The features of one context frame are the attn2 inputs (norm2 of the block state after
    self-attention) of a UNet pass on that frame noised to t * d / 10, conditioned on its text."""
    model.unet.eval()
    g = torch.Generator().manual_seed(3)
    frame = torch.rand(1, 3, RES, RES, generator=g) * 2 - 1
    latents = model.encode_images(frame, generator=g)
    text = model.encode_prompts(["the frame before"])
    valid = torch.tensor([[False, True]])  # the frame sits d = 2 steps back
    story = model.context_features(latents, text, valid, torch.tensor([600]),
                                   generator=torch.Generator().manual_seed(5))

    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(5))
    t_ctx = torch.tensor([120])  # 600 * 2 / 10
    noisy = model.noise_scheduler.add_noise(latents, noise, t_ctx)
    seen = {}
    hooks = [dict(model.unet.named_modules())[path].register_forward_pre_hook(
        lambda mod, args, kwargs, path=path: seen.__setitem__(path, args[0] if args else kwargs["hidden_states"]),
        with_kwargs=True) for path in model.image_attention]
    with torch.no_grad():
        model.unet(noisy, t_ctx, encoder_hidden_states=text)
    for h in hooks:
        h.remove()
    for path, feats in story.features.items():
        tokens = seen[path].shape[1]
        assert feats.shape == (1, 2 * tokens, seen[path].shape[2])
        assert feats[:, :tokens].abs().sum() == 0  # the empty slot
        assert torch.allclose(feats[:, tokens:], seen[path], atol=1e-5)


def test_context_timesteps_nearest_frame_least_noisy(model):
    t = torch.tensor([1000 - 1, 500, 0])
    assert model.context_timesteps(t, 3).tolist() == [[99, 199, 299], [50, 100, 150], [0, 0, 0]]


def test_stages_train_the_right_parameters(model):
    stage1 = set_trainable(model.unet, 1)
    assert stage1 and all(is_self_attention(n) and ".attn1.to_" in n for n in stage1)
    stage2 = set_trainable(model.unet, 2)
    assert stage2 and all(is_image_attention(n) for n in stage2)
    assert sum(p.requires_grad for p in model.unet.parameters()) == len(stage2)


def test_masked_mse_counts_only_kept_pixels():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., :16] = 1.0  # the left half of every image is ignored
    right = (pred - target)[..., 4:].pow(2).mean()
    assert torch.allclose(masked_mse(pred, target, mask), right)
    assert torch.allclose(masked_mse(pred, target, torch.zeros_like(mask)), (pred - target).pow(2).mean())
    assert masked_mse(pred, target, torch.ones_like(mask)) == 0


def test_training_loss_follows_the_frame_mask(model, tiny_sd):
    cfg = StoryGenConfig.load(None, [f"model.pretrained={tiny_sd}", "train.stage=2"])
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(2, 3, RES, RES, generator=g) * 2 - 1, "mask": torch.zeros(2, 1, RES, RES),
             "prompt": ["a", "b"], "context": torch.rand(2, 3, 3, RES, RES, generator=g) * 2 - 1,
             "context_valid": torch.tensor([[True, True, False], [True, False, False]]),
             "context_prompts": [["x", "y"], ["z", ""], ["", ""]]}

    def loss(mask):
        return model.training_loss(model.unet, dict(batch, mask=mask), cfg.train, torch.Generator().manual_seed(1))

    full = loss(batch["mask"])
    half = batch["mask"].clone()
    half[..., : RES // 2] = 1.0
    assert torch.isfinite(full) and torch.isfinite(loss(half)) and loss(half) != full
    assert loss(torch.ones_like(half)) == 0


def test_weights_round_trip(model, tiny_sd, tmp_path):
    for proc in model.image_attention.values():
        torch.nn.init.normal_(proc.to_out.weight)
    path = save_storygen_weights(model.unet, tmp_path / "storygen.safetensors")
    fresh = StoryGen.from_config(ModelConfig(pretrained=str(tiny_sd), weights=str(path)))
    for name, proc in fresh.image_attention.items():
        assert torch.equal(proc.to_out.weight, model.image_attention[name].to_out.weight)


def test_weights_from_another_model_are_refused(model, tmp_path):
    from safetensors.torch import save_file

    save_file({"down_blocks.9.attn1.to_q.weight": torch.zeros(2, 2)}, str(tmp_path / "storygen.safetensors"))
    with pytest.raises(ModelLoadError, match="do not fit this UNet"):
        load_storygen_weights(model.unet, tmp_path)


def test_a_missing_model_says_which_and_how_to_point_at_a_copy(tmp_path):
    with pytest.raises(ModelLoadError) as err:
        load_components(ModelConfig(pretrained=str(tmp_path / "no-such-sd"), local_files_only=True))
    message = str(err.value)
    assert "UNet" in message and "no-such-sd" in message and "model.pretrained=DIR" in message


def test_processor_is_a_module_of_the_unet(model):
    names = [n for n, m in model.unet.named_modules() if isinstance(m, ImageCrossAttnProcessor)]
    assert len(names) == 4 and all(n.endswith("attn2.processor") for n in names)


def test_gradient_checkpointing_recomputes_with_the_same_context(model, tiny_sd):
    """The context travels in cross_attention_kwargs, so recomputed blocks see it again."""
    cfg = StoryGenConfig.load(None, [f"model.pretrained={tiny_sd}", "train.stage=2", "train.context_dropout=0"])
    for proc in model.image_attention.values():
        torch.nn.init.normal_(proc.to_out.weight, std=0.05)
    names = set_trainable(model.unet, 2)
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(2, 3, RES, RES, generator=g) * 2 - 1, "mask": torch.zeros(2, 1, RES, RES),
             "prompt": ["a", "b"], "context": torch.rand(2, 2, 3, RES, RES, generator=g) * 2 - 1,
             "context_valid": torch.tensor([[True, True], [True, False]]), "context_prompts": [["x", "y"], ["z", ""]]}

    def grads():
        model.unet.zero_grad(set_to_none=True)
        model.training_loss(model.unet, batch, cfg.train, torch.Generator().manual_seed(4)).backward()
        return [model.unet.get_parameter(n).grad.clone() for n in names]

    model.unet.train()
    plain = grads()
    model.unet.enable_gradient_checkpointing()
    checkpointed = grads()
    assert all(p.abs().sum() > 0 for p in plain)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, checkpointed))
