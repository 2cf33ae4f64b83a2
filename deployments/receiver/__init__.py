"""The webhook receiver: signed GitHub and CloudWatch/SNS webhooks and the REST rollback
API, turned into rollback flow runs through one ``Intake``.

One router per entrance (``github``, ``cloudwatch``, ``api``), each with its own
credential; ``app.create_app`` puts them together; ``errors`` says how a request is
refused.
"""

from deployments.receiver.api import deployment_stats
from deployments.receiver.app import create_app

__all__ = ["create_app", "deployment_stats"]
