"""Model families; importing this package registers every family with ``dirackit.registry``."""
from . import wrn  # noqa: F401
