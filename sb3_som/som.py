"""SOM: Score-Based One-step MeanFlow Policy Optimization, as an SB3 off-policy algorithm."""

from __future__ import annotations

import io
import math
import pathlib
import warnings
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy, ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.torch_layers import get_actor_critic_arch
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, ReplayBufferSamples, Schedule
from stable_baselines3.common.utils import FloatSchedule, get_parameters_by_name, polyak_update, update_learning_rate
from torch.nn import functional as F

from sb3_som.objective import FlowTargetConfig, actor_batch_size, actor_objective
from sb3_som.persistence import check_model_file, extended_optimizer_state, single_network_parameters, write_atomically
from sb3_som.policies import (
    DEFAULT_N_CRITICS,
    DEFAULT_NET_ARCH,
    CnnMeanFlowPolicy,
    MeanFlowActor,
    MeanFlowPolicy,
    MlpMeanFlowPolicy,
    MultiInputMeanFlowPolicy,
)
from sb3_som.settings import DEFAULTS, SETTING_CHECKS, q_scale_floor_in_use, target_alpha, validate_settings
from sb3_som.snapshot import TrainingSnapshot, non_finite_loss_error
from sb3_som.validation import check_no_sac_only_arguments

SelfSOM = TypeVar("SelfSOM", bound="SOM")


# the policy's inference settings (set through policy_kwargs or on model.policy): saved with their current values
INFERENCE_SETTINGS = ("n_action_candidates", "action_candidates_when", "sampling_steps")


