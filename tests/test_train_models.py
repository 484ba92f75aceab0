"""MIACNet / MA2MI shapes, ablation switches, transfer, and the MA2MI loss going down."""

from __future__ import annotations

import pytest
import torch

from mepipe.train.config import MA2MIConfig, ModelConfig
from mepipe.train.models import MODELS, PRETRAINERS, build_model, flow_input
from mepipe.train.models.ma2mi import transfer_state
from mepipe.train.models.miacnet import MIACNet
from mepipe.train.runtime import cpu_threads


@pytest.fixture(autouse=True)
def _one_thread():
    """Small models on a busy 2-core machine run far faster single-threaded (restored afterwards)."""
    with cpu_threads(1):
        yield


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("size", [112, 128, 224])
def test_every_registered_model_honours_the_contract(name: str, size: int) -> None:
    """Every classifier: its input in (a pair, or the flow image its registry entry names), logits out,
    a heat map in [0, 1] (pair models: on the N/16 grid), gradients flow."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, input_size=size, width=8, pos_heads=2), num_classes=5)
    spec = flow_input(name)
    if spec is None:
        x = torch.randn(2, 2, 3, size, size)
    else:
        x = torch.rand(2, len(spec.channels), spec.size, spec.size)
    out = model.forward_all(x)
    g = size // 16
    assert out.logits.shape == (2, 5)
    heat = out.heatmap()
    if spec is None:
        assert heat.shape == (2, g, g)
    else:
        assert heat.ndim == 3 and heat.shape[0] == 2 and max(heat.shape[1:]) <= spec.size
    assert float(heat.min()) >= 0 and float(heat.max()) <= 1 and float(heat.max()) > 0
    assert torch.equal(model.eval()(x), model.forward_all(x).logits)
    model.train()
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", ["miacnet", "miacnet-nopos", "miacnet-noatt", "single-branch"])
def test_miacnet_variants_shapes(name: str) -> None:
    size = 112
    model = build_model(ModelConfig(name=name, input_size=size, width=8, pos_heads=2), num_classes=5)
    out = model.forward_all(torch.randn(2, 2, 3, size, size))
    g = size // 16
    assert out.action.shape == (2, 64, g, g)
    has_att = name in ("miacnet", "miacnet-nopos")
    assert len(out.attention) == (4 if has_att else 0)
    if has_att:
        assert [a.shape[-1] for a in out.attention] == [size // 2, size // 4, size // 8, size // 16]
    assert (out.position is None) == (name in ("miacnet-nopos", "single-branch"))


def test_resnet_baseline_sees_only_the_difference() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="resnet-diff", input_size=32, width=4), 3).eval()
    a, b = torch.randn(2, 1, 3, 32, 32), torch.randn(2, 1, 3, 32, 32)
    # (onset, apex) and (onset + c, apex + c) have the same difference: same logits
    assert torch.allclose(model(torch.cat([a, b], 1)), model(torch.cat([a + 0.7, b + 0.7], 1)), atol=1e-5)
    assert not torch.allclose(model(torch.cat([a, b], 1)), model(torch.cat([b, a], 1)))
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) >= 17  # ResNet-18 layout
    assert [s[0].conv1.stride[0] for s in model.stages] == [1, 2, 2, 2]


@pytest.mark.parametrize(
    "kw",
    [
        dict(fusion="gate"),
        dict(fusion="sum"),
        dict(head="mean"),
        dict(pos_input="patch"),
        dict(action_input="stack"),
    ],
)
def test_miacnet_options(kw: dict) -> None:
    model = build_model(ModelConfig(input_size=64, width=4, pos_heads=2, **kw), num_classes=3)
    assert model(torch.randn(2, 2, 3, 64, 64)).shape == (2, 3)


def test_scale_fusion_starts_as_the_action_branch_and_learns_the_position_scale() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(input_size=64, width=4, pos_heads=2), num_classes=3).eval()
    assert model.pos_scale is not None and not model.pos_scale.any()  # the default fusion: scale, γ = 0
    x = torch.randn(2, 2, 3, 64, 64)
    out = model.forward_all(x)
    # γ = 0: the logits are the action branch's alone, whatever the position map holds
    assert torch.allclose(out.logits, model.head(out.action.flatten(1)), atol=1e-6)
    out.logits.sum().backward()
    assert model.pos_scale.grad.abs().sum() > 0  # γ gets a gradient and can grow
    with torch.no_grad():
        model.pos_scale.fill_(1.0)
    ref = build_model(ModelConfig(input_size=64, width=4, pos_heads=2, fusion="sum"), num_classes=3).eval()
    ref.load_state_dict({k: v for k, v in model.state_dict().items() if k != "pos_scale"})
    assert torch.allclose(model(x), ref(x), atol=1e-5)  # γ = 1 is F = A + P


def test_single_branch_sees_both_frames_stacked() -> None:
    model = build_model(ModelConfig(name="single-branch", input_size=32, width=4, pos_heads=2), 2)
    assert model.act.stem[0].in_channels == 6 and model.pos is None


@pytest.mark.parametrize("target", ["latent", "pixel"])
def test_ma2mi_outputs(target: str) -> None:
    m = PRETRAINERS.get("ma2mi")(
        ModelConfig(input_size=64, width=4, pos_heads=2),
        MA2MIConfig(target=target, pixel_size=16, bottleneck=2),
    )
    out = m(torch.randn(3, 2, 3, 64, 64))
    assert out.loss.ndim == 0 and out.recon is not None and out.recon.shape == (3, 3, 16, 16)
    assert m.squeeze[0].out_channels == 2  # the bottleneck: k channels
    assert all(not p.requires_grad for p in m.target_enc.parameters())  # stop-gradient target
    out.loss.backward()
    assert all(p.grad is None for p in m.target_enc.parameters())


@pytest.mark.parametrize("goal", ["frame", "motion"])
def test_ma2mi_loss_decreases_on_a_toy_set(goal: str) -> None:
    torch.manual_seed(0)
    cfg = MA2MIConfig(pixel_size=8, pixel_goal=goal, target="latent" if goal == "frame" else "pixel")
    m = PRETRAINERS.get("ma2mi")(ModelConfig(input_size=32, width=4, pos_heads=2), cfg)
    base = torch.randn(16, 3, 32, 32) * 0.3
    if goal == "frame":  # a random image and the same image with a bright square added
        nxt = base.clone()
        nxt[:, :, 8:14, 9:15] += 1.0
    else:  # a smooth random image and the same image moved by 4 px (1 px of the 8-px goal), half each way
        base = torch.nn.functional.avg_pool2d(torch.randn(16, 3, 40, 40), 9, 1)
        nxt = torch.cat([torch.roll(base[:8], 4, dims=-1), torch.roll(base[8:], -4, dims=-1)])
    pair = torch.stack([base, nxt], 1)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        out = m(pair)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        m.update_target()
        losses.append(float(out.loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_ema_target_follows_online_encoder() -> None:
    m = PRETRAINERS.get("ma2mi")(ModelConfig(input_size=32, width=4, pos_heads=2), MA2MIConfig(ema=0.5))
    with torch.no_grad():
        for p in m.pos.parameters():
            p.add_(1.0)
    before = [t.clone() for t in m.target_enc.parameters()]
    m.update_target()
    for b, t, s in zip(before, m.target_enc.parameters(), m.pos.parameters(), strict=True):
        assert torch.allclose(t, 0.5 * b + 0.5 * s)


def test_transfer_initialises_miacnet_branches() -> None:
    cfg = ModelConfig(input_size=32, width=4, pos_heads=2)
    pre = PRETRAINERS.get("ma2mi")(cfg, MA2MIConfig())
    state = transfer_state(pre.state_dict())
    assert state and all(k.startswith(("act.", "pos.")) for k in state)
    assert not any(k.startswith(("target_enc", "decoder", "squeeze")) for k in state)
    model = build_model(cfg, 5)
    assert isinstance(model, MIACNet)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected
    assert all(k.startswith(("head.", "pos_scale")) for k in missing)  # the new head and fusion scale
    for k, v in state.items():
        assert torch.equal(model.state_dict()[k], v)


def _moving_square_pair(n: int = 64) -> torch.Tensor:
    """``(1, 2, 3, n, n)``: a static random face-like image and the same image with a patch brightened
    in the top-left quadrant only (the only place that moves)."""
    g = torch.Generator().manual_seed(1)
    base = torch.randn(1, 3, n, n, generator=g) * 0.3
    nxt = base.clone()
    nxt[:, :, 4 : n // 2 - 4, 4 : n // 2 - 4] += 0.8
    return torch.stack([base, nxt], 1)


def _attends_to_motion(init: str, seed: int) -> bool:
    """Does an un-trained action branch's last cascaded map weigh the moving quadrant above the rest?"""
    from mepipe.train.models.miacnet import ActionBranch

    torch.manual_seed(seed)
    branch = ActionBranch(width=8, attention_init=init).eval()
    with torch.no_grad():
        _, maps = branch(_moving_square_pair())
    m = maps[-1][0, 0]
    h = m.shape[0] // 2
    return bool(m[:h, :h].mean() > m[h:, h:].mean())


