#!/usr/bin/env bash
# SB3's own tests, with SOM in SAC's place, on the cases that use SAC (see conftest.py).
# Usage (in the project's virtual environment): bash compat/run_sb3_suite.sh [extra pytest args]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${SB3_SUITE_DIR:-$(mktemp -d)}"
version="$(python -c 'import stable_baselines3; print(stable_baselines3.__version__)')"
cd "$work"
[ -d "stable_baselines3-$version" ] || {
  pip download -q --no-deps --no-binary :all: "stable-baselines3==$version" -d .
  tar xzf "stable_baselines3-$version.tar.gz"
  rm -rf "stable_baselines3-$version/stable_baselines3"  # test the installed package
}
cd "stable_baselines3-$version"
cp "$here/conftest.py" tests/conftest.py
files="test_callbacks.py test_cnn.py test_custom_policy.py test_deterministic.py test_dict_env.py test_her.py
       test_identity.py test_n_step_replay.py test_predict.py test_run.py test_save_load.py test_sde.py test_spaces.py
       test_tensorboard.py test_train_eval_mode.py test_vec_normalize.py test_gae.py"
# run against the installed stable_baselines3, not the sdist's copy
python -m pytest -p no:cacheprovider --rootdir . --import-mode=importlib -q \
  $(for f in $files; do printf 'tests/%s ' "$f"; done) "$@"
