# A package, so that its conftest is imported as `browser.conftest` and never replaces
# tests/conftest.py as the module `conftest` that unit tests import from.
