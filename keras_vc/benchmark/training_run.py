"""One compare task run: train and evaluate every method of a (dataset, seed, config).

Each model's figures (:func:`run_one`) come from :mod:`~keras_vc.benchmark.evaluation`,
:mod:`~keras_vc.benchmark.conformal_eval` and :mod:`~keras_vc.benchmark.posthoc`; a model whose
test accuracy is no better than guessing the most frequent class is flagged ``at_chance``.
"""

import time

import numpy as np
import threadpoolctl

from keras_vc import calibration
from keras_vc.benchmark import backbones
from keras_vc.benchmark import conformal_eval
from keras_vc.benchmark import evaluation
from keras_vc.benchmark import posthoc
from keras_vc.benchmark import registry
from keras_vc.benchmark import task_data as task_data_lib
from keras_vc.robustness import corruptions as corruptions_lib


def _final_training_figures(model):
    history = getattr(getattr(model, "history", None), "history", None) or {}
    result = {}
    for key in ("loss", "accuracy", "sparse_categorical_accuracy"):
        values = history.get(key)
        if values:
            result["train_" + ("accuracy" if "accuracy" in key else key)] = float(values[-1])
    return result


def _init_checksum(backbone):
    return float(sum(np.sum(np.asarray(w, dtype=np.float64)) for w in backbone.weights))


def run_one(task, data, method, context):
    """Trains one method in one task and returns ``(figures, plot data)``."""
    import keras

    train_split, split = data["train_split"], data["eval_split"]
    keras.utils.set_random_seed(task.seed)
    backbone = backbones.for_dataset(task.dataset, train_split.input_shape)()
    backbone.build((None,) + train_split.input_shape)
    checksum = _init_checksum(backbone)
    start, cpu_start = time.perf_counter(), time.process_time()
    model = method.train(backbone, train_split, task.protocol, task.seed, context)
    context[method.name] = model
    train_seconds = time.perf_counter() - start
    train_cpu_seconds = time.process_time() - cpu_start

    start, cpu_start = time.perf_counter(), time.process_time()
    where = f"{method.name} on {task.dataset} seed {task.seed} ({task.config})"
    val_logits = evaluation.check_finite(evaluation.predict_logits(model, split.x_val), where)
    test_features, test_logits = evaluation.predict_outputs(model, split.x_test)
    test_logits = evaluation.check_finite(test_logits, where)
    fit = evaluation.fit_temperature(val_logits, split.y_val)
    figures = {"calibration": evaluation.calibration_figures(test_logits, split.y_test, fit)}
    posthoc_start = time.process_time()
    figures["conformal"] = conformal_eval.conformal_figures(
        val_logits, split.y_val, test_logits, split.y_test, task.plan.alphas, task.seed)
    if task.config == "full":  # the dearest NumPy figures (Dirichlet: ~0.3 s), main table only
        figures["calibrators"] = evaluation.calibrator_figures(
            val_logits, split.y_val, test_logits, split.y_test, task.plan.calibrators)
    figures["sets_calibrators_cpu_seconds"] = time.process_time() - posthoc_start
    plot = {}
    if data["ood_sets"]:
        score_fns, recommended = evaluation.score_functions(model, method)
        extra = method.extra_scores(model, train_split) if method.extra_scores else None
        scores_in = evaluation.compute_scores(score_fns, extra, test_logits, split.x_test)
        detectors_start = time.process_time()
        train_features = (None if test_features is None else
                          evaluation.predict_outputs(model, train_split.x_train)[0])
        fitted = posthoc.fit_detectors(model, train_features, train_split.y_train,
                                       train_split.num_classes, task.seed)
        posthoc_in = posthoc.score_all(fitted, test_features, test_logits)
        detectors_seconds = time.process_time() - detectors_start
        scores_out, posthoc_out = {}, {}
        for set_name, x_out in data["ood_sets"].items():
            features_out, logits_out = evaluation.predict_outputs(model, x_out)
            logits_out = evaluation.check_finite(logits_out, where)
            scores_out[set_name] = evaluation.compute_scores(score_fns, extra, logits_out, x_out)
            detectors_start = time.process_time()
            posthoc_out[set_name] = posthoc.score_all(fitted, features_out, logits_out)
            detectors_seconds += time.process_time() - detectors_start
        figures["ood_score"] = recommended
        figures["ood"] = evaluation.ood_figures(scores_in, scores_out)
        figures["posthoc"] = evaluation.ood_figures(posthoc_in, posthoc_out)
        figures["detectors_cpu_seconds"] = detectors_seconds
        plot["ood_scores"] = {
            set_name: {name: (scores_in[name].astype(np.float32), out[name].astype(np.float32))
                       for name in ("recommended", "msp")}
            for set_name, out in scores_out.items()}
    if task.config == "full":
        plot["reliability"] = (split.y_test, calibration.softmax(test_logits))
    if task.config == "full" and task.plan.robustness:
        x_rob, y_rob = data["x_robust"], data["y_robust"]
        inputs = {("clean", 0): x_rob}
        inputs.update(evaluation.adversarial_inputs(
            model, x_rob, y_rob, task.plan.attack_epsilons, split.value_range,
            task.plan.pgd_steps, task.seed))
        inputs.update(data["corrupted"])
        shifted = evaluation.shifted_figures(model, y_rob, inputs, fit.temperature)
        clean = shifted[("clean", 0)]
        figures["adversarial"] = {"clean": clean}
        for attack in ("fgsm", "pgd"):
            figures["adversarial"][attack] = {
                f"{eps:g}": shifted[(attack, eps)] for eps in task.plan.attack_epsilons}
        names = sorted({name for name, _ in data["corrupted"]},
                       key=list(corruptions_lib.CORRUPTIONS).index)
        figures["corruptions"] = {"clean": clean}
        for name in names:
            figures["corruptions"][name] = {
                str(s): shifted[(name, s)] for s in task.plan.corruption_severities}
        figures["corruptions"]["mean"] = {
            str(s): {key: float(np.mean([shifted[(name, s)][key] for name in names]))
                     for key in clean}
            for s in task.plan.corruption_severities}
    figures.update(_final_training_figures(model))
    figures["init_checksum"] = checksum
    figures["train_seconds"] = train_seconds
    figures["eval_seconds"] = time.perf_counter() - start
    # CPU time of this process: with one TensorFlow thread per worker, what the wall time would
    # be on an idle core (the wall times above include waiting for a shared CPU).
    figures["train_cpu_seconds"] = train_cpu_seconds
    figures["eval_cpu_seconds"] = time.process_time() - cpu_start
    return figures, (plot if task.keep_plot_data else None)