def test_positive_attention_init_attends_to_the_motion_for_every_seed() -> None:
    """With the ``positive`` init every seed's un-trained attention cascade weighs the moving region up;
    with PyTorch's random init the sign of each map is a coin flip, so some seeds weigh it down."""
    seeds = range(12)
    assert all(_attends_to_motion("positive", s) for s in seeds)
    assert not all(_attends_to_motion("random", s) for s in seeds)


def test_attention_init_is_configurable_and_checked() -> None:
    model = build_model(ModelConfig(input_size=32, width=4, pos_heads=2, attention_init="random"), 3)
    w = model.act.blocks[0].att.conv.weight
    assert not torch.all(w == 0.5)
    model = build_model(ModelConfig(input_size=32, width=4, pos_heads=2), 3)
    assert torch.all(model.act.blocks[0].att.conv.weight == 0.5)
    from mepipe.train.models.miacnet import SpatialAttention

    with pytest.raises(ValueError, match="attention init"):
        SpatialAttention("zeros")


def test_light_pixel_head_reconstructs_at_the_same_size_with_fewer_flops() -> None:
    cfg = ModelConfig(input_size=64, width=4, pos_heads=2)
    full = PRETRAINERS.get("ma2mi")(cfg, MA2MIConfig(pixel_size=16, pixel_head="full"))
    light = PRETRAINERS.get("ma2mi")(cfg, MA2MIConfig(pixel_size=16, pixel_head="light"))
    x = torch.randn(2, 2, 3, 64, 64)
    assert light(x).recon.shape == full(x).recon.shape == (2, 3, 16, 16)
    # the 3x3 conv at 16x16 reads w channels instead of D = 8w
    assert light.pixel_head[0].in_channels == 4 and full.pixel_head[0].in_channels == 32
    light(x).loss.backward()
    assert light.pixel_reduce.weight.grad is not None


