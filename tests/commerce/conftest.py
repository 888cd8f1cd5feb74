"""The commerce fixtures (tests/commerce/fixtures.py) for every test in this folder."""

from tests.commerce.fixtures import *  # noqa: F403 -- fixtures are found by name, so all of them
