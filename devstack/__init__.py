"""The local stack and the sandbox world (moto, demo config): development and tests,
not product code."""