def test_change_goal_is_the_frame_difference_relative_to_predicting_no_change() -> None:
    """``pixel_goal=change``: the pixel term is MSE(predicted change, area(I_t+δ) - area(I_t)) divided
    by the change's mean square (a head that outputs zeros scores exactly 1); a pair without change
    stays finite."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    m = PRETRAINERS.get("ma2mi")(
        ModelConfig(input_size=32, width=4, pos_heads=2),
        MA2MIConfig(target="pixel", pixel_goal="change", pixel_size=8),
    )
    pair = torch.randn(4, 2, 3, 32, 32)
    out = m(pair)
    start = F.interpolate(pair[:, 0], size=8, mode="area")
    goal = F.interpolate(pair[:, 1], size=8, mode="area") - start
    expected = F.mse_loss(out.recon - start, goal) / goal.pow(2).mean()  # recon = start + change
    assert torch.allclose(out.pixel_loss, expected) and torch.allclose(out.loss, expected)
    for p in m.pixel_head[-1].parameters():
        torch.nn.init.zeros_(p)
    assert m(pair).pixel_loss.item() == pytest.approx(1.0)
    still = pair[:, :1].expand(-1, 2, -1, -1, -1)
    assert torch.isfinite(m(still).loss)
    with pytest.raises(ValueError, match="pixel_goal"):
        type(m)(32, 4, pos_heads=2, pixel_goal="flow")


def test_warp_samples_the_image_at_the_displaced_positions() -> None:
    from mepipe.train.models.ma2mi import warp

    img = torch.arange(36.0).view(1, 1, 6, 6)
    motion = torch.zeros(1, 2, 6, 6)
    motion[:, 0], motion[:, 1] = 1.0, -1.0  # sample one pixel to the right and one up
    out = warp(img, motion)
    assert torch.allclose(out[0, 0, 1:, :-1], img[0, 0, :-1, 1:])
    assert torch.allclose(warp(img, torch.zeros_like(motion)), img, atol=1e-5)
    half = torch.zeros(1, 2, 6, 6)
    half[:, 0] = 0.5
    assert torch.allclose(warp(img, half)[0, 0, :, :-1], img[0, 0, :, :-1] + 0.5)  # bilinear


def test_motion_goal_warps_i_t_and_is_relative_to_predicting_no_motion() -> None:
    """``pixel_goal=motion``: the head predicts a displacement field; the reconstruction is area(I_t)
    warped by it, its MSE to area(I_t+δ) divided by that of area(I_t) itself (zero motion scores exactly
    1); the action branch gets gradients through the warp."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    m = PRETRAINERS.get("ma2mi")(
        ModelConfig(input_size=32, width=4, pos_heads=2),
        MA2MIConfig(target="pixel", pixel_goal="motion", pixel_size=8),
    )
    assert m.pixel_head[-1].out_channels == 2
    frame = torch.randn(4, 1, 3, 32, 32)
    pair = torch.cat([frame, torch.roll(frame, 4, dims=-1)], 1)  # I_t+δ: I_t moved 1 px right at 8 px
    out = m(pair)
    start = F.interpolate(pair[:, 0], size=8, mode="area")
    goal = F.interpolate(pair[:, 1], size=8, mode="area")
    assert out.recon.shape == (4, 3, 8, 8)
    assert torch.allclose(out.pixel_loss, F.mse_loss(out.recon, goal) / F.mse_loss(start, goal))
    out.loss.backward()
    assert m.act.stem[0].weight.grad.abs().sum() > 0
    for p in m.pixel_head[-1].parameters():
        torch.nn.init.zeros_(p)
    assert m(pair).pixel_loss.item() == pytest.approx(1.0)
    torch.nn.init.constant_(m.pixel_head[-1].bias, 0.0)
    with torch.no_grad():
        m.pixel_head[-1].bias[0] = -1.0  # the true motion: sample one pixel to the left
    assert m(pair).pixel_loss.item() < 0.3  # only the wrapped-around border column is wrong


def test_transfer_of_the_action_branch_only_leaves_the_position_branch_fresh(tmp_path) -> None:
    from mepipe.train.transfer import INIT_PARTS, apply_init

    cfg = ModelConfig(input_size=32, width=4, pos_heads=2)
    torch.manual_seed(0)
    pre = PRETRAINERS.get("ma2mi")(cfg, MA2MIConfig())
    state = transfer_state(pre.state_dict(), INIT_PARTS["action"])
    assert state and all(k.startswith("act.") for k in state)
    torch.manual_seed(1)
    model = build_model(cfg, 5)
    fresh_pos = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("pos.")}
    apply_init(model, state)
    for k, v in model.state_dict().items():
        if k.startswith("act."):
            assert torch.equal(v, pre.state_dict()[k])
        elif k.startswith("pos."):
            assert torch.equal(v, fresh_pos[k])
