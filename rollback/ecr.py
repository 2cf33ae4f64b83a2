"""ECR images, for the known-version check: does a tag exist in a repository?"""

from __future__ import annotations

from botocore.exceptions import ClientError

from rollback import aws


class EcrImages(aws.AwsAdapter):
    service = "ecr"

    def exists(self, repository: str, tag: str) -> bool:
        """True when ``repository`` holds an image tagged ``tag``."""
        try:
            self.client.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
        except ClientError as exc:
            if aws.error_code(exc) in ("ImageNotFoundException", "RepositoryNotFoundException"):
                return False
            raise aws.translate(exc, f"describe ECR image {repository}:{tag}") from exc
        return True