def chance_accuracy(labels):
    """The accuracy of always predicting the most frequent class of ``labels``."""
    return float(np.max(np.bincount(np.asarray(labels, dtype=np.int64)))) / len(labels)


def at_chance(accuracy, labels):
    """Whether a test accuracy is within two binomial standard errors of
    :func:`chance_accuracy` (or below it): the model learned nothing usable."""
    chance = chance_accuracy(labels)
    return bool(accuracy <= chance + 2.0 * np.sqrt(chance * (1.0 - chance) / len(labels)))


def log_line(task, name, figures):
    """The progress line of one trained model (the markers are explained in the report)."""
    cal = figures["calibration"]
    parts = [f"[{task.dataset} | seed {task.seed} | {task.config}]", f"{name:<12s}",
             f"acc {cal['accuracy']:.3f}", f"ECE {cal['ece']:.3f} -> {cal['ece_ts']:.3f} TS",
             f"NLL {cal['nll']:.3f}"]
    for alpha, by_score in figures["conformal"].items():
        if isinstance(by_score, dict):
            parts.append(f"APS@{alpha} size {by_score['aps']['set_size']:.2f} "
                         f"cov {by_score['aps']['coverage']:.3f}")
    for set_name, by_score in figures.get("ood", {}).items():
        parts.append(f"AUROC {set_name} {by_score['recommended']['auroc']:.3f}")
    if "adversarial" in figures and figures["adversarial"]["pgd"]:
        epsilons = list(figures["adversarial"]["pgd"])
        eps = epsilons[len(epsilons) // 2]
        parts.append(f"PGD@{eps} acc {figures['adversarial']['pgd'][eps]['accuracy']:.3f}")
    parts.append(f"({figures['train_seconds']:.1f} s train, {figures['eval_seconds']:.1f} s eval)")
    if cal["temperature_at_bound"]:
        parts.append("[temperature at search bound]")
    return "  ".join(parts)


def run_task(task, dataset, methods=None, log=print, warn=None):
    """Trains and evaluates every method of one task (in order; later ones may use earlier
    ones through ``context``).

    Args:
        task: a :class:`~keras_vc.benchmark.plan.Task`.
        dataset: its :class:`~keras_vc.data.Dataset`.
        methods: ``{name: registry.Head}`` holding the task's methods (default: the registry).
        log: called with one line per trained model.
        warn: called with one warning line per model at chance (default: ``log``).

    Returns:
        ``{"task", "runs": [...], "plots": {...}, "descriptions", "sizes"}``; every run has
        ``at_chance`` (see :func:`at_chance`).
    """
    import keras

    # Models of earlier tasks are not needed any more: free Keras' global state (names, graphs)
    # so that a worker's memory does not grow with every model it trains.
    keras.backend.clear_session(free_memory=True)
    methods = registry.compare_methods() if methods is None else methods
    data = task_data_lib.task_data(task, dataset)
    context, runs, plots = {}, [], {}
    # One thread for NumPy's BLAS too, as for TensorFlow: the post-hoc fits (calibrators,
    # detectors) are small matrix products, which threads slow down on a shared CPU (Dirichlet
    # calibration took 7 s instead of 0.8 s with 2 BLAS threads on 2 busy cores).
    with threadpoolctl.threadpool_limits(limits=1):
        for name in task.methods:
            figures, plot = run_one(task, data, methods[name], context)
            labels = data["eval_split"].y_test
            chance = at_chance(figures["calibration"]["accuracy"], labels)
            runs.append({"method": name, "seed": task.seed, "config": task.config,
                         "figures": figures, "at_chance": chance})
            if plot is not None:
                plots[name] = plot
            log(log_line(task, name, figures))
            if chance:
                (warn or log)(
                    f"WARNING: {name} on {task.dataset} seed {task.seed} ({task.config}) ended "
                    f"at chance accuracy ({figures['calibration']['accuracy']:.3f}; the most "
                    f"frequent class alone gives {chance_accuracy(labels):.3f}): it learned "
                    "nothing usable (too few epochs?); its paired differences are marked.")
    return {"task": task, "runs": runs, "plots": plots, "descriptions": data["descriptions"],
            "sizes": data["train_split"].sizes()}


