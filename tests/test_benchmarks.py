"""The benchmark scripts' own measurements, on samples whose answer is known."""

import argparse
import json

import numpy as np
import pytest
import torch as th
from action_distribution import count_modes, summary
from late_evaluations import LateEvaluations
from q_against_returns import discounted_returns
from steep_states import GRID
from steep_states import summary as weighted_summary

from sb3_som import SOM


@pytest.mark.parametrize(
    ("name", "expected"),
    [("uniform", 1), ("gaussian", 1), ("two gaussians", 2), ("on a face", 1), ("face and interior", 2), ("constant", 1)],
)
def test_count_modes_counts_the_modes_of_known_distributions(name: str, expected: int) -> None:
    rng = np.random.default_rng(0)
    samples = {
        "uniform": rng.uniform(-1, 1, 4000),
        "gaussian": rng.normal(0.3, 0.2, 4000).clip(-1, 1),
        "two gaussians": np.concatenate([rng.normal(-0.5, 0.1, 2000), rng.normal(0.5, 0.1, 2000)]),
        "on a face": rng.normal(0.95, 0.2, 4000).clip(-1, 1),
        "face and interior": np.concatenate([rng.normal(-0.95, 0.1, 1000), rng.normal(0.3, 0.15, 3000)]).clip(-1, 1),
        "constant": np.full(4000, 0.2),
    }[name]
    assert count_modes(samples) == expected


def test_summary_of_bimodal_and_face_samples() -> None:
    rng = np.random.default_rng(1)
    bimodal = np.concatenate([rng.normal(-0.5, 0.1, 2000), rng.normal(0.5, 0.1, 2000)])
    actions = np.stack([np.stack([bimodal, np.ones(4000)], axis=-1)] * 3)  # (3 states, 4000, 2 dimensions)
    row = summary(actions)
    assert row["share with 2+ modes"] == pytest.approx(0.5)
    assert row["mean modes"] == pytest.approx(1.5)
    assert row["share on a face"] == pytest.approx(0.5)
    assert row["mean std"] == pytest.approx(bimodal.std() / 2, rel=1e-6)


def test_discounted_returns_match_the_closed_form() -> None:
    # G_t = sum_k gamma^k r_{t+k}: with r = (1, 2, 4) and gamma 0.5, G = (1 + 1 + 1, 2 + 2, 4)
    np.testing.assert_allclose(discounted_returns(np.array([1.0, 2.0, 4.0]), 0.5), [3.0, 4.0, 4.0])
    # a constant reward over a long episode tends to r / (1 - gamma)
    assert discounted_returns(np.ones(2000), 0.99)[0] == pytest.approx(100.0, rel=1e-6)


def test_weighted_summary_of_two_actions() -> None:
    # actions -1 and 1 weighed 1/4 and 3/4 under Q(a) = a on the grid (argmax 1, max 1): mean 0.5, so the distance
    # from the argmax is 0.5, the spread sqrt(1/4 * 1.5^2 + 3/4 * 0.5^2) = sqrt(3/4) and max Q - E[Q] = 1 - 0.5
    distance, spread, gap = weighted_summary(
        th.tensor([[-1.0, 1.0]]), th.tensor([[0.25, 0.75]]), th.tensor([[-1.0, 1.0]]), GRID.unsqueeze(0)
    )
    assert (distance, gap) == pytest.approx((0.5, 0.5))
    assert spread == pytest.approx(0.75**0.5)


def test_late_evaluations_average_the_weights_and_leave_training_as_it_is(tmp_path) -> None:
    settings = dict(learning_starts=50, batch_size=32, n_score_samples=8, policy_kwargs=dict(net_arch=[16, 16]), seed=0)
    out = tmp_path / "late.jsonl"
    args = argparse.Namespace(algo="som", env="Pendulum-v1", seed=0, hyperparams={}, episodes=1, start=100, every=50,
                              taus=[1.0, 0.0], out=str(out))  # fmt: skip
    probed = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **settings)
    probed.learn(200, callback=LateEvaluations(args))
    plain = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **settings)
    plain.learn(200)
    for probed_weight, plain_weight in zip(probed.policy.parameters(), plain.policy.parameters(), strict=True):
        assert th.equal(probed_weight, plain_weight)  # the evaluations change nothing in the run
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["timesteps"] for row in rows] == [100, 150, 200]
    for row in rows:  # tau 1 follows the live weights exactly; tau 0 keeps the initial ones, another policy
        assert row["average_tau_1"] == row["live"]
        assert row["average_tau_0"] != row["live"]
