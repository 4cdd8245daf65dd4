"""SOM: Score-Based One-step MeanFlow Policy Optimization, as an SB3 off-policy algorithm."""

from __future__ import annotations

import importlib.util
import io
import math
import os
import pathlib
import shutil
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, ClassVar, TypeVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy, ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import get_actor_critic_arch
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, PyTorchObs, ReplayBufferSamples, Schedule
from stable_baselines3.common.utils import FloatSchedule, get_parameters_by_name, polyak_update, update_learning_rate
from torch.nn import functional as F

from sb3_som.critic_values import Q_SCALE_FLOORS, SCORE_CRITICS, action_profile, floored_q_scale, proposal_q_function
from sb3_som.meanflow import network_velocity_jvp
from sb3_som.objective import FlowTargetConfig, actor_losses
from sb3_som.paths import NoisePath, make_path
from sb3_som.persistence import atomic_path, check_model_file
from sb3_som.policies import (
    DEFAULT_N_CRITICS,
    CnnMeanFlowPolicy,
    MeanFlowActor,
    MeanFlowPolicy,
    MlpMeanFlowPolicy,
    MultiInputMeanFlowPolicy,
)
from sb3_som.score import MIN_SCORE_SAMPLES
from sb3_som.snapshot import TrainingSnapshot
from sb3_som.validation import (
    check_auto_or_positive,
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_no_sac_only_arguments,
    check_non_negative,
    check_optional_schedule,
    check_positive,
)

SelfSOM = TypeVar("SelfSOM", bound="SOM")


def policy_setting(name: str, meaning: str) -> property:
    """A model attribute that reads and sets the policy's setting ``name`` (checked there); may be changed at any time."""
    return property(
        lambda model: getattr(model.policy, name),
        lambda model, value: setattr(model.policy, name, value),
        doc=f"{meaning}: the policy's ``{name}``, changeable at any time.",
    )


def repeat_rows(observations: PyTorchObs, repeats: int) -> PyTorchObs:
    """Each row of a batch of observations ``repeats`` times in a row (a tensor, or a dict of tensors): (B, ...) ->
    (B * repeats, ...); with ``repeats == 1`` the batch itself, not a copy."""
    if repeats == 1:
        return observations
    if isinstance(observations, dict):
        return {key: value.repeat_interleave(repeats, dim=0) for key, value in observations.items()}
    return observations.repeat_interleave(repeats, dim=0)


def first_rows(observations: PyTorchObs, n: int) -> PyTorchObs:
    """The first ``n`` rows of a batch of observations (a tensor, or a dict of tensors for Dict spaces)."""
    if isinstance(observations, dict):
        return {key: value[:n] for key, value in observations.items()}
    return observations[:n]


def missing_compiler(device: th.device | str = "cpu") -> str | None:
    """What ``torch.compile`` (its inductor backend) lacks on this machine to compile for ``device``, or None.

    On the CPU it builds C++ kernels ($CXX, g++, clang++ or c++); on a GPU, Triton kernels (the ``triton`` package).
    """
    if th.device(device).type == "cpu":
        compilers = [os.environ.get("CXX"), *map(shutil.which, ("g++", "clang++", "c++"))]
        return None if any(compilers) else "a C++ compiler ($CXX, g++, clang++ or c++)"
    return None if importlib.util.find_spec("triton") is not None else "the triton package"


A0_SOURCES = ("policy", "buffer")
TIME_SAMPLERS = ("logit_normal", "uniform")
NOISE_PATHS = ("linear", "vp")

# what train() logs under train/ (besides learning_rate and n_updates): the critic's two, then _actor_loss's
STEP_LOGS = (
    "critic_loss",
    "q_mean",
    "actor_loss",
    "meanflow_loss",
    "distillation_loss",
    "q_scale",
    "q_spread",
    "q_disagreement",
    "score_norm",
    "target_velocity_norm",
    "face_fraction",
    "effective_sample_size",
)
# an action coordinate beyond this (in the normalised box [-1, 1]) counts as on a face, for train/face_fraction
FACE_THRESHOLD = 0.98

