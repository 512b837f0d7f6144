"""The one registry of heads: what ``keras-vc compare`` trains and ``keras-vc speed`` times.

Each :class:`Head` states, once: its command-line name and display name, how its output layer is
built on a backbone and which loss trains it, its recommended OOD score, the trainer ``compare``
runs (:mod:`keras_vc.benchmark.trainers`) and the variants ``speed`` measures. Both commands
enumerate :data:`HEADS`, so a method has one name everywhere. The order of :data:`HEADS` is the
order of the reports' rows: the softmax baseline first.

Variational Classification (Dhuliawala et al., TMLR 2024) appears twice, labelled by what runs:
``vc`` is keras_vc's default ``VariationalSoftmax`` (a Gaussian encoder ``q(z | x)`` with a
32-d latent), ``vc_deterministic`` is the paper's deterministic encoder (``z`` = the
penultimate features: ``posterior="deterministic", latent_dim=None``, as in the authors' code).
"""

import dataclasses
import functools
from typing import Callable, Optional

import keras

from keras_vc.benchmark import trainers

BASELINE = "softmax"
SPEED_SCOPES = ("head", "model")
# Names that changed, with the name to use now (a clear error instead of "unknown").
RENAMED = {"variational": "vc", "variational_no_consistency": "vc_no_consistency"}


@dataclasses.dataclass(frozen=True)
class Built:
    """What a speed variant's ``build`` returns.

    Attributes:
        model: a ``keras.Model`` from the backbone's inputs to float32 logits.
        loss: the loss passed to ``compile`` (``None`` when the model adds its own losses).
        transform: optional ``transform(x, y, seed_generator) -> (x, y)`` applied to every
            training batch inside the compiled step (a data-dependent regulariser such as
            DisMax's fractional probability mixing), with a ``keras.random.SeedGenerator`` owned
            by the harness.
    """

    model: object
    loss: object = None
    transform: Optional[Callable] = None


@dataclasses.dataclass(frozen=True)
class Variant:
    """One configuration of a head that ``keras-vc speed`` measures.

    Attributes:
        name: the command-line name (the head's name, or the head's name and a suffix).
        title: a human-readable name for tables.
        build: ``build(backbone, num_classes, seed) -> Built``; ``backbone`` is a
            :class:`~keras_vc.benchmark.speed_models.Backbone` built for this variant alone.
        scopes: ``"head"`` (on a feature vector) and/or ``"model"`` (on the ResNet).
        note: a line for the report (what is measured, what differs from the method).
    """

    name: str
    title: str
    build: Callable
    scopes: tuple = SPEED_SCOPES
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Head:
    """A head (or regulariser) of the benchmarks.

    Attributes:
        name: the command-line name, the same in ``compare`` and ``speed``.
        title: the display name of report rows.
        layer: ``layer(num_classes, seed, name) -> keras.layers.Layer``, the output layer put
            on a backbone (None for heads built by their trainer, such as the two-stage ones).
        loss: ``loss() -> keras.losses.Loss`` that trains ``layer``.
        ood_score: the recommended OOD score (a key of ``keras_vc.scores.SCORES``); the score
            itself comes from the output layer's ``ood_score`` when it has one.
        note: which probabilities ``compare`` scores, stated in the report.
        train: ``compare``'s trainer (see :mod:`~keras_vc.benchmark.trainers`), or None for a
            head that ``compare`` does not train.
        extra_scores: optional ``extra_scores(model, split) -> score_fn`` where
            ``score_fn(x) -> {score_name: scores}`` adds method-specific OOD scores (DkNN).
        requires: heads that ``compare`` must train first in the same seed.
        speed: the :class:`Variant` objects ``speed`` measures (empty: not timed).
    """

    name: str
    title: str
    layer: Optional[Callable] = None
    loss: Optional[Callable] = None
    ood_score: str = "max_probability"
    note: str = ""
    train: Optional[Callable] = None
    extra_scores: Optional[Callable] = None
    requires: tuple = ()
    speed: tuple = ()


HEADS = {}


def register(head):
    """Adds ``head`` to :data:`HEADS` (replacing one of the same name) and returns it."""
    if not isinstance(head, Head):
        raise ValueError(f"`head` must be a registry.Head, got {type(head).__name__}.")
    for variant in head.speed:
        unknown = [scope for scope in variant.scopes if scope not in SPEED_SCOPES]
        if not variant.scopes or unknown:
            raise ValueError(f"`variant.scopes` must be a non-empty subset of {SPEED_SCOPES}, "
                             f"got {variant.scopes}.")
    HEADS[head.name] = head
    return head


