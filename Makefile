# Lips & Voices. Two commands do everything:
#   make book   -> environment, every chapter under the `cpu` profile, HTML book
#   make test   -> environment, unit tests, the chapters on small trees in the real datasets'
#                  layouts, every chapter under `smoke`, strict book build, every page of that
#                  book checked in headless Chromium
PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= cpu
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.avlib-installed
# The CPU torch pin: without it pip pulls the multi-GB CUDA build (see constraints.txt).
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: book test venv unit realdata smoke smoke-book browser-check run build clean distclean \
	benchmarks gpu-check

book: venv
	$(PY) -m avlib.book run --profile $(PROFILE)
	$(PY) -m avlib.book results --profile $(PROFILE) --snapshot
	$(PY) -m avlib.book build --profile $(PROFILE)

test: venv unit realdata smoke smoke-book browser-check

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --progress-bar off -e '.[book,test,speech]'
	$(PY) -m pip check
	@touch $@

unit: venv
	$(PY) -m pytest -q

# Real data, end to end (tests/realdata): small LRS2, LRS3, Acappella, GRID and LRW trees made
# of rendered clips, preprocessed by chapter 01 and read by the chapters that use each layout
# (02 on LRS2/LRS3/Acappella, 03 and 04 on LRS2, 05 on GRID, 06 and 07 on LRW) under `smoke`,
# two layouts at a time. Outputs in _build/realdata/, never in the smoke book's records. `make
# unit` does not collect tests/realdata: pytest collects it only when named (tests/conftest.py).
realdata: venv
	$(PY) -m pytest tests/realdata -q

smoke: venv
	$(PY) -m avlib.book run --profile smoke --no-progress

smoke-book: venv
	$(PY) -m avlib.book build --profile smoke

# The built smoke book in headless Chromium (needs `chromium`; .ci/run installs it): every page
# from file://, failing on console errors, broken images or links, audio/video that cannot play,
# maths MathJax did not typeset, unrendered widgets, chapters without outputs; screenshots and
# report.json in _build/browser/smoke/ (tests/browser/bookcheck.py). `make unit` does not collect
# tests/browser: pytest collects it only when named on the command line (tests/conftest.py).
browser-check: venv
	$(PY) -m pytest tests/browser -q

# One chapter with other parameters, e.g. make run ONLY=00_corpus PARAMS="-p n_speakers=4"
run: venv
	$(PY) -m avlib.book run --profile $(PROFILE) $(if $(ONLY),--only $(ONLY)) $(PARAMS)

build: venv
	$(PY) -m avlib.book build --profile $(PROFILE)

# Every chapter at small sizes on CUDA with bf16 autocast (profiles/gpucheck.yml), <= 10 min.
# Needs a CUDA build of torch in the venv (see README, "Run on a GPU machine").
gpu-check: venv
	@$(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else \
	  'make gpu-check needs a visible CUDA GPU and a CUDA build of torch; this venv has torch ' \
	  + torch.__version__ + '; see the README, Run on a GPU machine')"
	$(PY) -m avlib.book run --profile gpucheck --force --no-progress
	$(PY) -m avlib.book build --profile gpucheck

benchmarks: venv
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf _build

distclean: clean
	rm -rf $(VENV)
