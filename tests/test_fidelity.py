"""One-step fidelity: the one-call policy samples what the same network's k-step sampler samples.

Fixed targets isolate the flow (no critic to learn); the bandit runs the whole SOM loop. Tolerances
are stated next to each assertion; the energy distance is ``2 E|X-Y| - E|X-X'| - E|Y-Y'|``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch as th

from breadth_by_dimension import trained_breadth
from fixed_target import energy_distance, fit_and_sample
from reference_targets import GaussianTarget
from sb3_som import SOM
from sb3_som.envs import MultiGoalBandit, TwoMoonsBandit, multi_goal_mixture

N = 10_000


def test_one_step_reproduces_mean_and_spread_of_a_gaussian_target():
    target = GaussianTarget(th.tensor([0.4, -0.3]), 0.15)
    # SOM's default flow settings, alpha = 1 on the raw Q: the target is exp(Q) itself
    one, many, generator = fit_and_sample(target.q_function, 4000, seed=0, n_samples=N)
    exact = target.mu + target.sigma * th.randn(N, 2, generator=generator)
    # tolerances: the mean within a quarter of the target's width, the spread within 15%, energy distances
    # an order of magnitude below a one-width shift's
    assert (one.mean(0) - target.mu).norm() < 0.04  # mean within 0.27 sigma
    assert th.all((one.std(0) / target.sigma - 1).abs() < 0.15)  # spread within 15%
    assert energy_distance(one, exact) < 0.01
    assert energy_distance(one, many) < 0.01  # one step samples what 20 steps sample


@pytest.mark.slow  # 4,000 updates on six modes, about 40 s; the in-loop bandit test below checks modes in the default run
def test_one_step_covers_the_modes_of_a_mixture_with_mass_on_the_heavier_ones():
    mixture = multi_goal_mixture()  # six bumps, sigma 0.1, weights 2, 1, 2, 1, 2, 1
    one, many, generator = fit_and_sample(mixture.q_function, 4000, seed=0, n_samples=N)
    exact = mixture.sample(N, generator)
    modes = mixture.nearest_mode(one)
    counts = th.stack([(modes == i).sum() for i in range(6)]).float()
    # tolerances: most samples on a mode, every mode held, the heavy modes holding more than the light ones
    assert (modes >= 0).float().mean() > 0.75  # most samples on a mode (exact: 0.99)
    assert (counts >= 0.05 * N).sum() == 6  # every mode holds at least 5% of the samples
    assert counts[0::2].sum() > 1.4 * counts[1::2].sum()  # heavier modes get more (exact: 2x)
    assert energy_distance(one, exact) < 0.01
    assert energy_distance(one, many) < 0.01  # one step samples what 20 steps sample


def test_in_the_loop_one_step_reward_is_within_ten_percent_of_the_twenty_step_sampler_on_six_modes():
    env = MultiGoalBandit()
    # alpha 0.5: the target holds all six modes (at alpha 3, often one at the learned critic); the other settings are
    # SOM's defaults (benchmarks/bandit_fidelity.py measures the same comparison over seeds)
    model = SOM(
        "MlpMeanFlowPolicy",
        env,
        learning_starts=200,
        alpha=0.5,
        policy_kwargs=dict(net_arch=[128, 128]),
        seed=0,
    )
    model.learn(2500)
    with th.no_grad():
        features = th.zeros(N, 1)
        noise = th.randn(N, 2, generator=th.Generator().manual_seed(7))
        one = model.actor.sample(features, noise, steps=1).numpy()
        many = model.actor.sample(features, noise, steps=20).numpy()
    reward_one, reward_many = env.reward(one).mean(), env.reward(many).mean()
    assert reward_many > 0.05  # the flow learned something
    assert abs(reward_one - reward_many) <= 0.1 * reward_many
    modes = env.mixture.nearest_mode(th.as_tensor(one))
    counts = th.stack([(modes == i).sum() for i in range(6)])
    assert (counts >= 0.05 * N).sum() == 6  # every mode of the target holds at least 5% of the one-step samples


def test_two_moons_distance_matches_a_dense_arc_and_its_arcs_earn_the_top_reward():
    env = TwoMoonsBandit()
    angles = np.linspace(0, np.pi, 2001)
    arcs = [center + env.radius * np.stack([np.cos(angles + moon * np.pi), np.sin(angles + moon * np.pi)], 1)
            for moon, center in enumerate(env.centers)]  # fmt: skip
    points = np.random.default_rng(0).uniform(-1, 1, (300, 2))
    distances, positions = env.arc_position(points)
    for moon, arc in enumerate(arcs):
        brute = np.linalg.norm(points[:, None] - arc[None], axis=-1).min(axis=1)
        np.testing.assert_allclose(distances[:, moon], brute, atol=2e-3)
        np.testing.assert_allclose(env.reward(arc), 1.0)
        assert ((positions >= 0) & (positions <= 1)).all()
    assert env.reward(np.array([[0.0, 0.8]]))[0] < 1e-3  # above both moons


@pytest.mark.slow  # 6,000 updates: about 1-2 minutes per case on one core
@pytest.mark.parametrize(("dim", "width"), [(6, 0.1), (17, 0.1), (1, 0.05), (6, 0.05), (17, 0.05)])
def test_one_step_policy_is_as_broad_as_a_narrow_target_in_many_action_dimensions(dim, width):
    # a Gaussian target of width 0.1 or 0.05 per coordinate (benchmarks/breadth_by_dimension.py, which measures every
    # cell; with the Gaussian proposals alone the one-step policy ends 2.2 (d = 6) and 3.3 (d = 17) times as broad
    # as the width-0.1 target, with uniform times and an even distillation grid 0.78 (d = 1) and 1.35 (d = 17) as
    # the width-0.05 one); the fast counterparts in tests/test_math.py hold the estimate's weights and regression
    # slope on the same target
    result = trained_breadth(dim, width, 6000, seed=0)
    assert 0.9 <= result["one_step_spread"] <= 1.15, result
    assert result["mean_error"] < 0.05, result


@pytest.mark.slow  # 6,000 updates: about 1-2 minutes on one core
def test_one_step_policy_on_a_kinked_target_in_17_dimensions_is_as_broad_as_its_target():
    # a Laplace target of width 0.1 per coordinate (a ReLU critic's piecewise-linear shape): the weights collapse at
    # t >= 0.3 and the anchor's step carries the pull (benchmarks/breadth_by_dimension.py --shape laplace); with a
    # single actor network, whose one-step map holds the flow near its own samples, the policy ends 1.28 times as
    # broad
    result = trained_breadth(17, 0.1, 6000, seed=0, shape="laplace")
    assert 0.9 <= result["one_step_spread"] <= 1.15, result
    assert result["mean_error"] < 0.05, result
