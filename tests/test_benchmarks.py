"""The benchmark scripts' own measurements, on samples whose answer is known."""

import argparse
import json

import numpy as np
import pytest
import torch as th

from action_distribution import count_modes, summary
from bandit_fidelity import box_grid, mode_shares
from breadth_by_dimension import fixed_target, target_std
from multigoal import goal_directions, hyperparams
from quadratic_bandit import target_coordinate
from sb3_som import SOM
from sb3_som.envs import MultiGoalBandit


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


def test_quadratic_bandit_target_by_quadrature_against_closed_forms() -> None:
    # a flat target is uniform on [-1, 1]: standard deviation 1 / sqrt(3), 2% of it beyond 0.98 (1% at each face)
    std, share = target_coordinate(0.85, 1e-12)
    assert std == pytest.approx(3**-0.5, rel=1e-4) and share == pytest.approx(0.02, rel=1e-3)
    # a sharp one well inside the box is a Gaussian of variance WIDTH / (2 c), nothing of it on a face
    std, share = target_coordinate(0.3, 8.0)
    assert std == pytest.approx((0.08 / 16) ** 0.5, rel=1e-3) and share < 1e-12


@pytest.mark.parametrize(("alpha", "modes"), [(0.5, 6), (3.0, 3)])
def test_the_six_bump_bandits_target_at_the_reward_holds_six_modes_at_alpha_half_three_at_3(alpha: float, modes: int) -> None:
    # exp(alpha Q / q_scale) with Q the reward and q_scale its spread over the box (what SOM measures with an exact
    # critic): at alpha 0.5 every mode holds at least 5% of the target (hyperparams/som.yml's bandit entry), at alpha 3
    # only the three heavy ones do; the heavy modes hold more than the light ones at both
    env = MultiGoalBandit()
    grid = box_grid()
    reward = th.as_tensor(env.reward(grid.numpy()))
    shares = mode_shares(env, grid, th.softmax(alpha * reward / reward.std(), dim=0))
    assert int((shares[:6] >= 0.05).sum()) == modes
    assert shares[0:6:2].sum() > 1.5 * shares[1:6:2].sum()


def test_goal_directions_split_the_weight_by_the_quarter_plane_around_each_goal_axis() -> None:
    actions = th.tensor([[0.9, 0.2], [-0.5, -0.4], [0.1, 0.3], [-0.2, -0.7], [0.6, -0.6]])
    weights = th.tensor([0.1, 0.2, 0.3, 0.15, 0.25])
    # +x, -x, +y, -y; (0.6, -0.6) lies on the diagonal and counts towards the x goals
    assert goal_directions(actions, weights) == pytest.approx([0.35, 0.2, 0.3, 0.15])


@pytest.mark.parametrize("algo", ["som", "sac"])
def test_policy_diagnostics_measure_the_latest_states_and_leave_training_random_streams_alone(algo: str) -> None:
    from learn import ALGOS, DIAGNOSTIC_SAMPLES, DIAGNOSTIC_STATES, policy_diagnostics

    model = ALGOS[algo]("MlpPolicy", "Pendulum-v1", learning_starts=50, batch_size=16, seed=0,
                        policy_kwargs={"net_arch": [16, 16]})  # fmt: skip
    model.learn(120)
    th.manual_seed(5)
    torch_state, numpy_state = th.get_rng_state(), np.random.get_state()
    row = policy_diagnostics(model)
    assert th.equal(th.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state, strict=True))
    # the same draws, the states taken by hand: the last DIAGNOSTIC_STATES stored, newest first
    observations = model.replay_buffer.observations[119 - np.arange(DIAGNOSTIC_STATES), 0]
    actions, _ = model.predict(np.repeat(observations, DIAGNOSTIC_SAMPLES, axis=0), deterministic=False)
    actions = model.policy.scale_action(actions).reshape(DIAGNOSTIC_STATES, DIAGNOSTIC_SAMPLES, -1)
    assert row["spread"] == pytest.approx(actions.std(axis=1).mean(), rel=1e-6)
    assert row["face_share"] == pytest.approx((np.abs(actions) > 0.98).mean())
    assert 0.0 < row["spread"] < 1.0 and np.isfinite(row["best_of_n_gap"])


