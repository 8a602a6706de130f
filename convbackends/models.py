"""Classic networks built from :mod:`convbackends.layers` (LeNet-5, AlexNet, VGG-16, ResNet-18)."""