# rewards from this magnitude on are named as the cause of a non-finite loss: Q ~ r / (1 - gamma) and its squared
# TD error then approach float32's largest value (3.4e38)
LARGE_REWARD = 1e15
MAX_ALPHA = 1e4
# alpha="auto" is AUTO_ALPHA * sqrt(d) for d action dimensions: the same greediness per action dimension whatever d
AUTO_ALPHA = 10.0
ALPHA_BOUND_REASON = (
    " (alpha applies to Q in units of its spread: at 1e4 a proposal a hundredth of that spread below the best already"
    " weighs e^-100 against it, so a larger alpha adds no greediness the critic can resolve and only drives the logits"
    " alpha * Q / q_scale and the critic-gradient score, which grow with alpha, toward float32 overflow)"
)
# the VP path's mean coefficient at t = 1 is exp(-(beta_min + beta_max) / 4); float32 keeps it normal up to about 349
MAX_BETA_SUM = 320.0
# proposals per update (batch_size * n_score_samples), each evaluated by the critic
MAX_SCORE_PROPOSALS = 2**22
# next actions per transition whose values the TD target averages (batch_size * n_next_actions rows per critic call)
MAX_NEXT_ACTIONS = 1024
# the policy's inference settings: they live on the policy, SOM's arguments and attributes of these names reach them
INFERENCE_SETTINGS = ("n_action_candidates", "action_candidates_when", "sampling_steps")
# SOM's settings with the check each value gets whenever it is assigned (numbers become Python numbers)
SETTING_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "actor_learning_rate": check_optional_schedule,
    "alpha": partial(check_auto_or_positive, maximum=MAX_ALPHA, why=ALPHA_BOUND_REASON),
    "n_score_samples": partial(check_int, minimum=MIN_SCORE_SAMPLES),
    "n_next_actions": partial(check_int, minimum=1, maximum=MAX_NEXT_ACTIONS),
    "score_critic": partial(check_choice, choices=SCORE_CRITICS),
    "q_scale_floor": partial(check_choice, choices=Q_SCALE_FLOORS),
    "score_with_target_critic": check_bool,
    "noise_path": partial(check_choice, choices=NOISE_PATHS),
    "beta_min": check_positive,
    "beta_max": check_positive,
    "time_sampler": partial(check_choice, choices=TIME_SAMPLERS),
    "mean_flow_fraction": check_fraction,
    "a0_source": partial(check_choice, choices=A0_SOURCES),
    "actor_batch_fraction": partial(check_positive, maximum=1.0),
    "distillation_steps": partial(check_int, minimum=0),
    "distillation_coef": check_non_negative,
    "loss_weight_power": check_fraction,
    "target_update_interval": partial(check_int, minimum=1),
    "compile_step": check_bool,
    "batch_size": partial(check_int, minimum=1),
    "tau": check_fraction,
    "gamma": check_fraction,
}


