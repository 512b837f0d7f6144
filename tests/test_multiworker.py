"""Beyond one machine: two worker processes of ``MultiWorkerMirroredStrategy`` on localhost.

Two processes (``tests/multiworker_check.py``) form a ``TF_CONFIG`` cluster on two free
``127.0.0.1`` ports (loopback only), each takes one SGD step of a ``DistanceLogits`` model on its
half of a 128-example global batch, and the weights after the step must equal one device's step
on the whole batch to float32 round-off relative to the update (the bound of
tests/test_distribution.py), and be the same on both workers. The cluster is bounded in time:
both processes are killed if either has not finished after ``TIMEOUT_S`` seconds or one fails.
Both workers are TensorFlow processes whatever the suite's backend, so the test runs once, in the
TensorFlow run of the suite.

Set ``KERAS_VC_DISTRIBUTION_REPORT`` to a file path to get the figures as JSON.
"""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 300
RELATIVE_TOLERANCE = 1e-5


def free_loopback_ports(count):
    """``count`` distinct ports that 127.0.0.1 can bind now (released before returning)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def load(path):
    with np.load(path) as arrays:
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]


def max_abs(first, second):
    return float(max(np.max(np.abs(a - b)) for a, b in zip(first, second, strict=True)))


def run_cluster(output_dir):
    """Start both workers, wait for them (bounded), kill both on a failure or a timeout."""
    try:
        ports = free_loopback_ports(2)
    except OSError as error:
        pytest.skip(f"cannot bind two TCP ports on 127.0.0.1 for the worker cluster: {error}")
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    try:
        for index in range(2):
            env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
                   "CUDA_VISIBLE_DEVICES": "",
                   "TF_CONFIG": json.dumps({"cluster": cluster,
                                            "task": {"type": "worker", "index": index}})}
            log = open(os.path.join(output_dir, f"worker_{index}.log"), "w")
            workers.append((subprocess.Popen(
                [sys.executable, os.path.join(ROOT, "tests", "multiworker_check.py"),
                 str(output_dir)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT),
                log))
        for process, _ in workers:
            process.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the 2-worker cluster did not finish within {TIMEOUT_S} s")
    finally:
        for process, log in workers:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
    for index, (process, _) in enumerate(workers):
        with open(os.path.join(output_dir, f"worker_{index}.log")) as log:
            assert process.returncode == 0, log.read()[-4000:]


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the workers choose their own backend; they run in the TensorFlow run of the suite")
def test_two_workers_take_the_one_device_step(tmp_path):
    run_cluster(tmp_path)
    initial = load(tmp_path / "initial.npz")
    single = load(tmp_path / "single.npz")
    workers = [load(tmp_path / f"worker_{index}.npz") for index in range(2)]
    update = max_abs(single, initial)
    difference = max_abs(single, workers[0])
    figures = {"multiworker_dismax": {"max_difference": difference, "max_update": update,
                                      "max_worker_difference": max_abs(*workers)}}
    print(json.dumps(figures))
    if os.environ.get("KERAS_VC_DISTRIBUTION_REPORT"):
        with open(os.environ["KERAS_VC_DISTRIBUTION_REPORT"] + ".multiworker.json", "w") as f:
            json.dump(figures, f, indent=1)
    assert update > 1e-4  # the step moved the weights
    assert difference <= RELATIVE_TOLERANCE * max(1.0, update), figures
    assert figures["multiworker_dismax"]["max_worker_difference"] == 0.0, figures
