"""Model families; importing this package registers every one of them."""
from . import dbb_nets, diracnet, resnext, wrn  # noqa: F401
