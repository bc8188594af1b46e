"""`make test` hands its workers the longest test files first (tests/conftest.py): a file renamed or
removed would silently lose its place and end the suite on one worker."""

from tests.conftest import LONGEST_FILES, TESTS


def test_every_file_the_suite_starts_first_exists() -> None:
    missing = [name for name in LONGEST_FILES if not (TESTS / name).is_file()]
    assert not missing, f"tests/conftest.py's LONGEST_FILES names files that are gone: {missing}"
