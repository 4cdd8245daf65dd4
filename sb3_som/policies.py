"""SB3 policies for SOM: a one-step MeanFlow actor and SAC's twin critics."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy, ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
    create_mlp,
    get_actor_critic_arch,
)
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from sb3_som.critic_values import q_at_states
from sb3_som.meanflow import AverageVelocity, sampling_grid
from sb3_som.paths import time_features, time_features_rate
from sb3_som.validation import check_action_box, check_choice, check_int

# Best-of-N evaluates the actor and the critic on batch size x N rows at each predict
MAX_ACTION_CANDIDATES = 1024
# which actions Best-of-N picks: every action the policy takes, or only the deterministic ones (evaluation)
ACTION_CANDIDATES_WHEN = ("always", "deterministic")


def check_finite_observation(observation: PyTorchObs) -> None:
    """Raise ``ValueError`` if a floating-point observation (or an entry of a Dict one) holds NaN or inf."""
    entries = observation.items() if isinstance(observation, dict) else [("", observation)]
    for key, tensor in entries:
        # x * 0 is 0 for every finite x and NaN for NaN and inf: one reduction, cheaper than isfinite(x).all()
        if tensor.is_floating_point() and not bool(th.isfinite((tensor * 0).sum())):
            where = f"observation[{key!r}]" if key else "the observation"
            raise ValueError(
                f"{where} contains NaN or inf, so SOM cannot choose an action for it. Check the environment "
                "(or the observation normalisation) that produced it; SB3's VecCheckNan wrapper finds the step."
            )


# Q networks of the critic unless ``n_critics`` says otherwise (SAC's twin critics)
DEFAULT_N_CRITICS = 2
# the hidden layers of the actor and of each Q network, as SAC's
DEFAULT_NET_ARCH = (256, 256)


class MeanFlowActor(BasePolicy):
    """MeanFlow actor: the average velocity ``u_theta(a_t, r, t | s)`` of the flow from noise to actions, and the
    one-step map that acts.

    Two networks of the same shape, each fed state features, an action-sized input and ``[t, sin, cos]``
    embeddings of ``t`` and ``t - r``: ``velocity_net`` is the flow, trained on the critic's velocity target at
    random ``(r, t)``; ``one_step_net`` is ``u(e, 0, 1 | s)``, distilled onto ``velocity_net``'s k-step sampler.
    Acting is ``a = clip(e - u(e, 0, 1 | s), -1, 1)``, one call of ``one_step_net`` (or ``sampling_steps`` steps of
    ``velocity_net``). A model saved with a single network (whose one-step map was ``velocity_net`` at
    ``(r, t) = (0, 1)``) loads with ``one_step_net`` set to a copy of it, and acts as it did.

    :param observation_space: Observation space
    :param action_space: Action space (a Box; actions are produced in the scaled box [-1, 1]^d)
    :param net_arch: hidden layer sizes of each of the two networks
    :param features_extractor: network that extracts features from observations
    :param features_dim: number of features
    :param activation_fn: activation function
    :param time_frequencies: number of sine/cosine frequencies embedding each of t and t - r
    :param sampling_steps: MeanFlow steps per action when acting (1 = one network call)
    :param normalize_images: whether to divide images by 255
    """

    action_space: spaces.Box

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: nn.Module,
        features_dim: int,
        activation_fn: type[nn.Module],
        time_frequencies: int,
        sampling_steps: int,
        normalize_images: bool = True,
    ):
        super().__init__(
            observation_space,
            action_space,
            features_extractor=features_extractor,
            normalize_images=normalize_images,
            squash_output=True,
        )
        self.net_arch = net_arch
        self.features_dim = features_dim
        self.activation_fn = activation_fn
        self.time_frequencies = time_frequencies
        self.sampling_steps = sampling_steps
        self.action_dim = get_action_dim(self.action_space)
        time_dim = 2 * (1 + 2 * time_frequencies)
        input_dim = features_dim + self.action_dim + time_dim
        self.velocity_net = nn.Sequential(*create_mlp(input_dim, self.action_dim, net_arch, activation_fn))
        self.one_step_net = nn.Sequential(*create_mlp(input_dim, self.action_dim, net_arch, activation_fn))
        # the time embedding of (r, t) = (0, 1), the same for every one-step call: (1, time_dim). Not persistent, so
        # saved models do not change; a buffer, so it moves with the module and is never created inside a compiled
        # (CUDA-graph) step, whose outputs are overwritten by the next step
        one_step_times = th.ones(2, 1)
        self.one_step_embedding: th.Tensor
        self.register_buffer(
            "one_step_embedding", time_features(one_step_times, time_frequencies).reshape(1, -1), persistent=False
        )
        self.register_load_state_dict_pre_hook(_one_step_net_from_velocity_net)

    @property
    def sampling_steps(self) -> int:
        """MeanFlow steps per action when acting (1 = one network call); may be changed at any time."""
        return self._sampling_steps

    @sampling_steps.setter
    def sampling_steps(self, value: int) -> None:
        self._sampling_steps = check_int("sampling_steps", value, 1)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            dict(
                net_arch=self.net_arch,
                features_dim=self.features_dim,
                activation_fn=self.activation_fn,
                time_frequencies=self.time_frequencies,
                sampling_steps=self.sampling_steps,
                features_extractor=self.features_extractor,
            )
        )
        return data

    def time_inputs(self, t: th.Tensor, r: th.Tensor) -> th.Tensor:
        """The velocity network's time inputs ``[emb(t), emb(t - r)]`` for times (B, 1): (B, 2 (1 + 2 k))."""
        time_embedding = time_features(th.cat([t, t - r], dim=0), self.time_frequencies)
        return th.cat(time_embedding.chunk(2, dim=0), dim=-1)

    def network_input(self, features: th.Tensor, a_t: th.Tensor, r: th.Tensor, t: th.Tensor) -> th.Tensor:
        """The velocity network's input ``[features, a_t, emb(t), emb(t - r)]``: (B, f + d + 2 (1 + 2 k))."""
        return th.cat([features, a_t, self.time_inputs(t, r)], dim=-1)

    def network_input_and_rate(
        self, features: th.Tensor, a_t: th.Tensor, r: th.Tensor, t: th.Tensor, velocity: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor]:
        """:meth:`network_input` at ``(a_t, r, t)`` (with its graph) and its rate of change, without graph, as ``a_t``
        moves at ``velocity`` (B, d) and t at 1 with r fixed: ``[0, velocity, emb'(t), emb'(t - r)]``."""
        with th.no_grad():
            t_rate, gap_rate = time_features_rate(th.cat([t, t - r], dim=0), self.time_frequencies).chunk(2, dim=0)
            rate = th.cat([th.zeros_like(features), velocity, t_rate, gap_rate], dim=-1)
        return self.network_input(features, a_t, r, t), rate

    def average_velocity(self, features: th.Tensor, a_t: th.Tensor, r: th.Tensor, t: th.Tensor) -> th.Tensor:
        """``u_theta(a_t, r, t | s)``: features (B, f), a_t (B, d), r and t (B, 1) -> (B, d)."""
        return self.velocity_net(self.network_input(features, a_t, r, t))

    def velocity_at(self, features: th.Tensor) -> AverageVelocity:
        """``u_theta(., ., . | s)`` with the state features (B, f) bound."""
        return partial(self.average_velocity, features)

    def sample_flow(self, features: th.Tensor, noise: th.Tensor, steps: int) -> th.Tensor:
        """The flow network's ``steps``-step sample from noise (B, d) at features (B, f), unclipped: what
        ``meanflow.sample_actions(self.velocity_at(features), noise, steps)`` computes, with the time embeddings of the
        grid's steps computed once per call instead of once per step."""
        grid = sampling_grid(steps, noise.device)
        t, r = grid[:-1].unsqueeze(1), grid[1:].unsqueeze(1)  # (k, 1) each
        step_sizes = t - r  # t_i - t_{i+1}, the interval each step averages over
        time_inputs = self.time_inputs(t, r)  # (k, 2 (1 + 2 time_frequencies))
        action = noise
        for i in range(steps):
            network_input = th.cat([features, action, time_inputs[i].expand(noise.shape[0], -1)], dim=-1)
            action = action - step_sizes[i] * self.velocity_net(network_input)
        return action

    def sample(self, features: th.Tensor, noise: th.Tensor, steps: int | None = None) -> th.Tensor:
        """Actions in [-1, 1]^d from noise (B, d) at features (B, f), in ``steps`` MeanFlow steps."""
        steps = self.sampling_steps if steps is None else steps
        if steps == 1:
            return (noise - self.one_step_velocity(features, noise)).clamp(-1.0, 1.0)
        return self.sample_flow(features, noise, steps).clamp(-1.0, 1.0)

    def one_step_velocity(self, features: th.Tensor, noise: th.Tensor) -> th.Tensor:
        """``u(e, 0, 1 | s)`` of ``one_step_net`` for noise (B, d) at features (B, f): (B, d) (the time embedding of
        ``(r, t) = (0, 1)`` is computed once, at construction)."""
        embedding = self.one_step_embedding.expand(features.shape[0], -1)
        return self.one_step_net(th.cat([features, noise, embedding], dim=-1))

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        features = self.extract_features(obs, self.features_extractor)
        noise = features.new_empty(features.shape[0], self.action_dim)
        noise = noise.zero_() if deterministic else noise.normal_()
        return self.sample(features, noise)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self(observation, deterministic)


