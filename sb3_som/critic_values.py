"""SAC's twin critics evaluated at many actions per state: the values behind SOM's target and Best-of-N (SB3 glue).

Leading dimensions are free, so K actions per state go through each Q network in one call.
"""

from __future__ import annotations

import math

import torch as th
from stable_baselines3.common.policies import ContinuousCritic

from sb3_som.score import QFunction

# what floors the Q scale: the Q networks' disagreement about the action profile (``action_profile``) or the first
# critic's RMS TD error on the batch; "auto" is the disagreement with two Q networks or more, the TD error with one
Q_SCALE_FLOORS = ("auto", "critic_disagreement", "td_error")
# the Q scale is at least this share of the mean |Q| at the states: Q differences of float32 rounding (a relative
# 1.2e-7) then move the target's logits by at most alpha * 1.2e-3, however well the Q networks agree
MIN_RELATIVE_Q_SCALE = 1e-4
# states of the batch and uniform actions per state that measure the spread of Q across actions
Q_SPREAD_STATES = 32
Q_SPREAD_ACTIONS = 16


def q_per_network(q_networks: list[th.nn.Module], features: th.Tensor, actions: th.Tensor) -> th.Tensor:
    """Each Q network's value of actions (..., d) at critic features (..., f): (networks, ...), all rows of a
    network in one 2-D call (batch norm wants 2-D input)."""
    q_input = th.cat([features, actions], dim=-1)
    flat_input = q_input.reshape(-1, q_input.shape[-1])  # (N, f + d)
    values = [q_net(flat_input) for q_net in q_networks]
    stacked = values[0].unsqueeze(0) if len(values) == 1 else th.stack(values)  # one network: a view, no copy
    return stacked.view(len(q_networks), *q_input.shape[:-1])


def q_from_features(critic: ContinuousCritic, features: th.Tensor, actions: th.Tensor, which: str) -> th.Tensor:
    """Q for actions (..., d) at already-extracted critic features (..., f): returns (..., 1).

    ``which`` is "min" (the minimum over all Q networks, SAC's actor) or "first" (the first Q network
    only, TD3's actor; half the rows with twin critics). Leading dimensions are free, so K proposals per
    state go through each Q network in one call.
    """
    if which == "first":
        return q_per_network(critic.q_networks[:1], features, actions)[0].unsqueeze(-1)
    return q_per_network(critic.q_networks, features, actions).min(dim=0).values.unsqueeze(-1)


def q_at_states(critic: ContinuousCritic, features: th.Tensor, actions: th.Tensor, which: str) -> th.Tensor:
    """Q of N actions per state: critic features (S, f), actions (S, N, d) -> (S, N).

    All S * N rows go through each Q network in one call, as one 2-D batch.
    """
    expanded = features.unsqueeze(1).expand(-1, actions.shape[1], -1)
    return q_from_features(critic, expanded, actions, which).squeeze(-1)


def proposal_q_function(critic: ContinuousCritic, features: th.Tensor, which: str) -> QFunction:
    """Q of proposals (B', K, d) at the batch rows (B',) of critic features (B, f), as (B', K)."""

    def q_function(proposals: th.Tensor, rows: th.Tensor) -> th.Tensor:
        return q_at_states(critic, features[rows], proposals, which)

    return q_function


def action_profile(critic: ContinuousCritic, features: th.Tensor, which: str) -> tuple[th.Tensor, th.Tensor]:
    """How Q varies across actions at a state, and how much the Q networks agree on it: two scalars.

    At the first ``Q_SPREAD_STATES`` states of critic features (B, f) and ``Q_SPREAD_ACTIONS`` uniform actions in
    ``[-1, 1]^d`` per state, every Q network gives Q_i(s, a) (all rows in one call per network):

    - the spread: the standard deviation across the actions of the Q that ``which`` names ("min" or "first", as
      for the proposals), averaged over the states, at least ``MIN_RELATIVE_Q_SCALE`` times their mean |Q| (plus
      1e-6 so that it can divide): what float32 rounding of Q cannot move;
    - the disagreement: each network's action profile ``Q_i(s, a) - mean_a Q_i(s, a)``, the standard deviation of
      the profiles across the networks, as a root mean square over the states and actions; with two networks
      ``|profile_1 - profile_2| / sqrt(2)``. It measures what the networks do not agree on about differences
      between actions at one state, which is all the target ``exp(alpha Q / q_scale)`` sees; disagreement about the
      state's value level and noise in the rewards that both networks fit do not enter it. NaN with one network.
    """
    features = features[:Q_SPREAD_STATES]
    action_shape = critic.action_space.shape  # a Box's; math.prod, unlike SB3's get_action_dim, traces in torch.compile
    assert action_shape is not None
    action_dim = math.prod(action_shape)
    uniform_actions = 2 * th.rand(features.shape[0], Q_SPREAD_ACTIONS, action_dim, device=features.device) - 1
    expanded = features.unsqueeze(1).expand(-1, Q_SPREAD_ACTIONS, -1)
    q_values = q_per_network(critic.q_networks, expanded, uniform_actions)  # (networks, states, actions)
    valued = q_values[0] if which == "first" else q_values.min(dim=0).values
    spread = th.maximum(valued.std(dim=1).mean(), MIN_RELATIVE_Q_SCALE * valued.abs().mean()) + 1e-6
    if q_values.shape[0] < 2:
        return spread, th.full_like(spread, math.nan)
    profiles = q_values - q_values.mean(dim=2, keepdim=True)  # (networks, states, actions)
    return spread, profiles.var(dim=0).mean().sqrt()


def floored_q_scale(spread: th.Tensor, floor: th.Tensor) -> th.Tensor:
    """The Q scale that ``alpha`` is relative to: the spread of Q across actions, never below ``floor``.

    Where Q hardly depends on the action (a reward that ignores it), its spread across actions is the
    critic's noise, and dividing by it would make the target greedy on that noise; the floor is what the critic
    cannot resolve (its RMS TD error, or the Q networks' disagreement about the action profile). Scalars.
    """
    return th.maximum(spread, floor)