def unregister(name):
    """Removes a head from :data:`HEADS` (the baseline cannot be removed)."""
    if name == BASELINE:
        raise ValueError(f"`name`: the baseline {BASELINE!r} cannot be unregistered.")
    HEADS.pop(name, None)


def compare_methods():
    """``{name: Head}`` of the heads ``compare`` trains, in report order."""
    return {name: head for name, head in HEADS.items() if head.train is not None}


def speed_variants():
    """``{variant name: Variant}`` of every head's speed variants, in report order."""
    return {variant.name: variant for head in HEADS.values() for variant in head.speed}


def unknown_names(names, known, what):
    """A one-line message for the names not in ``known`` (renamed ones say their new name), or
    None when every name is known; ``what`` is "method" or "variant"."""
    unknown = [name for name in names if name not in known]
    if not unknown:
        return None
    renamed = [f"{name!r} is now called {RENAMED[name]!r}" for name in unknown
               if name in RENAMED]
    return (f"unknown {what}(s) {', '.join(unknown)}"
            + (f" ({'; '.join(renamed)})" if renamed else "")
            + f"; expected some of {', '.join(known)}")


# ------------------------------------------------------------------------------------------
# Output layers and losses


def dense(num_classes, seed=None, name=None):
    return keras.layers.Dense(num_classes, dtype="float32", name=name)


def cross_entropy():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def distance_logits(num_classes, seed=None, name=None, mode="isomax_plus"):
    from keras_vc.layers import DistanceLogits

    return DistanceLogits(num_classes, mode=mode, name=name)


def entropic_cross_entropy():
    from keras_vc.losses import EntropicCrossEntropy

    return EntropicCrossEntropy()


def variational_softmax(num_classes, seed=None, name=None, **options):
    from keras_vc.layers import VariationalSoftmax

    return VariationalSoftmax(num_classes, seed=seed, name=name, **options)


def variational_loss():
    from keras_vc.losses import VariationalClassificationLoss

    return VariationalClassificationLoss()


# ------------------------------------------------------------------------------------------
# Speed builders


def _attach(backbone, layer):
    return keras.Model(backbone.inputs, layer(backbone.features))


def build_on(backbone, num_classes, seed, layer, loss):
    """The head's layer on the backbone's features, with its loss (a speed variant's build)."""
    return Built(_attach(backbone, layer(num_classes, seed)), loss())


def build_with_fpr(backbone, num_classes, seed, layer, loss):
    """As :func:`build_on`, with fractional probability mixing of every training batch."""
    from keras_vc.augment import fractional_probability_mix

    def transform(images, labels, seed_generator):
        # A fresh stateless seed per step, drawn from the harness's seed generator.
        return fractional_probability_mix(images, labels, num_classes,
                                          seed=seed_generator.next())

    return dataclasses.replace(build_on(backbone, num_classes, seed, layer, loss),
                               transform=transform)


def build_without_consistency(backbone, num_classes, seed, layer, loss):
    """As :func:`build_on` with ``consistency_weight=0`` (no discriminator)."""
    return build_on(backbone, num_classes, seed, functools.partial(layer, consistency_weight=0.0),
                    loss)


def build_snnl(backbone, num_classes, seed, layer, loss):
    """The Dense + softmax classifier trained with SNNL on the ResNet's three stage outputs.

    ``keras_vc.models.EntanglementModel(classifier, layer_names)`` with its defaults (the
    reference's: ``alpha=10``, temperature 100 optimised every step); its ``compute_loss`` adds
    ``-alpha * sum SNNL`` of the named layers' flattened outputs.
    """
    from keras_vc.models import EntanglementModel

    built = build_on(backbone, num_classes, seed, layer, loss)
    return Built(EntanglementModel(built.model, list(backbone.hidden_names)), built.loss)


def _head(name, title, layer, loss, model_name=None, speed=(), **fields):
    """A head trained by the common trainer (or ``fields["train"]``), timed by ``speed``."""
    train = fields.pop("train", None) or functools.partial(
        trainers.train_head, layer=layer, loss=loss, model_name=model_name)
    variants = tuple(Variant(v_name, v_title, functools.partial(build, layer=layer, loss=loss),
                             **v_fields)
                     for v_name, v_title, build, v_fields in speed)
    return register(Head(name, title, layer, loss, train=train, speed=variants, **fields))


_ISOMAX_PLUS = functools.partial(distance_logits, mode="isomax_plus")
_DISMAX = functools.partial(distance_logits, mode="dismax")
_VC_DETERMINISTIC = functools.partial(variational_softmax, posterior="deterministic",
                                      latent_dim=None)
