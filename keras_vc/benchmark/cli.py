"""The ``keras-vc`` command.

    keras-vc compare [--dataset mnist1d,digits | tfds:NAME | folder:PATH] [--methods NAMES]
                     [--seeds 3] [--quick] [--epochs N] [--out reports/] [--workers N]
                     [--low-data 0.1|0.1,0.25|none] [--robustness-samples N]
                     [--alpha 0.1 [0.05 ...]] [--no-open-set] [--image-size H,W]
                     [--data-dir DIR] [--download]
    keras-vc speed [--quick] [--variants NAMES] ...
    keras-vc evaluate MODEL --test DATA [--val DATA] [--ood NAME=DATA] ...

The method and variant names are those of :mod:`keras_vc.benchmark.registry`.

Bad input (an unknown dataset or method, ``--seeds 0``, a folder that cannot be read, a TFDS
dataset that is not prepared) ends with a one-line message and exit status 2, without a
traceback.

This module holds the parser, its argument types and ``main``; each subcommand runs in its own
module (``cli_compare``, ``cli_speed``, ``cli_evaluate``).
"""

import argparse
import os
import sys

from keras_vc.benchmark import cli_compare
from keras_vc.benchmark import cli_evaluate
from keras_vc.benchmark import cli_speed
from keras_vc.benchmark.cli_usage import _UsageError


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _csv(text):
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def _fractions(text):
    if text.strip().lower() == "none":
        return ()
    expected = "expected fractions in (0, 1] or 'none', got"
    values = []
    for item in _csv(text):
        try:
            value = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{expected} {text!r}")
        if not 0 < value <= 1:
            raise argparse.ArgumentTypeError(f"{expected} {value}")
        values.append(value)
    return tuple(values)


def _alpha(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a miscoverage level in (0, 1), got {text!r}")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a miscoverage level in (0, 1), got {value}")
    return value


def _image_size(text):
    parts = text.lower().replace("x", ",").split(",")
    try:
        size = tuple(int(part) for part in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected HEIGHT,WIDTH (or one size for both) in "
                                         f"pixels, got {text!r}")
    return size


def _calibrators(text):
    from keras_vc.benchmark import evaluation

    names = tuple(evaluation.CALIBRATORS)
    if text.strip().lower() == "all":
        return names
    items = _csv(text)
    unknown = [item for item in items if item not in names]
    if unknown or len(set(items)) != len(items):
        raise argparse.ArgumentTypeError(
            f"expected distinct calibrators from {', '.join(names)} or 'all', got {text!r}")
    return tuple(items)


