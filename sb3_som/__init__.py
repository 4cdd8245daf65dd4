"""SOM (Score-Based One-step MeanFlow Policy Optimization) for Stable-Baselines3."""

from sb3_som.envs import register_envs
from sb3_som.policies import CnnMeanFlowPolicy, MeanFlowPolicy, MlpMeanFlowPolicy, MultiInputMeanFlowPolicy
from sb3_som.som import SOM

__version__ = "0.1.0"

register_envs()

__all__ = ["SOM", "CnnMeanFlowPolicy", "MeanFlowPolicy", "MlpMeanFlowPolicy", "MultiInputMeanFlowPolicy", "__version__"]
