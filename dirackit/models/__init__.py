"""Model families; importing this package registers every one of them."""
from . import diracnet, resnext, wrn  # noqa: F401