_DISTANCE_NOTE = ("softmax of the DistanceLogits output (entropic scale 10 inside the layer, "
                  "T = 1); OOD score on the reference's raw logits at T = 1")
_VC_NOTE = ("softmax of the log joint densities log p(z | k) + log pi_k at {z} (OOD: their "
            "logsumexp, the log density log p(z))")
_STAGE_TWO = ("stage 2 on the frozen softmax baseline of the same seed (cut at its backbone "
              "output; Z=128, head D -> 3Z -> ReLU -> Z -> K), trained with the protocol's "
              "optimizer, batch size and epochs as a budget, early stopping (patience 10) and "
              "the checkpoint of lowest validation NLL, as the method prescribes")

_head(BASELINE, "Dense + softmax", dense, cross_entropy, "softmax_classifier",
      note="softmax of the Dense logits",
      speed=[(BASELINE, "Dense + softmax (baseline)", build_on,
              {"note": "Dense(K) logits, sparse categorical cross-entropy"})])
_head("isomax_plus", "IsoMax+ (DistanceLogits)", _ISOMAX_PLUS, entropic_cross_entropy,
      "isomax_plus_classifier", ood_score="max_logit", note=_DISTANCE_NOTE,
      speed=[("isomax_plus", "DistanceLogits IsoMax+", build_on,
              {"note": "DistanceLogits(mode='isomax_plus') with EntropicCrossEntropy"})])
_head("dismax", "DisMax (DistanceLogits)", _DISMAX, entropic_cross_entropy,
      "dismax_classifier", ood_score="mmles", note=_DISTANCE_NOTE,
      speed=[("dismax", "DistanceLogits DisMax", build_on,
              {"note": "DistanceLogits(mode='dismax') with EntropicCrossEntropy"}),
             ("dismax_fpr", "DistanceLogits DisMax + FPR", build_with_fpr,
              {"scopes": ("model",),
               "note": "DisMax with fractional probability mixing (FPR) of every batch, timed "
                       "inside the compiled step (in a tf.data pipeline it would run beside "
                       "the step instead); it mixes images, so it is measured on the full "
                       "model only"})])
_head("vc", "VC, Gaussian encoder", variational_softmax, variational_loss,
      "variational_classifier", ood_score="energy",
      note=_VC_NOTE.format(z="the posterior mean"),
      speed=[("vc", "VariationalSoftmax, Gaussian encoder", build_on,
              {"note": "VariationalSoftmax (defaults: Gaussian latent of 32, learned priors, "
                       "consistency_weight 0.01) with VariationalClassificationLoss"}),
             ("vc_no_consistency", "VariationalSoftmax, no consistency term",
              build_without_consistency,
              {"note": "the same with consistency_weight=0 (no discriminator)"})])
_head("vc_deterministic", "VC, deterministic encoder", _VC_DETERMINISTIC, variational_loss,
      "vc_deterministic_classifier", ood_score="energy",
      note=_VC_NOTE.format(z="z = the penultimate features (the paper's deterministic "
                             "encoder)"),
      speed=[("vc_deterministic", "VariationalSoftmax, deterministic encoder", build_on,
              {"note": "VariationalSoftmax(posterior='deterministic', latent_dim=None): z is "
                       "the features, as in the paper's code"})])
_head("snnl", f"Dense + softmax, SNNL maximised (alpha {trainers.SNNL_ALPHA:g})", dense,
      cross_entropy, train=functools.partial(trainers.train_snnl, layer=dense,
                                             loss=cross_entropy),
      extra_scores=trainers.dknn_scores,
      note="softmax of the Dense logits (SNNL only shapes the hidden layers); DkNN credibility "
           "over the hidden layers and the logits as an extra OOD score",
      speed=[("snnl", "Dense + softmax + SNNL on 3 layers", build_snnl,
              {"scopes": ("model",),
               "note": "EntanglementModel: cross-entropy - 10 x soft nearest neighbour loss of "
                       "the three stage outputs (flattened), temperatures optimised as in the "
                       "reference; full model only (it needs hidden layers)"})])
_head("tst", "TST (two-stage)", None, None,
      train=functools.partial(trainers.train_two_stage, head="tst"), requires=(BASELINE,),
      note="softmax of the TST head's logits; " + _STAGE_TWO)
_head("vtst", "V-TST (two-stage, variational)", None, None,
      train=functools.partial(trainers.train_two_stage, head="vtst"), requires=(BASELINE,),
      note=f"class probabilities of the V-TST head averaged over {trainers.NUM_SAMPLES} fixed "
           "latent draws; " + _STAGE_TWO)