def _one_step_net_from_velocity_net(
    module: nn.Module, state_dict: dict[str, th.Tensor], prefix: str, *args: Any, **kwargs: Any
) -> None:
    """Load-state-dict pre-hook of :class:`MeanFlowActor`: a state dict saved with a single network (no
    ``one_step_net`` entries) gets ``one_step_net`` as a copy of its ``velocity_net``, the network that acted."""
    velocity, one_step = f"{prefix}velocity_net.", f"{prefix}one_step_net."
    if any(key.startswith(one_step) for key in state_dict):
        return
    for key in [key for key in state_dict if key.startswith(velocity)]:
        state_dict[one_step + key[len(velocity) :]] = state_dict[key].clone()


class MeanFlowPolicy(BasePolicy):
    """Policy for SOM: a :class:`MeanFlowActor` plus SAC's twin critics and their target copy.

    :param observation_space: Observation space
    :param action_space: Action space (Box)
    :param lr_schedule: learning rate schedule
    :param net_arch: hidden layers, a list for both networks or ``dict(pi=[...], qf=[...])``
    :param activation_fn: activation function
    :param time_frequencies: sine/cosine frequencies embedding each of t and t - r in the actor
    :param sampling_steps: MeanFlow steps per action when acting (1 = one network call)
    :param n_action_candidates: Best-of-N when acting: sample N actions per state in one batched
        actor call and keep the one the critic scores highest (1 = off, no critic call)
    :param action_candidates_when: which actions Best-of-N picks: "always" (every action, the ones training
        collects included) or "deterministic" (only ``predict(deterministic=True)``, e.g. evaluation; stochastic
        actions are the policy's own samples, one actor call)
    :param features_extractor_class: features extractor to use
    :param features_extractor_kwargs: keyword arguments for the features extractor
    :param normalize_images: whether to divide images by 255
    :param optimizer_class: optimizer class (Adam by default)
    :param optimizer_kwargs: optimizer keyword arguments, excluding the learning rate
    :param n_critics: number of critic networks
    :param share_features_extractor: whether the actor and the critic share the features extractor
    """

    actor: MeanFlowActor
    critic: ContinuousCritic
    critic_target: ContinuousCritic

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        time_frequencies: int = 5,
        sampling_steps: int = 1,
        n_action_candidates: int = 1,
        action_candidates_when: str = "always",
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = DEFAULT_N_CRITICS,
        share_features_extractor: bool = False,
    ):
        if not isinstance(action_space, spaces.Box):
            raise ValueError(f"SOM supports only Box (continuous) action spaces, got {action_space}")
        check_action_box(action_space)
        time_frequencies = check_int("time_frequencies", time_frequencies, 0)
        sampling_steps = check_int("sampling_steps", sampling_steps, 1)
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class,
            features_extractor_kwargs,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            squash_output=True,
            normalize_images=normalize_images,
        )
        if net_arch is None:
            net_arch = list(DEFAULT_NET_ARCH)
        actor_arch, critic_arch = get_actor_critic_arch(net_arch)
        self.net_arch = net_arch
        self.activation_fn = activation_fn
        self.n_action_candidates = n_action_candidates
        self.action_candidates_when = action_candidates_when
        self.share_features_extractor = share_features_extractor
        net_args = {
            "observation_space": self.observation_space,
            "action_space": self.action_space,
            "activation_fn": activation_fn,
            "normalize_images": normalize_images,
        }
        self.actor_kwargs = {
            **net_args,
            "net_arch": actor_arch,
            "time_frequencies": time_frequencies,
            "sampling_steps": sampling_steps,
        }
        self.critic_kwargs = {
            **net_args,
            "net_arch": critic_arch,
            "n_critics": n_critics,
            "share_features_extractor": share_features_extractor,
        }
        self._candidate_noise: tuple[tuple[int, th.device], th.Tensor] | None = None
        self._build(lr_schedule)

    @property
    def n_action_candidates(self) -> int:
        """Best-of-N when acting (1 = off); may be changed at any time."""
        return self._n_action_candidates

    @n_action_candidates.setter
    def n_action_candidates(self, value: int) -> None:
        why = f" (Best-of-N evaluates the actor and the critic on batch size x {value} rows at each predict)"
        self._n_action_candidates = check_int("n_action_candidates", value, 1, MAX_ACTION_CANDIDATES, why)

    @property
    def action_candidates_when(self) -> str:
        """Which actions Best-of-N picks, "always" or "deterministic"; may be changed at any time."""
        return self._action_candidates_when

    @action_candidates_when.setter
    def action_candidates_when(self, value: str) -> None:
        self._action_candidates_when = check_choice("action_candidates_when", value, ACTION_CANDIDATES_WHEN)

    @property
    def sampling_steps(self) -> int:
        """MeanFlow steps per action when acting, the actor's (``policy.actor.sampling_steps``)."""
        return self.actor.sampling_steps

    @sampling_steps.setter
    def sampling_steps(self, value: int) -> None:
        self.actor.sampling_steps = value
        self.actor_kwargs["sampling_steps"] = self.actor.sampling_steps

    @property
    def candidate_noise(self) -> th.Tensor:
        """The fixed noise vectors (N, d) of deterministic Best-of-N: the first is ``e = 0``, the deterministic action's.

        Built for the current ``n_action_candidates`` on the policy's device, and kept until either changes.
        """
        key = (self.n_action_candidates, self.device)
        if self._candidate_noise is None or self._candidate_noise[0] != key:
            noise = th.randn(self.n_action_candidates, self.actor.action_dim, generator=th.Generator().manual_seed(0))
            noise[0] = 0.0
            self._candidate_noise = (key, noise.to(self.device))
        return self._candidate_noise[1]

    def _build(self, lr_schedule: Schedule) -> None:
        self.actor = self.make_actor()
        self.actor.optimizer = self.optimizer_class(self.actor.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)
        if self.share_features_extractor:
            self.critic = self.make_critic(features_extractor=self.actor.features_extractor)
            # the shared extractor learns from the actor loss only, as in SAC
            critic_parameters = [p for name, p in self.critic.named_parameters() if "features_extractor" not in name]
        else:
            self.critic = self.make_critic(features_extractor=None)
            critic_parameters = list(self.critic.parameters())
        self.critic_target = self.make_critic(features_extractor=None)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic.optimizer = self.optimizer_class(critic_parameters, lr=lr_schedule(1), **self.optimizer_kwargs)
        self.critic_target.set_training_mode(False)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            dict(
                net_arch=self.net_arch,
                activation_fn=self.activation_fn,
                time_frequencies=self.actor_kwargs["time_frequencies"],
                sampling_steps=self.sampling_steps,
                n_action_candidates=self.n_action_candidates,
                action_candidates_when=self.action_candidates_when,
                n_critics=self.critic_kwargs["n_critics"],
                share_features_extractor=self.share_features_extractor,
                lr_schedule=self._dummy_schedule,
                optimizer_class=self.optimizer_class,
                optimizer_kwargs=self.optimizer_kwargs,
                features_extractor_class=self.features_extractor_class,
                features_extractor_kwargs=self.features_extractor_kwargs,
            )
        )
        return data

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> MeanFlowActor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return MeanFlowActor(**actor_kwargs).to(self.device)

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> ContinuousCritic:
        critic_kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        return ContinuousCritic(**critic_kwargs).to(self.device)

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        check_finite_observation(observation)
        if self.n_action_candidates == 1 or (self.action_candidates_when == "deterministic" and not deterministic):
            return self.actor(observation, deterministic)
        return self._best_of_n(observation, deterministic)

    def _best_of_n(self, observation: PyTorchObs, deterministic: bool) -> th.Tensor:
        """Sample N actions per state in one actor call and keep the critic's argmax: (B, d)."""
        n = self.n_action_candidates
        actor_features = self.actor.extract_features(observation, self.actor.features_extractor)
        critic_features = self.critic.extract_features(observation, self.critic.features_extractor)
        batch_size = actor_features.shape[0]
        if deterministic:
            noise = self.candidate_noise.repeat(batch_size, 1)
        else:
            noise = th.randn(batch_size * n, self.actor.action_dim, device=actor_features.device)
        candidates = self.actor.sample(actor_features.repeat_interleave(n, dim=0), noise)
        candidates = candidates.view(batch_size, n, self.actor.action_dim)  # explicit sizes: B may be 0
        best = q_at_states(self.critic, critic_features, candidates, "min").argmax(dim=1)
        return candidates[th.arange(batch_size, device=best.device), best]

    def set_training_mode(self, mode: bool) -> None:
        self.actor.set_training_mode(mode)
        self.critic.set_training_mode(mode)
        self.training = mode


MlpMeanFlowPolicy = MeanFlowPolicy


class CnnMeanFlowPolicy(MeanFlowPolicy):
    """:class:`MeanFlowPolicy` with SB3's NatureCNN features extractor, for image observations."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class MultiInputMeanFlowPolicy(MeanFlowPolicy):
    """:class:`MeanFlowPolicy` with SB3's CombinedExtractor, for Dict observations."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)
