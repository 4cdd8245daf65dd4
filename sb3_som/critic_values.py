"""SAC's twin critics evaluated at many actions per state: the values behind SOM's target and Best-of-N (SB3 glue).

K actions per state go through each Q network in one call.
"""

from __future__ import annotations

import math

import torch as th
import torch.nn.functional as F
from stable_baselines3.common.policies import ContinuousCritic
from torch import nn

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


def q_network_values(q_net: nn.Module, features: th.Tensor, actions: th.Tensor) -> th.Tensor:
    """One Q network's value of N actions per state: critic features (S, f), actions (S, N, d) -> (S, N).

    SB3's Q network is an MLP on the concatenation ``[features, action]``: its first layer's product with the
    features is taken once per state and shared by the state's N actions, which gives the values of the
    concatenated input at a fraction of the first layer's cost where f is much larger than d (Humanoid-v5: f = 348,
    d = 17). Any other network gets the concatenation. All S * N rows go through the rest of the network as one
    2-D batch (batch norm wants 2-D input).
    """
    n_states, n_actions = actions.shape[:2]  # explicit sizes: S may be 0
    layers = q_net if isinstance(q_net, nn.Sequential) else None
    first = layers[0] if layers is not None else None
    if isinstance(first, nn.Linear) and first.in_features == features.shape[-1] + actions.shape[-1]:
        assert layers is not None
        n_features = features.shape[-1]
        state_part = F.linear(features, first.weight[:, :n_features], first.bias)  # (S, h)
        hidden = state_part.unsqueeze(1) + F.linear(actions, first.weight[:, n_features:])  # (S, N, h)
        values = layers[1:](hidden.reshape(n_states * n_actions, first.out_features))
    else:
        expanded = features.unsqueeze(1).expand(-1, n_actions, -1)
        q_input = th.cat([expanded, actions], dim=-1)
        values = q_net(q_input.reshape(n_states * n_actions, q_input.shape[-1]))
    return values.view(n_states, n_actions)


def q_per_network(q_networks: list[nn.Module], features: th.Tensor, actions: th.Tensor) -> th.Tensor:
    """Each Q network's value of N actions per state: critic features (S, f), actions (S, N, d) -> (networks, S, N)."""
    values = [q_network_values(q_net, features, actions) for q_net in q_networks]
    return values[0].unsqueeze(0) if len(values) == 1 else th.stack(values)  # one network: a view, no copy


def q_at_states(critic: ContinuousCritic, features: th.Tensor, actions: th.Tensor, which: str) -> th.Tensor:
    """Q of N actions per state: critic features (S, f), actions (S, N, d) -> (S, N).

    ``which`` is "min" (the minimum over all Q networks, SAC's actor) or "first" (the first Q network only, TD3's
    actor; half the rows with twin critics).
    """
    if which == "first":
        return q_network_values(critic.q_networks[0], features, actions)
    return q_per_network(critic.q_networks, features, actions).min(dim=0).values


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
    q_values = q_per_network(critic.q_networks, features, uniform_actions)  # (networks, states, actions)
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
