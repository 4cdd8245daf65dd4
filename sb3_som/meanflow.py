"""MeanFlow target, loss and samplers (pure torch, no SB3).

``u(a_t, r, t)`` is the average velocity of the flow over ``[r, t]``; it satisfies the MeanFlow identity

    u(a_t, r, t) = v(a_t, t) - (t - r) du/dt,   du/dt = v . d_a u + d_t u   (r held fixed),

whose right-hand side one forward-mode JVP gives (generic: ``torch.func.jvp``; for an
``nn.Sequential`` network, :func:`sequential_jvp` carries the tangent layer by layer without recording
its graph). A sample moves from noise (t = 1) to an action (t = 0) by ``a_r = a_t - (t - r) u(a_t, r, t)``:
one step with ``r = 0, t = 1``, or ``k`` steps.
Shapes: actions (B, d), times (B, 1).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch as th
from torch import nn
from torch.func import jvp
from torch.nn import functional as F

# torch's forward-mode AD loads its JVP decompositions at its first use, scripting them with torch.jit.script,
# which warns that torch.jit.script is deprecated (a torch-internal call, not SOM's): loaded here with that one
# warning filtered, so that the first gradient step passes under ``python -W error``
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=DeprecationWarning)
    from torch.autograd.forward_ad import _maybe_load_decompositions

    _maybe_load_decompositions()

# the k-step grid is t_i = (1 - i / k)^STEP_GRID_POWER: its steps shrink toward the actions (t = 0), where the flow
# of a narrow target turns fastest (docs/algorithm.md, "Times and steps")
STEP_GRID_POWER = 2

# u(a_t (B, d), r (B, 1), t (B, 1)) -> (B, d)
AverageVelocity = Callable[[th.Tensor, th.Tensor, th.Tensor], th.Tensor]
# (noise (B, d), steps) -> the flow's ``steps``-step sample (B, d), unclipped (:func:`sample_actions`)
FlowSampler = Callable[[th.Tensor, int], th.Tensor]
# (a_t, r, t, v) -> (a network's input x (B, n) with its graph, dx/dt along (v, 0, 1) (B, n) without)
NetworkInputAndRate = Callable[[th.Tensor, th.Tensor, th.Tensor, th.Tensor], tuple[th.Tensor, th.Tensor]]
# (a_t, r, t, v) -> (u with its graph, du/dt along (v, 0, 1) detached), both (B, d)
AverageVelocityJVP = Callable[[th.Tensor, th.Tensor, th.Tensor, th.Tensor], tuple[th.Tensor, th.Tensor]]


def meanflow_target(
    u_fn: AverageVelocity,
    a_t: th.Tensor,
    r: th.Tensor,
    t: th.Tensor,
    velocity: th.Tensor,
    u_jvp: AverageVelocityJVP | None = None,
) -> tuple[th.Tensor, th.Tensor]:
    """Network output ``u`` (with its graph) and the detached target ``v - (t - r) du/dt``.

    One JVP with primals ``(a_t, r, t)`` and tangents ``(v, 0, 1)`` yields ``u`` and ``du/dt`` together;
    ``u`` stays differentiable with respect to the network's parameters. ``u_jvp`` computes both for
    ``u_fn`` (e.g. :func:`network_velocity_jvp`); ``None`` uses ``torch.func.jvp``.
    """
    if u_jvp is None:
        u, du_dt = jvp(u_fn, (a_t, r, t), (velocity, th.zeros_like(r), th.ones_like(t)))
    else:
        u, du_dt = u_jvp(a_t, r, t, velocity)
    return u, (velocity - (t - r) * du_dt).detach()


def sequential_jvp(network: nn.Sequential, x: th.Tensor, dx: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """``network(x)`` with its graph and the Jacobian-vector product ``J(x) dx``, detached.

    The tangent goes through each ``nn.Linear`` as ``dx W^T``, through ``nn.ReLU`` by torch's own derivative of relu
    (the tangent where the layer's output is positive) and through any other layer (an activation) by
    ``torch.func.jvp`` at that layer's input, all without autograd: the same product as one ``torch.func.jvp`` of the
    whole network, which also records the tangent's graph when the output needs one. The layers must be
    deterministic (no dropout). Shapes: x, dx (B, n_in) -> (B, n_out) each.
    """
    output, tangent = x, dx
    for layer in network:
        layer_input, output = output, layer(output)
        with th.no_grad():
            if isinstance(layer, nn.Linear):
                tangent = F.linear(tangent, layer.weight)
            elif isinstance(layer, nn.ReLU):
                tangent = th.ops.aten.threshold_backward(tangent, output.detach(), 0)
            else:
                tangent = jvp(layer, (layer_input.detach(),), (tangent,))[1]
    return output, tangent


def network_velocity_jvp(input_and_rate: NetworkInputAndRate, network: nn.Sequential) -> AverageVelocityJVP:
    """The :data:`AverageVelocityJVP` of ``u(a_t, r, t) = network(x(a_t, r, t))``, from the network's input ``x`` and
    its rate of change (``input_and_rate``, e.g. ``MeanFlowActor.network_input_and_rate``).

    It returns ``u`` (with its graph) and ``du/dt`` along ``(a_t, t)`` moving by ``(v, 1)``, ``r`` fixed: the same
    pair as ``torch.func.jvp`` of ``u`` with tangents ``(v, 0, 1)``, for less: the input's rate is written out and
    the network's JVP goes through :func:`sequential_jvp`.
    """

    def u_jvp(a_t: th.Tensor, r: th.Tensor, t: th.Tensor, velocity: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        return sequential_jvp(network, *input_and_rate(a_t, r, t, velocity))

    return u_jvp


def adaptive_weighted_loss(prediction: th.Tensor, target: th.Tensor, power: float, c: float = 1e-3) -> th.Tensor:
    """MeanFlow's adaptive loss ``mean( sg(lam) ||delta||^2 )``, ``lam = 1 / (||delta||^2 + c)^power``.

    :param prediction: (B, d) with graph; ``target``: (B, d) detached. Returns a scalar.
    """
    squared_error = ((prediction - target) ** 2).sum(dim=-1)
    weight = 1.0 / (squared_error.detach() + c) ** power
    return (weight * squared_error).mean()


def sampling_grid(steps: int, device: th.device) -> th.Tensor:
    """The k-step sampler's times ``t_i = (1 - i / k)^STEP_GRID_POWER``, ``i = 0..k``: (k + 1,), from 1 to 0."""
    if steps < 1:
        raise ValueError(f"sampling steps must be >= 1, got {steps}")
    return th.linspace(1.0, 0.0, steps + 1, device=device) ** STEP_GRID_POWER


def sample_actions(u_fn: AverageVelocity, noise: th.Tensor, steps: int = 1) -> th.Tensor:
    """Carry noise (B, d) at t = 1 to actions at t = 0 in ``steps`` MeanFlow steps.

    ``a_{t_{i+1}} = a_{t_i} - (t_i - t_{i+1}) u(a_{t_i}, t_{i+1}, t_i)`` on the grid ``t_i = (1 - i / steps)^2``
    (:data:`STEP_GRID_POWER`); with
    ``steps = 1`` this is the one-call policy ``a = e - u(e, 0, 1)``. Returns (B, d), unclipped.
    """
    grid = sampling_grid(steps, noise.device)
    action = noise
    ones = noise.new_ones(noise.shape[0], 1)
    for i in range(steps):
        t, r = grid[i] * ones, grid[i + 1] * ones
        action = action - (t - r) * u_fn(action, r, t)
    return action
