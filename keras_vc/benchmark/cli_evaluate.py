"""``keras-vc evaluate``: checks the parsed arguments, evaluates the model and prints the report."""

from keras_vc.benchmark.cli_usage import _UsageError


def run(args):
    from keras_vc.evaluation import api
    from keras_vc.evaluation import figures
    from keras_vc.evaluation import report as report_lib

    names = [name for name, _ in args.ood]
    if len(set(names)) != len(names):
        raise _UsageError(f"--ood names must differ, got {names}")
    try:
        report = api.evaluate(
            args.model, args.test, val_data=args.val, ood_data=dict(args.ood) or None,
            train_data=args.train, alpha=args.alpha,
            conformal_scores=args.conformal_scores or figures.CONFORMAL_SCORES,
            detectors=args.detectors or figures.DEFAULT_DETECTORS, out_dir=args.out,
            batch_size=args.batch_size, data_dir=args.data_dir, verbose=0 if args.quiet else 1)
    except ValueError as error:
        raise _UsageError(str(error))
    print()
    print(report_lib.format_markdown(report))
    print(f"Reports written to {args.out}/: {', '.join(report['files'])}")
    return 0
