"""The receiver's fixtures for the webhook tests here (defined in receiver_rig.py)."""

from tests.functional.receiver_rig import (  # noqa: F401 - fixtures, found by name
    local_http,
    receiver,
    signer,
    sns_receiver,
    world,
)