def build_parser():
    from keras_vc.benchmark import evaluation
    from keras_vc.benchmark import plan as plan_lib
    from keras_vc.benchmark import registry

    parser = argparse.ArgumentParser(prog="keras-vc", description="keras_vc benchmarks.")
    commands = parser.add_subparsers(dest="command", required=True)
    compare = commands.add_parser(
        "compare", help="train every method against the softmax baseline and report "
                        "calibration, OOD detection and robustness figures",
        description="Train every method against the softmax baseline (paired by seed) and "
                    "report calibration, OOD detection, adversarial, corruption and low-data "
                    "figures: a table on stdout, compare.json, compare.md, README_results.md "
                    "and PNGs in --out.")
    compare.add_argument("--dataset", type=_csv, default=None,
                         help="comma-separated datasets: mnist1d, digits (bundled, offline; the "
                              "default is both), tfds:NAME (a prepared TensorFlow Datasets "
                              "dataset), folder:PATH (one sub-folder of images per class)")
    compare.add_argument("--methods", type=_csv, default=None,
                         help="comma-separated methods, from: "
                              f"{', '.join(registry.compare_methods())} (default: all); the "
                              "softmax baseline is always included")
    compare.add_argument("--seeds", type=_positive_int, default=None,
                         help="number of seeds (0, 1, ..., N-1); default 3 (1 with --quick)")
    compare.add_argument("--quick", action="store_true",
                         help="a check of a set-up in about a minute: one seed (unless --seeds "
                              f"is given), {plan_lib.QUICK_EPOCHS} epochs (unless --epochs is given), "
                              "the main models only (no open-set, low-data, attack or "
                              "corruption runs), the cheap post-hoc calibrators only")
    compare.add_argument("--epochs", type=_positive_int, default=None,
                         help="training epochs of every method (default: per dataset, see "
                              "keras_vc.benchmark.compare.DATASET_SETTINGS)")
    compare.add_argument("--out", default="reports", help="output folder (default: reports)")
    compare.add_argument("--workers", type=_positive_int, default=None,
                         help="worker processes, one TensorFlow thread each (default: one per "
                              "CPU core, at most 8)")
    compare.add_argument("--low-data", type=_fractions, default=None, metavar="FRACTIONS",
                         help="training fractions of the low-data models, e.g. 0.1,0.25 "
                              "(default: none)")
    compare.add_argument("--robustness-samples", type=_positive_int, default=None, metavar="N",
                         help="test samples (a fixed stratified subset) on which attacks and "
                              "corruptions are evaluated (default 300)")
    compare.add_argument("--alpha", type=_alpha, nargs="+", default=None, metavar="ALPHA",
                         help="miscoverage levels of the conformal prediction sets, e.g. "
                              "--alpha 0.1 0.05 (default 0.1)")
    open_set = compare.add_mutually_exclusive_group()
    open_set.add_argument("--open-set", action="store_true",
                          help="train the open-set models (60%% of the classes) on every "
                               "dataset, digits included (default: on every dataset but "
                               "digits, see keras_vc.benchmark.plan.DATASET_SETTINGS)")
    open_set.add_argument("--no-open-set", action="store_true",
                          help="skip the open-set models on every dataset")
    compare.add_argument("--calibrators", type=_calibrators, default=None, metavar="NAMES",
                         help="comma-separated post-hoc calibrators fitted on the full models, "
                              f"from: {', '.join(evaluation.CALIBRATORS)}, or 'all' (default: "
                              f"{','.join(plan_lib.DEFAULT_CALIBRATORS)}; matrix and Dirichlet "
                              "scaling cost about 3 s per model)")
    compare.add_argument("--image-size", type=_image_size, default=None, metavar="H,W",
                         help="folder: images are resized to this size (default 32,32)")
    compare.add_argument("--data-dir", default=None,
                         help="TensorFlow Datasets data directory (tfds: only)")
    compare.add_argument("--download", action="store_true",
                         help="let TensorFlow Datasets download a dataset that is not prepared "
                              "(tfds: only; off by default)")
    # --- speed subcommand (keras_vc/benchmark/speed.py) ---
    _add_speed_parser(commands)
    # --- end speed subcommand ---
    _add_evaluate_parser(commands)
    return parser


# --- speed subcommand (keras_vc/benchmark/speed.py) ---
def _sizes(text):
    sizes = []
    for item in _csv(text):
        parts = item.lower().split("x")
        try:
            size = tuple(int(part) for part in parts)
        except ValueError:
            size = ()
        if len(size) != 3 or min(size) < 1:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated BATCHxFEATURESxCLASSES of positive integers "
                f"(e.g. 256x512x10000), got {item!r}")
        sizes.append(size)
    return sizes


def _positive_ints(text):
    return [_positive_int(item) for item in _csv(text)]


def _add_speed_parser(commands):
    from keras_vc.benchmark import registry

    speed = commands.add_parser(
        "speed", help="time and memory of a training step of every head against a Dense + "
                      "softmax head (head alone and on a small ResNet)",
        description="Time and memory of one training step of every head variant against the "
                    "Dense + softmax baseline, on the same backbone and batch, with XLA: the "
                    "head alone on a feature vector (a grid of batch, feature and class sizes) "
                    "and on a small ResNet on 32x32x3 inputs. Variants take turns in "
                    "interleaved repeats; cells are the median ratio to the baseline with its "
                    "interquartile range. Writes speed.json and speed.md to --out; --quick "
                    "runs every variant at tiny sizes to check that everything works.")
    speed.add_argument("--backend", choices=("tensorflow", "jax"), default=None,
                       help="the backend you expect; Keras reads KERAS_BACKEND when it is "
                            "imported, so this only checks that they match")
    speed.add_argument("--sizes", type=_sizes, default=None,
                       help="head-alone grid, comma-separated BATCHxFEATURESxCLASSES "
                            "(default: 256x512x10,256x512x1000,256x512x10000,256x2048x1000)")
    speed.add_argument("--model-batches", type=_positive_ints, default=None,
                       help="batch sizes of the full model (default: 128,256)")
    speed.add_argument("--scopes", type=_csv, default=None,
                       help="head, model or head,model (default)")
    speed.add_argument("--variants", type=_csv, default=None,
                       help="comma-separated variants, from: "
                            f"{', '.join(registry.speed_variants())} (default: all); the "
                            "Dense + softmax baseline is always measured")
    speed.add_argument("--repeats", type=_positive_int, default=None,
                       help="interleaved timed repeats per configuration (default: 7)")
    speed.add_argument("--quick", action="store_true",
                       help="tiny sizes and 3 repeats: checks that everything runs; its "
                            "figures mean nothing")
    speed.add_argument("--out", default="reports", help="output folder")
