"""The VAVL network: conditions, padding, missing modalities, gradients per phase, sizes, errors."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F

from vavl.config import ConfigError, ModelConfig, load_config
from vavl.model import VAVL, VAVLOutput, masked_mean

SMALL = ModelConfig(
    audio_dim=20,
    visual_dim=24,
    d_model=32,
    n_heads=2,
    ff_mult=2,
    conv_kernel=5,
    dropout=0.1,
    branch_layers=2,
    head_hidden=16,
)
K = 3
ATOL = 1e-5


def _model(seed: int = 0, residual_weight: float = 1.0) -> VAVL:
    torch.manual_seed(seed)
    return VAVL(SMALL, num_outputs=K, residual_weight=residual_weight)


def _inputs(
    audio_lengths: list[int], visual_lengths: list[int], seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Padded audio (B, T_a, 20) and visual (B, T_v, 24) with masks; a length 0 = absent row."""
    gen = torch.Generator().manual_seed(seed)

    def one(lengths: list[int], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
        x = torch.randn(len(lengths), max(lengths), dim, generator=gen)
        return x * mask[..., None], mask

    return *one(audio_lengths, 20), *one(visual_lengths, 24)


def _rows(out: VAVLOutput, row: int) -> dict[str, torch.Tensor]:
    """Every non-None output tensor of one row, keyed field/condition."""
    picked = {}
    for field in ("predictions", "reconstructions", "representations", "recon_targets"):
        for cond in ("audio", "visual", "fusion"):
            value = getattr(getattr(out, field), cond)
            if value is not None:
                picked[f"{field}/{cond}"] = value[row]
    return picked


def _assert_close_rows(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], atol=ATOL, rtol=0, msg=key)


@torch.no_grad()
def test_three_conditions_give_the_outputs_each_condition_has() -> None:
    model = _model().eval()
    audio, a_mask, visual, v_mask = _inputs([8, 5], [6, 4])
    both = model(audio, a_mask, visual, v_mask)
    assert both.predictions.audio.shape == (2, K)
    assert both.predictions.visual.shape == (2, K)
    assert both.predictions.fusion.shape == (2, K)
    assert both.reconstructions.audio.shape == (2, 20)
    assert both.reconstructions.visual.shape == (2, 24)
    assert both.reconstructions.fusion is None
    assert both.representations.audio.shape == (2, 32)
    assert both.present.fusion.tolist() == [True, True]

    audio_only = model(audio=audio, audio_mask=a_mask)
    assert audio_only.predictions.audio.shape == (2, K)
    assert audio_only.predictions.visual is None and audio_only.predictions.fusion is None
    assert audio_only.representations.visual is None and audio_only.present.fusion is None

    visual_only = model(visual=visual, visual_mask=v_mask)
    assert visual_only.predictions.visual.shape == (2, K)
    assert visual_only.predictions.audio is None and visual_only.predictions.fusion is None
    # A branch's outputs do not depend on whether the other modality was given.
    torch.testing.assert_close(audio_only.predictions.audio, both.predictions.audio)
    torch.testing.assert_close(visual_only.predictions.visual, both.predictions.visual)


@torch.no_grad()
def test_utterance_alone_equals_utterance_padded_in_batch() -> None:
    model = _model().eval()
    a_len, v_len = [6, 15, 9], [4, 11, 7]
    audio, a_mask, visual, v_mask = _inputs(a_len, v_len)
    batched = model(audio, a_mask, visual, v_mask)
    for row in range(3):
        alone = model(
            audio[row : row + 1, : a_len[row]],
            None,  # no mask: every frame real
            visual[row : row + 1, : v_len[row]],
            None,
        )
        _assert_close_rows(_rows(batched, row), _rows(alone, 0))


@torch.no_grad()
def test_values_in_padded_frames_change_nothing() -> None:
    model = _model().eval()
    audio, a_mask, visual, v_mask = _inputs([6, 15, 9], [4, 11, 7])
    clean = model(audio, a_mask, visual, v_mask)
    dirty_a, dirty_v = audio.clone(), visual.clone()
    dirty_a[~a_mask] = 1e3
    dirty_v[~v_mask] = float("nan")
    dirty = model(dirty_a, a_mask, dirty_v, v_mask)
    for row in range(3):
        _assert_close_rows(_rows(dirty, row), _rows(clean, row))


@torch.no_grad()
def test_recon_target_is_the_masked_mean_of_the_input_frames() -> None:
    model = _model().eval()
    audio, a_mask, visual, v_mask = _inputs([3, 5], [2, 4])
    out = model(audio, a_mask, visual, v_mask)
    torch.testing.assert_close(out.recon_targets.audio[0], audio[0, :3].mean(0))
    torch.testing.assert_close(out.recon_targets.visual[1], visual[1, :4].mean(0))


