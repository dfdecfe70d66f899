# Two commands do everything on a fresh machine:
#   make book   - set up .venv (if needed) and build the HTML book into _build/html (offline, from the
#                 outputs stored in the notebooks: no system package needed)
#   make test   - install the system packages the tests need where missing (.ci/system-packages.sh:
#                 Fashion-MNIST and Chromium; it stops with the command to run where it may not), set up
#                 .venv (if needed), build the book with warnings as errors, then run the unit tests,
#                 every chapter under nbval (smoke profile) and the browser test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Idle OpenMP threads sleep instead of spinning: small tensors on a busy 2-core machine ran ~30x slower otherwise.
export OMP_WAIT_POLICY := PASSIVE

.PHONY: setup system-packages book book-strict test unit notebooks lock clean

setup: $(STAMP)

# Debian's python3 needs python3-venv for `-m venv`; a failed attempt leaves a .venv without pip behind.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "'$(PYTHON) -m venv' failed: on Debian/Ubuntu run 'sudo apt-get install python3-venv', then make again" >&2; exit 1; }
	$(PY) -m pip install -q -c constraints.txt -e '.[book,test]'
	touch $(STAMP)

book: $(STAMP)
	$(VENV)/bin/jupyter-book build .

book-strict: $(STAMP)
	$(VENV)/bin/jupyter-book build . --warningiserror --keep-going

# Fashion-MNIST (dataset-fashion-mnist) and Chromium (chromium, chromium-driver); a no-op when present.
system-packages:
	bash .ci/system-packages.sh

# Unit tests, nbval over every chapter in the smoke profile and the browser test, in one pytest run.
# The system packages come first, so that a machine that lacks them stops before the build and tests.
test: system-packages
	$(MAKE) --no-print-directory book-strict
	ICD_PROFILE=smoke $(PY) -m pytest tests book --nbval-lax \
		--nbval-sanitize-with tests/nbval_sanitize.cfg --timeout 900 -p no:cacheprovider

unit: $(STAMP)
	$(PY) -m pytest tests -m "not slow and not browser" -q

# Re-execute every chapter in the `book` profile and store its outputs (what the rendered book shows).
notebooks: $(STAMP)
	for nb in book/*.ipynb; do \
		ICD_PROFILE=book $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.timeout=-1 "$$nb" || exit 1; \
	done

lock: $(STAMP)
	head -n 2 constraints.txt > constraints.txt.new
	$(PY) -m pip freeze --exclude-editable | grep -iv '^icd.lib' >> constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf _build .pytest_cache test-artifacts
