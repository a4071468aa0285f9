"""Replayable augmentation: golden parameters for fixed seeds, purity, and deterministic application."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kd.core.augment import (
    AugmentPolicy,
    ViewParams,
    apply_freq_masks,
    apply_view,
    draw_view,
    policy_by_name,
    view_seed,
)
from kd.core.errors import ConfigError

# If any of these change, the meaning of stored seeds changed: bump POLICY_VERSION and add a replay path.
GOLDEN = {
    0: (
        0.011546754286331562,
        -0.10338032137491276,
        -4.662889733820741,
        -1,
        1.0,
        (0.12659354719779053, 0.03558549538659608),
    ),
    1: (
        0.3035680343067586,
        0.13948349987431077,
        -4.1263826634783225,
        46,
        0.9756435030898856,
        (0.16550742104381874, 0.020413091299362324),
    ),
    2**63 + 5: (
        0.4474363910727892,
        -0.05682106341976878,
        -4.210134156131009,
        49,
        0.809925245234619,
        (0.03693354376333409, 0.02212518986879919),
    ),
}


@pytest.mark.parametrize("seed", list(GOLDEN))
def test_golden_views(seed):
    view = draw_view(AugmentPolicy(), seed, clip_index=3, num_clips=52)
    crop, shift, gain, partner, weight, first_mask = GOLDEN[seed]
    assert (view.crop, view.shift, view.gain_db, view.partner, view.mix_weight) == pytest.approx(
        (crop, shift, gain, partner, weight), abs=0, rel=1e-15
    )
    assert view.time_masks[0] == pytest.approx(first_mask, rel=1e-15)


def test_golden_seed_derivation():
    assert view_seed(0, "a.wav", 1) == 10619800298621716416


def test_views_are_pure_and_independent_of_global_rng():
    policy = AugmentPolicy()
    a = draw_view(policy, 1234, 0, 10)
    torch.manual_seed(99)
    np.random.seed(99)
    np.random.random(100)
    assert draw_view(policy, 1234, 0, 10) == a


def test_partner_is_never_the_clip_itself_and_covers_all_others():
    policy = AugmentPolicy(mixup_prob=1.0)
    partners = {draw_view(policy, seed, 2, 5).partner for seed in range(400)}
    assert partners == {0, 1, 3, 4}


def test_clean_first_view_and_single_clip():
    assert draw_view(AugmentPolicy(), 5, 0, 10, view=0) == ViewParams()
    assert draw_view(AugmentPolicy(mixup_prob=1.0), 5, 0, 1).partner == -1


def test_apply_view_is_deterministic_and_does_what_params_say():
    policy = AugmentPolicy(sample_rate=1000, clip_seconds=1.0)
    wave, partner = torch.ones(1200), torch.full((800,), 3.0)
    params = ViewParams(shift=0.0, gain_db=20.0, partner=1, mix_weight=0.75, time_masks=((0.5, 0.1),))
    out = apply_view(wave, params, policy, partner)
    assert torch.equal(out, apply_view(wave, params, policy, partner))
    assert out.shape == (1000,)
    assert out[0].item() == pytest.approx(0.75 * 10 + 0.25 * 3)
    assert out[900].item() == pytest.approx(0.75 * 10)  # partner zero-padded past its 800 samples
    assert torch.all(out[500:600] == 0)


def test_shift_is_circular():
    policy = AugmentPolicy(sample_rate=10, clip_seconds=1.0)
    out = apply_view(torch.arange(10.0), ViewParams(shift=0.2), policy)
    assert out.tolist() == [8, 9, 0, 1, 2, 3, 4, 5, 6, 7]


def test_freq_masks_in_relative_units():
    feats = torch.ones(2, 5, 100)
    out = apply_freq_masks(feats, ((0.1, 0.2),))
    assert torch.all(out[..., 10:30] == 0) and out.sum() == 2 * 5 * 80


def test_policy_validation_and_version_refusal():
    with pytest.raises(ConfigError, match="mixup_prob"):
        AugmentPolicy(mixup_prob=2)
    with pytest.raises(ConfigError, match="version 99"):
        AugmentPolicy.from_json({**AugmentPolicy().to_json(), "version": 99})
    assert AugmentPolicy.from_json(policy_by_name("strong").to_json()) == policy_by_name("strong")


def test_cutmix_keeps_every_older_draw_and_splices_two_clip_views():
    """A splicing policy draws the same crops, gains, partners and weights as the same policy that blends."""
    cut, blend = policy_by_name("cutmix"), policy_by_name("default", mixup_alpha=1.0)
    spliced = 0
    for seed in range(200):
        a, b = draw_view(cut, seed, 3, 52), draw_view(blend, seed, 3, 52)
        assert (a.crop, a.shift, a.gain_db, a.partner, a.mix_weight, a.time_masks) == (
            b.crop,
            b.shift,
            b.gain_db,
            b.partner,
            b.mix_weight,
            b.time_masks,
        )
        assert b.splice is None and (a.splice is not None) == (a.partner >= 0)
        spliced += a.partner >= 0
    assert 70 < spliced < 130  # default's share of two-clip views (one in two)
    assert draw_view(AugmentPolicy(cutmix_prob=0.5, mixup_prob=1.0), 7, 0, 10).partner >= 0


def test_splice_replaces_a_span_of_one_minus_weight_with_the_partner():
    policy = AugmentPolicy(sample_rate=1000, clip_seconds=1.0, cutmix_prob=1.0)
    wave, partner = torch.ones(1000), torch.arange(1000.0) + 10
    params = ViewParams(partner=1, mix_weight=0.75, splice=0.5)
    out = apply_view(wave, params, policy, partner)
    # 250 partner samples, starting half-way into the 750 samples of room: [375, 625), at the partner's own times.
    assert torch.equal(out[375:625], partner[375:625])
    assert torch.all(out[:375] == 1) and torch.all(out[625:] == 1)
    assert torch.equal(
        apply_view(wave, ViewParams(partner=1, mix_weight=0.75, splice=1.0), policy, partner)[750:], partner[750:]
    )


def test_policy_version_says_who_can_replay_it():
    """Without splicing a policy is stored exactly as before cutmix existed (so older stores resume); with it, v2."""
    default = policy_by_name("default")
    assert default.version == 1 and "cutmix_prob" not in default.to_json()
    cut = policy_by_name("cutmix")
    assert cut.version == 2 and cut.to_json()["cutmix_prob"] == 1.0
    assert AugmentPolicy.from_json(cut.to_json()) == cut
    assert AugmentPolicy.from_json({**default.to_json(), "version": 1}) == default
    with pytest.raises(ConfigError, match="cutmix_prob"):
        AugmentPolicy(cutmix_prob=-0.1)
