"""rl-zoo3 hyperparameter files of sb3-som, installed as the package ``sb3_som.hyperparams``."""
