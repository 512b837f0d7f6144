"""Reliability diagrams."""

import numpy as np

from keras_vc.metrics import calibration


def reliability_diagram(labels, probs, num_bins=15, ax=None, title=None):
    """Reliability diagram of the top-label confidence (equal-width bins).

    Bars show the accuracy of each bin, a hatched red overlay its gap to the diagonal (mean
    confidence), and a lower panel the number of samples per bin. The ECE is printed in the
    corner.

    Args:
        labels: integer class ids, shape (n,).
        probs: probabilities, shape (n, K).
        num_bins: number of equal-width bins.
        ax: optional matplotlib Axes to draw into; the counts then go to a twin y-axis.
        title: optional title.

    Returns:
        The matplotlib ``Figure`` (created without pyplot, so no display is needed; save it with
        ``fig.savefig(path)``).
    """
    counts, mean_confidence, accuracy, edges, _ = calibration.binned_statistics(
        labels, probs, num_bins
    )
    ece = calibration.expected_calibration_error(labels, probs, num_bins)
    if ax is None:
        # Imported here, not at the top: `import keras_vc` stays free of matplotlib.
        from matplotlib.figure import Figure

        figure = Figure(figsize=(4.8, 5.6))
        grid = figure.add_gridspec(2, 1, height_ratios=(3, 1), hspace=0.08)
        main_ax = figure.add_subplot(grid[0])
        count_ax = figure.add_subplot(grid[1], sharex=main_ax)
    else:
        figure = ax.figure
        main_ax = ax
        count_ax = None
    centers = (edges[:-1] + edges[1:]) / 2
    width = 1.0 / num_bins
    filled = counts > 0
    main_ax.bar(centers[filled], accuracy[filled], width=width, edgecolor="black",
                color="#4c72b0", label="accuracy")
    gap_bottom = np.minimum(accuracy, mean_confidence)[filled]
    gap_height = np.abs(mean_confidence - accuracy)[filled]
    main_ax.bar(centers[filled], gap_height, bottom=gap_bottom, width=width, color="#dd8452",
                alpha=0.45, hatch="//", edgecolor="#c44e52", label="gap to confidence")
    main_ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    main_ax.set_xlim(0, 1)
    main_ax.set_ylim(0, 1)
    main_ax.set_ylabel("accuracy")
    main_ax.text(0.04, 0.9, f"ECE = {ece:.3f}", transform=main_ax.transAxes,
                 bbox=dict(facecolor="white", alpha=0.8, edgecolor="none"))
    main_ax.legend(loc="lower right", fontsize="small")
    if title:
        main_ax.set_title(title)
    if count_ax is None:
        count_ax = main_ax.twinx()
        # A twin axis is drawn above its host: put the counts behind the accuracy bars.
        main_ax.set_zorder(count_ax.get_zorder() + 1)
        main_ax.patch.set_visible(False)
        count_ax.set_ylabel("samples", color="gray")
        count_ax.bar(centers, counts, width=width, color="gray", alpha=0.2)
    else:
        count_ax.bar(centers, counts, width=width, color="gray", edgecolor="black")
        count_ax.set_ylabel("samples")
        count_ax.set_xlabel("confidence")
        for label in main_ax.get_xticklabels():
            label.set_visible(False)
    return figure
