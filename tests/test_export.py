"""The exported one-step actor (torch.export, ONNX) gives the actions of ``model.predict``."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th

from sb3_som import SOM
from sb3_som.export import OneStepActor

N_OBS = 7


@pytest.fixture(scope="module")
def model() -> SOM:
    """A briefly trained SOM on Pendulum-v1 (asymmetric action bounds are covered by the unscaling)."""
    model = SOM("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16]), learning_starts=50, batch_size=16,
                n_score_samples=4, seed=0)  # fmt: skip
    model.learn(100)
    return model


def predict_with_noise(model: SOM, observations: np.ndarray, deterministic: bool, seed: int) -> tuple[np.ndarray, th.Tensor]:
    """``model.predict`` and the noise it drew (the same generator state draws it again)."""
    th.manual_seed(seed)
    actions, _ = model.predict(observations, deterministic=deterministic)
    th.manual_seed(seed)
    noise = th.randn(len(observations), model.action_space.shape[0])
    return actions, th.zeros_like(noise) if deterministic else noise


def observations(model: SOM) -> np.ndarray:
    return np.stack([model.observation_space.sample() for _ in range(N_OBS)])


@pytest.mark.parametrize("deterministic", [True, False])
def test_torch_export_gives_the_actions_of_predict(model, tmp_path, deterministic):
    obs = observations(model)
    actions, noise = predict_with_noise(model, obs, deterministic, seed=3)
    batch = th.export.Dim("batch")
    actor = OneStepActor(model.policy).eval()
    exported = th.export.export(actor, (th.as_tensor(obs), noise), dynamic_shapes=({0: batch}, {0: batch}))
    th.export.save(exported, tmp_path / "actor.pt2")
    loaded = th.export.load(tmp_path / "actor.pt2").module()
    with th.no_grad():
        np.testing.assert_allclose(loaded(th.as_tensor(obs), noise).numpy(), actions, atol=1e-6)
        # another batch size through the same graph
        np.testing.assert_allclose(loaded(th.as_tensor(obs[:2]), noise[:2]).numpy(), actions[:2], atol=1e-6)


@pytest.mark.parametrize("deterministic", [True, False])
def test_onnx_export_gives_the_actions_of_predict(model, tmp_path, deterministic):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    obs = observations(model)
    actions, noise = predict_with_noise(model, obs, deterministic, seed=4)
    batch = th.export.Dim("batch")
    th.onnx.export(OneStepActor(model.policy).eval(), (th.as_tensor(obs), noise), tmp_path / "actor.onnx", dynamo=True,
                   input_names=["observation", "noise"], output_names=["action"],
                   dynamic_shapes=({0: batch}, {0: batch}))  # fmt: skip
    session = onnxruntime.InferenceSession(str(tmp_path / "actor.onnx"))
    (onnx_actions,) = session.run(None, {"observation": obs.astype(np.float32), "noise": noise.numpy()})
    np.testing.assert_allclose(onnx_actions, actions, atol=1e-5)


def test_one_step_actor_refuses_a_policy_whose_predict_is_not_one_step():
    model = SOM("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[8], n_action_candidates=4))
    with pytest.raises(ValueError, match="n_action_candidates=4"):
        OneStepActor(model.policy)
