"""SAC's twin critics evaluated at many actions per state: the values behind SOM's target and Best-of-N (SB3 glue).

Leading dimensions are free, so K actions per state go through each Q network in one call.
"""

from __future__ import annotations

import torch as th
from stable_baselines3.common.policies import ContinuousCritic
from torch import nn
from torch.nn import functional as F

from sb3_som.score import QFunction

# which critic values the score's proposals: the minimum over the Q networks (SAC's actor) or the first (TD3's)
SCORE_CRITICS = ("min", "first")


def q_from_features(critic: ContinuousCritic, features: th.Tensor, actions: th.Tensor, which: str = "min") -> th.Tensor:
    """Q for actions (..., d) at already-extracted critic features (..., f): returns (..., 1).

    ``which`` is "min" (the minimum over all Q networks, SAC's actor) or "first" (the first Q network
    only, TD3's actor; half the rows with twin critics). Leading dimensions are free, so K proposals per
    state go through each Q network in one call.
    """
    q_input = th.cat([features, actions], dim=-1)
    flat_input = q_input.reshape(-1, q_input.shape[-1])  # (N, f + d): batch norm wants 2-D input
    if which == "first":
        q_values = critic.q_networks[0](flat_input)
    else:
        q_values = th.stack([q_net(flat_input) for q_net in critic.q_networks], dim=0).min(dim=0).values
    return q_values.view(*q_input.shape[:-1], 1)


def q_at_states(critic: ContinuousCritic, features: th.Tensor, actions: th.Tensor, which: str) -> th.Tensor:
    """Q of N actions per state: critic features (S, f), actions (S, N, d) -> (S, N).

    Each Q network's first layer is split into its state and action columns, ``W [s; a] + b = (W_s s + b) + W_a a``,
    so the state's part runs once per state instead of once per action (the same values as :func:`q_from_features`
    up to float rounding, without the (S * N, f + d) input). Networks whose layers are not all linear maps and
    element-wise activations (a batch norm, say) take :func:`q_from_features`.
    """
    networks = critic.q_networks[:1] if which == "first" else critic.q_networks
    if not all(_splittable(network) for network in networks):
        expanded = features.unsqueeze(1).expand(-1, actions.shape[1], -1)
        return q_from_features(critic, expanded, actions, which).squeeze(-1)
    n_features = features.shape[-1]
    values = []
    for network in networks:
        assert isinstance(network, nn.Sequential)  # _splittable
        first = network[0]
        assert isinstance(first, nn.Linear)
        state_part = F.linear(features, first.weight[:, :n_features], first.bias).unsqueeze(1)  # (S, 1, h)
        hidden = state_part + F.linear(actions, first.weight[:, n_features:])  # (S, N, h)
        values.append(network[1:](hidden).squeeze(-1))
    return values[0] if len(values) == 1 else th.stack(values, dim=0).min(dim=0).values


def _splittable(network: nn.Module) -> bool:
    """Whether ``network`` is an ``nn.Sequential`` of a first ``nn.Linear`` and then only linear maps and activations."""
    if not isinstance(network, nn.Sequential) or len(network) == 0 or not isinstance(network[0], nn.Linear):
        return False
    return all(isinstance(layer, nn.Linear) or not any(True for _ in layer.parameters()) for layer in network)


def proposal_q_function(critic: ContinuousCritic, features: th.Tensor, which: str) -> QFunction:
    """Q of proposals (B', K, d) at the batch rows (B',) of critic features (B, f), as (B', K)."""

    def q_function(proposals: th.Tensor, rows: th.Tensor) -> th.Tensor:
        return q_at_states(critic, features[rows], proposals, which)

    return q_function