class SOM(OffPolicyAlgorithm):
    """
    Score-Based One-step MeanFlow Policy Optimization (SOM).

    The actor is a MeanFlow network: one call maps a noise vector to an action. Its training target
    is the probability-flow velocity of the Boltzmann policy ``exp(alpha * Qn)``, whose score is
    estimated by Monte Carlo through the critic; the twin critics learn by TD as in SAC, with the
    next action drawn from the one-step actor. See ``docs/algorithm.md``.

    :param policy: The policy model to use ("MlpMeanFlowPolicy", "CnnMeanFlowPolicy", ...)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: learning rate for the actor and critic optimizers,
        it can be a function of the current progress remaining (from 1 to 0)
    :param actor_learning_rate: the actor's own learning rate (a number or a function of the progress remaining),
        or ``None`` (the default) for ``learning_rate``; with it, ``learning_rate`` is the critic's alone
    :param buffer_size: size of the replay buffer
    :param learning_starts: how many steps of the model to collect transitions for before learning starts
    :param batch_size: minibatch size for each gradient update
    :param tau: the soft update coefficient ("Polyak update", between 0 and 1)
    :param gamma: the discount factor
    :param train_freq: update the model every ``train_freq`` steps, or a tuple like ``(5, "step")``
    :param gradient_steps: gradient steps after each rollout; ``-1`` does as many as environment steps
    :param action_noise: optional extra action noise (the policy already explores by sampling)
    :param replay_buffer_class: replay buffer class to use (for instance ``HerReplayBuffer``)
    :param replay_buffer_kwargs: keyword arguments to pass to the replay buffer on creation
    :param optimize_memory_usage: enable a memory efficient variant of the replay buffer
    :param n_steps: n-step returns for the critic (as in SAC)
    :param n_next_actions: next actions drawn from the actor per transition for the TD target, which averages their
        values (min over the target critics, as SAC): 1 (one sample, as SAC) to 1024. The target is the same in
        expectation; more samples take out the spread of Q across the policy's next actions, which a broad policy
        adds to every TD error (and so to the "td_error" floor of the Q scale). The TD target's cost grows with it
    :param alpha: inverse temperature of the target policy ``exp(alpha * Q / q_scale)``: ``"auto"``, which is
        ``10 * sqrt(d)`` for d action dimensions, or a number in (0, 1e4]; larger is greedier. A Q that adds up over
        the action's dimensions spreads across the box as ``sqrt(d)`` times one dimension's spread, so a fixed number
        makes each dimension's target flatter as d grows; "auto" gives each dimension the greediness of alpha 10 in
        one dimension (``target_alpha`` is the value in use). ``q_scale`` is the spread of Q across uniform
        actions at a state (averaged over the batch), never below ``q_scale_floor`` (differences between actions
        smaller than what the critic cannot resolve are not trusted). Above 1e4 the weights of
        the K proposals are one-hot for any Q difference the critic resolves, and the logits and the
        critic-gradient score, which grow with alpha, approach float32 overflow
    :param n_score_samples: critic evaluations per state for the score estimate (K), >= 3: a quarter of them (at least
        two) Gaussian proposals with the critic's gradient, one of them the policy's own action, the rest drawn from a
        Gaussian fitted to each posterior (``docs/algorithm.md``, "The score estimate"); each update
        evaluates the critic on ``batch_size * n_score_samples`` proposals, at most 2**22 (4,194,304; memory)
    :param score_critic: which critic values the proposals: "first" (the first Q network, as TD3's
        actor; half the critic rows of "min") or "min" (the minimum over the twin critics, as SAC's actor)
    :param q_scale_floor: what the Q scale is never below: "critic_disagreement" (the Q networks' disagreement
        about how Q varies across actions at a state: the standard deviation across the networks of
        ``Q_i(s, a) - mean_a Q_i(s, a)``, as a root mean square over states and uniform actions; needs
        ``n_critics >= 2``), "td_error" (the first critic's RMS TD error on the batch, which also counts the error
        in the state's value and any noise in the rewards and transitions, so that noisy rewards make the target
        less greedy than alpha says) or "auto": "critic_disagreement" with two Q networks or more, "td_error" with
        one (``q_scale_floor_in_use`` is the one in use; ``docs/algorithm.md``, "Q normalisation and temperature")
    :param score_with_target_critic: value the proposals (and measure the Q scale) with the target critic, the
        Polyak average of the critic that the TD targets use (True), or with the critic itself (False). The target
        policy ``exp(alpha * Q / q_scale)`` moves its mass between distant actions whenever the critic's values of
        them swap, and the actor follows within tens of updates; the averaged critic changes smoothly, and the actor
        with it (``docs/algorithm.md``, "The critic behind the target")
    :param noise_path: "linear" (``a_t = (1 - t) a_0 + t e``) or "vp" (variance preserving)
    :param beta_min: ``beta(0)`` of the VP path
    :param beta_max: ``beta(1)`` of the VP path, > ``beta_min``, with ``beta_min + beta_max <= 320``: the path's
        mean coefficient at t = 1, ``exp(-(beta_min + beta_max) / 4)``, underflows float32 beyond about 349 and
        the score estimate, which divides by it, becomes NaN
    :param time_sampler: how ``(r, t)`` is drawn: "logit_normal" (MeanFlow's: two draws of
        logit-normal(-0.4, 1), ``t = max``, ``r = min``) or "uniform" (``t ~ U``, ``r ~ U[0, t]``)
    :param mean_flow_fraction: share of the batch trained with ``r != t`` (the rest learns the
        instantaneous velocity)
    :param a0_source: where the clean actions that are noised into ``a_t`` come from: "policy"
        (the current actor's own samples) or "buffer" (the replay buffer's actions)
    :param actor_batch_fraction: share of each batch's states that the actor's update uses, in (0, 1]: the first
        ``ceil(actor_batch_fraction * batch_size)`` states (the critic's update uses all of them); the actor's update
        costs in proportion
    :param distillation_steps: self-distillation of the one-step map: each actor update also
        regresses ``u(e, 0, 1 | s)`` onto ``e - a_k(e)``, ``a_k`` the network's own
        ``distillation_steps``-step sample without gradient; 0 turns it off
    :param distillation_coef: weight of the self-distillation loss
    :param loss_weight_power: power ``p`` of MeanFlow's adaptive loss weight ``1 / (||delta||^2 + c)^p``
    :param n_action_candidates: Best-of-N when the policy acts (``predict``, and so also the actions ``learn``
        collects after ``learning_starts``; see ``action_candidates_when``): N actions per state, the critic's argmax is
        kept (1 = off: ``predict`` is one actor call and no critic call), at most 1024 (each ``predict``
        evaluates the actor and the critic on N rows per state); the policy's setting, changeable at any time
        (``model.n_action_candidates = 4``, ``SOM.load(path, n_action_candidates=4)``); None takes the policy's
        (1, or ``policy_kwargs["n_action_candidates"]``; giving both with different values raises ``ValueError``)
    :param action_candidates_when: which actions Best-of-N picks: "always" (every action, so also the ones ``learn``
        collects) or "deterministic" (only ``predict(deterministic=True)``, e.g. evaluation, while exploration
        samples the policy as it is); the policy's setting, changeable and defaulted as ``n_action_candidates``
        (None: "always")
    :param sampling_steps: MeanFlow steps per action whenever the policy acts (1 = one network call); the actor's setting,
        changeable and defaulted as ``n_action_candidates``
    :param target_update_interval: update the target network every ``target_update_interval`` gradient steps
    :param compile_step: compute the critic's and the actor's losses (forward and backward) through ``torch.compile``,
        with CUDA graphs on a CUDA device (``mode="reduce-overhead"``); the optimizers' steps and the Polyak update stay
        eager. The first gradient step compiles (tens of seconds); off by default (``docs/algorithm.md``, "Compiled
        gradient step")
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

    def __new__(cls, *args: Any, **kwargs: Any) -> SOM:
        # SAC's arguments that SOM does not take, refused with what replaces them before Python's own TypeError
        check_no_sac_only_arguments(kwargs, kwargs.get("policy_kwargs"))
        return super().__new__(cls)

    def __init__(
        self,
        policy: str | type[MeanFlowPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        actor_learning_rate: float | Schedule | None = None,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
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
        n_next_actions: int = 1,
        alpha: float | str = "auto",
        n_score_samples: int = 16,
        score_critic: str = "first",
        q_scale_floor: str = "auto",
        score_with_target_critic: bool = True,
        noise_path: str = "linear",
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        time_sampler: str = "uniform",
        mean_flow_fraction: float = 0.75,
        a0_source: str = "policy",
        actor_batch_fraction: float = 0.5,
        distillation_steps: int = 8,
        distillation_coef: float = 1.0,
        loss_weight_power: float = 0.5,
        n_action_candidates: int | None = None,
        action_candidates_when: str | None = None,
        sampling_steps: int | None = None,
        target_update_interval: int = 1,
        compile_step: bool = False,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        policy_kwargs = dict(policy_kwargs or {})
        given = (n_action_candidates, action_candidates_when, sampling_steps)
        for name, value in zip(INFERENCE_SETTINGS, given, strict=True):
            if value is None:
                continue  # the policy's default, or policy_kwargs'
            if name in policy_kwargs and policy_kwargs[name] != value:
                raise ValueError(
                    f"{name} is given twice, as {value!r} and as policy_kwargs[{name!r}] = {policy_kwargs[name]!r}: "
                    "give it once (both set the policy's setting)"
                )
            policy_kwargs[name] = value
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
        self.n_next_actions = n_next_actions
        self.alpha = alpha
        self.n_score_samples = n_score_samples
        self.score_critic = score_critic
        self.q_scale_floor = q_scale_floor
        self.score_with_target_critic = score_with_target_critic
        self.noise_path = noise_path
        self.beta_min = beta_min
        self.beta_max = beta_max
        self.time_sampler = time_sampler
        self.mean_flow_fraction = mean_flow_fraction
        self.a0_source = a0_source
        self.actor_batch_fraction = actor_batch_fraction
        self.distillation_steps = distillation_steps
        self.distillation_coef = distillation_coef
        self.loss_weight_power = loss_weight_power
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
        """Check every setting as at construction; raises ``ValueError`` naming the argument.

        Runs at construction, after ``load`` (whose ``kwargs`` and ``custom_objects`` bypass assignment checks)
        and at the start of ``learn``, where the checks that relate several settings apply to their current values.
        """
        for name in SETTING_CHECKS:
            setattr(self, name, getattr(self, name))
        if self.beta_max <= self.beta_min:
            raise ValueError(f"beta_max must be greater than beta_min, got beta_min={self.beta_min}, beta_max={self.beta_max}")
        if self.beta_min + self.beta_max > MAX_BETA_SUM:
            raise ValueError(
                f"beta_min + beta_max must be <= {MAX_BETA_SUM:g}, got beta_min={self.beta_min}, beta_max={self.beta_max}: "
                "the VP path's mean coefficient at t = 1, exp(-(beta_min + beta_max) / 4), underflows float32 beyond "
                "about 349 and the score estimate, which divides by it, becomes NaN"
            )
        if self.q_scale_floor == "critic_disagreement" and self._n_critics < 2:
            raise ValueError(
                f'q_scale_floor="critic_disagreement" needs at least two Q networks, got n_critics={self._n_critics}: '
                'use q_scale_floor="td_error" (or "auto", which picks it with one Q network) or n_critics >= 2'
            )
        if self.distillation_steps > 0 and self.distillation_coef == 0:
            raise ValueError("distillation_coef must be > 0 when distillation_steps > 0 (distillation_steps=0 turns it off)")
        missing = missing_compiler(self.device) if self.compile_step else None
        if missing is not None:
            raise ValueError(
                f"compile_step=True needs {missing} on this machine for device {self.device.type!r} (torch.compile "
                "builds its kernels with it): install it, or use compile_step=False"
            )
        proposals = self.batch_size * self.n_score_samples
        if proposals > MAX_SCORE_PROPOSALS:
            critic_width = sum(get_actor_critic_arch(self.policy_kwargs.get("net_arch") or [256, 256])[1])
            gib = proposals * (get_action_dim(self.action_space) + critic_width) * 4 / 2**30
            raise ValueError(
                f"n_score_samples={self.n_score_samples} with batch_size={self.batch_size} asks the critic for "
                f"{proposals:,} proposals per update, about {gib:,.3g} GiB of float32 proposals and critic activations; "
                f"the limit is batch_size * n_score_samples <= {MAX_SCORE_PROPOSALS:,}: "
                f"use n_score_samples <= {MAX_SCORE_PROPOSALS // self.batch_size} at this batch_size"
            )

    # the policy's inference settings, read and changed through the model (``model.n_action_candidates = 4``)
    n_action_candidates = policy_setting("n_action_candidates", "Best-of-N when acting (1 = off)")
    action_candidates_when = policy_setting(
        "action_candidates_when", 'which actions Best-of-N picks, "always" or "deterministic"'
    )
    sampling_steps = policy_setting("sampling_steps", "MeanFlow steps per action when acting (the actor's)")

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
    def flow_path(self) -> NoisePath:
        """The noise path of the actor's flow, from the current ``noise_path``, ``beta_min`` and ``beta_max``."""
        return make_path(self.noise_path, self.beta_min, self.beta_max)

    @property
    def _n_critics(self) -> int:
        """The number of Q networks the policy has (or, before it is built, will have)."""
        return self.policy_kwargs.get("n_critics", DEFAULT_N_CRITICS)

    @property
    def q_scale_floor_in_use(self) -> str:
        """What floors the Q scale: ``q_scale_floor``, or for "auto" "critic_disagreement" with two Q networks or more
        and "td_error" with one."""
        if self.q_scale_floor != "auto":
            return self.q_scale_floor
        return "critic_disagreement" if self._n_critics >= 2 else "td_error"

    @property
    def target_alpha(self) -> float:
        """The target's inverse temperature: ``alpha``, or for ``alpha="auto"`` ``AUTO_ALPHA * sqrt(d)`` (d action
        dimensions)."""
        if not isinstance(self.alpha, str):
            return self.alpha
        action_shape = self.action_space.shape  # alpha is "auto", the only string the setting's check lets through
        assert action_shape is not None
        return AUTO_ALPHA * math.sqrt(math.prod(action_shape))

    @property
    def flow_config(self) -> FlowTargetConfig:
        """The actor objective's settings, read from SOM's attributes at each call (changes take effect)."""
        return FlowTargetConfig(
            alpha=self.target_alpha,
            n_score_samples=self.n_score_samples,
            time_sampler=self.time_sampler,
            mean_flow_fraction=self.mean_flow_fraction,
            distillation_steps=self.distillation_steps,
            distillation_coef=self.distillation_coef,
            loss_weight_power=self.loss_weight_power,
        )

    @th.no_grad()
    def _td_target(self, replay_data: ReplayBufferSamples) -> th.Tensor:
        """The critics' TD target (B, 1): ``r + discount * mean over a' of min_i Q_target_i(s', a')``.

        ``n_next_actions`` a' per transition from the actor (M): the min over the target critics at each, as SAC
        does, averaged over the M.
        """
        discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma
        next_observations = repeat_rows(replay_data.next_observations, self.n_next_actions)  # (B * M, ...)
        next_actions = self.actor(next_observations)
        next_q_values = th.cat(self.critic_target(next_observations, next_actions), dim=1).min(dim=1).values
        next_q_values = next_q_values.view(-1, self.n_next_actions).mean(dim=1, keepdim=True)  # (B, 1)
        return replay_data.rewards + (1 - replay_data.dones) * discounts * next_q_values

    def _critic_loss(self, replay_data: ReplayBufferSamples) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """The twin critics' TD loss (scalar, with graph), the first critic's RMS TD error and its mean Q (detached)."""
        target_q_values = self._td_target(replay_data)
        current_q_values = self.critic(replay_data.observations, replay_data.actions)
        squared_td_errors = [F.mse_loss(current_q, target_q_values) for current_q in current_q_values]
        critic_loss = 0.5 * th.stack(squared_td_errors).sum()
        td_error_rms = squared_td_errors[0].detach().sqrt()  # the first critic's, for the Q scale's floor
        return critic_loss, td_error_rms, current_q_values[0].detach().mean()

    @property
    def valuing_critic(self) -> ContinuousCritic:
        """The critic that values the score's proposals and measures the Q scale (``score_with_target_critic``)."""
        return self.critic_target if self.score_with_target_critic else self.critic

    def _q_scale(self, critic_features: th.Tensor, td_error_rms: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """The Q scale at states of the valuing critic's features (B, f), with its parts: (q_scale, spread,
        disagreement), scalars; ``td_error_rms`` is the floor where ``q_scale_floor_in_use`` is "td_error"."""
        spread, disagreement = action_profile(self.valuing_critic, critic_features, self.score_critic)
        floor = disagreement if self.q_scale_floor_in_use == "critic_disagreement" else td_error_rms
        return floored_q_scale(spread, floor), spread, disagreement

    def _actor_loss(self, replay_data: ReplayBufferSamples, td_error_rms: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """The actor's loss (scalar, with graph) and its logs, ``STEP_LOGS[2:]`` in order (detached).

        The MeanFlow regression onto the critic's velocity field, on the first ``ceil(actor_batch_fraction * B)``
        states of the batch (B its size).
        """
        batch_size = replay_data.actions.shape[0]
        actor_states = math.ceil(self.actor_batch_fraction * batch_size)
        observations = first_rows(replay_data.observations, actor_states)
        actor_features = self.actor.extract_features(observations, self.actor.features_extractor)
        noise = th.randn_like(replay_data.actions[:actor_states])
        # u(e, 0, 1 | s): the self-distillation's student (hence the graph) and, detached, the one-step sample a_0
        with th.set_grad_enabled(self.distillation_steps > 0):
            one_step_velocity = self.actor.one_step_velocity(actor_features, noise)
        one_step_actions = (noise - one_step_velocity.detach()).clamp(-1.0, 1.0)
        a0 = one_step_actions if self.a0_source == "policy" else replay_data.actions[:actor_states]
        config = self.flow_config
        valuing_critic = self.valuing_critic
        with th.no_grad():
            critic_features = valuing_critic.extract_features(observations, valuing_critic.features_extractor)
            q_scale, spread, disagreement = self._q_scale(critic_features, td_error_rms)

        losses = actor_losses(
            u_fn=self.actor.velocity_at(actor_features),
            a0=a0,
            noise=noise,
            one_step_velocity=one_step_velocity,
            path=self.flow_path,
            q_function=proposal_q_function(valuing_critic, critic_features, self.score_critic),
            config=config,
            q_scale=q_scale,
            u_jvp=network_velocity_jvp(partial(self.actor.network_input, actor_features), self.actor.velocity_net),
        )
        distillation = losses.distillation if losses.distillation is not None else th.zeros_like(losses.meanflow)
        logs = th.stack(
            [
                losses.total.detach(),
                losses.meanflow.detach(),
                distillation.detach(),
                q_scale,
                spread,
                disagreement,
                losses.target.score.norm(dim=-1).mean(),
                losses.target.velocity.norm(dim=-1).mean(),
                (one_step_actions.abs() > FACE_THRESHOLD).float().mean(),
                losses.target.effective_sample_size.mean(),
            ]
        )
        return losses.total, logs

    def _loss_functions(
        self,
    ) -> tuple[
        Callable[[ReplayBufferSamples], tuple[th.Tensor, th.Tensor, th.Tensor]],
        Callable[[ReplayBufferSamples, th.Tensor], tuple[th.Tensor, th.Tensor]],
    ]:
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
        log_sums = th.zeros(len(STEP_LOGS), device=self.device)
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
            log_sums += th.cat([critic_loss.detach().view(1), q_mean.view(1), actor_logs])

            if gradient_step % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                # copy batch norm running stats, as SAC does
                polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)

        logs = dict(zip(STEP_LOGS, (log_sums / gradient_steps).tolist(), strict=True))  # the call's one read-back
        not_finite = [name for name in ("critic_loss", "actor_loss") if not math.isfinite(logs[name])]
        if not_finite:
            snapshot.restore()
            peak = reward_peak.item()
            if not math.isfinite(peak):
                cause = "The sampled rewards hold NaN or inf: check the environment's rewards."
            elif peak >= LARGE_REWARD:
                cause = (
                    f"The sampled rewards reach |r| = {peak:.3g}: TD errors of that scale overflow float32 when squared. "
                    "Scale the rewards down (a reward wrapper, or VecNormalize(norm_reward=True))."
                )
            else:
                cause = "Check the observations for NaN/inf, or lower the learning rate."
            raise FloatingPointError(
                f"SOM: {' and '.join(not_finite)} not finite in this train() call of {gradient_steps} gradient step(s); "
                "training stopped, and the weights, target critic and optimizer states are those from before the call. "
                + cause
            )
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for key, value in logs.items():
            if key != "distillation_loss" or self.distillation_steps > 0:
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
        return super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)

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
        if isinstance(path, io.BufferedIOBase):
            super().save(path, exclude, include)
            return
        with atomic_path(path, "zip") as temporary:
            super().save(temporary, exclude, include)

    def save_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase) -> None:
        """SB3's ``save_replay_buffer``, written to a temporary file in the same directory that then replaces ``path``."""
        if isinstance(path, io.BufferedIOBase):
            super().save_replay_buffer(path)
            return
        with atomic_path(path, "pkl") as temporary:
            super().save_replay_buffer(temporary)

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
        model._validate_settings()
        for name, value in inference_settings.items():
            setattr(model, name, value)
        return model

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "actor", "critic", "critic_target", "_compiled_losses"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "actor.optimizer", "critic.optimizer"], []