@torch.no_grad()
def test_rows_missing_a_modality_match_running_present_rows_alone() -> None:
    model = _model().eval()
    # Row 0 both, row 1 visual only, row 2 audio only, row 3 both.
    a_len, v_len = [7, 0, 9, 4], [5, 6, 0, 8]
    audio, a_mask, visual, v_mask = _inputs(a_len, v_len)
    out = model(audio, a_mask, visual, v_mask)
    assert out.present.audio.tolist() == [True, False, True, True]
    assert out.present.visual.tolist() == [True, True, False, True]
    assert out.present.fusion.tolist() == [True, False, False, True]
    for field in ("predictions", "reconstructions", "representations"):
        for cond, absent in (("audio", [1]), ("visual", [2]), ("fusion", [1, 2])):
            value = getattr(getattr(out, field), cond)
            if value is None:
                continue
            assert torch.isfinite(value).all(), f"{field}/{cond} has NaN/inf"
            assert torch.all(value[absent] == 0), f"{field}/{cond} not zero on absent rows"

    both = torch.tensor([0, 3])
    alone = model(audio[both], a_mask[both], visual[both], v_mask[both])
    for i, row in enumerate(both.tolist()):
        _assert_close_rows(_rows(out, row), _rows(alone, i))
    visual_alone = model(visual=visual[1:2, :6])
    torch.testing.assert_close(out.predictions.visual[1], visual_alone.predictions.visual[0])
    audio_alone = model(audio=audio[2:3, :9])
    torch.testing.assert_close(out.predictions.audio[2], audio_alone.predictions.audio[0])


@torch.no_grad()
def test_a_modality_absent_from_every_row_gives_zeros_not_nan() -> None:
    model = _model().eval()
    audio, a_mask, visual, v_mask = _inputs([5, 3], [4, 2])
    out = model(audio, a_mask, visual, torch.zeros_like(v_mask))
    assert out.present.visual.tolist() == [False, False]
    assert torch.all(out.predictions.visual == 0) and torch.all(out.predictions.fusion == 0)
    assert torch.all(out.recon_targets.visual == 0)
    assert torch.isfinite(out.predictions.audio).all()


def _grads(model: VAVL) -> dict[str, bool]:
    """Parameter name -> whether it received a nonzero gradient."""
    return {
        name: p.grad is not None and bool(p.grad.abs().sum() > 0)
        for name, p in model.named_parameters()
    }


def _names(model: VAVL, params: list[torch.nn.Parameter]) -> set[str]:
    ids = {id(p) for p in params}
    return {name for name, p in model.named_parameters() if id(p) in ids}


def _branch_loss(out: VAVLOutput, cond: str, labels: torch.Tensor) -> torch.Tensor:
    prediction = F.cross_entropy(getattr(out.predictions, cond), labels)
    recon = getattr(out.reconstructions, cond)
    return prediction + F.mse_loss(recon, getattr(out.recon_targets, cond))


@pytest.mark.parametrize("branch", ["audio", "visual"])
def test_a_branch_loss_reaches_exactly_that_branchs_parameters(branch: str) -> None:
    model = _model().train()
    audio, a_mask, visual, v_mask = _inputs([6, 9, 4], [5, 3, 7])
    out = model(audio, a_mask, visual, v_mask)
    _branch_loss(out, branch, torch.tensor([0, 2, 1])).backward()
    got = _grads(model)
    owned = _names(model, model.branch_parameters(branch))
    assert owned == {name for name, has in got.items() if has}
    other = "visual" if branch == "audio" else "audio"
    groups = model.parameter_groups()
    assert all(p.grad is None for p in groups[f"{other}_only"] + groups["fusion"])


def test_fusion_loss_on_detached_inputs_reaches_only_the_fusion_head() -> None:
    model = _model().train()
    audio, a_mask, visual, v_mask = _inputs([6, 9], [5, 3])
    out = model(audio, a_mask, visual, v_mask, detach_fusion_inputs=True)
    F.cross_entropy(out.predictions.fusion, torch.tensor([1, 0])).backward()
    got = _grads(model)
    assert {name for name, has in got.items() if has} == _names(
        model, model.branch_parameters("fusion")
    )
    assert all(name.startswith("fusion_head.") for name, has in got.items() if has)


