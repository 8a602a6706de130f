"""scikit-learn's handwritten digits as 32x32 images, and a plain training loop.

Shared by the examples in this folder. ``load_digits()`` ships with scikit-learn, so nothing
is downloaded: 1,797 images of 8x8 pixels (values 0..16), ten classes.
"""

import time

import numpy as np

import convbackends as cb


def load(channels=1, test_size=0.25, seed=0, dtype=np.float32):
    """``(x_train, y_train, x_test, y_test)``: the digits upsampled to 32x32.

    Each pixel becomes a 4x4 block (upsampling by repetition), then the images are
    normalised with the training set's mean and standard deviation. ``channels=3`` repeats
    the grey image in three channels, for networks that take colour images. The split is
    stratified and seeded (scikit-learn's ``train_test_split``).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float64) / 16.0
    images = images.repeat(4, axis=1).repeat(4, axis=2)[:, None]       # (N, 1, 32, 32)
    if channels != 1:
        images = np.repeat(images, channels, axis=1)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target.astype(np.int64), test_size=test_size, random_state=seed,
        stratify=digits.target)
    mean, std = x_train.mean(), x_train.std()
    return ((x_train - mean) / std).astype(dtype), y_train, \
        ((x_test - mean) / std).astype(dtype), y_test


def accuracy(model, x, y, batch_size=256):
    """The share of ``x`` that ``model`` (in evaluation mode) classifies as ``y``."""
    model.eval()
    hits = sum(int((model(x[i:i + batch_size]).argmax(axis=1) == y[i:i + batch_size]).sum())
               for i in range(0, len(x), batch_size))
    return hits / len(x)


def train_epoch(model, crit, opt, x, y, batch_size, rng):
    """One pass over ``(x, y)`` in a random order: forward, loss, backward, step per batch.

    Returns ``(mean loss, training accuracy, per-batch losses)`` of the pass (the accuracy
    of each batch's forward, in training mode, as it went).
    """
    model.train()
    order = rng.permutation(len(x))
    losses, hits = [], 0
    for start in range(0, len(x), batch_size):
        idx = order[start:start + batch_size]
        logits = model(x[idx])
        losses.append(crit(logits, y[idx]))
        opt.zero_grad()
        model.backward(crit.backward())
        opt.step()
        hits += int((logits.argmax(axis=1) == y[idx]).sum())
    sizes = np.diff(np.r_[np.arange(0, len(x), batch_size), len(x)])
    return float(np.dot(losses, sizes) / len(x)), hits / len(x), losses


def shifted(x, rng, pixels):
    """Each image of ``x`` moved by a random whole number of pixels, at most ``pixels`` in
    each direction (rolled: what leaves one side comes back at the other, background
    there). A cheap augmentation that keeps LeNet-5 from learning the training set by
    heart."""
    if not pixels:
        return x
    out = np.empty_like(x)
    for i, (dy, dx) in enumerate(rng.integers(-pixels, pixels + 1, (len(x), 2))):
        out[i] = np.roll(x[i], (dy, dx), axis=(-2, -1))
    return out


def cosine_lr(lr, epoch, epochs):
    """The learning rate of ``epoch`` (0-based) annealed from ``lr`` towards 0 on a half
    cosine over ``epochs``."""
    return lr * 0.5 * (1 + np.cos(np.pi * epoch / epochs))


def fit(model, data, *, epochs, batch_size, lr, schedule="constant", shift=0, seed=0,
        log=print):
    """Train ``model`` with Adam and cross-entropy on ``data`` (as :func:`load` returns it),
    one progress line per epoch; returns the last epoch's test accuracy.

    ``schedule="cosine"`` anneals the learning rate per epoch (:func:`cosine_lr`);
    ``shift`` moves each training image by up to that many pixels each epoch
    (:func:`shifted`).
    """
    x_train, y_train, x_test, y_test = data
    crit = cb.nn.CrossEntropyLoss()
    opt = cb.optim.Adam(model, lr=lr)
    rng = np.random.default_rng(seed)
    log(f"{len(x_train)} training and {len(x_test)} test images of {x_train.shape[1:]}, "
        f"batches of {batch_size}, Adam at lr {lr:g} ({schedule})"
        + (f", shifts of up to {shift} pixels" if shift else ""))
    test = None
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        if schedule == "cosine":
            opt.lr = cosine_lr(lr, epoch - 1, epochs)
        x = shifted(x_train, rng, shift)
        loss, train, _ = train_epoch(model, crit, opt, x, y_train, batch_size, rng)
        test = accuracy(model, x_test, y_test)
        log(f"epoch {epoch:2d}/{epochs}  loss {loss:.4f}  train {100 * train:5.1f}%  "
            f"test {100 * test:5.1f}%  {time.perf_counter() - start:6.2f} s")
    return test


def parser(description, *, epochs, batch_size, lr, schedule="constant", shift=0):
    """The examples' command line: ``--backend``, ``--epochs``, ``--batch-size``, ``--lr``,
    ``--schedule``, ``--shift``, ``--seed``."""
    import argparse

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--backend", default=None,
                   help="the backend every layer runs on (default: the library's default, "
                        "'auto' unless set otherwise)")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr, help="Adam's learning rate")
    p.add_argument("--schedule", choices=("constant", "cosine"), default=schedule,
                   help="the learning rate per epoch: constant, or annealed on a half "
                        "cosine")
    p.add_argument("--shift", type=int, default=shift,
                   help="move each training image by up to this many pixels per epoch")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the split, the initial weights and the batch order")
    return p
