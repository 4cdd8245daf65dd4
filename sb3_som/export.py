"""SOM's one-step actor as a plain ``torch.nn.Module``, for ``torch.export``, ONNX or TorchScript.

``OneStepActor(model.policy)(observation, noise)`` is what ``model.predict`` computes: ``noise = 0`` gives the
deterministic action, ``noise ~ N(0, I)`` a stochastic one; the action is in the environment's bounds. The
noise is an input, so the exported graph has no random number generator and gives the same action as
``predict`` for the same noise.
"""

from __future__ import annotations

import torch as th
from torch import nn

from sb3_som.policies import MeanFlowActor, MeanFlowPolicy


class OneStepActor(nn.Module):
    """``a = unscale(clip(e - u(e, 0, 1 | s), -1, 1))``: observation (B, ...) and noise (B, d) -> action (B, d).

    :param policy: a trained SOM policy (``model.policy``) whose ``predict`` is the one-step actor, i.e. with
        ``sampling_steps=1`` and ``n_action_candidates=1`` (the defaults)
    """

    low: th.Tensor
    high: th.Tensor

    def __init__(self, policy: MeanFlowPolicy):
        super().__init__()
        if policy.actor.sampling_steps != 1 or policy.n_action_candidates != 1:
            raise ValueError(
                "OneStepActor is the one-step actor: the policy has "
                f"sampling_steps={policy.actor.sampling_steps} and n_action_candidates={policy.n_action_candidates}"
            )
        self.actor: MeanFlowActor = policy.actor
        self.register_buffer("low", th.as_tensor(policy.actor.action_space.low, dtype=th.float32))
        self.register_buffer("high", th.as_tensor(policy.actor.action_space.high, dtype=th.float32))

    def forward(self, observation: th.Tensor, noise: th.Tensor) -> th.Tensor:
        features = self.actor.extract_features(observation, self.actor.features_extractor)
        scaled_action = self.actor.sample(features, noise, steps=1)
        return self.low + 0.5 * (scaled_action + 1.0) * (self.high - self.low)
