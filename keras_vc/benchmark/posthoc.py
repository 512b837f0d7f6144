"""Post-hoc OOD detectors of one trained model, fitted on its already computed features.

Every model with OOD sets is scored by the detectors of :mod:`keras_vc.detectors` that apply to
it, from the features (the input of the head) and logits of the one forward pass per input set
that :func:`keras_vc.benchmark.evaluation.predict_outputs` makes; no detector runs the model.

* Logit detectors (every model): MSP, max logit, energy, GEN, on the model's output logits at
  temperature 1.
* Feature detectors (every model whose head input is a (n, D) array): Mahalanobis, Relative
  Mahalanobis, KNN, fitted with ``fit_features`` on the training split's features (and labels).
  KNN keeps a seeded sample of :data:`KNN_BANK` training features (the paper's reduced bank) and
  k = :data:`KNN_K`.
* ViM and ReAct (models whose last layer is a Dense layer: the softmax baseline, TST): fitted on
  the training features with the Dense layer's weights; ReAct's clipping percentile (90) on the
  training features too (OpenOOD uses the validation split).

ODIN and Mahalanobis with input preprocessing need input gradients (extra model passes) and are
left out.
"""

import numpy as np

from keras_vc import detectors
from keras_vc import detectors as detector_model

LOGIT_DETECTORS = ("msp", "max_logit", "energy", "gen")
FEATURE_DETECTORS = ("mahalanobis", "rmds", "knn")
DENSE_DETECTORS = ("vim", "react")
KNN_K = 50
KNN_BANK = 2000


def fit_detectors(model, train_features, train_labels, num_classes, seed):
    """The detectors that apply to ``model``, fitted: ``{name: detector}``.

    Args:
        model: the trained classifier (read for its final Dense layer's weights only).
        train_features: (n, D) head-input features of the training split, or None when the
            model does not expose them (then only the logit detectors apply).
        train_labels: (n,) training labels.
        num_classes: K.
        seed: seed of KNN's and ViM's samples.
    """
    fitted = {name: detectors.get(name) for name in LOGIT_DETECTORS}
    if train_features is None:
        return fitted
    options = {"mahalanobis": {"num_classes": num_classes},
               "rmds": {"num_classes": num_classes},
               "knn": {"k": min(KNN_K, len(train_labels)), "max_samples": KNN_BANK,
                       "seed": seed}}
    for name in FEATURE_DETECTORS:
        fitted[name] = detectors.get(name, **options[name]).fit_features(train_features,
                                                                         train_labels)
    try:
        head_weights = detector_model.dense_head_weights(model, "ViM")
    except ValueError:  # no final Dense layer: ViM and ReAct do not apply
        return fitted
    if head_weights[0].shape[0] == train_features.shape[1]:
        for name in DENSE_DETECTORS:
            fitted[name] = detectors.get(name, head_weights=head_weights, seed=seed).fit_features(
                train_features)
    return fitted


def score_all(fitted, features, logits):
    """``{detector: (n,) scores}`` of one input set (higher = more in-distribution)."""
    result = {}
    for name, detector in fitted.items():
        inputs = logits if name in LOGIT_DETECTORS else features
        values = np.asarray(detector.score_features(inputs), dtype=np.float64)
        if values.shape != (len(logits),) or not np.all(np.isfinite(values)):
            raise FloatingPointError(f"post-hoc detector {name!r} gave non-finite scores")
        result[name] = values
    return result


def _auroc(run, set_name, detector=None):
    figures = run["figures"]
    if detector is None:
        return figures["ood"][set_name]["recommended"]["auroc"]
    return figures.get("posthoc", {}).get(set_name, {}).get(detector, {}).get("auroc")


def versus_best_detector(runs, baseline="softmax", metric="auroc"):
    """Each method's own OOD score against the best post-hoc detector on the baseline.

    The detector is chosen without the set it is compared on: the one with the highest mean
    AUROC (over seeds, then sets) of the baseline on the **other** OOD sets of the dataset
    (``selected_by = "other sets"``). With a single OOD set there is nothing else to choose on,
    and the best on the set itself is taken (``"oracle"``, optimistic for the detector). The best
    on the set itself is always reported too (``oracle``).

    Args:
        runs: the runs of one dataset (``{"method", "seed", "config", "figures"}``).
        baseline: the method whose detectors are compared against.
        metric: only ``"auroc"``.

    Returns:
        ``{config: {set: {"selected", "selected_by", "oracle", "baseline": {detector: mean},
        "methods": {method: {"mean", "std", "n", "same_sign"}}}}}``: paired differences
        ``own score - selected detector on the baseline`` of the same seed and config, and the
        number of seeds whose difference has the sign of the mean.
    """
    if metric != "auroc":
        raise ValueError(f"`metric` must be 'auroc', got {metric!r}.")
    base_runs = [r for r in runs if r["method"] == baseline and "posthoc" in r["figures"]]
    by_set = {}  # (config, set) -> {detector: [auroc per seed]}
    for run in base_runs:
        for set_name, by_detector in run["figures"]["posthoc"].items():
            entry = by_set.setdefault((run["config"], set_name), {})
            for detector, values in by_detector.items():
                entry.setdefault(detector, []).append(values[metric])
    means = {key: {d: float(np.mean(v)) for d, v in entry.items()} for key, entry in by_set.items()}
    result = {}
    for (config, set_name), baseline_means in means.items():
        oracle = max(baseline_means, key=baseline_means.get)
        others = [m for key, m in means.items() if key != (config, set_name)]
        common = [d for d in baseline_means if all(d in m for m in others)]
        if others and common:
            selected = max(common, key=lambda d: np.mean([m[d] for m in others]))
            selected_by = "other sets"
        else:
            selected, selected_by = oracle, "oracle"
        base_by_seed = {r["seed"]: _auroc(r, set_name, selected) for r in base_runs
                        if r["config"] == config}
        deltas = {}
        for run in runs:
            if (run["config"] == config and run["seed"] in base_by_seed
                    and set_name in run["figures"].get("ood", {})):
                deltas.setdefault(run["method"], []).append(
                    _auroc(run, set_name) - base_by_seed[run["seed"]])
        methods = {}
        for method, values in deltas.items():
            values = np.asarray(values)
            sign = np.sign(values.mean())
            methods[method] = {"mean": float(values.mean()), "std": float(values.std()),
                               "n": int(values.size),
                               "same_sign": int(np.sum(np.sign(values) == sign)) if sign else 0}
        result.setdefault(config, {})[set_name] = {
            "selected": selected, "selected_by": selected_by, "oracle": oracle,
            "baseline": baseline_means, "methods": methods}
    return result
