"""gradc.utils: data loading."""
from . import data
