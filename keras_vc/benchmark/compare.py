"""``keras-vc compare``: every method against the softmax baseline on real data.

Protocol. For each dataset and seed, the seed fixes the split, the backbone's initial weights
(built right after ``keras.utils.set_random_seed(seed)``, before the method sees it) and the batch
order, so every method is **paired** with the softmax run of the same seed. Every method is
trained under one :class:`~keras_vc.benchmark.trainers.Protocol` per dataset (optimizer,
learning rate, epochs, batch size; no early stopping for anyone), stated in the report. The
methods are the heads of :mod:`keras_vc.benchmark.registry`.

Four kinds of models are trained per method and seed (the "configs"):

* ``full``: all classes. Test accuracy, ECE (15 bins), MCE, NLL and Brier, before and after
  temperature scaling fitted on the validation split by NLL (a fit that ends on a search bound is
  flagged); OOD detection against far-OOD sets (photo patches for images, position-shuffled
  inputs for signals) with the method's recommended score and with MSP; accuracy and ECE under
  FGSM and PGD (L-infinity, epsilons relative to the input range) and under corruptions at 5
  severities, on a fixed stratified test subset.
  Post-hoc figures from the logits and features already computed (NumPy, no extra model pass
  but one feature pass over the training split): conformal prediction sets (APS, RAPS, LAC;
  :mod:`~keras_vc.benchmark.conformal_eval`, every config), ECE after each post-hoc calibrator
  fitted on validation (:func:`~keras_vc.benchmark.evaluation.calibrator_figures`), classwise
  ECE, AURC and AUGRC, and the post-hoc OOD detectors of :mod:`keras_vc.detectors` fitted on the
  training features (:mod:`~keras_vc.benchmark.posthoc`, configs with OOD sets), with each
  head's own score compared, paired by seed, to the best detector on the softmax baseline.
* ``open_set``: trained on the first 60% of the classes; the held-out classes' test samples are
  near-OOD. By default on every dataset but digits (``DatasetSettings.open_set``; ``--open-set``
  on every dataset, ``--no-open-set`` on none).
* ``low_data_<f>``: trained on a stratified fraction ``f`` of the training split.

The work is split into tasks (dataset, seed, config; :mod:`~keras_vc.benchmark.plan`), each
training every method in order (:mod:`~keras_vc.benchmark.training_run`; two-stage methods reuse
the softmax model of their task), and the tasks run on a pool of worker processes with one
TensorFlow thread each (:mod:`~keras_vc.benchmark.pool`). Every task seeds itself, so the
report does not depend on the scheduling or the number of workers (up to floating-point
reduction order). Summaries and paired differences: :mod:`~keras_vc.benchmark.statistics`;
Markdown: :mod:`~keras_vc.benchmark.report`.

Run time. The default run must stay under 10 minutes on 2 CPU cores; the README gives the
measured time of the current default run, and every report states its own (``timing`` in
``compare.json``, with CPU seconds per model at the end of ``compare.md``). The default run is
every method, 3 seeds, the full models of MNIST-1D and digits and the open-set models of MNIST-1D
(72 models), with every figure listed above but two calibrators. What it leaves out, and the
flag that adds it back: digits' open-set models (``--open-set``), matrix and Dirichlet scaling
(``--calibrators all``), the low-data models (``--low-data 0.1,0.25``). The knobs, in order of
effect: :data:`~keras_vc.benchmark.plan.DATASET_SETTINGS` (epochs and open-set models per
dataset; MNIST-1D training dominates), ``Plan.low_data_fractions`` and ``Plan.open_set`` (each
config is a model per method and seed), ``Plan.calibrators`` (matrix and Dirichlet scaling are
the dear ones: without a penalty they run to their iteration limit, about 3 s of CPU per
MNIST-1D model, more than the rest of its evaluation), ``Plan.robustness``,
``Plan.robustness_samples``, ``Plan.attack_epsilons`` and ``Plan.pgd_steps`` (evaluation of the
full models), and the number of seeds. ``--quick`` (:data:`~keras_vc.benchmark.plan.QUICK_PLAN`,
one seed) checks a set-up.
"""

import dataclasses
import datetime
import json
import os
import platform
import time

from keras_vc import _validation
from keras_vc.benchmark import backbones
from keras_vc.benchmark import evaluation
from keras_vc.benchmark import pool
from keras_vc.benchmark import posthoc
from keras_vc.benchmark import registry
from keras_vc.benchmark import statistics
from keras_vc.benchmark.plan import BASELINE
from keras_vc.benchmark.plan import DATASET_NOTES
from keras_vc.benchmark.plan import DATASET_SETTINGS
from keras_vc.benchmark.plan import DEFAULT_DATASETS
from keras_vc.benchmark.plan import OTHER_DATASET_SETTINGS
from keras_vc.benchmark.plan import Plan
from keras_vc.benchmark.plan import Task
from keras_vc.benchmark.plan import ordered_methods
from keras_vc.data import loaders
from keras_vc.robustness import corruptions as corruptions_lib