def test_boltzmann_samples_sample_densities_inside_the_box_and_cut_by_them() -> None:
    from learn import boltzmann_samples

    # per coordinate a Gaussian: narrow inside the box, and broad enough that the box cuts it (its spread by quadrature)
    centre, width = th.tensor([0.3, -0.2, 0.0]), th.tensor([0.05, 0.2, 0.8])
    grid = np.linspace(-1, 1, 20001)
    density = np.exp(-0.5 * ((grid[:, None] - centre.numpy()) / width.numpy()) ** 2)
    density /= density.sum(0)
    mean = (density * grid[:, None]).sum(0)
    expected = np.sqrt((density * (grid[:, None] - mean) ** 2).sum(0))
    assert expected[2] < 0.7 * 0.8  # the box cuts the broad coordinate
    th.manual_seed(0)
    start = 0.99 * (2 * th.rand(4, 8, 3) - 1)  # 4 states, 8 chains each, started anywhere in the box
    samples = boltzmann_samples(lambda actions: -0.5 * ((actions - centre) / width).square().sum(-1), start, 3000)
    assert samples.shape[0] == 4 and samples.shape[2] == 3 and samples.abs().max() <= 1
    spread = samples.std(dim=1)
    th.testing.assert_close(spread.mean(0), th.as_tensor(expected, dtype=th.float32), rtol=0.06, atol=0.0)
    th.testing.assert_close(samples.mean(dim=1).mean(0), th.as_tensor(mean, dtype=th.float32), rtol=0.0, atol=0.03)


@pytest.mark.parametrize("shape", ["gaussian", "laplace"])
def test_the_breadth_benchmarks_targets_have_the_stated_standard_deviation(shape):
    # width 0.1 around +-0.3: the box cuts off nothing that shows; width 0.25: the Laplace's tail past +1 (1% of its
    # mass, far out) makes it 6.5% narrower, which the quadrature counts
    narrow, broad = fixed_target(3, 0.1, shape), fixed_target(3, 0.25, shape)
    th.testing.assert_close(target_std(narrow), th.full((3,), 0.1), rtol=2e-3, atol=0.0)
    assert ((target_std(broad) <= 0.25) & (target_std(broad) > 0.9 * 0.25)).all()
    samples = narrow.sample(200_000, th.Generator().manual_seed(0))
    th.testing.assert_close(samples.std(0).float(), target_std(narrow), rtol=0.01, atol=0.0)
    assert th.allclose(samples.mean(0).float(), th.tensor([0.3, -0.3, 0.3]), atol=2e-3)


def test_acting_returns_compare_the_one_step_action_with_best_of_16_and_leave_the_model_as_it_was(tmp_path) -> None:
    from learn import ACTING_BEST_OF, acting_returns, final_evaluation, parse_args, report

    model = SOM("MlpPolicy", "Pendulum-v1", learning_starts=50, batch_size=16, seed=0,
                policy_kwargs={"net_arch": [16, 16], "n_action_candidates": 2})  # fmt: skip
    model.learn(100)
    th.manual_seed(5)
    torch_state, numpy_state = th.get_rng_state(), np.random.get_state()
    returns = acting_returns(model, "Pendulum-v1", episodes=2)
    assert th.equal(th.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state, strict=True))
    assert model.policy.n_action_candidates == 2  # the model's own setting is back
    model.policy.n_action_candidates = 1
    assert returns["one_step"] == pytest.approx(np.mean(final_evaluation(model, "Pendulum-v1", 2)), rel=1e-6)
    model.policy.n_action_candidates = ACTING_BEST_OF
    with th.random.fork_rng(devices=[]):
        best = np.mean(final_evaluation(model, "Pendulum-v1", 2))
    assert returns[f"best_of_{ACTING_BEST_OF}"] == pytest.approx(best, rel=1e-6)
    # the report's column: an evaluation line at the budget and a diagnose line of another seed's checkpoint, whose
    # acting returns count where the run's own line has none
    lines = tmp_path / "lines.jsonl"
    evaluation = {"algo": "som", "env": "Pendulum-v1", "seed": 0, "run": "a", "timesteps": 100, "mean_return": -900.0,
                  "acting": {"one_step": -800.0, "best_of_16": -700.0}}  # fmt: skip
    other_seed = {key: value for key, value in evaluation.items() if key != "acting"} | {"seed": 1, "run": "b"}
    diagnosis = {"checkpoint": "step_100", "algo": "som", "env": "Pendulum-v1", "seed": 1, "run": "b", "timesteps": 100,
                 "spread": 0.3, "acting": {"one_step": -600.0, "best_of_16": -500.0}}  # fmt: skip
    another_run = dict(diagnosis, run="c", acting={"one_step": 0.0, "best_of_16": 0.0})  # seed 1's, but not the table's
    # a diagnose line of seed 0's run, read before and after its own line: the run's own measurement counts
    same_run = dict(diagnosis, seed=0, run="a", acting={"one_step": 0.0, "best_of_16": 0.0})
    rows = (same_run, evaluation, diagnosis, other_seed, another_run, same_run)
    lines.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    table = tmp_path / "table.md"
    report(parse_args(["report", str(lines), "--table", str(table)]))
    assert "| Pendulum-v1 | 100 | -900 ± 0 (-900, -900) | - | 2, 0 | -, - | -700 / -600 (2) |" in table.read_text()


