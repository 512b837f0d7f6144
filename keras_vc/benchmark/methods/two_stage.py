"""TST and V-TST (Jordahn & Olmos, ICML 2024): a new head on the frozen softmax baseline."""

import functools

from keras_vc import two_stage
from keras_vc.benchmark.methods import Method
from keras_vc.benchmark.methods import register

LATENT_DIM = 128
NUM_SAMPLES = 10


def train(backbone, split, protocol, seed, context, head):
    # Stage 1 is the softmax baseline of the same seed, cut at its backbone's output (the
    # freshly built `backbone` argument is not used).
    if "softmax" not in context:
        raise ValueError(f"`{head}` needs the `softmax` method trained first in the same run "
                         "(its stage 1); add softmax to --methods.")
    stage1 = context["softmax"]
    return two_stage.retrain_head(
        stage1, features=stage1.layers[-2].name, head=head, latent_dim=LATENT_DIM,
        train_data=(split.x_train, split.y_train),
        validation_data=(split.x_val, split.y_val), epochs=protocol.epochs,
        optimizer=protocol.make_optimizer(), batch_size=protocol.batch_size,
        num_samples=NUM_SAMPLES, seed=seed, **protocol.compile_options())


def _trainer(head):
    # A partial of a module-level function pickles, so the method reaches worker processes.
    return functools.partial(train, head=head)


_STAGE_TWO = ("stage 2 on the frozen softmax baseline of the same seed (cut at its backbone "
              "output; Z=128, head D -> 3Z -> ReLU -> Z -> K), trained with the protocol's "
              "optimizer, batch size and epochs as a budget, early stopping (patience 10) and "
              "the checkpoint of lowest validation NLL, as the method prescribes")

register(Method(
    name="tst",
    title="TST (two-stage)",
    train=_trainer("tst"),
    ood_score="max_probability",
    note="softmax of the TST head's logits; " + _STAGE_TWO,
    requires=("softmax",),
))

register(Method(
    name="vtst",
    title="V-TST (two-stage, variational)",
    train=_trainer("vtst"),
    ood_score="max_probability",
    note=f"class probabilities of the V-TST head averaged over {NUM_SAMPLES} fixed latent draws; "
         + _STAGE_TWO,
    requires=("softmax",),
))
