# Sourced by scripts/quickstart and scripts/localfed: make .venv with neighborwatch installed.
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv"
  "$PYTHON" -m venv .venv
fi
installed=no
for stamp in .venv/.installed .venv/.test-installed; do  # the test command installs a superset
  if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then installed=yes; fi
done
if [ "$installed" = no ]; then
  echo "installing neighborwatch into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e .
  touch .venv/.installed
fi
export PYTHONPATH="scripts${PYTHONPATH:+:$PYTHONPATH}"
