"""Classic networks built from :mod:`convbackends.nn`, and :func:`summary`.

Every builder returns a :class:`~convbackends.nn.Sequential` whose state-dict keys are
those of the PyTorch model of the same layout (torchvision's for AlexNet, VGG-16 and
ResNet-18), so trained PyTorch weights load with ``load_state_dict``. ``backend=`` is set on
every layer inside (convolutions run on it; pooling runs on it where it pools, see
:attr:`convbackends.nn.Module.backend`); ``rng=`` draws every initial weight from one
generator, so a seed gives the same model.

>>> import convbackends as cb
>>> s = cb.models.summary(cb.models.lenet5(rng=0), (1, 1, 32, 32))
>>> s.total_params
61706
"""

from .alexnet import alexnet
from .lenet import lenet5
from .resnet import resnet18
from .summary import Summary, SummaryRow, summary
from .vgg import vgg16

__all__ = ["lenet5", "alexnet", "vgg16", "resnet18", "summary", "Summary", "SummaryRow"]
