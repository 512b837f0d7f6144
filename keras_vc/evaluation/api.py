"""``keras_vc.evaluate``: one report on a trained classifier and the user's data, no training."""

import os


from keras_vc import _validation
from keras_vc import calibration
from keras_vc import conformal
from keras_vc import detectors as detectors_lib
from keras_vc.conformal.split import _check_alpha
from keras_vc.evaluation import figures
from keras_vc.evaluation import inputs
from keras_vc.evaluation import report as report_lib


def _check_names(values, name, choices):
    if isinstance(values, str) or not all(isinstance(v, str) for v in values) or not values:
        raise ValueError(f"`{name}` must be a non-empty list of names from {sorted(choices)}, "
                         f"got {values!r}.")
    unknown = [v for v in values if v not in choices]
    if unknown:
        raise ValueError(f"`{name}`: unknown {unknown}; expected names from {sorted(choices)}.")
    return tuple(dict.fromkeys(values))


def _check_ood(ood_data):
    if ood_data is None:
        return {}
    if not isinstance(ood_data, dict) or not all(isinstance(k, str) and k for k in ood_data):
        raise ValueError(f"`ood_data` must be a dict name -> data with non-empty string names, "
                         f"got {type(ood_data).__name__}.")
    return ood_data


def evaluate(model, test_data, *, val_data=None, ood_data=None, train_data=None, alpha=0.1,
             conformal_scores=figures.CONFORMAL_SCORES, detectors=figures.DEFAULT_DETECTORS,
             out_dir=None, batch_size=256, data_dir=None, verbose=1):
    """Evaluates a trained classifier without retraining it: calibration, OOD, conformal sets.

    The model runs once over every data set (a Keras progress bar over its batches when
    ``verbose=1``). Probabilities are ``softmax`` of its outputs as served (the log of a softmax
    output). Reported on the test set:

    * accuracy, NLL, Brier, ECE (15 equal-width bins), classwise ECE (Kull et al., NeurIPS 2019)
      and AURC (Geifman et al., ICLR 2019), as served and after one temperature fitted on
      ``val_data`` by NLL (Guo et al., ICML 2017; relative to the served outputs, so a keras_vc
      head already calibrated gets a T near 1); reliability diagrams as PNG;
    * for each OOD set, AUROC, FPR@95TPR, AUPR-in and AUPR-out of the post-hoc detectors of
      :mod:`keras_vc.detectors` (``"head"``: the head's own score, ``keras_vc.scores.recommended``)
      with the test set as in-distribution; detectors that need fitting are fitted on
      ``train_data`` if given, else on ``val_data``, and the report says which;
    * coverage and mean set size of split-conformal sets (Vovk et al. 2005; APS / RAPS:
      Romano et al. 2020, Angelopoulos et al., ICLR 2021) calibrated on ``val_data`` at level
      ``1 - alpha``.

    Nothing is fitted on the test set: without ``val_data`` the temperature and conformal parts
    are skipped and the report gives the reason. A detector that does not apply to the model
    (ViM / ReAct without a final Dense layer, KNN with fewer fit samples than its k) is listed
    as skipped with the reason.

    Args:
        model: a ``keras.Model`` or the path of a ``.keras`` file (any classifier whose output is
            (batch, K) logits or probabilities).
        test_data: ``(x, y)``, an ``.npz`` path (arrays ``x``, ``y``), ``folder:PATH`` or
            ``tfds:NAME`` (see :mod:`keras_vc.evaluation.inputs`).
        val_data: held-out labelled data of the same forms (temperature, conformal, detectors).
        ood_data: dict name -> OOD inputs (``x``, ``(x, y)`` or a path / spec; labels unused).
        train_data: labelled training data to fit the feature detectors on.
        alpha: conformal miscoverage in (0, 1).
        conformal_scores: names from ``keras_vc.conformal.SCORES`` (``"aps"``, ``"raps"``,
            ``"lac"``).
        detectors: names from ``keras_vc.detectors.DETECTORS``.
        out_dir: folder for ``evaluate.json``, ``evaluate.md`` and the PNGs; None: no files.
        batch_size: batch size of the forward passes.
        data_dir: TensorFlow Datasets data directory (``tfds:`` only).
        verbose: 0 (silent) or 1 (a progress bar per forward pass).

    Returns:
        The report as a JSON-ready dict (keys ``calibration``, ``ood``, ``conformal``, ``data``,
        ``files``, ...), as written to ``evaluate.json``.

    Raises:
        ValueError: a model file that does not exist or cannot be loaded; data that cannot be
            read, has no samples, does not match the model's input shape, or has labels
            missing or outside ``[0, K)``; an ``alpha`` outside (0, 1); unknown detector or
            conformal score names.

    Example:
        >>> report = keras_vc.evaluate(
        ...     "model.keras", (x_test, y_test), val_data=(x_val, y_val),
        ...     ood_data={"noise": x_noise}, out_dir="eval")  # doctest: +SKIP
    """
    alpha = _check_alpha(alpha)
    conformal_scores = _check_names(conformal_scores, "conformal_scores", conformal.SCORES)
    detector_names = _check_names(detectors, "detectors", detectors_lib.DETECTORS)
    batch_size = _validation.check_int(batch_size, "batch_size", minimum=1)
    _validation.check_choice(verbose, "verbose", (0, 1))
    ood_data = _check_ood(ood_data)
    if out_dir is not None and not isinstance(out_dir, (str, os.PathLike)):
        raise ValueError(f"`out_dir` must be a folder path or None, got {out_dir!r}.")
    source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else None
    model = inputs.load_model(model)
    num_classes = inputs.num_classes(model)

    def load(data, name, role, labels_required=True):
        return inputs.load_data(data, name, model, role=role, labels_required=labels_required,
                                data_dir=data_dir)

    sets = {"test": load(test_data, "test_data", "test")}
    given = {"test": test_data}
    for role, data in (("val", val_data), ("train", train_data)):
        if data is not None:
            sets[role] = load(data, f"{role}_data", role)
            given[role] = data
    ood_sets = {name: load(data, f"ood_data[{name!r}]", "ood", labels_required=False)[0]
                for name, data in ood_data.items()}

    forward = figures.Forward(model, batch_size, verbose)
    passes = {role: forward(x) for role, (x, _) in sets.items()}
    y_test = sets["test"][1]
    test_logits = figures.logits_of(passes["test"][1])
    test_probs = calibration.softmax(test_logits)
    report = {"model": source or getattr(model, "name", "model"), "num_classes": num_classes,
              "num_bins": figures.NUM_BINS,
              "data": {role: {"source": inputs.describe(given[role]), "n": int(len(y))}
                       for role, (_, y) in sets.items()},
              "files": []}
    calibration_section = {"before": figures.calibration_figures(y_test, test_probs),
                           "after": None, "temperature": None, "temperature_at_bound": None,
                           "skipped": None}
    conformal_section = {"alpha": alpha, "scores": {}, "skipped": None}
    calibrated_probs = None
    if "val" in sets:
        y_val = sets["val"][1]
        val_logits = figures.logits_of(passes["val"][1])
        result, calibrated_probs, after = figures.temperature_figures(
            val_logits, y_val, test_logits, y_test)
        calibration_section.update(after=after, temperature=result.temperature,
                                   temperature_at_bound=result.at_bound)
        conformal_section["scores"] = figures.conformal_figures(
            calibration.softmax(val_logits), y_val, test_probs, y_test, alpha, conformal_scores)
    else:
        reason = ("no val_data: the temperature and the conformal threshold are fitted on "
                  "held-out validation data, never on the test set")
        calibration_section["skipped"] = conformal_section["skipped"] = reason
    report["calibration"] = calibration_section
    report["conformal"] = conformal_section
    report["ood"] = _ood_section(model, detector_names, forward, sets, passes, ood_sets)
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        report["files"].append(_reliability(y_test, test_probs, out_dir, "reliability.png",
                                            "test, as served"))
        if calibrated_probs is not None:
            report["files"].append(_reliability(
                y_test, calibrated_probs, out_dir, "reliability_ts.png",
                f"test, T = {calibration_section['temperature']:.3f}"))
        report["files"] += ["evaluate.json", "evaluate.md"]
        report_lib.write_files(report, out_dir)
    return report


def _reliability(labels, probs, out_dir, name, title):
    report_lib.write_reliability(labels, probs, os.path.join(out_dir, name), title)
    return name


def _ood_section(model, names, forward, sets, passes, ood_sets):
    try:
        head_score = figures.head_score_name(model)
    except ValueError as error:
        head_score = f"n/a ({error})"
    section = {"head_score": head_score, "fit_on": None, "sets": {}, "skipped": {}}
    if not ood_sets:
        return section
    built, skipped = figures.build_detectors(model, names, forward)
    fit_role = "train" if "train" in sets else ("val" if "val" in sets else None)
    fit_set = None
    if fit_role is not None and any(d.needs_fit for d in built.values()):
        section["fit_on"] = {"train": "train_data", "val": "val_data"}[fit_role]
        fit_set = sets[fit_role] + passes[fit_role]
    figures.fit_detectors(built, skipped, fit_set)
    test_pass = (sets["test"][0],) + passes["test"]
    for name, x in ood_sets.items():
        ood_pass = (x,) + forward(x)
        section["sets"][name] = {"n": int(x.shape[0]),
                                 "detectors": figures.ood_figures(built, test_pass, ood_pass)}
    section["skipped"] = skipped
    return section


__all__ = ["evaluate"]
