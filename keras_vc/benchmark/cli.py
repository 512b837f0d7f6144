"""The ``keras-vc`` command."""

import argparse
import sys


class _UsageError(Exception):
    pass


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _csv(text):
    return [item.strip() for item in text.split(",") if item.strip()]


def build_parser():
    parser = argparse.ArgumentParser(prog="keras-vc", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    compare = commands.add_parser(
        "compare", help="train every method against the softmax baseline and report "
                        "calibration and OOD figures")
    compare.add_argument("--dataset", type=_csv, default=None,
                         help="comma-separated datasets (default: the bundled offline data)")
    compare.add_argument("--methods", type=_csv, default=None,
                         help="comma-separated methods (default: all)")
    compare.add_argument("--seeds", type=_positive_int, default=3, help="number of seeds")
    compare.add_argument("--epochs", type=_positive_int, default=None,
                         help="training epochs of every method")
    compare.add_argument("--out", default="reports", help="output folder")
    # --- speed subcommand (keras_vc/benchmark/speed.py) ---
    _add_speed_parser(commands)
    # --- end speed subcommand ---
    return parser


def _compare(args):
    from keras_vc.benchmark import compare
    from keras_vc.benchmark import methods

    datasets = args.dataset or ["digits"]
    unknown = [d for d in datasets if d not in compare.DATASETS]
    if unknown:
        raise _UsageError(f"unknown dataset(s) {unknown}; expected {sorted(compare.DATASETS)}")
    method_names = args.methods or list(methods.METHODS)
    unknown = [m for m in method_names if m not in methods.METHODS]
    if unknown:
        raise _UsageError(f"unknown method(s) {unknown}; expected {sorted(methods.METHODS)}")
    protocol = methods.Protocol() if args.epochs is None else methods.Protocol(epochs=args.epochs)
    report = compare.run_compare(datasets, method_names, list(range(args.seeds)), protocol,
                                 args.out)
    print()
    print(compare.format_markdown(report))
    print(f"Reports written to {args.out}/ (compare.json, compare.md, reliability_*.png)")
    return 0


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
    speed = commands.add_parser(
        "speed", help="time and memory of a training step of every head against a Dense + "
                      "softmax head (head alone and on a small ResNet)")
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
                       help="comma-separated variants (default: all); the Dense + softmax "
                            "baseline is always measured")
    speed.add_argument("--repeats", type=_positive_int, default=None,
                       help="interleaved timed repeats per configuration (default: 7)")
    speed.add_argument("--quick", action="store_true",
                       help="tiny sizes and 3 repeats: checks that everything runs; its "
                            "figures mean nothing")
    speed.add_argument("--out", default="reports", help="output folder")


def _speed_command(args):
    words = ["keras-vc", "speed"]
    if args.quick:
        words.append("--quick")
    for option in ("backend", "sizes", "model_batches", "scopes", "variants", "repeats"):
        value = getattr(args, option)
        if value is None:
            continue
        if option == "sizes":
            value = ",".join("x".join(str(v) for v in size) for size in value)
        elif isinstance(value, list):
            value = ",".join(str(v) for v in value)
        words += [f"--{option.replace('_', '-')}", str(value)]
    words += ["--out", args.out]
    return " ".join(words)


def _speed(args):
    import dataclasses
    import os

    # TensorFlow keeps allocator statistics on a CPU only with its BFC allocator; it reads this
    # variable when it first allocates, which has not happened yet in this process.
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "1")
    import keras

    from keras_vc.benchmark import speed

    backend = keras.backend.backend()
    if args.backend is not None and args.backend != backend:
        raise _UsageError(f"--backend {args.backend}, but Keras runs on {backend}: Keras reads "
                          f"KERAS_BACKEND when it is first imported, so run "
                          f"`KERAS_BACKEND={args.backend} keras-vc speed ...`")
    if backend not in speed.SUPPORTED_BACKENDS:
        raise _UsageError(f"the {backend} backend is not supported; expected one of "
                          f"{speed.SUPPORTED_BACKENDS}")
    settings = speed.QUICK if args.quick else speed.Settings()
    changes = {}
    if args.sizes is not None:
        changes["head_sizes"] = tuple(args.sizes)
    if args.model_batches is not None:
        changes["model_batches"] = tuple(args.model_batches)
    if args.repeats is not None:
        changes["repeats"] = args.repeats
    settings = dataclasses.replace(settings, **changes)
    scopes = args.scopes or list(speed.SCOPES)
    unknown = [scope for scope in scopes if scope not in speed.SCOPES]
    if unknown:
        raise _UsageError(f"unknown scope(s) {unknown}; expected {list(speed.SCOPES)}")
    unknown = [name for name in args.variants or [] if name not in speed.VARIANTS]
    if unknown:
        raise _UsageError(f"unknown variant(s) {unknown}; expected {sorted(speed.VARIANTS)}")
    try:
        speed.validate_settings(settings)
    except ValueError as error:
        raise _UsageError(str(error))
    command = _speed_command(args)
    if backend != "tensorflow":
        command = f"KERAS_BACKEND={backend} {command}"
    report = speed.run_speed(args.variants, settings, scopes, args.out, command=command)
    print()
    print(speed.format_markdown(report))
    print(f"Reports written to {args.out}/ (speed.json, speed.md)")
    return 0
# --- end speed subcommand ---


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "compare":
            return _compare(args)
        # --- speed subcommand ---
        if args.command == "speed":
            return _speed(args)
        # --- end speed subcommand ---
    except _UsageError as error:
        print(f"keras-vc {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
