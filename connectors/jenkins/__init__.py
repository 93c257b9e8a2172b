"""Jenkins connector: parameterized builds for matching changes, their results fed back."""

from connectors.jenkins.connector import JenkinsConnector

__all__ = ["JenkinsConnector"]
