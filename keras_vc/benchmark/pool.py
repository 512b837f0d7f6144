"""The worker pool of ``keras-vc compare``: tasks on processes, with a progress counter.

Tasks run on spawned worker processes with one TensorFlow thread each, the longest first; each
worker sends its progress lines to the parent, which prefixes every trained model with a
``[k/N]`` counter, the elapsed time and an estimate of the time left (:class:`Progress`).
Results come back in the order of the tasks given, whatever order they finish in.
"""

import multiprocessing
import os
import sys
import threading
import time
import warnings

import numpy as np

from keras_vc.benchmark import _quiet
from keras_vc.benchmark import plan as plan_lib
from keras_vc.benchmark import training_run


def _clock(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """Prefixes each model's line with ``[k/N elapsed M:SS, ETA M:SS]``.

    The estimate is the mean time per model so far times the models left (the longest tasks
    start first, so it errs on the long side early on).

    Args:
        total: the number of models of the run.
        log: called with each prefixed line.
        clock: a ``time.perf_counter``-like function (replaceable in tests).
    """

    def __init__(self, total, log, clock=time.perf_counter):
        self.total, self.log, self.clock = total, log, clock
        self.done, self.start = 0, clock()

    def prefix(self):
        elapsed = self.clock() - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        width = len(str(self.total))
        return f"[{self.done:>{width}d}/{self.total} {_clock(elapsed)} elapsed, ETA {_clock(eta)}]"

    def model(self, line):
        """One model finished: its line, counted."""
        self.done += 1
        self.log(f"{self.prefix()} {line}")

    def warn(self, line):
        """A warning line, not counted."""
        self.log(line)

    def __call__(self, message):
        kind, line = message
        (self.model if kind == "model" else self.warn)(line)


def quiet_worker():
    """Silences TensorFlow's start-up lines and retracing warnings in a worker process.

    The C++ log level must be set before TensorFlow is imported; the retracing paragraphs are
    Python warnings of TensorFlow's logger. Errors still print.
    """
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    warnings.filterwarnings("ignore", message=".*retracing.*")


_WORKER = {}


def _init_worker(datasets, methods, queue, threads):
    quiet_worker()
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    _WORKER["datasets"] = datasets
    _WORKER["methods"] = methods
    _WORKER["queue"] = queue


def _worker_task(task):
    queue = _WORKER["queue"]
    return training_run.run_task(task, _WORKER["datasets"][task.dataset], _WORKER["methods"],
                                 log=lambda line: queue.put(("model", line)),
                                 warn=lambda line: queue.put(("warning", line)))


def task_cost(task, dataset):
    """A rough cost estimate to start the longest tasks first (scheduling only)."""
    n = len(dataset.y) * 0.6
    if task.config == "open_set":
        n *= 0.6
    elif task.config.startswith("low_data_"):
        n *= plan_lib.config_fraction(task.config)
    cost = n * task.protocol.epochs * (np.prod(dataset.input_shape) ** 0.5)
    return cost * (1.5 if task.config == "full" else 1.0)


def run_tasks(tasks, datasets, methods, workers, log):
    """Runs every task and returns their results in the order of ``tasks``.

    Args:
        tasks: :class:`~keras_vc.benchmark.plan.Task` objects.
        datasets: ``{name: Dataset}``.
        methods: ``{name: registry.Head}`` of the tasks' methods.
        workers: worker processes (1: everything in this process).
        log: called with every progress line (counted models and warnings).
    """
    progress = Progress(sum(len(task.methods) for task in tasks), log)
    if workers <= 1:
        return [training_run.run_task(task, datasets[task.dataset], methods,
                                      log=progress.model, warn=progress.warn)
                for task in tasks]
    order = sorted(range(len(tasks)), key=lambda i: -task_cost(tasks[i],
                                                                datasets[tasks[i].dataset]))
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    done = threading.Event()

    def drain():
        while not done.is_set() or not queue.empty():
            try:
                progress(queue.get(timeout=0.2))
            except Exception:  # queue.Empty
                continue

    printer = threading.Thread(target=drain, daemon=True)
    printer.start()
    from concurrent.futures import ProcessPoolExecutor

    results = [None] * len(tasks)
    # A spawned worker imports TensorFlow while it unpickles its arguments, before its
    # initializer runs: the C++ log level must be in the environment it inherits, and the lines
    # TensorFlow writes before its logging starts go to the standard error it inherits, which
    # is kept aside (and shown if the run fails).
    saved = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with _quiet.stderr_kept_aside(), ProcessPoolExecutor(
                workers, mp_context=context, initializer=_init_worker,
                initargs=(datasets, methods, queue, 1)) as pool:
            futures = {i: pool.submit(_worker_task, tasks[i]) for i in order}
            try:
                for i, future in futures.items():
                    results[i] = future.result()
            except BaseException:
                for future in futures.values():  # fail fast: do not run the queued tasks
                    future.cancel()
                raise
    finally:
        if saved is None:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        done.set()
        printer.join(timeout=5)
    return results