class SOM(OffPolicyAlgorithm):
    """
    Score-Based One-step MeanFlow Policy Optimization (SOM; Kim, Ki, Ahn, Lee, 2026, arXiv 2605.23365).

    An off-policy actor-critic whose actor is a MeanFlow network: one call maps a noise vector to an action. The
    actor regresses onto the probability-flow velocity of the Boltzmann policy ``exp(alpha * Q / q_scale)`` on the
    action box, estimated by importance sampling through the critic; SAC's twin critics learn by TD, with the next
    action drawn from the one-step actor. ``docs/algorithm.md`` has every formula and the evidence for each default.

    :param policy: The policy model to use ("MlpMeanFlowPolicy", "CnnMeanFlowPolicy", ...)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: learning rate for the critic's optimizer (and the actor's, unless ``actor_learning_rate``),
        a number or a function of the progress remaining (from 1 to 0)
    :param actor_learning_rate: the actor's own learning rate (a number or a schedule), or ``None`` for
        ``learning_rate``
    :param buffer_size: size of the replay buffer
    :param learning_starts: how many steps of uniformly random actions to collect before learning starts (SAC's
        default is 100; SOM's target follows the critic from its first update, so the critic first learns from
        5,000 random steps: ``docs/algorithm.md``, "Settings and constants")
    :param batch_size: minibatch size of each critic update (the actor's update uses its first half)
    :param tau: the soft update coefficient ("Polyak update", between 0 and 1)
    :param gamma: the discount factor
    :param train_freq: update the model every ``train_freq`` steps, or a tuple like ``(5, "step")``
    :param gradient_steps: gradient steps after each rollout; ``-1`` does as many as environment steps
    :param action_noise: optional extra action noise (the policy already explores by sampling)
    :param replay_buffer_class: replay buffer class to use (for instance ``HerReplayBuffer``)
    :param replay_buffer_kwargs: keyword arguments to pass to the replay buffer on creation
    :param optimize_memory_usage: enable a memory efficient variant of the replay buffer
    :param n_steps: n-step returns for the critic (as in SAC)
    :param alpha: inverse temperature of the target ``exp(alpha * Q / q_scale)``, in units of Q's spread across
        actions: ``"auto"`` (``10 * sqrt(d)`` for d action dimensions) or a number in (0, 1e4]; larger is greedier
    :param n_score_samples: critic evaluations per state for the target's score (K), >= 3
    :param q_scale_floor: what the Q scale is never below: "critic_disagreement" (the Q networks' disagreement about
        how Q varies across actions), "td_error" (the critic's RMS TD error, for noisy rewards) or "auto" (the
        disagreement with two Q networks or more, the TD error with one)
    :param distillation_steps: steps of the flow network's sampler, whose samples the flow trains at and the one-step
        network is distilled onto (1: the flow network's own one-step map)
    :param target_update_interval: update the target network every ``target_update_interval`` gradient steps
    :param compile_step: compute the critic's and the actor's losses through ``torch.compile`` (CUDA graphs on a GPU);
        the first gradient step compiles
    :param stats_window_size: window size for the rollout logging
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: verbosity level: 0 no output, 1 info, 2 debug
    :param seed: seed for the pseudo random generators
    :param device: device (cpu, cuda, ...) on which the code should be run
    :param _init_setup_model: whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpMeanFlowPolicy": MlpMeanFlowPolicy,
        "CnnMeanFlowPolicy": CnnMeanFlowPolicy,
        "MultiInputMeanFlowPolicy": MultiInputMeanFlowPolicy,
        "MlpPolicy": MlpMeanFlowPolicy,
        "CnnPolicy": CnnMeanFlowPolicy,
        "MultiInputPolicy": MultiInputMeanFlowPolicy,
    }
    policy: MeanFlowPolicy
    actor: MeanFlowActor
    critic: ContinuousCritic
    critic_target: ContinuousCritic

    def __init__(
        self,
        policy: str | type[MeanFlowPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        actor_learning_rate: float | Schedule | None = DEFAULTS.actor_learning_rate,
        buffer_size: int = 1_000_000,
        learning_starts: int = 5_000,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        alpha: float | str = DEFAULTS.alpha,
        n_score_samples: int = DEFAULTS.n_score_samples,
        q_scale_floor: str = DEFAULTS.q_scale_floor,
        distillation_steps: int = DEFAULTS.distillation_steps,
        target_update_interval: int = DEFAULTS.target_update_interval,
        compile_step: bool = DEFAULTS.compile_step,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
        **kwargs: Any,
    ):
        # SAC's own arguments are refused naming what replaces them; any other unknown one as Python would
        check_no_sac_only_arguments(kwargs, policy_kwargs)
        if kwargs:
            raise TypeError(f"SOM.__init__() got an unexpected keyword argument {next(iter(kwargs))!r}")
        policy_kwargs = dict(policy_kwargs or {})
        super().__init__(
            policy,
            env,
            learning_rate,
            buffer_size,
            learning_starts,
            batch_size,
            tau,
            gamma,
            train_freq,
            gradient_steps,
            action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            n_steps=n_steps,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            sde_support=False,
            supported_action_spaces=(spaces.Box,),
            support_multi_env=True,
        )
        self.actor_learning_rate = actor_learning_rate
        self.alpha = alpha
        self.n_score_samples = n_score_samples
        self.q_scale_floor = q_scale_floor
        self.distillation_steps = distillation_steps
        self.target_update_interval = target_update_interval
        self.compile_step = compile_step
        self._compiled_losses: tuple[Callable[..., Any], Callable[..., Any]] | None = None
        self._validate_settings()
        if _init_setup_model:
            self._setup_model()

    def __getstate__(self) -> dict[str, Any]:
        # the compiled loss functions are bound to this instance: a copy or an unpickled model compiles its own
        return {**self.__dict__, "_compiled_losses": None}

    def __setattr__(self, name: str, value: Any) -> None:
        # a setting is checked whenever it is assigned, at construction or later (``model.alpha = 0.5``)
        check = SETTING_CHECKS.get(name)
        super().__setattr__(name, value if check is None else check(name, value))

    def _validate_settings(self) -> None:
        """Check every setting as at construction (``settings.validate_settings``): at construction, after ``load``
        (whose ``kwargs`` and ``custom_objects`` bypass assignment checks) and at the start of ``learn``."""
        critic_width = sum(get_actor_critic_arch(self.policy_kwargs.get("net_arch") or list(DEFAULT_NET_ARCH))[1])
        action_space = getattr(self, "action_space", None)  # not yet set while SB3's load builds the model
        action_dim = 0 if action_space is None else get_action_dim(action_space)
        validate_settings(self, self._n_critics, actor_batch_size(self.batch_size), action_dim + critic_width)

    def _setup_model(self) -> None:
        super()._setup_model()
        self.actor = self.policy.actor
        self.critic = self.policy.critic
        self.critic_target = self.policy.critic_target
        self.batch_norm_stats = get_parameters_by_name(self.critic, ["running_"])
        self.batch_norm_stats_target = get_parameters_by_name(self.critic_target, ["running_"])

    @property
    def actor_lr_schedule(self) -> Schedule:
        """The actor's learning rate as a function of the progress remaining: ``actor_learning_rate``'s, or the
        critic's ``lr_schedule`` where it is ``None``."""
        return self.lr_schedule if self.actor_learning_rate is None else FloatSchedule(self.actor_learning_rate)

    @property
    def _n_critics(self) -> int:
        """The number of Q networks the policy has (or, before it is built, will have)."""
        return self.policy_kwargs.get("n_critics", DEFAULT_N_CRITICS)

    @property
    def q_scale_floor_in_use(self) -> str:
        """What floors the Q scale (``settings.q_scale_floor_in_use``): "auto" resolved for this model's critics."""
        return q_scale_floor_in_use(self.q_scale_floor, self._n_critics)

    @property
    def target_alpha(self) -> float:
        """The target's inverse temperature (``settings.target_alpha``): "auto" resolved for this action space."""
        action_shape = self.action_space.shape  # math.prod, unlike SB3's get_action_dim, traces in torch.compile
        assert action_shape is not None
        return target_alpha(self.alpha, math.prod(action_shape))

    @property
    def flow_config(self) -> FlowTargetConfig:
        """The actor objective's settings, read from SOM's attributes at each call (changes take effect)."""
        return FlowTargetConfig(
            alpha=self.target_alpha,
            n_score_samples=self.n_score_samples,
            distillation_steps=self.distillation_steps,
        )

    @th.no_grad()
    def _td_target(self, replay_data: ReplayBufferSamples) -> th.Tensor:
        """The critics' TD target (B, 1): ``r + discount * min_i Q_target_i(s', a')``, ``a'`` from the actor, as SAC."""
        discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma
        next_actions = self.actor(replay_data.next_observations)
        next_q_values = th.cat(self.critic_target(replay_data.next_observations, next_actions), dim=1)
        next_q_values = next_q_values.min(dim=1, keepdim=True).values
        return replay_data.rewards + (1 - replay_data.dones) * discounts * next_q_values

    def _critic_loss(self, replay_data: ReplayBufferSamples) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """The twin critics' TD loss (scalar, with graph), the first critic's RMS TD error and its mean Q (detached)."""
        target_q_values = self._td_target(replay_data)
        current_q_values = self.critic(replay_data.observations, replay_data.actions)
        squared_td_errors = [F.mse_loss(current_q, target_q_values) for current_q in current_q_values]
        critic_loss = 0.5 * th.stack(squared_td_errors).sum()
        td_error_rms = squared_td_errors[0].detach().sqrt()  # the first critic's, for the Q scale's floor
        return critic_loss, td_error_rms, current_q_values[0].detach().mean()

    def _actor_loss(self, replay_data: ReplayBufferSamples, td_error_rms: th.Tensor) -> tuple[th.Tensor, dict[str, th.Tensor]]:
        """The actor's loss (scalar, with graph) and its logs by name (``objective.actor_objective``), valued by the
        target critic."""
        return actor_objective(
            self.actor, self.critic_target, replay_data.observations, self.flow_config, self.q_scale_floor_in_use, td_error_rms
        )

    def _loss_functions(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """The critic's and the actor's loss functions: the methods themselves, or with ``compile_step`` their
        ``torch.compile`` versions (built at the first call, recompiled by torch when a setting they read changes)."""
        if not self.compile_step:
            return self._critic_loss, self._actor_loss
        if self._compiled_losses is None:
            mode = "reduce-overhead" if self.device.type == "cuda" else "default"
            self._compiled_losses = (th.compile(self._critic_loss, mode=mode), th.compile(self._actor_loss, mode=mode))
        return self._compiled_losses

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """``gradient_steps`` updates of the critic, then the actor, then (every ``target_update_interval``) the target
        critic, each on a fresh replay batch.

        The logs stay on the device and are read back once, at the end. If a critic or actor loss was not finite,
        every weight and optimizer state is put back as it was at the start of the call and ``FloatingPointError``
        is raised: no update of the call reaches the weights that are saved or acted with.
        """
        self.policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        self._update_learning_rate(self.critic.optimizer)
        actor_learning_rate = self.actor_lr_schedule(self._current_progress_remaining)
        update_learning_rate(self.actor.optimizer, actor_learning_rate)
        self.logger.record("train/actor_learning_rate", actor_learning_rate)
        if gradient_steps < 1:
            return
        snapshot = TrainingSnapshot(self.policy, optimizers)
        critic_loss_function, actor_loss_function = self._loss_functions()
        log_sums: dict[str, th.Tensor] = {}
        reward_peak = th.zeros((), device=self.device)  # the largest |reward| sampled, for the error below

        cuda_graphs = self.compile_step and self.device.type == "cuda"
        for gradient_step in range(gradient_steps):
            if cuda_graphs:  # a new training iteration: the previous step's graph outputs are no longer read
                th.compiler.cudagraph_mark_step_begin()
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            reward_peak = th.maximum(reward_peak, replay_data.rewards.abs().max())
            critic_loss, td_error_rms, q_mean = critic_loss_function(replay_data)
            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self.critic.optimizer.step()

            actor_loss, actor_logs = actor_loss_function(replay_data, td_error_rms)
            self.actor.optimizer.zero_grad()
            actor_loss.backward()
            self.actor.optimizer.step()
            for name, value in {"critic_loss": critic_loss.detach(), "q_mean": q_mean, **actor_logs}.items():
                log_sums[name] = log_sums[name] + value if name in log_sums else value

            if gradient_step % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                # copy batch norm running stats, as SAC does
                polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)

        means = (th.stack(list(log_sums.values())) / gradient_steps).tolist()  # the call's one read-back
        logs = dict(zip(log_sums, means, strict=True))
        not_finite = [name for name in ("critic_loss", "actor_loss") if not math.isfinite(logs[name])]
        if not_finite:
            snapshot.restore()
            raise non_finite_loss_error(not_finite, gradient_steps, reward_peak.item())
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for key, value in logs.items():
            self.logger.record(f"train/{key}", value)

    def learn(
        self: SelfSOM,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "SOM",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfSOM:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, BaseCallback]:
        self._validate_settings()
        total_timesteps, callback = super()._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        if total_timesteps <= self.learning_starts:
            warnings.warn(
                f"learn() ends at step {total_timesteps}, before learning_starts={self.learning_starts}: no gradient "
                "step is taken (a smaller learning_starts trains sooner)",
                stacklevel=4,
            )
        return total_timesteps, callback

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Iterable[str] | None = None,
        include: Iterable[str] | None = None,
    ) -> None:
        """SB3's ``save``, written to a temporary file in the same directory that then replaces ``path``.

        A failure during the save leaves the file already at ``path`` as it was. The policy's inference settings
        (``n_action_candidates``, ``action_candidates_when``, ``sampling_steps``) are saved with their current values.
        """
        self.policy_kwargs.update({name: getattr(self.policy, name) for name in INFERENCE_SETTINGS})
        write_atomically(path, "zip", lambda file: super(SOM, self).save(file, exclude, include))

    def save_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase) -> None:
        """SB3's ``save_replay_buffer``, written to a temporary file in the same directory that then replaces ``path``."""
        write_atomically(path, "pkl", super().save_replay_buffer)

    @classmethod
    def load(
        cls: type[SelfSOM],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfSOM:
        """SB3's ``load``, with SOM's checks: the file must hold a complete SOM model (another algorithm's file or
        a truncated one raises ``ValueError`` naming it), settings given as ``kwargs`` or ``custom_objects`` are
        checked as at construction, and ``n_action_candidates``, ``action_candidates_when`` and ``sampling_steps`` set
        the loaded policy's.

        .. warning::
            As SB3's ``load``, this unpickles objects saved in the file (the policy class, schedules, spaces), which
            can run arbitrary code: load only files you trust. SOM's own checks read the file's names and sizes
            only; nothing in it runs before SB3's ``load`` does.
        """
        check_model_file(path, MeanFlowPolicy, custom_objects)
        inference_settings = {name: kwargs.pop(name) for name in INFERENCE_SETTINGS if name in kwargs}
        model = super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)
        if not isinstance(model.policy, MeanFlowPolicy):
            raise ValueError(f"{path} does not hold a SOM model: its policy is a {type(model.policy).__name__}")
        # a model saved with a single actor network: the distillation's weight has no counterpart (each network
        # learns from its own loss), and its saved distillation_steps=0 (the one-step map was the flow's own) is 1
        vars(model).pop("distillation_coef", None)
        if model.distillation_steps == 0 and "distillation_steps" not in kwargs:
            model.distillation_steps = 1
        model._validate_settings()
        for name, value in inference_settings.items():
            setattr(model.policy, name, value)
        return model

    def set_parameters(
        self,
        load_path_or_dict: str | pathlib.Path | io.BufferedIOBase | dict[str, Any],
        exact_match: bool = True,
        device: th.device | str = "auto",
    ) -> None:
        """SB3's ``set_parameters``. Parameters saved with a single actor network (no ``one_step_net``) load with the
        one-step network a copy of ``velocity_net`` (the network that acted) and, in the actor's optimizer, without
        state for it."""
        if isinstance(load_path_or_dict, dict):
            params = load_path_or_dict
        else:
            _, params, _ = load_from_zip_file(load_path_or_dict, device=device, load_data=False)
        if single_network_parameters(params) and "actor.optimizer" in params:
            n_parameters = sum(len(group["params"]) for group in self.actor.optimizer.param_groups)
            params = {**params, "actor.optimizer": extended_optimizer_state(params["actor.optimizer"], n_parameters)}
        super().set_parameters(params, exact_match, device)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "actor", "critic", "critic_target", "_compiled_losses"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "actor.optimizer", "critic.optimizer"], []