REPORT_VERSION = 1
# How the figures are computed, stated in compare.json.
METRICS = {"num_bins": evaluation.NUM_BINS, "ece": "top-label, equal-width bins "
           "(lo, hi], first bin [0, 1/15]", "temperature_objective":
           evaluation.TEMPERATURE_OBJECTIVE, "temperature_fit_on": "validation split",
           "ood": "in-distribution = positive, higher score = more in-distribution; "
           "AUPR step-wise (average precision); FPR at 95% TPR",
           "conformal": "split conformal (APS, RAPS randomised; LAC) on "
           "softmax(logits / T), T and RAPS's k_reg, lam fitted on one stratified "
           "half of the validation split, qhat on the other half; coverage and set "
           "size on the test split",
           "calibrators": "each fitted on the validation logits (library defaults: "
           "no ODIR penalty, 15 bins), test ECE / classwise ECE / accuracy",
           "posthoc": "post-hoc detectors (keras_vc.detectors) fitted on the "
           "training split's head-input features; the best on the softmax baseline "
           "chosen by mean AUROC on the other OOD sets of the dataset",
           "selective": "AURC and AUGRC with the largest probability as confidence "
           "(right-endpoint sums)"}


def _machine():
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import keras

    return (f"{platform.system()} {platform.machine()}, {cpu or 'unknown CPU'}, "
            f"{os.cpu_count()} CPU cores; Python {platform.python_version()}, "
            f"Keras {keras.__version__} ({keras.backend.backend()} backend)")


def default_workers():
    """Worker processes of the default run: one per CPU core, at most 8."""
    return max(1, min(os.cpu_count() or 1, 8))


def _dataset_section(name, dataset, results, configs, method_names, seeds, protocol):
    """One dataset's part of the report: its runs in plan order (config, seed, method) and
    their statistics; ``plot_data`` (first seed) is for the plots, not for the file."""
    runs = [run for r in results for run in r["runs"]]
    runs.sort(key=lambda run: (configs.index(run["config"]), run["seed"],
                               method_names.index(run["method"])))
    descriptions, sizes = {}, {}
    for r in results:
        descriptions.update(r["descriptions"])
        if r["task"].seed == seeds[0]:
            sizes[r["task"].config] = r["sizes"]
    return {
        "description": dataset.description,
        "kind": dataset.kind,
        "value_range": list(dataset.value_range),
        "backbone": backbones.name_for(name, dataset.input_shape),
        "protocol": dataclasses.asdict(protocol),
        "configs": configs,
        "sizes": sizes,
        "ood_sets": descriptions,
        "corruptions": list(corruptions_lib.available_corruptions(dataset.kind)),
        "note": DATASET_NOTES.get(name, ""),
        "runs": runs,
        "summary": statistics.summarize_runs(runs),
        "paired_vs_softmax": statistics.paired_differences(runs),
        "at_chance": statistics.at_chance_seeds(runs),
        "versus_best_detector": posthoc.versus_best_detector(runs),
        "plots": {},
        "plot_data": {r["task"].config: r["plots"] for r in results if r["task"].keep_plot_data},
    }


