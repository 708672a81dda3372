"""Carebus domain: pure, dependency-light rules shared by every Lambda function."""
