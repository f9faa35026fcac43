"""Model families; importing this package registers every one of them."""
from . import diracnet, wrn  # noqa: F401