def test_conditional_fit_trains_the_actor_on_the_latest_states_only_and_reads_both_spreads(
    tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    import conditional_fit
    import learn

    monkeypatch.setattr(learn, "TARGET_STEPS", 300)  # the target's Metropolis chains: enough to run, not to converge
    monkeypatch.setattr(conditional_fit, "REPORT_EVERY", 10)
    model = SOM("MlpPolicy", "Pendulum-v1", seed=0, **tiny)
    model.learn(200)
    draw = conditional_fit.pool_sampler(model, "40")
    replay = model.replay_buffer.sample(64)
    drawn = draw(replay).numpy()
    latest = model.replay_buffer.observations[199 - np.arange(40), 0]
    assert drawn.shape == replay.observations.shape
    assert all((np.abs(latest - row).max(axis=1) < 1e-7).any() for row in drawn), "a state outside the pool"
    assert conditional_fit.pool_sampler(model, "all") is None
    for text in ["16", "-3", "half"]:
        with pytest.raises(argparse.ArgumentTypeError, match="at least 32"):
            conditional_fit.pool_argument(text)

    before = [p.clone() for p in model.actor.velocity_net.parameters()]
    th.manual_seed(1), np.random.seed(1)  # the replay buffer samples with numpy
    expected_q_scale = learn.training_q_scale(model, learn.Q_SCALE_BATCHES)
    th.manual_seed(1), np.random.seed(1)
    row = conditional_fit.measure(model, "all", updates=30)
    assert row["q_scale"] == pytest.approx(expected_q_scale.item(), rel=1e-6)
    assert [point["update"] for point in row["curve"]] == [10, 20, 30]
    assert row["curve"][-1]["spread"] == pytest.approx(row["spread"], rel=1e-6)
    assert 0.0 < row["target_spread"] < 1.0 and 0.0 < row["spread"] < 1.0 and 0.0 < row["spread_before"] < 1.0
    assert any(not th.equal(a, b) for a, b in zip(before, model.actor.velocity_net.parameters(), strict=True))


def test_target_location_reads_the_posterior_mean_back_from_the_score_and_measures_every_time(tiny, monkeypatch) -> None:
    import target_location

    import learn
    from sb3_som.objective import PATH
    from sb3_som.score import score_from_posterior_mean

    th.manual_seed(0)
    a_t, t, mean = th.randn(5, 3), th.rand(5, 1) * 0.98 + 0.01, 2 * th.rand(5, 3) - 1
    score = score_from_posterior_mean(PATH, a_t, t, mean)
    th.testing.assert_close(target_location.posterior_mean(PATH, a_t, t, score), mean, rtol=0.0, atol=1e-4)

    monkeypatch.setattr(learn, "TARGET_STEPS", 300)  # the target's Metropolis chains: enough to run, not to converge
    model = SOM("MlpPolicy", "Pendulum-v1", seed=0, **tiny)
    model.learn(200)
    row = target_location.measure(model, reference_samples=32)
    assert 0.0 < row["policy_spread"] < 1.0 and 0.0 < row["target_spread"] < 1.0
    assert 0.0 <= row["target_face_share"] <= 1.0 and 0.0 <= row["mean_offset"] <= 2.0
    assert set(row["q_gain"]) == {"first", "min"}
    times = [(e["n_score_samples"], e["t"]) for e in row["estimate"]]
    assert times == [(k, time) for k in (model.n_score_samples, 32) for time in target_location.TIMES]
    assert all(1.0 <= e["effective_sample_size"] <= e["n_score_samples"] for e in row["estimate"])


def test_multigoal_hyperparams_read_numbers_and_booleans_as_such_and_names_as_strings() -> None:
    args = argparse.Namespace(hyperparams=["alpha=3", "q_scale_floor=td_error", "compile_step=False", "tau=1e-2"])
    assert hyperparams(args) == {"alpha": 3, "q_scale_floor": "td_error", "compile_step": False, "tau": 0.01}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        hyperparams(argparse.Namespace(hyperparams=["alpha"]))