# --- end speed subcommand ---


# --- evaluate subcommand (keras_vc/evaluation/) ---
def _ood_pair(text):
    name, sep, data = text.partition("=")
    if not sep or not name.strip() or not data.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=DATA (an .npz file, folder:PATH or "
                                         f"tfds:NAME), got {text!r}")
    return name.strip(), data.strip()


def _add_evaluate_parser(commands):
    evaluate = commands.add_parser(
        "evaluate", help="evaluate a trained .keras classifier on your data, without retraining",
        description="Calibration (before / after a temperature fitted on --val), OOD detection "
                    "of the post-hoc detectors on each --ood set, and conformal coverage of a "
                    "trained .keras classifier: a table on stdout, evaluate.json, evaluate.md "
                    "and reliability PNGs in --out. DATA is an .npz file (arrays x, y), "
                    "folder:PATH (one sub-folder of images per class) or tfds:NAME (prepared).")
    evaluate.add_argument("model", help="the trained model (.keras file)")
    evaluate.add_argument("--test", required=True, metavar="DATA", help="labelled test data")
    evaluate.add_argument("--val", default=None, metavar="DATA",
                          help="labelled validation data: fits the temperature, the conformal "
                               "threshold and (without --train) the feature detectors; without "
                               "it those parts are skipped")
    evaluate.add_argument("--train", default=None, metavar="DATA",
                          help="labelled training data to fit the feature detectors on")
    evaluate.add_argument("--ood", type=_ood_pair, action="append", default=[],
                          metavar="NAME=DATA", help="an OOD set (repeat for several; labels "
                                                    "not needed)")
    evaluate.add_argument("--alpha", type=float, default=0.1,
                          help="conformal miscoverage in (0, 1) (default 0.1)")
    evaluate.add_argument("--conformal-scores", type=_csv, default=None, metavar="SCORES",
                          help="comma-separated conformal scores (default: aps,raps,lac)")
    evaluate.add_argument("--detectors", type=_csv, default=None,
                          help="comma-separated OOD detectors (default: head,msp,max_logit,"
                               "energy,gen,mahalanobis,rmds,knn,vim,react)")
    evaluate.add_argument("--batch-size", type=_positive_int, default=256)
    evaluate.add_argument("--out", default="reports/evaluate",
                          help="output folder (default: reports/evaluate)")
    evaluate.add_argument("--data-dir", default=None,
                          help="TensorFlow Datasets data directory (tfds: only)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
# --- end evaluate subcommand ---


def main(argv=None):
    """Entry point; returns the exit status (2 for bad input, with a one-line message)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # compare's workers, which train through tf.data, run on TensorFlow unless KERAS_BACKEND
    # says otherwise (they are spawned processes and inherit it; `make demo` sets it anyway).
    if argv[:1] == ["compare"]:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse already printed usage and the error
        return exit_.code if isinstance(exit_.code, int) else 2
    from keras_vc.data.loaders import DatasetError

    try:
        if args.command == "compare":
            return cli_compare.run(args, argv)
        # --- speed subcommand ---
        if args.command == "speed":
            return cli_speed.run(args)
        # --- end speed subcommand ---
        if args.command == "evaluate":
            return cli_evaluate.run(args)
    except (_UsageError, DatasetError) as error:
        print(f"keras-vc {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"keras-vc {args.command}: interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
