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


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "compare":
            return _compare(args)
    except _UsageError as error:
        print(f"keras-vc {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
