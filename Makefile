# The two commands of the README: `make demo` (the main job) and `make test`.
# Both create .venv if it is missing and install keras_vc with the exact tested versions:
# `make demo` only what the demo runs (install-demo), `make test` also the test tools and JAX
# (install). Either order works in one clone: the second adds to the same .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.keras_vc_installed
DEMO_STAMP := $(VENV)/.keras_vc_demo_installed
TORCH_STAMP := $(VENV)/.keras_vc_torch_installed
# constraints.txt pins PyTorch's CPU-only wheel (torch==2.13.0+cpu), which lives on this index
# (not on PyPI). The install tries pip's own configuration first (a machine whose pip already
# finds that wheel never contacts the index) and this index only when that fails.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

# The backend-neutral core that `make test` runs again on JAX: the layer contract, each method's
# NumPy-checked math, the streaming metrics, scores, temperature fitting, gradients, attacks, FPR
# mixing and two-stage training. Tests marked `slow` run on TensorFlow only. The NumPy-side
# modules (post-hoc detectors, conformal sets, calibrators, selective metrics, DkNN's neighbour
# search) do the same arithmetic on every backend and run on TensorFlow only, to keep `make test`
# within its 20 minutes.
CORE_TESTS := tests/test_backends.py tests/test_layer_contract.py tests/test_head_protocol.py \
	tests/test_distances.py tests/test_gaussian.py tests/test_distance_logits.py \
	tests/test_entropic_cross_entropy.py tests/test_variational_softmax.py \
	tests/test_soft_nearest_neighbor.py tests/test_entanglement.py tests/test_metrics.py \
	tests/test_scores.py tests/test_calibration.py tests/test_gradients.py tests/test_augment.py \
	tests/test_robustness.py tests/test_two_stage.py

.PHONY: demo test test-tensorflow test-jax test-torch install install-demo clean

# The venv's own pip is used as it comes (Python 3.11's handles everything here).
$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,jax]"
	touch $(STAMP)

# The demo needs no extra: keras_vc and its requirements only (no pytest, notebooks, serving
# client or JAX).
$(DEMO_STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	touch $(DEMO_STAMP)

$(TORCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,torch]" \
		|| $(BIN)/python -m pip install --quiet --extra-index-url $(TORCH_INDEX) \
			-c constraints.txt -e ".[test,torch]"
	touch $(TORCH_STAMP)

install: $(STAMP)

install-demo: $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	KERAS_BACKEND=tensorflow $(BIN)/keras-vc compare --out reports

# The backend is fixed when Keras is imported: one pytest process per backend.
test: test-tensorflow test-jax

# Two pytest workers (pytest-xdist), each file on one worker: the suite is mostly single-threaded
# model code, so the two CPU cores of CI halve its time; --durations shows where it goes.
# tests/xdist_schedule.py hands out the longest files first and splits the few whose tests are
# independent, so that neither worker finishes alone (keep its table of seconds roughly current).
XDIST := -n 2 --dist loadfile -p tests.xdist_schedule

test-tensorflow: $(STAMP)
	KERAS_BACKEND=tensorflow $(BIN)/python -m pytest -q $(XDIST) --durations=15 tests

test-jax: $(STAMP)
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q $(XDIST) --durations=10 -m "not slow" \
		$(CORE_TESTS)

# Not part of `make test` (PyTorch adds ~0.9 GB to the environment); see the README.
test-torch: $(TORCH_STAMP)
	KERAS_BACKEND=torch $(BIN)/python -m pytest -q $(XDIST) --durations=10 -m "not slow" $(CORE_TESTS)

clean:
	rm -rf $(VENV) reports build *.egg-info