def run_compare(datasets=DEFAULT_DATASETS, methods=None, seeds=(0, 1, 2), protocol=None,
                out_dir="reports", log=print, plan=None, workers=1, epochs=None, data_dir=None,
                download=False, command=None, image_size=None):
    """Runs the comparison and writes the reports.

    Args:
        datasets: dataset specs (``mnist1d``, ``digits``, ``tfds:NAME``, ``folder:PATH``) or
            :class:`~keras_vc.data.Dataset` objects.
        methods: method names (default: every method of the registry); the softmax baseline and
            every requirement are always added.
        seeds: non-negative integer seeds (one paired run per seed).
        protocol: one :class:`~keras_vc.benchmark.trainers.Protocol` for every dataset (default:
            :data:`DATASET_SETTINGS`, with ``epochs`` overriding their epochs).
        out_dir: folder for ``compare.json``, ``compare.md``, ``README_results.md`` and PNGs.
        log: called with one line per trained model (prefixed with a ``[k/N]`` counter, the
            elapsed time and an estimate of the time left) and with warnings.
        plan: a :class:`Plan` (what is measured besides the main table).
        workers: worker processes (1: everything in this process).
        epochs: epochs of every method (overrides the per-dataset defaults).
        data_dir, download: passed to the TFDS loader.
        command: the command line, for the report.
        image_size: ``(height, width)`` of ``folder:`` images (default: the loader's 32x32).

    Returns:
        The report (the content of ``compare.json``).

    Example:
        >>> report = run_compare(["digits"], ["softmax"], seeds=[0], epochs=1,
        ...                      plan=Plan(open_set=False, low_data_fractions=()),
        ...                      out_dir="/tmp/keras_vc_compare")  # doctest: +SKIP
        >>> report["datasets"]["digits"]["summary"]["full"]["softmax"]["calibration.ece"]
        ... # doctest: +SKIP
    """
    from keras_vc.benchmark import plots
    from keras_vc.benchmark import report as report_lib
    from keras_vc.benchmark import report_files

    started = time.perf_counter()
    plan = plan or Plan()
    seeds = [_validation.check_int(s, "seeds", minimum=0) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"`seeds` must be distinct non-negative integers, got {seeds!r}.")
    workers = _validation.check_int(workers, "workers", minimum=1)
    if epochs is not None:
        epochs = _validation.check_int(epochs, "epochs", minimum=1)
    requested = list(methods) if methods is not None else None
    if requested is not None and BASELINE not in requested:
        requested = [BASELINE] + requested
    method_names = tuple(ordered_methods(requested))
    methods = {name: registry.HEADS[name] for name in method_names}
    loaded = {}
    for spec in datasets:
        dataset = spec if isinstance(spec, loaders.Dataset) else loaders.load_dataset(
            spec, data_dir=data_dir, download=download, image_size=image_size)
        loaded[dataset.name] = dataset
        if isinstance(spec, str) and spec.startswith("folder:"):
            log(f"{dataset.name}: {dataset.description}; every image is resized to that size "
                "(choose it with --image-size)")
    protocols, configs_per_dataset = {}, {}
    for name, dataset in loaded.items():
        settings = DATASET_SETTINGS.get(name, OTHER_DATASET_SETTINGS)
        protocols[name] = protocol or settings.protocol(epochs)
        configs_per_dataset[name] = plan.configs(dataset.num_classes, settings.open_set)
    tasks = [Task(name, seed, config, method_names, protocols[name], plan, seed == seeds[0])
             for name in loaded
             for config in configs_per_dataset[name]
             for seed in seeds]
    workers = min(workers, len(tasks))
    log(report_lib.LOG_LEGEND)
    log(f"keras-vc compare: {len(loaded)} dataset(s) x {len(method_names)} method(s) x "
        f"{len(seeds)} seed(s); configs {configs_per_dataset}; {len(tasks) * len(method_names)} "
        f"models on {workers} worker process(es)")
    timing = {"load_seconds": time.perf_counter() - started}
    results = pool.run_tasks(tasks, loaded, methods, workers, log)
    timing["tasks_seconds"] = time.perf_counter() - started - timing["load_seconds"]

    os.makedirs(out_dir, exist_ok=True)
    report = {
        "version": REPORT_VERSION,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": _machine(),
        "command": command or "keras-vc compare",
        "out_dir": out_dir,
        "workers": workers,
        "seeds": seeds,
        "plan": dict(dataclasses.asdict(plan), attack="FGSM and PGD (L-infinity; PGD random "
                     "start, step 2.5 eps / steps); epsilons relative to the input range width",
                     corruptions={n: dataclasses.asdict(c)
                                  for n, c in corruptions_lib.CORRUPTIONS.items()}),
        "metrics": METRICS,
        "methods": {name: {"title": head.title, "ood_score": head.ood_score,
                           "probabilities": head.note, "requires": list(head.requires)}
                    for name, head in methods.items()},
        "datasets": {},
    }
    for name, dataset in loaded.items():
        report["datasets"][name] = _dataset_section(
            name, dataset, [r for r in results if r["task"].dataset == name],
            configs_per_dataset[name], method_names, seeds, protocols[name])
        report["datasets"][name]["plots"] = plots.write_plots(
            report, name, report["datasets"][name].pop("plot_data"), out_dir)
    report["wall_seconds"] = time.perf_counter() - started
    timing["report_seconds"] = (report["wall_seconds"] - timing["load_seconds"]
                                - timing["tasks_seconds"])
    timing["model_cpu_seconds"] = sum(
        r["figures"]["train_cpu_seconds"] + r["figures"]["eval_cpu_seconds"]
        for data in report["datasets"].values() for r in data["runs"])
    report["timing"] = timing
    with open(os.path.join(out_dir, "compare.json"), "w") as handle:
        json.dump(report, handle, indent=1)
    with open(os.path.join(out_dir, "compare.md"), "w") as handle:
        handle.write(report_files.format_markdown(report))
    with open(os.path.join(out_dir, "README_results.md"), "w") as handle:
        handle.write(report_files.format_readme_section(report))
    return report
