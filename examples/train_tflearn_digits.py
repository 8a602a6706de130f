"""Train the lectures' TFLearn CNN on scikit-learn's digits, as 32x32x3 images.

    python examples/train_tflearn_digits.py [--backend im2col] [--epochs 3]
                                            [--batch-size 32] [--lr 1e-3]

The network takes colour images (``cb.models.tflearn_cnn``: conv 32, max pool, conv 64,
conv 64, max pool, FC 512, dropout 0.5, FC 10), so each grey digit is repeated in three
channels. Adam at the example's learning rate 0.001, cross-entropy.
"""

import sys

import convbackends as cb
import digits


def main(argv=None):
    args = digits.parser(__doc__.splitlines()[0], epochs=3, batch_size=32,
                         lr=1e-3).parse_args(argv)
    data = digits.load(channels=3, seed=args.seed)
    model = cb.models.tflearn_cnn(num_classes=10, backend=args.backend, rng=args.seed)
    test = digits.fit(model, data, epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr, schedule=args.schedule, shift=args.shift,
                      seed=args.seed)
    print(f"test accuracy {100 * test:.1f}%")


if __name__ == "__main__":
    sys.exit(main())