def test_fusion_loss_without_detach_reaches_both_encoders() -> None:
    model = _model().train()
    audio, a_mask, visual, v_mask = _inputs([6, 9], [5, 3])
    out = model(audio, a_mask, visual, v_mask)
    F.cross_entropy(out.predictions.fusion, torch.tensor([1, 0])).backward()
    got = _grads(model)
    assert got["encoders.audio.projection.weight"] and got["encoders.visual.projection.weight"]
    assert not got["heads.audio.0.weight"]


def test_parameter_groups_are_disjoint_and_cover_the_model() -> None:
    model = _model()
    groups = model.parameter_groups()
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    assert _names(model, groups["shared"]) == {
        name
        for name, _ in model.named_parameters()
        if name.startswith(("shared_block.", "shared_rest.", "shared_norm."))
    }
    with pytest.raises(ValueError, match="'both'"):
        model.branch_parameters("both")  # type: ignore[arg-type]


@torch.no_grad()
def test_residual_weight_changes_the_output_and_is_settable() -> None:
    model = _model().eval()
    audio, a_mask, visual, v_mask = _inputs([6, 9], [5, 3])
    with_residual = model(audio, a_mask, visual, v_mask).representations.audio
    model.residual_weight = 0.0
    without = model(audio, a_mask, visual, v_mask).representations.audio
    assert (with_residual - without).abs().max() > 1e-2
    # Setting the attribute is the same as building with that weight.
    rebuilt = _model(residual_weight=0.0).eval()
    torch.testing.assert_close(rebuilt(audio, a_mask).representations.audio, without)
    assert isinstance(model.residual_weight, float)


def _conformer_params(d: int, ff: int, k: int) -> int:
    layer_norm = 2 * d
    feed_forward = layer_norm + (d * ff * d + ff * d) + (ff * d * d + d)
    attention = layer_norm + (3 * d * d + 3 * d) + (d * d + d)
    conv = layer_norm + (d * 2 * d + 2 * d) + (d * k + d) + layer_norm + (d * d + d)
    return 2 * feed_forward + attention + conv + layer_norm


def _expected_params(c: ModelConfig, k_out: int) -> int:
    def linear(i: int, o: int) -> int:
        return i * o + o

    d, h = c.d_model, c.head_hidden
    per_block = _conformer_params(d, c.ff_mult, c.conv_kernel)
    blocks = (2 * c.branch_layers + c.shared_layers) * per_block
    projections = linear(c.audio_dim, d) + linear(c.visual_dim, d)
    heads = 2 * (linear(d, h) + linear(h, k_out))
    recon = linear(d, h) + linear(h, c.audio_dim) + linear(d, h) + linear(h, c.visual_dim)
    fusion = linear(2 * d, h) + linear(h, k_out)
    return blocks + projections + 2 * d + heads + recon + fusion  # 2 * d: the shared LayerNorm


def test_default_model_has_paper_widths_and_the_derived_parameter_count() -> None:
    model = VAVL()
    assert (model.audio_dim, model.visual_dim, model.d_model, model.num_outputs) == (
        1024,
        1408,
        512,
        6,
    )
    count = sum(p.numel() for p in model.parameters())
    assert count == _expected_params(ModelConfig(), 6)
    # 32,967,314 from the formula above; the paper's code has 61.4M of which 7.1M are unused.
    assert count == 32_967_314
    assert sum(p.numel() for p in _model().parameters()) == _expected_params(SMALL, K)
    deeper = SMALL.model_copy(update={"shared_layers": 3})
    assert sum(p.numel() for p in VAVL(deeper, num_outputs=K).parameters()) == (
        _expected_params(deeper, K)
    )


def test_paper_preset_has_the_paper_codes_sizes_and_the_derived_parameter_count() -> None:
    config = ModelConfig(preset="paper")
    sizes = (config.branch_layers, config.shared_layers, config.d_model, config.n_heads)
    assert sizes == (3, 2, 512, 8)
    assert (config.ff_mult, config.conv_kernel, config.head_hidden) == (4, 31, 512)
    count = sum(p.numel() for p in VAVL(config, num_outputs=6).parameters())
    assert count == _expected_params(config, 6)
    # 52,563,858 from the formula; the paper's code builds 61,375,128 and uses 53,884,818 (the
    # differences: vavl.model.vavl's docstring).
    assert count == 52_563_858


def _state_dict_digest(model: VAVL) -> str:
    """sha256 of the state dict's "name shape" lines, in order."""
    lines = "\n".join(f"{k} {tuple(v.shape)}" for k, v in model.state_dict().items())
    return hashlib.sha256(lines.encode()).hexdigest()


# `_state_dict_digest(VAVL(config, num_outputs=3))` at commit 8106d4d, before shared_layers and
# the scaled-dot-product attention: checkpoints written then must load into one shared layer.
DIGEST_8106D4D = {
    "SMALL": "8538d2308543afd395b61feffd1e894c856c383906f042244cd6c56a91981f65",
    "default": "0c62c0bcbcc1886687a81c1def1e93e65a1d37ca076e2c41015db35c957969d0",
}


