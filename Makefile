# Two commands set up a fresh machine: `make book` and `make test` (both create the environment first).
# Book profiles (residual_lib.book.layout.PROFILES): toy (default), smoke, real (the real networks at full counts,
# CPU, offline, 40 minutes on 2 cores, measured), paper (GPU, network).
PROFILE ?= toy
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
PYTEST_ARGS ?=
# Extra runner arguments, e.g. make book BOOK_ARGS='--only environment -p device=cpu'
BOOK_ARGS ?=
# Notebooks executed at once: the toy pages run on one CPU thread each, so two keep a 2-core machine busy; the paper
# profile's pages share one GPU and run one after another.
BOOK_JOBS ?= $(if $(filter paper,$(PROFILE)),1,2)

.PHONY: setup book test toy-model reproduce bench clean browser fashion-mnist

setup: $(STAMP)

# Reinstalls only when the dependency files change.
$(STAMP): pyproject.toml environment.yml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade-strategy only-if-needed -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name residual --display-name "Python (residual_lib)" >/dev/null
	touch $(STAMP)

# The site check needs Debian's chromium; installed here when we are root and it is missing.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "chromium not installed: the site check will be skipped (install Debian's 'chromium' package)"

# Fashion-MNIST (the real images of the default book) from Debian's dataset-fashion-mnist package, installed here
# when we are root and it is missing; elsewhere torchvision downloads it on first use.
fashion-mnist:
	@test -d /usr/share/datasets/fashion-mnist || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) ; } || \
	  echo "dataset-fashion-mnist not installed: torchvision will download Fashion-MNIST on first use"

toy-model: setup
	$(PY) -m residual_lib.toy.train --profile $(PROFILE)

# Executes every notebook of book/_toc.yml with papermill, then builds book/_build/html (warnings are errors). The
# runner trains the toy model itself when a page needs it, beside the pages that do not (residual_lib.book.runner).
book: setup fashion-mnist
	$(PY) -m residual_lib.book build --profile $(PROFILE) --jobs $(BOOK_JOBS) $(BOOK_ARGS)

test: setup browser fashion-mnist
	$(PY) -m pytest $(PYTEST_ARGS)

# The paper profile unless PROFILE is given; MODELS/DATASETS narrow the extraction and the book alike.
# EXECUTOR=slurm submits the jobs as a Slurm job array (SLURM_ARGS: submitit parameters) and returns; build the
# book once `python -m residual_lib.reproduce --status` shows every job done. WORKERS: local jobs at once.
REPRO_PROFILE = $(if $(filter command line environment,$(origin PROFILE)),$(PROFILE),paper)
REPRO_ARGS = $(if $(MODELS),--models $(MODELS)) $(if $(DATASETS),--datasets $(DATASETS))
EXECUTOR ?= local
WORKERS ?= 1
SLURM_ARGS ?=

reproduce: setup
ifeq ($(EXECUTOR),slurm)
	$(PY) -m residual_lib.reproduce --profile $(REPRO_PROFILE) $(REPRO_ARGS) --executor slurm --slurm-args "$(SLURM_ARGS)"
else
	$(PY) -m residual_lib.reproduce --profile $(REPRO_PROFILE) $(REPRO_ARGS) --executor $(EXECUTOR) --workers $(WORKERS)
	set -f; overrides=$$($(PY) -m residual_lib.reproduce --profile $(REPRO_PROFILE) $(REPRO_ARGS) --book-args) && \
	  $(PY) -m residual_lib.book build --profile $(REPRO_PROFILE) $$overrides $(BOOK_ARGS)
endif

bench: setup
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf artifacts book/_build book/notebooks book/_generated
