"""A module of one's own with a bug at import time, for ``--env-name`` / ``--policy-base``
``tests.module_that_raises:Anything``: importing it raises."""

LIMITS = {"steps": 10}
raise ValueError(f"a bug at import: {LIMITS['episodes']}")  # the bug the tests point at
