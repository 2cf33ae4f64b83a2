"""E-mail through SNS: one Publish per outcome to the environment's topic."""

from __future__ import annotations

import logging

from botocore.exceptions import BotoCoreError, ClientError

from rollback import aws

log = logging.getLogger(__name__)


class SnsPublisher(aws.AwsAdapter):
    """Publishes a subject and a plain-text body to a topic (its e-mail subscribers)."""

    service = "sns"

    def publish(self, topic_arn: str, subject: str, body: str) -> str:
        """Returns the SNS MessageId."""
        try:
            out = self.client.publish(TopicArn=topic_arn, Subject=subject, Message=body)
        except (ClientError, BotoCoreError) as exc:
            raise aws.translate(exc, f"publish to SNS topic {topic_arn}") from exc
        return str(out.get("MessageId", ""))