def test_one_shared_layer_keeps_the_state_dict_of_earlier_checkpoints() -> None:
    for name, config in (("SMALL", SMALL), ("default", ModelConfig())):
        assert config.shared_layers == 1
        assert _state_dict_digest(VAVL(config, num_outputs=3)) == DIGEST_8106D4D[name], name


@torch.no_grad()
def test_shared_layers_run_in_order_inside_the_weighted_residual() -> None:
    torch.manual_seed(0)
    config = SMALL.model_copy(update={"shared_layers": 3})
    model = VAVL(config, num_outputs=K, residual_weight=0.5).eval()
    assert {k.split(".")[1] for k in model.state_dict() if k.startswith("shared_rest.")} == {
        "0",
        "1",
    }
    audio, a_mask, _, _ = _inputs([6, 9], [5, 3])
    h = model.encoders["audio"](audio, a_mask)
    shared = model.shared_block(h, a_mask)
    for block in model.shared_rest:
        shared = block(shared, a_mask)
    want = masked_mean(model.shared_norm(shared + 0.5 * h), a_mask)
    torch.testing.assert_close(model(audio, a_mask).representations.audio, want)


def test_shared_layers_must_be_at_least_one() -> None:
    with pytest.raises(ConfigError, match=r"model\.shared_layers: .*greater than or equal to 1"):
        load_config(overrides=["model.shared_layers=0"])


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda a, am, v, vm: {"audio": a[..., :19]}, ["audio", "expected 20", "got 19"]),
        (lambda a, am, v, vm: {"visual": torch.zeros(2, 3, 25)}, ["visual", "24", "25"]),
        (lambda a, am, v, vm: {"audio": a[0]}, ["audio", "3 dims", "(9, 20)"]),
        (lambda a, am, v, vm: {"audio": a, "visual": v[:1]}, ["batch sizes", "2", "1"]),
        (lambda a, am, v, vm: {"audio": a, "audio_mask": am[:, :4]}, ["audio_mask", "(2, 4)"]),
        (lambda a, am, v, vm: {"visual": v, "visual_mask": vm.int()}, ["bool", "int32"]),
        (lambda a, am, v, vm: {"audio_mask": am}, ["audio_mask", "without"]),
        (lambda a, am, v, vm: {}, ["neither"]),
        (lambda a, am, v, vm: {"audio": a[:, :0]}, ["0 frames"]),
    ],
)
def test_bad_inputs_raise_value_errors_naming_what_and_values(call, words: list[str]) -> None:
    model = _model()
    audio, a_mask, visual, v_mask = _inputs([9, 5], [6, 4])
    with pytest.raises(ValueError) as err:
        model(**call(audio, a_mask, visual, v_mask))
    for word in words:
        assert word in str(err.value)


def test_bad_construction_is_rejected() -> None:
    with pytest.raises(ValueError, match="num_outputs must be > 0, got 0"):
        VAVL(SMALL, num_outputs=0)
    with pytest.raises(TypeError, match="dict"):
        VAVL({"d_model": 32})  # type: ignore[arg-type]


def test_activation_checkpointing_gives_the_same_loss_and_gradients_with_dropout_on() -> None:
    def loss_and_grads(checkpointed: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        config = SMALL.model_copy(update={"activation_checkpointing": checkpointed})
        model = VAVL(config, num_outputs=K).train()
        blocks = [m for m in model.modules() if hasattr(m, "checkpointed")]
        assert len(blocks) == 5 and all(b.checkpointed == checkpointed for b in blocks)
        audio, audio_mask, visual, visual_mask = _inputs([7, 4, 0], [5, 0, 3])
        torch.manual_seed(1)  # the same dropout masks in both runs
        out = model(
            audio=audio,
            audio_mask=audio_mask,
            visual=visual,
            visual_mask=visual_mask,
            detach_fusion_inputs=True,
        )
        labels = torch.tensor([0, 2, 1])
        loss = sum(_branch_loss(out, cond, labels) for cond in ("audio", "visual"))
        loss = loss + F.cross_entropy(out.predictions.fusion, labels)
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        return loss.detach(), grads

    plain_loss, plain = loss_and_grads(False)
    kept_loss, kept = loss_and_grads(True)
    torch.testing.assert_close(kept_loss, plain_loss)
    assert plain.keys() == kept.keys() and len(plain) > 0
    for name in plain:
        torch.testing.assert_close(kept[name], plain[name], msg=name)
