"""How far a trained SOM policy's one-step action is from what its critic prefers, on a task with one action dimension.

Loads a saved model and, from the same initial states as every run's final evaluation (``learn.final_evaluation``):

1. at the states its deterministic policy visits (``--states-episodes`` episodes), groups the states by where the
   target critic's argmax over a grid of actions lies, and gives per group the one-step action at ``e = 0``, the
   median of the target policy ``exp(alpha Q / q_scale)`` on the grid (``q_scale`` given, e.g. the run's last
   logged ``train/q_scale``), and how much of the policy's and of the target's mass lies beyond 0.98;
2. evaluates ``--episodes`` episodes with the one-step action, with that action scaled by 1.05, 1.1 and 1.2
   (clipped to the box), with the critic's grid argmax, and with the grid median of the target at alpha 10, 30, 100.

    python benchmarks/greedy_actions.py runs/checkpoints/som_Pendulum-v1_0/step_20000/model.zip --env Pendulum-v1 \
        --q-scale 1.43
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch as th

from learn import FINAL_EVAL_SEED, final_evaluation
from sb3_som import SOM

GRID = th.linspace(-1.0, 1.0, 401)
GROUPS = ((-1.0, -0.98), (-0.98, -0.5), (-0.5, 0.5), (0.5, 0.98), (0.98, 1.01))


def grid_q(model: SOM, observations: th.Tensor) -> th.Tensor:
    """The target critic's first Q network on the grid: observations (S, o) -> (S, len(GRID))."""
    states = observations.repeat_interleave(len(GRID), dim=0)
    actions = GRID.repeat(len(observations)).unsqueeze(-1)
    with th.no_grad():
        return model.critic_target(states, actions)[0].view(len(observations), len(GRID))


def target_median(q: th.Tensor, alpha: float, q_scale: float) -> th.Tensor:
    """Median of ``exp(alpha Q / q_scale)`` on the grid, per row of q (S, G) -> (S,)."""
    cdf = th.softmax(alpha * q / q_scale, dim=1).cumsum(dim=1)
    return GRID[(cdf < 0.5).sum(dim=1).clamp(max=len(GRID) - 1)]


class GridPolicy:
    """Acts with the critic's grid argmax (``alpha`` None) or the grid median of the target, in env units."""

    def __init__(self, model: SOM, alpha: float | None, q_scale: float):
        self.model, self.alpha, self.q_scale = model, alpha, q_scale

    def predict(self, observation: np.ndarray, deterministic: bool = True) -> tuple[np.ndarray, None]:
        q = grid_q(self.model, th.as_tensor(observation, dtype=th.float32).unsqueeze(0))
        action = GRID[q.argmax(dim=1)] if self.alpha is None else target_median(q, self.alpha, self.q_scale)
        return self.model.policy.unscale_action(action.numpy().reshape(1)), None


class ScaledPolicy:
    """The model's one-step deterministic action times ``scale``, clipped to the box."""

    def __init__(self, model: SOM, scale: float):
        self.model, self.scale = model, scale

    def predict(self, observation: np.ndarray, deterministic: bool = True) -> tuple[np.ndarray, None]:
        action, _ = self.model.predict(observation, deterministic=True)
        space = self.model.action_space
        return np.clip(action * self.scale, space.low, space.high), None


def visited_states(model: SOM, env_id: str, episodes: int) -> th.Tensor:
    """Observations (S, o) of ``episodes`` deterministic episodes from the final evaluation's starts."""
    env, observations = gym.make(env_id), []
    for episode in range(episodes):
        observation, _ = env.reset(seed=FINAL_EVAL_SEED + episode)
        done = False
        while not done:
            observations.append(observation)
            action, _ = model.predict(observation, deterministic=True)
            observation, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    return th.as_tensor(np.array(observations), dtype=th.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--env", required=True)
    parser.add_argument("--q-scale", type=float, required=True, help="the Q scale of the target policy")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--states-episodes", type=int, default=5)
    args = parser.parse_args()
    th.set_num_threads(1)
    model = SOM.load(args.model, device="cpu")
    if model.action_space.shape != (1,):
        parser.error("greedy_actions.py takes tasks with one action dimension")
    print(f"# One-step action against the critic's preference: {args.model}, {args.env}, q_scale {args.q_scale}\n")

    observations = visited_states(model, args.env, args.states_episodes)
    q = grid_q(model, observations)
    argmax, median = GRID[q.argmax(dim=1)], target_median(q, model.target_alpha, args.q_scale)
    target_tail = th.softmax(model.target_alpha * q / args.q_scale, dim=1)[:, GRID.abs() > 0.98].sum(dim=1)
    with th.no_grad():
        one_step = model.actor(observations, deterministic=True)[:, 0]
        samples = th.stack([model.actor(observations)[:, 0] for _ in range(256)], dim=1)
    print(f"## States visited by the deterministic policy ({len(observations)}, {args.states_episodes} episodes), "
          f"by the target critic's argmax (alpha {model.target_alpha:g})\n")  # fmt: skip
    print("| argmax in | states | one-step action (mean) | target's median (mean) | policy's mass beyond 0.98 "
          "| target's mass beyond 0.98 |\n|---|---|---|---|---|---|")  # fmt: skip
    for low, high in GROUPS:
        group = (argmax >= low) & (argmax < high)
        if group.any():
            cells = (f"[{low:g}, {high:g})", int(group.sum()), f"{one_step[group].mean():.3f}", f"{median[group].mean():.3f}",
                     f"{(samples[group].abs() > 0.98).float().mean():.3f}", f"{target_tail[group].mean():.3f}")  # fmt: skip
            print("| " + " | ".join(map(str, cells)) + " |")

    print(f"\n## Acting rules, {args.episodes} episodes from the final evaluation's starts\n")
    print("| rule | mean return | std |\n|---|---|---|")
    rules = [("one-step action at e = 0", model)]
    rules += [(f"one-step action x {scale:g}, clipped", ScaledPolicy(model, scale)) for scale in (1.05, 1.1, 1.2)]
    rules += [("target critic's grid argmax", GridPolicy(model, None, args.q_scale))]
    for alpha in (10, 30, 100):
        rules.append((f"grid median of the target, alpha {alpha:g}", GridPolicy(model, alpha, args.q_scale)))
    for name, policy in rules:
        returns = final_evaluation(policy, args.env, args.episodes)  # type: ignore[arg-type]
        print(f"| {name} | {np.mean(returns):.1f} | {np.std(returns):.1f} |", flush=True)


if __name__ == "__main__":
    main()
