"""gradc.nn: modules, parameters, functional ops and initialisers, as torch.nn."""
from . import functional, init
from .modules import *  # noqa: F403
from .parameter import Parameter
