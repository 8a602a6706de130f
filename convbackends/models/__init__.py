"""Classic networks built from :mod:`convbackends.nn`, and :func:`summary`.

Every builder returns a :class:`~convbackends.nn.Sequential` (GoogLeNet and the FCNs, whose
data do not flow in a chain, a module of their own) whose state-dict keys are those of the
PyTorch model of the same layout (torchvision's for AlexNet, VGG-16/19 and ResNet-18, and
its module names for GoogLeNet), so trained PyTorch weights load with
``load_state_dict``. ``backend=`` is set on every layer inside (convolutions run on it;
pooling runs on it where it pools, see :attr:`convbackends.nn.Module.backend`); ``rng=``
draws every initial weight from one generator, so a seed gives the same model.

>>> import convbackends as cb
>>> s = cb.models.summary(cb.models.lenet5(rng=0), (1, 1, 32, 32))
>>> s.total_params
61706
"""

from .alexnet import alexnet
from .fcn import fcn8s, fcn16s, fcn32s
from .googlenet import googlenet
from .lenet import lenet5
from .resnet import resnet18
from .summary import Summary, SummaryRow, summary
from .tflearn import tflearn_cnn
from .vgg import vgg16, vgg19
from .zfnet import zfnet

__all__ = ["lenet5", "alexnet", "vgg16", "resnet18", "tflearn_cnn", "summary", "Summary",
           "SummaryRow", "zfnet", "vgg19", "googlenet", "fcn32s", "fcn16s", "fcn8s"]
